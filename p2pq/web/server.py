"""The node's HTTP server: JSON API, live event stream, /metrics and the dashboard.

`p2pq node --http PORT` calls ``start_http``; the runtime closes the
returned server on shutdown. The server owns two things that outlive a
request, and cancels both on close: the sampler task and the open event
streams.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from . import metrics
from .api import MAX_BODY_BYTES, Api, ApiError, error_response
from .auth import Access, Denied
from .live import Hub, Sampler, encode_event

log = logging.getLogger("p2pq.web")
STATIC_DIR = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0
# Requests served at once (live streams aside, which the hub bounds): the
# event loop that answers them also carries the protocol's heartbeats.
MAX_IN_FLIGHT = 64


@web.middleware
async def _guard(request: web.Request, handler) -> web.StreamResponse:
    """Apply the access rule and the load bound; answer every error as one JSON line (never a traceback)."""
    access: Access = request.app["access"]
    load: dict = request.app["load"]
    counted = request.path != "/api/stream"
    if counted and load["in_flight"] >= MAX_IN_FLIGHT:
        return error_response(503, "busy", f"this node is answering {MAX_IN_FLIGHT} requests already; "
                              "retry shortly")
    load["in_flight"] += counted
    try:
        access.check(request.method, request.path, request.headers.get("Host", ""),
                     request.headers.get("Authorization", ""))
        return await handler(request)
    except (ApiError, Denied) as exc:
        return error_response(exc.status, exc.code, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", f"request body is over the {MAX_BODY_BYTES} byte limit")
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        return error_response(exc.status_code, exc.reason.lower().replace(" ", "_"),
                              f"{exc.reason}: {request.method} {request.path}")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error (logged on the node)")
    finally:
        load["in_flight"] -= counted


class HttpServer:
    """One node's HTTP server; `close()` ends streams and the sampler, then stops listening."""

    def __init__(self, runtime: Any, host: str, sample_interval_s: float = 1.0) -> None:
        self.runtime, self.host = runtime, host
        self.hub = Hub()
        self.sampler = Sampler(runtime, self.hub, sample_interval_s)
        self.api = Api(runtime, self.sampler)
        self.access = Access(host, Path(runtime.settings.cluster_dir))
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self._sampling: asyncio.Task | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY_BYTES)
        app["access"] = self.access
        app["load"] = {"in_flight": 0}
        app.add_routes(self.api.routes())
        app.add_routes([web.get("/api/stream", self.stream), web.get("/metrics", self.metrics),
                        web.get("/", self.index)])
        app.router.add_static("/static", STATIC_DIR)
        return app

    async def start(self, port: int) -> None:
        # No access log: the dashboard polls, and lines per request would drown the node's log.
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, port)
        await site.start()
        self.port = self.runner.addresses[0][1]  # the real port when asked for 0
        self.runtime.listeners.append(self._on_note)
        self._sampling = asyncio.get_running_loop().create_task(self.sampler.run(), name="web-sampler")

    async def close(self) -> None:
        if self._on_note in self.runtime.listeners:
            self.runtime.listeners.remove(self._on_note)
        if self._sampling is not None:
            self._sampling.cancel()
            await asyncio.gather(self._sampling, return_exceptions=True)
        self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()

    def _on_note(self, note: dict) -> None:
        """Called by the runtime for every note: count it and push it to the open pages now."""
        from .model import event_view
        self.sampler.count(note)
        self.hub.publish("note", event_view(note, self.runtime.node_id))

    # -- handlers that need the server itself ------------------------------------------------
    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def metrics(self, request: web.Request) -> web.Response:
        snapshot = await self.api.snapshot()
        return web.Response(text=metrics.render(self.runtime, self.sampler, snapshot),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: 'hello' (the overview), then 'snapshot' each second and 'note' at once."""
        if self.hub.full:
            return error_response(503, "busy", f"this node already serves {self.hub.MAX_STREAMS} live views; "
                                  "close one, or open the dashboard on another node")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue = self.hub.subscribe()
        try:
            hello = {**await self.api.snapshot(), "chart": self.sampler.chart(),
                     "events": self.api.recent_events(50)}
            await response.write(encode_event("hello", hello))
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                await response.write(item)
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        finally:
            self.hub.unsubscribe(queue)
        return response


async def start_http(runtime: Any, host: str, port: int) -> HttpServer:
    """Serve the API and dashboard for `runtime` on host:port; returns the server to close."""
    server = HttpServer(runtime, host)
    await server.start(port)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{server.port}/"
    if not server.access.local:
        log.warning("HTTP API exposed on %s: every API request needs the cluster token, and plain HTTP "
                    "carries it in clear; use it on a trusted network only", where)
    print(f"p2pq dashboard at {where}", flush=True)
    return server
