"""Text to speech (OpenAI's `/v1/audio/speech`): Piper voices run with onnxruntime (voices.py, engine.py),
phonemes from the espeak-ng program (phonemize.py), the sentences of concurrent requests batched into one
model call (onnx_graph.py exposes the durations that cut a batch back into sentences), and the audio
encoded per response format, whole or streamed (encode.py). Nothing heavy is imported here."""
