"""The MCP server: one module per tool family (the tools, their summaries, their output models),
assembled by `server.build_server`; how failures reach the agent in `errors`."""
