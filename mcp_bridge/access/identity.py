"""A bearer token to a client: the `clients` of the config with their tokens read, and the single
`--auth-token` as one more client with every right (so every setup from before `clients` works as it did)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpu_protocol.auth import keys_match
from gpu_protocol.priority import Priority
from mcp_bridge.client_rights import ClientConfig
from mcp_bridge.config import ConfigError
from mcp_bridge.pool.caller import Caller

CLIENT_KEY = "gpu_bridge.client"
"""Where the HTTP door (http_api/identity.py) puts the caller's `Client` in the request's ASGI scope."""
CALLER_KEY = "gpu_bridge.caller"
"""... and its `Caller` (with the class its `X-GPU-Priority` asked for)."""
AUTH_TOKEN_CLIENT = ""
"""The tenant of the single `--auth-token` (the pool's anonymous tenant, as on stdio)."""


@dataclass(frozen=True)
class Client:
    """One caller of the bridge: its name (tenant), token and rights (None: every right)."""

    name: str
    token: str = field(repr=False)
    rights: ClientConfig | None = None

    @property
    def priority(self) -> Priority:
        return self.rights.priority if self.rights else "interactive"

    @property
    def label(self) -> str:
        """The name in status and errors (the `--auth-token` client has none)."""
        return self.name or "(--auth-token)"

    def caller(self, asked: Priority | None) -> Caller:
        """Who the pool serves for this client's call, `asked` the class its `X-GPU-Priority` named."""
        return Caller(tenant=self.name, highest=self.priority, asked=asked)


def resolve_clients(configs: Sequence[ClientConfig], auth_token: str | None, env: Mapping[str, str]) -> list[Client]:
    """The clients with their tokens (`tokenEnv` read from `env`), and the `--auth-token` one. A ConfigError
    names the variable that is unset or the clients that share a token, never a token."""
    clients = [Client(AUTH_TOKEN_CLIENT, auth_token)] if auth_token else []
    for config in configs:
        token = config.token
        if config.tokenEnv is not None:
            token = env.get(config.tokenEnv, "").strip()
            if not token:
                raise ConfigError(f"clients: client {config.name!r} reads its token from the environment variable "
                                  f"{config.tokenEnv}, which is not set")
        assert token is not None  # ClientConfig holds exactly one of token and tokenEnv
        clients.append(Client(config.name, token, config))
    tokens = [c.token for c in clients]
    shared = sorted({c.label for c in clients if tokens.count(c.token) > 1})
    if shared:
        raise ConfigError(f"clients: each client needs its own token; the same token is given to {', '.join(shared)}")
    return clients


class Directory:
    """The clients by token: every token is compared (in constant time), so the time an answer takes says
    nothing about which token, or how much of one, was guessed."""

    def __init__(self, clients: Sequence[Client]) -> None:
        self.clients = tuple(clients)

    def identify(self, presented: bytes | None) -> Client | None:
        found = None
        for client in self.clients:
            if keys_match(client.token, presented) and found is None:
                found = client
        return found


def client_of(scope: Mapping[str, Any]) -> Client | None:
    """The client of a request (None: the bridge has no tokens, or no HTTP: every caller has every right)."""
    client = scope.get(CLIENT_KEY)
    return client if isinstance(client, Client) else None


def caller_of(scope: Mapping[str, Any], client: Client) -> Caller:
    """The caller the door made for `client`'s request (its class asked), else the client's own."""
    caller = scope.get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else client.caller(None)
