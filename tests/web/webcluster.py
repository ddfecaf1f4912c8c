"""A LocalCluster whose nodes also serve the HTTP API, each on its own port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from p2pq.testing.cluster import LocalCluster, LocalNode, free_ports


@dataclass
class WebCluster(LocalCluster):
    """LocalCluster plus `--http PORT` per node; `http_ports[i]` is node i's HTTP port."""

    http_ports: list[int] = field(default_factory=list)

    def _describe(self, i: int, port: int, ports: list[int]) -> LocalNode:
        if not self.http_ports:
            self.http_ports = free_ports(self.size)
        node = super()._describe(i, port, ports)
        node.args += ["--http", str(self.http_ports[i])]
        return node

    def url(self, index: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.http_ports[index]}{path}"

    def token(self) -> str:
        from p2pq.net.pki import read_token
        return read_token(self.cluster_dir)

    def http(self, index: int, path: str, body: object = None, token: str | None = None,
             raw: bytes | None = None, timeout_s: float = 15.0) -> tuple[int, dict]:
        """(status, JSON body) of one request to node index's HTTP API; POST when a body is given."""
        return http_json(self.url(index, path), body, token, raw, timeout_s)


def http_json(url: str, body: object = None, token: str | None = None, raw: bytes | None = None,
              timeout_s: float = 15.0, headers: dict | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
