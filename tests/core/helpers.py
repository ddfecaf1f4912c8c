"""Scripted driving of a single NodeCore: events in, commands out."""

from __future__ import annotations

import random

from p2pq.core.events import (MessageReceived, PeerDiscovered, Send, Started, TimerFired)
from p2pq.core.messages import StateOffer
from p2pq.core.node import NodeCore
from p2pq.core.types import Config, Role

CONFIG = Config()


def node(node_id: str, priority: int, peers: dict[str, int], config: Config = CONFIG) -> NodeCore:
    """A started node that knows `peers` (id -> priority); its output is drained."""
    core = NodeCore(node_id, priority, config, random.Random(7))
    core.handle(Started(), 0.0)
    for peer, prio in peers.items():
        core.handle(PeerDiscovered(peer, prio), 0.0)
    return core


def sends(commands: list, kind: type | None = None, to: str | None = None) -> list:
    """The messages sent, optionally only of one type and to one node."""
    return [c.message for c in commands if isinstance(c, Send)
            and (kind is None or isinstance(c.message, kind)) and (to is None or c.to == to)]


def of(commands: list, kind: type) -> list:
    return [c for c in commands if isinstance(c, kind)]


def recv(core: NodeCore, sender: str, message, now: float) -> list:
    return list(core.handle(MessageReceived(sender, message), now))


def make_leader(core: NodeCore, now: float = 1.3) -> list:
    """Let `core` (the highest node) win an election and gather from everyone."""
    out = list(core.handle(TimerFired("tick"), now))
    assert core.role is Role.GATHERING, core.role
    for peer in list(core.peers):
        out += recv(core, peer, StateOffer(core.term, (), ()), now + 0.001)
    assert core.role is Role.LEADER
    return out
