"""The error codes of replies, and the shape of a submit's acknowledgment.

Every refusal is ``{"ok": false, "error": code, "message": one line}``; the
code says what the caller can do about it. The client retries the
``RETRYABLE`` ones (another node or a moment later will do), the HTTP API
maps each to a status, and the simulator and the client read a submit's
acknowledgment with ``acknowledged_ids`` instead of guessing from its keys.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The codes of the cluster's replies and of the client. The HTTP layer adds a few
    of its own for requests that never reach a node (`malformed_json`, `bad_host`,
    `not_found`, `method_not_allowed`, `busy`: docs/api.md)."""

    # the request: fix it, do not retry
    INVALID = "invalid"            # malformed, of the wrong type or out of range
    UNKNOWN_TASK = "unknown_task"  # no such task (or it finished and was pruned)
    CONFLICT = "conflict"          # a task id reused with a different spec
    TOO_LARGE = "too_large"        # over a size limit (request, argument, reply frame)
    UNAUTHORIZED = "unauthorized"  # HTTP: the cluster token is missing or wrong
    # the cluster: retry, another node or a moment later will do
    NO_LEADER = "no_leader"            # an election is in progress
    LEADER_CHANGED = "leader_changed"  # leadership moved before the request was replicated
    UNREPLICATED = "unreplicated"      # no other node reachable to hold a copy
    NO_QUORUM = "no_quorum"            # quorum mode: no majority reachable
    # the node or the client itself
    INTERNAL = "internal"        # the node failed to handle it (logged there)
    TIMEOUT = "timeout"          # client side: no answer in time
    UNREACHABLE = "unreachable"  # client side: no node answers at that address
    NO_CLUSTER = "no_cluster"    # client side: no cluster directory or certificate


# What a client retries (idempotent requests, so a retry is always safe).
RETRYABLE = frozenset({ErrorCode.NO_LEADER, ErrorCode.LEADER_CHANGED, ErrorCode.UNREPLICATED})

# The HTTP status of each code the API can answer; anything else is a 400.
HTTP_STATUS = {
    ErrorCode.INVALID: 400, ErrorCode.UNAUTHORIZED: 401, ErrorCode.UNKNOWN_TASK: 404,
    ErrorCode.CONFLICT: 409, ErrorCode.TOO_LARGE: 413, ErrorCode.INTERNAL: 500,
    ErrorCode.NO_LEADER: 503, ErrorCode.LEADER_CHANGED: 503, ErrorCode.UNREPLICATED: 503,
    ErrorCode.NO_QUORUM: 503, ErrorCode.TIMEOUT: 504,
}


def error(code: ErrorCode, message: str) -> dict:
    """A refusal, as every reply carries it."""
    return {"ok": False, "error": ErrorCode(code).value, "message": message}


def submit_ack(ids: list[str], replicated: bool, leader: str, term: str) -> dict:
    """A leader's acknowledgment of a submit: every id is held (G1)."""
    return {"ok": True, "ids": ids, "replicated": replicated, "leader": leader, "term": term}


def acknowledged_ids(body: Any) -> tuple[str, ...]:
    """The task ids a reply acknowledges as submitted; () for anything else."""
    if type(body) is not dict or body.get("ok") is not True:
        return ()
    ids = body.get("ids")
    return tuple(ids) if type(ids) is list else ()
