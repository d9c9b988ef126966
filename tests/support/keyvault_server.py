"""A loopback HTTPS server speaking the Azure Key Vault secrets REST API 7.4 (a test double).

No Key Vault emulator exists here, so the Azure adapter is tested through the real
``azure-keyvault-secrets`` SDK against this server. It follows the published API
(https://learn.microsoft.com/rest/api/keyvault/secrets?view=rest-keyvault-secrets-7.4):

- ``PUT /secrets/{name}`` (set: a new version), ``GET /secrets/{name}[/{version}]`` (a disabled
  version answers 403 ``Forbidden`` / inner ``SecretDisabled`` as the service does),
  ``PATCH /secrets/{name}/{version}`` (attributes, content type, tags),
  ``GET /secrets/{name}/versions``, ``GET /secrets`` (paged via ``nextLink``),
  ``DELETE /secrets/{name}`` (soft delete), ``GET`` / ``DELETE /deletedsecrets/{name}`` (purge);
- every request needs ``api-version=7.4``; names must match ``[0-9a-zA-Z-]{1,127}``;
- authentication is Key Vault's challenge: a request without the expected bearer token gets 401
  and ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"``;
- errors have Key Vault's shape ``{"error": {"code": ..., "message": ...}}``.

TLS uses a throwaway ``trustme`` CA; clients trust :attr:`KeyVaultServer.ca_path`.
:meth:`KeyVaultServer.fail_next` injects faults (429 with ``Retry-After``, 5xx).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

API_VERSION = "7.4"
TENANT_ID = "00000000-0000-0000-0000-00000000cafe"
RESOURCE = "https://vault.azure.net"
TEST_TOKEN = "kv-test-token"  # the bearer token the test credential issues
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="{RESOURCE}"'
NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
MAX_TAGS = 15
MAX_VALUE_BYTES = 25 * 1024
DEFAULT_PAGE = 25
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90


class ApiError(Exception):
    """An error response in Key Vault's JSON shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner is not None:
            error["innerError"] = {"code": self.inner}
        return {"error": error}


@dataclass
class Version:
    """One version of a secret."""

    id: str
    value: str
    content_type: str | None
    tags: dict[str, str]
    enabled: bool = True
    exp: int | None = None
    nbf: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class Deleted:
    versions: list[Version]
    deleted_date: int


class KeyVaultServer:
    """The server: start with :meth:`start` (or as a context manager), stop with :meth:`stop`."""

    def __init__(self, directory: Path, *, token: str = TEST_TOKEN) -> None:
        self.token = token  # the only bearer token accepted
        self.secrets: dict[str, list[Version]] = {}  # name -> versions, oldest first
        self.deleted: dict[str, Deleted] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, challenges included
        self._faults: list[Fault] = []
        self.lock = threading.RLock()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = directory / "keyvault-test-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._context)
        self._httpd = _TlsServer(("127.0.0.1", 0), _Handler, self)
        self.port = int(self._httpd.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> KeyVaultServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="keyvault-test-server"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> KeyVaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- test controls
    def fail_next(self, status: int, n: int = 1, *, retry_after: float | None = None) -> None:
        """Answer the next ``n`` authenticated requests with ``status`` (and ``Retry-After``)."""
        with self.lock:
            self._faults.append(Fault(status, n, retry_after))

    def reset_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self) -> Fault | None:
        with self.lock:
            while self._faults and self._faults[0].remaining <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            return fault

    # ------------------------------------------------------------- representations
    def _vid(self, name: str, version: Version | None = None) -> str:
        return f"{self.url}/secrets/{name}" + (f"/{version.id}" if version else "")

    @staticmethod
    def _attributes(version: Version) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": RECOVERY_LEVEL,
            "recoverableDays": RECOVERABLE_DAYS,
        }
        if version.exp is not None:
            attributes["exp"] = version.exp
        if version.nbf is not None:
            attributes["nbf"] = version.nbf
        return attributes

    def bundle(self, name: str, version: Version, *, value: bool) -> dict[str, Any]:
        """A SecretBundle (``value`` only where the API returns it)."""
        out: dict[str, Any] = {"id": self._vid(name, version), "attributes": self._attributes(version)}
        if value:
            out["value"] = version.value
        if version.content_type is not None:
            out["contentType"] = version.content_type
        if version.tags:
            out["tags"] = dict(version.tags)
        return out

    def item(self, name: str, version: Version, *, with_version: bool) -> dict[str, Any]:
        """A SecretItem (list entries carry no value)."""
        out = self.bundle(name, version, value=False)
        out["id"] = self._vid(name, version if with_version else None)
        return out

    def deleted_bundle(self, name: str, entry: Deleted) -> dict[str, Any]:
        out = self.bundle(name, entry.versions[-1], value=False)
        out["recoveryId"] = f"{self.url}/deletedsecrets/{name}"
        out["deletedDate"] = entry.deleted_date
        out["scheduledPurgeDate"] = entry.deleted_date + RECOVERABLE_DAYS * 86400
        return out


