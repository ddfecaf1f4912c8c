"""`p2pq top`: the dashboard's live view in a terminal (rich), for machines without a browser.

Two ways to look, one picture:
- ``--node HOST:PORT`` (default): the cluster protocol over TLS, like every
  other command; needs the cluster directory. Events are what top itself
  sees change between two looks (leader, term, nodes up and down).
- ``--http URL``: a node's HTTP API (`p2pq node --http PORT`); shows that
  node's own events (elections, failure detection) as they happened.
Both are turned into the same snapshot and drawn by ``render``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import model

STATE_STYLE = {"blocked": "grey50", "queued": "grey62", "running": "blue", "succeeded": "green", "failed": "red",
               "cancelled": "dark_orange3"}
ROLE_STYLE = {"leader": "bold yellow", "follower": "cyan", "member": "white", "dead": "red"}
SPARK = "▁▂▃▄▅▆▇█"
TASK_ROWS = 12
EVENT_ROWS = 10
WIDE = 120  # columns from which the panels stand two by two; narrower, one above the other


class Unreachable(Exception):
    """The node top watches did not answer; top keeps the last picture and tries again."""


# -- sources ---------------------------------------------------------------------------------

class TlsSource:
    """Looks through the cluster protocol (a client connection to one node)."""

    def __init__(self, node: str | None, cluster_dir: Path | None) -> None:
        from p2pq.client import AsyncClient
        self.client = AsyncClient(node, cluster_dir=cluster_dir, timeout_s=3.0, failover=False)  # this node's view
        self.name = "{}:{}".format(*self.client.address)
        self.history: collections.deque = collections.deque(maxlen=120)
        self.events: collections.deque = collections.deque(maxlen=50)
        self.last_view: dict | None = None
        self.queue: dict | None = None

    async def ask(self, message: Any) -> dict:
        from p2pq.client import P2PQError
        try:
            return await self.client.request(message, deadline_s=2.0, retry=())
        except P2PQError as exc:
            if exc.code in ("unreachable", "no_cluster", "timeout"):
                raise Unreachable(str(exc)) from None
            return {"ok": False, "error": exc.code, "message": str(exc)}

    async def fetch(self) -> dict:
        from p2pq.core.messages import Query
        now = time.time()
        view = await self.ask(Query("peers"))
        stats = await self.ask(Query("stats"))
        running = await self.ask(Query("list", {"state": "running", "limit": 1000}))
        recent = await self.ask(Query("list", {"limit": TASK_ROWS}))
        queued = await self.ask(Query("list", {"state": "queued", "limit": 1000}))
        for event in model.diff_views(self.last_view, view, now):
            self.events.append(model.event_view(event, view["node"]))
        self.last_view = view
        if stats.get("ok"):
            counts = {s: int(stats["counts"].get(s, 0)) for s in model.STATES}
            self.queue = {"counts": counts, "total": stats["tasks"], "depth": counts["queued"],
                          "by_priority": model.by_priority(queued.get("tasks", []))}
            finished = sum(counts[s] for s in model.TERMINAL)
            self.history.append((now, stats["tasks"], finished, stats.get("term")))
        load = model.load_by_node(running["tasks"]) if running.get("ok") else None
        return {"node": view["node"], "cluster": model.cluster_view(view, load),
                "leader_reachable": bool(stats.get("ok")), "leader_error": stats.get("message"),
                "queue": self.queue, "rates": self.rates(), "chart": self.chart(),
                "tasks": recent.get("tasks", []), "events": list(self.events)}

    def rates(self) -> dict:
        samples = [s for s in self.history if self.history and s[3] == self.history[-1][3]]
        return {"submitted_per_s": model.rate([(s[0], s[1]) for s in samples], 5.0),
                "finished_per_s": model.rate([(s[0], s[2]) for s in samples], 5.0)}

    def chart(self) -> list[list]:
        samples = list(self.history)
        return [[b[0], 0.0, max(0.0, (b[2] - a[2]) / max(b[0] - a[0], 1e-6))]
                for a, b in zip(samples, samples[1:])]

    async def close(self) -> None:
        await self.client.close()


class HttpSource:
    """Looks through a node's HTTP API."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token, self.name = url.rstrip("/"), token, url

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            raise Unreachable(f"HTTP {exc.code}: {body.get('message', exc.reason)}") from None
        except (OSError, ValueError) as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc}") from None

    async def fetch(self) -> dict:
        overview = await asyncio.to_thread(self.get, "/api/overview")
        try:
            tasks = (await asyncio.to_thread(self.get, f"/api/tasks?limit={TASK_ROWS}"))["tasks"]
        except Unreachable:
            tasks = []  # no leader right now: the cluster view still says why
        return {**overview, "tasks": tasks}

    async def close(self) -> None:
        pass


# -- drawing -------------------------------------------------------------------------------------

def render(snap: dict | None, source: str, problem: str | None = None, width: int = WIDE) -> Group:
    """One frame of `p2pq top` from a snapshot (the shape of GET /api/overview plus 'tasks').

    From `WIDE` columns the four panels stand two by two; in a narrower
    terminal (80 columns) one above the other, each as wide as the screen.
    """
    if snap is None:
        return Group(Text(f"p2pq top: waiting for {source}… {problem or ''}", style="yellow"))
    panels = [_nodes(snap), _queue(snap), _tasks(snap), _events(snap)]
    if width < WIDE:
        return Group(_header(snap, source, problem), *panels)
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(panels[0], panels[1])
    grid.add_row(panels[2], panels[3])
    return Group(_header(snap, source, problem), grid)


