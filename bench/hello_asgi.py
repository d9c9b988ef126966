"""The HTTP ceiling: a raw ASGI hello, served exactly like ``tokenwarden serve`` serves the app
(the same server — uvicorn or granian — same worker count and options, no access log).

It reads the whole request body (as the introspection door does) and answers a small JSON
object, so beside it an endpoint's figure says what the endpoint itself costs.

``python -m bench.hello_asgi PORT WORKERS [uvicorn|granian]`` (from the repository root).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
BODY = b'{"active":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    from tokenwarden.cli.serving import serve_asgi

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    server = sys.argv[3] if len(sys.argv) > 3 else "uvicorn"
    # Exactly as `tokenwarden serve` serves the app (cli/serving.py), minus the factory.
    serve_asgi(
        server, "bench.hello_asgi:app", host="127.0.0.1", port=port, workers=workers, log_level="warning"
    )  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
