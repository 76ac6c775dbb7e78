"""Who may call an HTTP bridge, what, and how much: the `clients` of its config (docs/sharing.md).

identity: a bearer token to a client (constant-time), the client's caller for the pool;
scopes: the tools, routes and models a client may use; items: what a call counts against `itemsPerMinute`;
quota: token buckets per client with an injectable clock; usage: per-tenant counters and their snapshot;
gate: all of it behind one `admit` for both front ends (the MCP server, the `/v1` API).
"""
