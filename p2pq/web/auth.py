"""Who may do what over HTTP.

The rule (docs/api.md, "Authority"):

- Writes (submit, cancel) always need ``Authorization: Bearer <token>``,
  where the token is the ``token`` file that `p2pq init` made in the
  cluster directory. Whoever can read that directory can already run
  `p2pq submit`, so HTTP grants no more than the CLI does. There is no
  loopback exception: on a shared lab machine every logged-in user
  reaches 127.0.0.1, and a submitted shell command runs as the node's
  owner.
- Reads are open when the server is bound to a loopback address (only
  this machine reaches it); bound to anything else (``--http-host
  0.0.0.0``), reads of /api and /metrics need the token too.
- Bound to loopback, a request must also *name* a loopback host in its
  ``Host`` header, so a web page cannot reach the API through DNS
  rebinding (a hostile name that resolves to 127.0.0.1).
- The dashboard's static files carry no data and no secret: always open.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from pathlib import Path

from p2pq.core.errors import ErrorCode

log = logging.getLogger("p2pq.web")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without brackets)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a Host header ('127.0.0.1:8080', '[::1]:80', 'localhost')."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Denied(Exception):
    """A request refused by the access rule: HTTP status, error code, one clear line."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Access:
    """The access rule for one HTTP server bound to `bound_host`."""

    def __init__(self, bound_host: str, cluster_dir: Path) -> None:
        self.local = is_loopback(bound_host)
        self.cluster_dir = cluster_dir
        self._token: str | None = None

    def token(self) -> str | None:
        """The cluster's token, read once (None if the cluster has none)."""
        if self._token is None:
            from p2pq.net.pki import PKIError, read_token
            try:
                self._token = read_token(self.cluster_dir)
            except PKIError:
                return None
        return self._token

    def check(self, method: str, path: str, host_header: str, authorization: str) -> None:
        """Raise Denied unless the request may go on."""
        if self.local and not is_loopback(host_of(host_header)):
            raise Denied(403, "bad_host", f"this server answers only to a loopback host name, "
                         f"not {host_header!r} (DNS rebinding defence)")
        guarded = path.startswith("/api/") or path == "/metrics"
        if method in WRITE_METHODS or (guarded and not self.local):
            self._require_token(authorization, "writes" if method in WRITE_METHODS else "reads")

    def _require_token(self, authorization: str, what: str) -> None:
        expected = self.token()
        if expected is None:
            raise Denied(401, ErrorCode.UNAUTHORIZED, f"{what} need the cluster token, but "
                         f"{self.cluster_dir}/token is missing: run `p2pq init`")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Denied(401, ErrorCode.UNAUTHORIZED, f"{what} need the cluster token: send "
                         "'Authorization: Bearer <contents of CLUSTER_DIR/token>'")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Denied(401, ErrorCode.UNAUTHORIZED, "wrong token (see the token file in the cluster directory)")
