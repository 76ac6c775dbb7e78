"""Serving over HTTP: MCP (streamable HTTP or SSE) and the OpenAI/Cohere-compatible `/v1` API behind one
bearer token (`app`), the `/v1` routes (`openai`)."""
