"""Speech to text: Whisper through faster-whisper (CTranslate2), decoded in a subprocess with a time
limit, chunked at silences by Silero VAD, and the chunks of concurrent requests batched together on
the model's scheduler. Nothing heavy is imported here: the decoder subprocess imports only PyAV."""
