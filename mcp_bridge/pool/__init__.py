"""The host pool: hosts and their state, picking (balancing), sending with retries, a retry budget and
hedging inside one deadline, active health checks and DNS discovery. Its errors: `pool.errors`.

Knows nothing of MCP or HTTP serving (`mcp`, `http_api`): import-linter holds that (pyproject.toml).
"""
