"""Who may write: API keys for the routes that change or reveal a user's data.

`serve --api-key-file FILE` (one key per line; blank lines and `#` comments skipped) protects
`POST /v1/events` and `GET`/`DELETE /v1/users/…`, and `--protect-search` adds `POST /v1/search`
and `POST /v1/rerank` (they read no user's data: ranking only).
A request then needs `Authorization: Bearer <key>`: none is a 401, a wrong one a 403. Only the
keys' SHA-256 digests are held, and a presented key is compared with every one of them in
constant time (`hmac.compare_digest`, no early exit), so neither the comparison's timing nor a
memory dump gives a key away. No key, presented or held, is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from starlette.requests import Request

from ranking_gateway.core.errors import CliError
from ranking_gateway.serving.schemas import RequestError


RANKING_ROUTES = frozenset({"/v1/search", "/v1/rerank"})  # open unless --protect-search
ADMIN_PREFIX = "/v1/admin/"  # never open: a key, or without keys a loopback client


def is_loopback(host: str | None) -> bool:
    import ipaddress

    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_admin(request: Request, keys: ApiKeys | None) -> None:
    """The admin routes (a live swap changes what everyone is served): with `--api-key-file`, a
    valid key; without keys, only a client on this machine (loopback), whatever `serve --host` is."""
    if keys is not None:
        keys.require(request)
        return
    client = request.client
    if not is_loopback(client.host if client is not None else None):
        raise RequestError(403, "forbidden", "admin routes accept only loopback clients when serve has no "
                           "--api-key-file (start it with one to deploy from elsewhere)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, keys: list[str], protect_search: bool = False) -> None:
        if not keys:
            raise ValueError("no API keys")
        self._digests = [_digest(k) for k in keys]
        self.protect_search = protect_search

    @classmethod
    def read(cls, path: Path, protect_search: bool = False) -> ApiKeys:
        """The keys in `path`; a `CliError` (one line, no key in it) when it has none or cannot be read."""
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--api-key-file {path}: cannot be read ({type(exc).__name__})") from None
        keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not keys:
            raise CliError(f"--api-key-file {path}: no keys (one per line)")
        if any(len(k) < 16 or any(c.isspace() for c in k) for k in keys):
            raise CliError(f"--api-key-file {path}: every key must be at least 16 characters, without spaces")
        return cls(keys, protect_search)

    def protects(self, path: str) -> bool:
        """Whether a route (its template path) needs a key: the `/v1/` routes, search and rerank
        only with `--protect-search`; health, readiness, metrics and the contract stay open."""
        return path.startswith("/v1/") and (path not in RANKING_ROUTES or self.protect_search)

    def valid(self, key: str) -> bool:
        presented = _digest(key)
        matches = [hmac.compare_digest(presented, held) for held in self._digests]  # all compared: no early exit
        return any(matches)

    def require(self, request: Request) -> None:
        """Return if the request carries a valid key; a 401 or 403 `RequestError` otherwise."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise RequestError(401, "unauthorized", "this route needs 'Authorization: Bearer <API key>'",
                               headers={"WWW-Authenticate": "Bearer"})
        if not self.valid(key.strip()):
            raise RequestError(403, "forbidden", "the API key is not valid")
