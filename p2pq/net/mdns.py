"""The mDNS records p2pq publishes, and how a record found on the network is judged. Pure: no sockets.

Every node registers ``<label>._p2pq._tcp.local.`` with TXT records

    id    the node id
    prio  the node's election priority (int)
    v     the protocol version (int)
    fp    the cluster CA fingerprint (hex, never a secret)
    inc   a random token per Discovery instance (incarnation), so that a node
          that restarts with identical settings is reported again

``judge`` turns a resolved record into a peer, or says why it is ignored:
another cluster, another protocol version, a malformed record, our own node
id (a duplicate), or no address we can use. ``net/discovery.py`` does the
multicast; this module is unit-tested without it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SERVICE_TYPE = "_p2pq._tcp.local."

_MAX_LABEL_BYTES = 63
_LABEL_OK = re.compile(r"^[^.\x00-\x1f\x7f]+$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class DiscoveredPeer:
    node_id: str
    host: str
    port: int
    priority: int
    version: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """Why a record is not a peer: `key` names the cause (it is logged once per record and cause)."""

    key: str
    why: str
    own_id: bool = False  # the record carries our own node id: a duplicate, worth a warning


def instance_label(node_id: str) -> str:
    """The DNS-SD instance label for a node id.

    The node id itself when it is a valid label (at most 63 bytes, no dots or
    control characters), else a stable ``p2pq-<hash>`` stand-in. The TXT
    record ``id`` always carries the real node id.
    """
    if len(node_id.encode("utf-8")) <= _MAX_LABEL_BYTES and _LABEL_OK.match(node_id):
        return node_id
    return "p2pq-" + hashlib.sha256(node_id.encode("utf-8")).hexdigest()[:24]


def normalize_fingerprint(fp: str) -> str:
    return fp.strip().replace(":", "").lower()


def is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    return True


def properties(node_id: str, priority: int, version: int, fingerprint: str, incarnation: str) -> dict[str, str]:
    """The TXT records of our own service."""
    return {"id": node_id, "prio": str(priority), "v": str(version), "fp": fingerprint, "inc": incarnation}


def judge(props: Mapping[str, str | None], port: int | None, addresses: Iterable[str], *, fingerprint: str,
          version: int, own_id: str, local_nets: Iterable[Network] = ()) -> DiscoveredPeer | Ignored:
    """A resolved record as a peer of our cluster, or why it is ignored."""
    fp = props.get("fp")
    if fp is None or normalize_fingerprint(fp) != fingerprint:
        return Ignored(f"fp:{fp}", f"other cluster (fp={fp})")
    try:
        theirs = int(props.get("v") or "")
    except ValueError:
        return Ignored("v", f"bad version {props.get('v')!r}")
    if theirs != version:
        return Ignored(f"v:{theirs}", f"protocol version {theirs} (we speak {version})")
    node_id = props.get("id")
    try:
        priority = int(props.get("prio") or "")
    except ValueError:
        priority = None
    if not node_id or priority is None or not port or not 0 < port < 65536:
        return Ignored("malformed", f"malformed record {dict(props)}")
    if node_id == own_id:
        return Ignored("own-id", f"it advertises our own node id {node_id!r} (duplicate node id?)", own_id=True)
    host = pick_host(addresses, local_nets)
    if host is None:
        return Ignored("no-address", "no usable address")
    return DiscoveredPeer(node_id=node_id, host=host, port=port, priority=priority, version=theirs)


def pick_host(addresses: Iterable[str], local_nets: Iterable[Network] = ()) -> str | None:
    """A stable choice among a peer's addresses: same subnet first, loopback last."""
    nets = list(local_nets)
    best: tuple[int, int, str] | None = None
    for addr in addresses:
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_multicast:
            continue
        if ip.is_loopback:
            rank = 5
        elif ip.is_link_local:
            rank = 3 if ip.version == 4 else 4
        elif any(ip in net for net in nets if net.version == ip.version):
            rank = 0
        else:
            rank = 1 if ip.version == 4 else 2
        cand = (rank, ip.version, addr)
        if best is None or cand < best:
            best = cand
    return None if best is None else best[2]
