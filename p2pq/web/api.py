"""The JSON API (docs/api.md): handlers that turn HTTP requests into client requests.

Every request reaches the cluster through ``runtime.request``, exactly as a
CLI client would, so a node that does not lead forwards it to the leader.
Bad input is answered with a 4xx and one clear line; nothing here raises
into aiohttp except HTTP errors.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from p2pq.client import make_spec, new_task_id
from p2pq.core.errors import HTTP_STATUS, RETRYABLE, ErrorCode
from p2pq.core.messages import Cancel, Query, Submit

from . import model
from .live import ask

MAX_BODY_BYTES = 64 * 1024
MAX_PAGE = 500
WRITE_DEADLINE_S = 8.0     # a submit rides over a failover (about 1.5 s) by retrying
DEFAULT_TAIL_CHARS = 4096


class ApiError(Exception):
    """An error the server answers as {"ok": false, "error": code, "message": ...}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def error_response(status: int, code: str, message: str) -> web.Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.json_response({"ok": False, "error": code, "message": message}, status=status,
                             headers=headers)


def ok(body: dict, status: int = 200) -> web.Response:
    return web.json_response({"ok": True, **body}, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def refused(reply: dict) -> ApiError:
    code = reply.get("error", "error")
    return ApiError(HTTP_STATUS.get(code, 400), code, reply.get("message", "request refused"))


# -- input checking -------------------------------------------------------------

def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "invalid", f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid", f"{name} must be between {low} and {high}, got {value}")
    return value


async def json_body(request: web.Request) -> dict:
    """The request's JSON object; 413 if too large, 400 if not a JSON object."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"request body of {request.content_length} bytes is over "
                       f"the {MAX_BODY_BYTES} byte limit")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "too_large", f"request body is over the {MAX_BODY_BYTES} byte limit") from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid", f"the body must be a JSON object, got {type(body).__name__}")
    return body


_SUBMIT_FIELDS = {"task": str, "args": list, "kind": str, "priority": int, "retries": int,
                  "timeout_s": (int, float), "cwd": str, "id": str}


def spec_from_body(body: dict):
    """(task id, TaskSpec) from a submit body; ApiError with the first problem found."""
    unknown = sorted(set(body) - set(_SUBMIT_FIELDS))
    if unknown:
        raise ApiError(400, "invalid", f"unknown field(s) {', '.join(unknown)}; "
                       f"expected {', '.join(_SUBMIT_FIELDS)}")
    for name, kind in _SUBMIT_FIELDS.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ApiError(400, "invalid", f"{name} has the wrong type ({type(value).__name__})")
    if not body.get("task"):
        raise ApiError(400, "invalid", "missing 'task': a built-in name, pkg.module:function, or a command")
    try:
        spec = make_spec(body["task"], body.get("args") or [], kind=body.get("kind"),
                         priority=body.get("priority", 5), retries=body.get("retries", 0),
                         timeout_s=body.get("timeout_s"), cwd=body.get("cwd"))
    except ValueError as exc:
        raise ApiError(400, "invalid", str(exc)) from None
    return body.get("id") or new_task_id(), spec


async def write(runtime: Any, message: Any) -> dict:
    """A write, retried on the cluster's transient refusals until a deadline (ids make it idempotent)."""
    deadline, delay = time.monotonic() + WRITE_DEADLINE_S, 0.05
    while True:
        reply = await ask(runtime, message)
        if reply.get("ok") or reply.get("error") not in RETRYABLE | {ErrorCode.TIMEOUT}:
            return reply
        if time.monotonic() + delay > deadline:
            return reply
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


# -- handlers ---------------------------------------------------------------------------

class Api:
    """Request handlers bound to one runtime and its sampler."""

    def __init__(self, runtime: Any, sampler: Any) -> None:
        self.runtime, self.sampler = runtime, sampler

    def routes(self) -> list:
        return [web.get("/api/overview", self.overview), web.get("/api/cluster", self.cluster),
                web.get("/api/queue", self.queue), web.get("/api/tasks", self.tasks),
                web.post("/api/tasks", self.submit), web.get("/api/tasks/{id}", self.task),
                web.get("/api/tasks/{id}/output", self.output),
                web.post("/api/tasks/{id}/cancel", self.cancel), web.get("/api/events", self.events),
                web.get("/healthz", self.health)]

    async def snapshot(self) -> dict:
        return self.sampler.latest or await self.sampler.sample()

    async def overview(self, request: web.Request) -> web.Response:
        """Everything the dashboard shows at once, with the chart history and recent events."""
        return ok({**await self.snapshot(), "chart": self.sampler.chart(), "events": self.recent_events(50)})

    async def cluster(self, request: web.Request) -> web.Response:
        """This node's view now (local, so never stale), with the loads of the last sample."""
        snap = await self.snapshot()
        load = {m["node"]: m["running"] for m in snap["cluster"]["members"] if m["running"] is not None}
        view = model.cluster_view(self.runtime.core.view(), load if snap["leader_reachable"] else None)
        return ok({**model.json_safe(view), "leader_reachable": snap["leader_reachable"]})

    async def queue(self, request: web.Request) -> web.Response:
        snap = await self.snapshot()
        if snap["queue"] is None:  # no leader at the last sample: look again before refusing
            snap = await self.sampler.sample()
        if snap["queue"] is None:
            raise ApiError(503, "no_leader", snap["leader_error"] or "no leader has answered yet")
        return ok({**snap["queue"], "rates": snap["rates"], "replication": snap["replication"]})

    async def tasks(self, request: web.Request) -> web.Response:
        state = request.query.get("state") or None
        if state is not None and state not in model.STATES:
            raise ApiError(400, "invalid", f"state must be one of {', '.join(model.STATES)}, got {state!r}")
        params: dict = {"limit": int_param(request, "limit", 50, 1, MAX_PAGE),
                        "offset": int_param(request, "offset", 0, 0, 10**9)}
        if state:
            params["state"] = state
        reply = await ask(self.runtime, Query("list", params))
        if not reply.get("ok"):
            raise refused(reply)
        return ok({"total": reply["total"], "offset": params["offset"], "limit": params["limit"],
                   "tasks": [model.brief_task(t) for t in reply["tasks"]]})

    async def _task(self, task_id: str) -> dict:
        reply = await ask(self.runtime, Query("task", {"id": task_id}))
        if not reply.get("ok"):
            raise refused(reply)
        return reply["task"]

    async def task(self, request: web.Request) -> web.Response:
        return ok({"task": model.json_safe(await self._task(request.match_info["id"]))})

    async def output(self, request: web.Request) -> web.Response:
        tail = int_param(request, "tail", DEFAULT_TAIL_CHARS, 0, 1_000_000)
        task = await self._task(request.match_info["id"])
        out = model.output_tail(task, request.query.get("attempt"), tail)
        if out is None:
            which = request.query.get("attempt")
            raise ApiError(404, "unknown_attempt", f"task {task['id']} has no attempt {which}" if which
                           else f"task {task['id']} has not run yet")
        return ok(out)

    async def submit(self, request: web.Request) -> web.Response:
        task_id, spec = spec_from_body(await json_body(request))
        reply = await write(self.runtime, Submit(((task_id, spec),)))
        if not reply.get("ok"):
            raise refused(reply)
        return ok({"id": reply["ids"][0], "replicated": reply["replicated"], "leader": reply["leader"],
                   "term": reply["term"]}, status=201)

    async def cancel(self, request: web.Request) -> web.Response:
        reply = await write(self.runtime, Cancel(request.match_info["id"]))
        if not reply.get("ok"):
            raise refused(reply)
        return ok({"id": reply["id"], "state": reply["state"]})

    async def events(self, request: web.Request) -> web.Response:
        limit = int_param(request, "limit", 100, 1, 1000)
        try:
            since = float(request.query.get("since") or 0)
        except ValueError:
            raise ApiError(400, "invalid", "since must be a number (seconds since the epoch)") from None
        return ok({"node": self.runtime.node_id,
                   "events": [e for e in self.recent_events(1000) if e["at"] > since][-limit:]})

    def recent_events(self, limit: int) -> list[dict]:
        """This node's latest notes, oldest first, each with a line of text."""
        notes = sorted([*self.runtime.notes, *self.sampler.inferred], key=lambda n: n["at"])[-limit:]
        return [model.event_view(n, self.runtime.node_id) for n in notes]

    async def health(self, request: web.Request) -> web.Response:
        return ok({"node": self.runtime.node_id, "role": self.runtime.core.role.value})
