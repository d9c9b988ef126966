"""The HTTP ceiling: a raw ASGI hello, served exactly like ``tokenwarden serve`` serves the app
(uvicorn, same worker count, same loop and HTTP parser, no access log).

It reads the whole request body (as the introspection door does) and answers a small JSON
object, so beside it an endpoint's figure says what the endpoint itself costs.

``python -m bench.hello_asgi PORT WORKERS`` (from the repository root).
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
    import uvicorn

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    # The keyword arguments of `tokenwarden serve` (cli/main.py), minus the factory.
    uvicorn.run(
        "bench.hello_asgi:app",
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
