"""Identities, terms, roles and configuration shared by the whole core."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

NodeId = str


class Rank(NamedTuple):
    """A node's bully rank: the configured priority, ties broken by node id.

    Ranks are unique and totally ordered because node ids are unique.
    """

    priority: int
    node: NodeId


class Term(NamedTuple):
    """A leadership ballot: a counter plus the leader's id.

    Terms only grow (G3). Putting the winner's id into the term makes two
    leaders elected on two sides of a partition hold *different* terms even
    when both counted to the same number, so "one leader per term" holds in
    available mode too, where nobody votes.
    """

    number: int
    node: NodeId

    def __str__(self) -> str:
        return f"{self.number}@{self.node}" if self.node else str(self.number)

    @classmethod
    def parse(cls, text: str) -> "Term":
        """'7@n3' -> Term(7, 'n3'): the inverse of str() (notes, logs and views carry terms so)."""
        number, _, node = text.partition("@")
        if not number.isdigit() or (bool(node) != ("@" in text)):
            raise ValueError(f"not a term: {text!r} (expected NUMBER@NODE)")
        return cls(int(number), node)


ZERO_TERM = Term(0, "")


def attempt_id(term: Term, counter: int) -> str:
    """The id of the `counter`-th attempt the leader of `term` dispatched: '7.n3.12'."""
    return f"{term.number}.{term.node}.{counter}"


def attempt_term(attempt: str) -> Term:
    """The term whose leader dispatched an attempt ('7.n3.12' -> Term(7, 'n3')); node ids may hold dots."""
    number, _, rest = attempt.partition(".")
    node, _, counter = rest.rpartition(".")
    if not number.isdigit() or not counter.isdigit() or not node:
        raise ValueError(f"not an attempt id: {attempt!r} (expected TERM.NODE.COUNTER)")
    return Term(int(number), node)


class Role(enum.Enum):
    MEMBER = "member"          # obeys a leader, or waits to hear from one
    ELECTING = "electing"      # sent ELECTION to higher nodes, waits for ANSWER
    WAITING = "waiting"        # got ANSWER, waits for a higher node's COORDINATOR
    GATHERING = "gathering"    # won; collects every reachable node's state
    LEADER = "leader"          # serves submits and dispatches tasks


class InvariantViolation(RuntimeError):
    """The protocol broke one of its own rules (a bug, not an input): the node must stop."""


class IllegalTransition(InvariantViolation):
    """A role change the election rules never make: a bug, not an input."""


class Trigger(enum.Enum):
    """What moves a node from one role to another (the bully steps of docs/protocol.md §4)."""

    ELECTION = "election"            # step 1: the leader fell silent, a lower node asked, we outrank a leader
    ANSWER = "answer"                # step 3: a higher node is alive; wait for its COORDINATOR
    NO_ANSWER = "no_answer"          # step 4: no higher node answered (or none is alive): we won
    GATHERED = "gathered"            # step 4: every offer came (or the gather timed out): we serve
    COORDINATOR = "coordinator"      # step 5: a leader of a newer term; we obey it
    OUR_LEADER = "our_leader"        # step 5: the leader of our own term is alive after all
    FENCED = "fenced"                # G3: our term is stale and we do not outrank its leader
    LEAVE = "leave"                  # the operator stops the node
    DEFERRED = "deferred"            # ranked election, step 1: a live node above us takes over; wait for it


_M, _E, _W, _G, _L = Role.MEMBER, Role.ELECTING, Role.WAITING, Role.GATHERING, Role.LEADER
# Every role change the protocol makes, keyed by what triggers it; any other raises
# IllegalTransition (a bug). tests/core/test_transitions.py takes every edge.
TRANSITIONS: dict[tuple[Role, Role], frozenset[Trigger]] = {
    (_M, _E): frozenset({Trigger.ELECTION}),
    (_W, _E): frozenset({Trigger.ELECTION}),
    (_G, _E): frozenset({Trigger.ELECTION}),
    (_L, _E): frozenset({Trigger.ELECTION}),
    (_E, _W): frozenset({Trigger.ANSWER}),
    (_M, _W): frozenset({Trigger.DEFERRED}),
    (_E, _G): frozenset({Trigger.NO_ANSWER}),
    (_G, _L): frozenset({Trigger.GATHERED}),
    (_E, _M): frozenset({Trigger.COORDINATOR, Trigger.OUR_LEADER, Trigger.LEAVE}),
    (_W, _M): frozenset({Trigger.COORDINATOR, Trigger.OUR_LEADER, Trigger.LEAVE}),
    (_G, _M): frozenset({Trigger.COORDINATOR, Trigger.FENCED, Trigger.LEAVE}),
    (_L, _M): frozenset({Trigger.COORDINATOR, Trigger.FENCED, Trigger.LEAVE}),
}


ELECTIONS = ("classic", "ranked")


@dataclass(frozen=True, slots=True)
class Config:
    """Protocol timings and policies; the defaults suit one machine room.

    heartbeat_interval_s   the leader's heartbeat and every node's tick.
    failure_timeout_s      silence after which a peer is suspected dead.
                           A peer whose port refused a dial since we last
                           heard from it (its process died) is suspected
                           after refused_timeout_s, two heartbeats, instead.
    answer_timeout_s       how long a candidate waits for an ANSWER.
    coordinator_timeout_s  how long a node that got an ANSWER waits for the
                           COORDINATOR before it starts over.
    gather_timeout_s       how long a new leader waits for the state of every
                           reachable node before it serves.
    replicas               followers that hold every acknowledged task.
    quorum                 0: available mode. N > 0: quorum mode for a cluster
                           of N nodes; a leader serves only with a majority.
    slots                  tasks this node runs at once.
    prefetch               tasks per slot the leader may send a node ahead of
                           a free slot, while that node's tasks are short;
                           they wait at the node, in dispatch order. 0: off.
    prefetch_below_s       "short": the node's tasks take under this on
                           average (so a task queued behind prefetched ones
                           waits at most about prefetch x prefetch_below_s
                           more).
    retry_backoff_s        first retry delay; doubles per failure.
    retry_backoff_max_s    cap of the retry delay.
    max_batch              records per replication message.
    max_chunk_bytes        about the most a replication message or state offer
                           carries (records' estimated size); bigger tables
                           and snapshots go in consecutive parts, well under
                           the 16 MiB frame limit.
    retain_finished        finished tasks kept before the oldest are pruned.
    retain_finished_s      age after which a finished task is pruned.
    forget_after_s         a node dead this long is forgotten: no more
                           heartbeats or redials; it rejoins as new when it
                           comes back (announcing itself, or seen by mDNS).
    election               "classic": when the leader falls silent every node
                           elects (ELECTION to every live node above it).
                           "ranked": a node that knows a live node above it
                           waits for that node's COORDINATOR instead, and
                           elects only if none comes (election.py).
    """

    heartbeat_interval_s: float = 0.2
    failure_timeout_s: float = 1.0
    answer_timeout_s: float = 0.2
    coordinator_timeout_s: float = 1.0
    gather_timeout_s: float = 0.3
    replicas: int = 1
    quorum: int = 0
    slots: int = 1
    prefetch: int = 8
    prefetch_below_s: float = 0.02
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    max_batch: int = 1024
    max_chunk_bytes: int = 4 * 1024 * 1024
    retain_finished: int = 10_000
    retain_finished_s: float = 7 * 24 * 3600.0
    forget_after_s: float = 600.0
    election: str = "classic"

    def __post_init__(self) -> None:
        if self.election not in ELECTIONS:
            raise ValueError(f"election must be one of {', '.join(ELECTIONS)}")
        if self.heartbeat_interval_s <= 0:
            raise ValueError("heartbeat_interval_s must be positive")
        if self.failure_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("failure_timeout_s must exceed heartbeat_interval_s")
        if self.replicas < 0:
            raise ValueError("replicas must be >= 0")
        if self.quorum < 0:
            raise ValueError("quorum must be 0 (off) or the cluster size")
        if self.slots < 0:
            raise ValueError("slots must be >= 0")
        if self.prefetch < 0 or self.prefetch_below_s < 0:
            raise ValueError("prefetch must be >= 0 tasks per slot and a time >= 0")
        if self.retain_finished < 0 or self.retain_finished_s <= 0:
            raise ValueError("retention must be >= 0 tasks and a positive age")
        if self.forget_after_s <= self.failure_timeout_s:
            raise ValueError("forget_after_s must exceed failure_timeout_s")

    @property
    def refused_timeout_s(self) -> float:
        return min(2 * self.heartbeat_interval_s, self.failure_timeout_s)

    @property
    def majority(self) -> int:
        return self.quorum // 2 + 1
