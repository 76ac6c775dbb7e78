"""Models, whatever their task: the registry that loads them on demand within a memory budget, the
engine protocol every task's engine meets, name resolution and the allowlist (`resolve`), the Whisper
catalog, facts read from a model's files, and the padded/unpadded encoder helpers."""