class _TlsServer(ThreadingHTTPServer):
    """A threaded HTTP server whose connections are TLS; handshakes run in the handler threads."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], owner: KeyVaultServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        return self.owner._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            request.do_handshake()
        except (OSError, ssl.SSLError):
            return  # a client that gave up, or one that does not trust the CA
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing a kept-alive connection is not an error worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # idle kept-alive connections end, so shutdown never waits on them
    server: _TlsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ------------------------------------------------------------- plumbing
    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        with owner.lock:
            owner.requests.append((method, parts.path))
        try:
            self._authenticate(owner)
            fault = owner.take_fault()
            if fault is not None:
                headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                code = "Throttled" if fault.status == 429 else "InternalServerError"
                raise ApiError(fault.status, code, f"injected fault {fault.status}", headers=headers)
            query = parse_qs(parts.query)
            if query.get("api-version") != [API_VERSION]:
                raise ApiError(
                    400,
                    "BadParameter",
                    f"The specified version ({query.get('api-version')}) is not supported.",
                )
            body: Any = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ApiError(400, "BadParameter", "The request body must be a JSON object.")
            status, out = _route(owner, method, parts.path, body, query)
            self._send(status, out)
        except ApiError as exc:
            self._send(exc.status, exc.body(), exc.headers)
        except (ValueError, TypeError, KeyError) as exc:
            self._send(400, ApiError(400, "BadParameter", f"Malformed request: {type(exc).__name__}").body())

    def _authenticate(self, owner: KeyVaultServer) -> None:
        header = self.headers.get("Authorization") or ""
        if header == f"Bearer {owner.token}":
            return
        message = (
            "AKV10000: Request is missing a Bearer or PoP token."
            if not header
            else "AKV10032: Invalid issuer or the token is not valid for this vault."
        )
        raise ApiError(401, "Unauthorized", message, headers={"WWW-Authenticate": CHALLENGE})


# ----------------------------------------------------------------- the API
def _name(raw: str) -> str:
    if not NAME.fullmatch(raw):
        raise ApiError(
            400,
            "BadParameter",
            f"The request URI contains an invalid name: {raw[:140]}. Names: 1-127 of [0-9a-zA-Z-].",
        )
    return raw


def _not_found(name: str, version: str | None = None) -> ApiError:
    ident = f"{name}/{version}" if version else name
    return ApiError(
        404, "SecretNotFound", f"A secret with (name/id) {ident} was not found in this key vault."
    )


def _versions(owner: KeyVaultServer, name: str) -> list[Version]:
    versions = owner.secrets.get(name)
    if not versions:
        raise _not_found(name)
    return versions


def _find(owner: KeyVaultServer, name: str, version_id: str) -> Version:
    versions = _versions(owner, name)
    if not version_id:
        return versions[-1]
    found = next((v for v in versions if v.id == version_id), None)
    if found is None:
        raise _not_found(name, version_id)
    return found


def _apply(version: Version, body: dict[str, Any]) -> None:
    """Content type, tags and attributes of a PUT / PATCH body."""
    if "contentType" in body:
        version.content_type = body["contentType"]
    if body.get("tags") is not None:
        tags = body["tags"]
        if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
            raise ApiError(400, "BadParameter", f"At most {MAX_TAGS} tags are allowed.")
        version.tags = {str(k): str(v) for k, v in tags.items()}
    attributes = body.get("attributes") or {}
    if attributes.get("enabled") is not None:
        version.enabled = bool(attributes["enabled"])
    for key in ("exp", "nbf"):
        if key in attributes:
            raw = attributes[key]
            setattr(version, key, None if raw is None else int(raw))
    version.updated = int(time.time())


def _page(
    owner: KeyVaultServer, path: str, items: list[dict[str, Any]], query: dict[str, list[str]]
) -> dict[str, Any]:
    size = max(1, min(int((query.get("maxresults") or [str(DEFAULT_PAGE)])[0]), DEFAULT_PAGE))
    start = int((query.get("$skiptoken") or ["0"])[0])
    end = start + size
    next_link = (
        f"{owner.url}{path}?api-version={API_VERSION}&maxresults={size}&$skiptoken={end}"
        if end < len(items)
        else None
    )
    return {"value": items[start:end], "nextLink": next_link}


def _route(
    owner: KeyVaultServer, method: str, path: str, body: dict[str, Any], query: dict[str, list[str]]
) -> tuple[int, dict[str, Any] | None]:
    segments = path.strip("/").split("/") if path.strip("/") else []
    # GET /secrets/{name} and /secrets/{name}/ (what the SDK sends for version "") read the latest.
    if method in ("GET", "PATCH") and len(segments) == 2 and segments[0] == "secrets":
        segments.append("")
    with owner.lock:
        match method, segments:
            case "GET", ["secrets"]:
                items = [owner.item(n, vs[-1], with_version=False) for n, vs in sorted(owner.secrets.items())]
                return 200, _page(owner, path, items, query)
            case "PUT", ["secrets", raw]:
                name = _name(raw)
                if name in owner.deleted:
                    raise ApiError(
                        409,
                        "Conflict",
                        f"Secret {name} is currently in a deleted but recoverable state, and its name "
                        "cannot be reused; in this state, the secret can only be recovered or purged.",
                    )
                value = body["value"]
                if not isinstance(value, str):
                    raise ApiError(400, "BadParameter", "Property value is required and must be a string.")
                if len(value.encode()) > MAX_VALUE_BYTES:
                    raise ApiError(400, "BadParameter", "The secret value exceeds the maximum size.")
                version = Version(id=uuid.uuid4().hex, value=value, content_type=None, tags={})
                _apply(version, body)
                owner.secrets.setdefault(name, []).append(version)
                return 200, owner.bundle(name, version, value=True)
            case "GET", ["secrets", raw, "versions"]:
                name = _name(raw)
                items = [owner.item(name, v, with_version=True) for v in _versions(owner, name)]
                return 200, _page(owner, path, items, query)
            case "GET", ["secrets", raw, version_id]:
                name = _name(raw)
                version = _find(owner, name, version_id)
                if not version.enabled:
                    raise ApiError(
                        403,
                        "Forbidden",
                        "Operation get is not allowed on a disabled secret.",
                        inner="SecretDisabled",
                    )
                return 200, owner.bundle(name, version, value=True)
            case "PATCH", ["secrets", raw, version_id]:
                name = _name(raw)
                version = _find(owner, name, version_id)
                _apply(version, body)
                return 200, owner.bundle(name, version, value=False)
            case "DELETE", ["secrets", raw]:
                name = _name(raw)
                versions = _versions(owner, name)
                entry = Deleted(versions=versions, deleted_date=int(time.time()))
                del owner.secrets[name]
                owner.deleted[name] = entry
                return 200, owner.deleted_bundle(name, entry)
            case "GET", ["deletedsecrets", raw]:
                name = _name(raw)
                if name not in owner.deleted:
                    raise ApiError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
                return 200, owner.deleted_bundle(name, owner.deleted[name])
            case "DELETE", ["deletedsecrets", raw]:
                name = _name(raw)
                if owner.deleted.pop(name, None) is None:
                    raise ApiError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
                return 204, None
    raise ApiError(404, "NotFound", f"No route for {method} {path}")