def _header(snap: dict, source: str, problem: str | None) -> Text:
    c = snap["cluster"]
    text = Text("p2pq top  ", style="bold")
    text.append("leader ")
    text.append(c["leader"] or "none (election in progress)", style="bold yellow")
    text.append(f"  term {c['term']}  seen by {snap['node']} ({c['role']})  via {source}  ")
    text.append(time.strftime("%H:%M:%S"), style="dim")
    if problem:
        text.append(f"\n{problem}", style="bold red")
    elif not snap.get("leader_reachable", True):
        text.append(f"\nleader not reachable: {snap.get('leader_error') or ''}", style="bold red")
    return text


def _nodes(snap: dict) -> Panel:
    table = Table("node", "role", "prio", "load", "address", expand=True, box=None)
    for m in snap["cluster"]["members"]:
        role = m["role"] if m["alive"] else "dead"
        load = "" if m.get("running") is None or not m["alive"] else f"{m['running']}/{m['slots']}"
        address = ":".join(map(str, m["address"])) if m.get("address") else ""
        name = m["node"] + (" *" if m.get("self") else "")
        table.add_row(name, Text(("★ " if role == "leader" else "") + role, style=ROLE_STYLE[role]),
                      str(m["priority"]), load, address)
    return Panel(table, title="nodes (* = the node asked)", title_align="left")


def _queue(snap: dict) -> Panel:
    q, rates = snap.get("queue"), snap.get("rates") or {}
    lines = Text()
    for state in model.STATES:
        lines.append(f"{state} ", style=STATE_STYLE[state])
        lines.append(f"{q['counts'][state] if q else '–'}   ", style="bold")
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    lines.append(f"\nsubmitted/s {fmt(rates.get('submitted_per_s'))}   "
                 f"finished/s {fmt(rates.get('finished_per_s'))}   tasks {q['total'] if q else '–'}\n")
    lines.append("last 40 s  " + sparkline([p[2] for p in snap.get("chart", [])][-40:]), style="green")
    if q and q.get("by_priority"):
        lines.append("\nqueued by priority: " + "  ".join(f"{p}:{n}" for p, n in q["by_priority"].items()))
    return Panel(lines, title="queue", title_align="left")


def sparkline(values: list[float]) -> str:
    """Values as a row of block characters, scaled to the largest."""
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


def _tasks(snap: dict) -> Panel:
    table = Table("id", "state", "prio", "task", "node", expand=True, box=None)
    for t in snap.get("tasks", [])[:TASK_ROWS]:
        node = t["attempts"][-1]["node"] if t["attempts"] else ""
        what = " ".join([t["target"], *map(str, t["args"])])
        table.add_row(t["id"], Text(t["state"], style=STATE_STYLE.get(t["state"], "")),
                      str(t["priority"]), what[:30], node)
    return Panel(table, title="newest tasks", title_align="left")


def _events(snap: dict) -> Panel:
    lines = Text()
    for e in list(snap.get("events", []))[-EVENT_ROWS:][::-1]:
        lines.append(time.strftime("%H:%M:%S", time.localtime(e["at"])) + "  ", style="dim")
        lines.append(e.get("text") or model.event_text(e),
                     style="bold red" if e.get("failover") else "")
        lines.append("\n")
    return Panel(lines or Text("no events yet", style="dim"), title="events", title_align="left")


# -- the command ---------------------------------------------------------------------------------------

async def _watch(source, interval_s: float, once: bool, as_json: bool, console: Console) -> None:
    from rich.live import Live
    snap, problem = None, None
    if once or as_json:
        try:
            snap = await source.fetch()
        except Unreachable as exc:
            raise click.ClickException(str(exc)) from None
        if as_json:
            click.echo(json.dumps(snap, indent=2, default=str))
        else:
            console.print(render(snap, source.name, width=console.width))
        return
    with Live(render(None, source.name), console=console, screen=True, auto_refresh=False) as live:
        while True:
            try:
                snap, problem = await source.fetch(), None
            except Unreachable as exc:
                problem = f"{exc} (retrying)"
            live.update(render(snap, source.name, problem, width=console.width), refresh=True)
            await asyncio.sleep(interval_s)


def _token(cluster_dir: Path | None) -> str | None:
    from p2pq.net.pki import PKIError, default_cluster_dir, read_token
    try:
        return read_token(cluster_dir or default_cluster_dir())
    except PKIError:
        return None


@click.command()
@click.option("--node", envvar="P2PQ_NODE", default=None, metavar="HOST:PORT",
              help="The node to watch over the cluster protocol (default: 127.0.0.1:7470; env P2PQ_NODE).")
@click.option("--http", "http_url", default=None, metavar="URL",
              help="Watch through a node's HTTP API instead (e.g. http://127.0.0.1:8080); shows its events.")
@click.option("--cluster-dir", type=click.Path(file_okay=False, path_type=Path), envvar="P2PQ_CLUSTER_DIR",
              default=None, help="The cluster's CA directory (default: ~/.config/p2pq/cluster).")
@click.option("--interval", "interval_s", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="Seconds between looks.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for logs).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one snapshot as JSON and exit (for scripts): the shape of GET /api/overview, plus "
                   "'tasks'.")
def top(node, http_url, cluster_dir, interval_s, once, as_json):
    """Watch the cluster live in the terminal: nodes, leader, queue, throughput, tasks, events.

    Ctrl-C quits. The node watched may lose the leadership (or die, with
    --node: top says so and keeps trying); the picture follows the cluster.
    """
    if http_url:
        source: Any = HttpSource(http_url, os.environ.get("P2PQ_TOKEN") or _token(cluster_dir))
    else:
        try:
            source = TlsSource(node, cluster_dir)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    async def main() -> None:
        try:
            await _watch(source, interval_s, once, as_json, Console())
        finally:
            await source.close()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
