"""Other people's clients against the bridge and the service: OpenClaw, the MCP Inspector, the `openai` and
Cohere SDKs."""
