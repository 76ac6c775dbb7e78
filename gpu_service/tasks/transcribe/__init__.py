"""Speech to text: Whisper through faster-whisper (CTranslate2), decoded in long-lived decoder
processes with a time limit per file, chunked at silences by Silero VAD, and the chunks of concurrent
requests batched together on the model's scheduler. Nothing heavy is imported here: the decoder
processes import only PyAV."""
