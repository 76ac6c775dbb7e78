"""The bridge over real services: MCP front ends, the pool across processes, its CLI, mixed versions."""
