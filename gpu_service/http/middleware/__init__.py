"""ASGI middleware, outermost first: the protocol version every answer states, the request counter,
the body-size limit and the API key (both before a body is parsed)."""
