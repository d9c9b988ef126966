"""Run an ASGI application under the HTTP server the settings name (uvicorn or granian).

One place for the options both servers get, so `tokenwarden serve` and the benchmark's raw
ASGI hello (bench/hello_asgi.py) are served exactly alike.
"""

from __future__ import annotations

from typing import Literal

ServerName = Literal["uvicorn", "granian"]
SERVERS: tuple[ServerName, ...] = ("uvicorn", "granian")


def serve_asgi(
    server: ServerName,
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    factory: bool = False,
) -> None:
    """Serve ``target`` ("module:attribute") until stopped. No access log, and no proxy header
    is trusted by the server itself: tokenwarden honours X-Forwarded-For from
    TOKENWARDEN_TRUSTED_PROXIES only."""
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces
        from granian.log import LogLevels

        Granian(
            target,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=factory,
            log_level=LogLevels(log_level.lower()),
            log_access=False,
            websockets=False,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        target,
        factory=factory,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.lower(),
        access_log=False,
        proxy_headers=False,  # uvicorn would trust any loopback client's header by default
        forwarded_allow_ips="",
    )
