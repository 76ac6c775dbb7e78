"""The wire protocol between the bridge and its GPU hosts: one definition both sides import.

Request and response models, route paths and header names, limits, the float32 vector
codec and the constant-time key check. It depends on pydantic and numpy only (never
torch, never the service or the bridge), so `pip install openclaw-gpu-bridge` carries it
without any service code, and the two sides cannot drift apart.

Modules, by topic: `routes` (paths, headers), `limits`, `validation` (shared rules and how
their failures read), `status` (/health, /info, /status, errors), `embed` (our /embed and the
OpenAI-compatible /v1/embeddings), `similarity`, `bertscore`, `rerank`, `codec` (vectors as
base64 float32), `auth` (key checks and the ASGI middleware that applies them), `transcribe` (speech to text on the
wire) and `audio` (the speech rules both sides keep: sample rate, form fields).
"""
