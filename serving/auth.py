"""Optional bearer-token authentication for ``twinflow serve`` (``--auth-token-file``).

The token file holds one token per line (blank lines and ``#`` comments ignored), so a new
token can be added before the old one is removed: a rotation without refused requests. The
file is checked on every request (one ``stat``) and re-read when its modification time, size
or inode changes, which covers a Kubernetes Secret volume's atomic symlink swap. Tokens are
compared in constant time. A request without a valid token is answered 401 with
``WWW-Authenticate: Bearer`` (RFC 6750); if the file becomes unreadable or empty, requests
are answered 503 until it is fixed (closed rather than open). Health endpoints stay open for
probes. Kept free of TensorFlow, so a bad file is reported before the models load.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from twinflow.core.errors import ConfigError

log = logging.getLogger("twinflow.serving")

REALM = 'Bearer realm="twinflow"'
# RFC 6750's b64token: what a bearer token may contain.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_LENGTH = 16
# Probes (kubelet, load balancers) carry no secret; these answer nothing about the models.
EXEMPT_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


def parse_tokens(text: str, path: str) -> tuple[bytes, ...]:
    """The tokens in a token file's text; the message names the file and line, never the token."""
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _TOKEN.fullmatch(line):
            raise ValueError(f"{path}, line {number}: a token is letters, digits and -._~+/ (then '=' padding)")
        if len(line) < MIN_TOKEN_LENGTH:
            raise ValueError(f"{path}, line {number}: a token needs at least {MIN_TOKEN_LENGTH} characters")
        tokens.append(line.encode())
    if not tokens:
        raise ValueError(f"{path}: holds no token (one per line)")
    return tuple(tokens)


class TokenFile:
    """The accepted tokens, re-read when the file changes; ``TokenFile(path)`` raises ConfigError if unusable now."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._tokens: tuple[bytes, ...] = ()
        self._problem: str | None = None
        self._loaded = False
        self.refresh()
        if self._problem is not None:
            raise ConfigError(f"--auth-token-file {self._problem}")

    def refresh(self) -> None:
        """Re-read the file if it changed since the last look (one stat when it did not)."""
        try:
            info = os.stat(self.path)
            stamp: tuple[int, ...] | None = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev)
        except OSError:
            stamp = None
        if stamp == self._stamp and self._stamp is not None:
            return
        with self._lock:
            if stamp == self._stamp and self._stamp is not None:
                return
            try:
                with open(self.path, encoding="utf-8") as handle:
                    tokens, problem = parse_tokens(handle.read(), self.path), None
            except (OSError, UnicodeDecodeError, ValueError) as err:
                tokens = ()
                problem = str(err) if isinstance(err, ValueError) else f"{self.path}: cannot be read ({err})"
            if self._loaded:  # at start, the caller reports a problem (ConfigError): one line, not two
                if problem is not None and problem != self._problem:
                    log.error("auth token file %s; protected requests are refused (503) until it is fixed", problem)
                elif problem is None:
                    log.info("auth token file %s re-read: %d token(s)", self.path, len(tokens))
            self._tokens, self._problem, self._stamp, self._loaded = tokens, problem, stamp, True

    def check(self, authorization: bytes | None) -> tuple[int, str, str] | None:
        """None when ``authorization`` carries an accepted token, else (status, message, WWW-Authenticate)."""
        self.refresh()
        if self._problem is not None:
            return 503, "the server cannot check tokens: its token file is unusable (see the server's log)", REALM
        if authorization is None:
            return 401, "this server needs a bearer token: 'Authorization: Bearer <token>'", REALM
        scheme, _, presented = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return 401, "the Authorization header must be 'Bearer <token>'", f'{REALM}, error="invalid_request"'
        presented = presented.strip()
        # Every token is compared, in constant time each, so the time says nothing about which matched.
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(presented, token)
        if not matched:
            return 401, "the bearer token is not accepted", f'{REALM}, error="invalid_token"'
        return None


class BearerAuth:
    """ASGI middleware: every HTTP request but the exempt paths needs an accepted token."""

    def __init__(self, app: Any, tokens: TokenFile, refused: Callable[[int], None], exempt: frozenset[str]):
        self.app, self.tokens, self.refused, self.exempt = app, tokens, refused, exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        problem = self.tokens.check(authorization)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message, challenge = problem
        self.refused(status)
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def open_port_warning(host: str, authenticated: bool) -> str | None:
    """The warning for a server other machines can reach with no token required; None when loopback or guarded."""
    if authenticated or _is_loopback(host):
        return None
    return (
        f"--host {host}: the port is open to other machines and requests need no authentication; "
        "give --auth-token-file, or keep it behind an authenticating proxy (KServe with Istio: see the README)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
