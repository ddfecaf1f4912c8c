"""The `p2pq` command."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from . import __version__
from .core import schema


class UserError(click.ClickException):
    """One clear line and exit code 1, never a traceback (G5)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="p2pq")
def main() -> None:
    """p2pq: a zero-configuration, brokerless task queue for a room full of machines.

    Run `p2pq node` on every machine; they find each other (mDNS or --peer),
    elect a leader and share one priority queue. Submit from any of them.

    \b
    Quick start:
      p2pq demo                       a local 3-node cluster, a leader kill, no task lost
      p2pq sim leader-crash           the protocol under faults, in a simulator
    """


CLUSTER_DIR = click.option("--cluster-dir", type=click.Path(file_okay=False, path_type=Path),
                           envvar="P2PQ_CLUSTER_DIR", default=None,
                           help="The cluster's CA directory (default: ~/.config/p2pq/cluster; "
                                "env P2PQ_CLUSTER_DIR).")
NODE = click.option("--node", envvar="P2PQ_NODE", default=None, metavar="HOST:PORT[,...]",
                    help="The node to talk to (default: 127.0.0.1:7470; env P2PQ_NODE). Any node will do: "
                         "it forwards to the leader. Several, comma-separated, are tried in turn, and a "
                         "node that goes away mid-request is replaced by another member.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
# The limits of docs/api.md, so that a bad value gets click's one clear line.
INT64 = click.IntRange(schema.INT64_MIN, schema.INT64_MAX)


def _check_id(ctx, param, value):
    if value is None:
        return None
    try:
        return schema.ident(value, param.human_readable_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_ids(ctx, param, values):
    return tuple(_check_id(ctx, param, value) for value in values)


def _dumps(value) -> str:
    """JSON for people and scripts; a value JSON cannot hold (bytes) is shown as text, never a traceback."""
    return json.dumps(value, indent=2, default=lambda v: v.hex() if isinstance(v, bytes) else str(v))


def _public(reply: dict) -> dict:
    """A reply without the wire's own fields (`type`, `req`, `ok`): what --json prints."""
    return {k: v for k, v in reply.items() if k not in ("type", "req", "ok")}


def _cluster_dir(path: Path | None) -> Path:
    from .net.pki import default_cluster_dir
    return path or default_cluster_dir()


@main.command()
@CLUSTER_DIR
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a join bundle (CA + key + token: a SECRET) for a machine without the shared directory.")
@click.option("--join", "join_from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Install a join bundle made with --export on another machine.")
@click.option("--force", is_flag=True, help="With --join: replace a different existing cluster CA.")
def init(cluster_dir, export_to, join_from, force):
    """Create the cluster's certificate authority (once; running it again is harmless).

    Every node and client proves membership with a certificate signed by
    this CA, and every connection is mutually authenticated TLS 1.3. On lab
    machines with a shared home directory the default location is the same
    everywhere, so `p2pq init` on one machine is all the setup there is.

    \b
    A machine without the shared directory:
      lab01$ p2pq init --export cluster.bundle      # keep it secret
      laptop$ p2pq init --join cluster.bundle
    """
    from .net import pki
    directory = _cluster_dir(cluster_dir)
    try:
        if join_from is not None:
            pki.import_bundle(join_from, directory, force=force)
            click.echo(f"joined the cluster {pki.ca_fingerprint(directory)[:16]} in {directory}")
            return
        created = pki.init_cluster(directory)
        fp = pki.ca_fingerprint(directory)[:16]
        click.echo(f"{'created' if created else 'kept the existing'} cluster CA {fp} in {directory}")
        if export_to is not None:
            pki.export_bundle(directory, export_to)
            click.echo(f"wrote the join bundle {export_to} (a secret: it lets a machine join)")
    except pki.PKIError as exc:
        raise UserError(str(exc)) from None


def _parse_peer(ctx, param, values):
    from .client import parse_address
    try:
        return [parse_address(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_task_memory(ctx, param, value):
    """--task-memory: bytes, None for none, "auto" when not given."""
    if value is None:
        return "auto"
    from .worker.confine import parse_size
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@CLUSTER_DIR
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where this node keeps its identity and journal (default: ~/.local/share/p2pq/NODE_ID).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=7470, show_default=True)
@click.option("--advertise", default=None, metavar="HOST", help="Address peers should dial (default: detected).")
@click.option("--peer", "peers", multiple=True, callback=_parse_peer, metavar="HOST:PORT",
              help="A node to contact at start (repeatable); needed where multicast is blocked.")
@click.option("--no-mdns", is_flag=True, help="Do not use mDNS discovery (rely on --peer and gossip).")
@click.option("--mdns-interface", "mdns_interfaces", multiple=True, metavar="ADDR|NAME",
              help="Announce and browse only on this interface (repeatable; default: all).")
@click.option("--priority", type=INT64, default=None,
              help="Bully rank: the highest live node leads (ties: node id). Default: the one this "
                   "node's journal keeps, else 0.")
@click.option("--slots", type=click.IntRange(0, schema.MAX_SLOTS), default=None,
              help="Tasks run at once (default: CPU count). 0: a coordinator that can lead and holds "
                   "copies of the queue but runs no task (a lab server, say).")
@click.option("--prefetch", type=click.IntRange(0), default=8, show_default=True,
              help="When this node leads: tasks per slot it sends a node ahead of a free slot while that "
                   "node's tasks are short (they wait there, in order); 0 = off.")
@click.option("--prefetch-below-ms", type=click.FloatRange(0), default=20.0, show_default=True,
              help="What counts as short for --prefetch: a node's tasks take less than this on average.")
@click.option("--replicas", type=click.IntRange(0), default=1, show_default=True,
              help="Followers holding every acknowledged task.")
@click.option("--quorum", type=click.IntRange(0), default=0, show_default=True,
              help="Cluster size N for quorum mode (only a majority serves); 0 = available mode.")
@click.option("--election", type=click.Choice(["classic", "ranked"]), default="classic", show_default=True,
              help="When the leader dies: classic = every node elects (ELECTION to each live node above "
                   "it); ranked = a node that knows a live node above it waits for that node's "
                   "COORDINATOR and elects only if none comes (O(n) messages; for big clusters). "
                   "Every node of a cluster should use the same.")
@click.option("--http", "http_port", type=click.IntRange(0, 65535), default=None,
              help="Serve the HTTP API and dashboard on this port.")
@click.option("--http-host", default="127.0.0.1", show_default=True,
              help="Address of the HTTP server (0.0.0.0 exposes it to the network).")
@click.option("--node-id", default=None, callback=_check_id,
              help="Stable node id (default: the one this node's journal keeps, else HOSTNAME-PORT-xxxxxx, "
                   "made once). Two nodes with one id: the one that started later stops, saying so.")
@click.option("--durability", type=click.Choice(["memory", "written", "fsync"]), default="written",
              show_default=True,
              help="When a task counts as held: memory = in the follower's memory (the journal is "
                   "written in the background); written = in the journals of leader and follower "
                   "(survives kill -9); fsync = flushed to disk on both (survives a power cut). "
                   "See docs/durability.md.")
@click.option("--retain-finished", type=click.IntRange(0), default=10_000, show_default=True,
              help="Finished tasks kept; the oldest beyond this are pruned.")
@click.option("--retain-finished-s", type=click.FloatRange(0, min_open=True), default=7 * 24 * 3600.0,
              show_default=True, help="Seconds a finished task is kept before it is pruned.")
@click.option("--forget-after-s", type=click.FloatRange(0, min_open=True), default=600.0, show_default=True,
              help="Seconds a node may stay dead before it is forgotten (no more heartbeats or redials; "
                   "it rejoins as new when it returns).")
@click.option("--heartbeat-ms", type=click.IntRange(10), default=200, show_default=True)
@click.option("--failure-timeout-ms", type=click.IntRange(50), default=1000, show_default=True)
@click.option("--task-memory", default=None, callback=_parse_task_memory, metavar="SIZE",
              help="Memory one task may use, its child processes included (512M, 2G; 0 or none = no "
                   "limit). Default: 80% of RAM split between the slots. Past it the task fails with "
                   "'memory limit (N MiB) exceeded'. Enforced by cgroup v2 memory.max where the node "
                   "can create cgroups, else per process by RLIMIT_DATA (the log says which).")
@click.option("--pythonpath", "python_path", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A directory Python tasks import from (repeatable), before the node's own path (its "
                   "working directory first). A task's module is reloaded when its file changes.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def node(cluster_dir, data_dir, host, port, advertise, peers, no_mdns, mdns_interfaces, priority, slots, prefetch,
         prefetch_below_ms, replicas, quorum, election, http_port, http_host, node_id, durability, retain_finished,
         retain_finished_s, forget_after_s, heartbeat_ms, failure_timeout_ms, task_memory, python_path, log_level):
    """Run a node: join (or found) the cluster, hold the queue, run tasks.

    Start the same command on every machine. Nodes find each other by mDNS,
    by --peer seeds and by gossip; the highest --priority leads; every node
    runs tasks in --slots worker processes. Stop with Ctrl-C: the node says
    goodbye so the others fail over at once.
    """
    import asyncio
    import logging
    import os as _os
    from .core.types import Config
    from .net.node import NodeFailed, NodeSettings, run_node
    from .net.pki import PKIError
    from .net.storage import StorageError
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = Config(heartbeat_interval_s=heartbeat_ms / 1000, failure_timeout_s=failure_timeout_ms / 1000,
                        replicas=replicas, quorum=quorum, slots=slots if slots is not None else (_os.cpu_count() or 1),
                        prefetch=prefetch, prefetch_below_s=prefetch_below_ms / 1000,
                        retain_finished=retain_finished, retain_finished_s=retain_finished_s,
                        forget_after_s=forget_after_s, election=election)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    settings = NodeSettings(cluster_dir=_cluster_dir(cluster_dir), data_dir=data_dir, host=host, port=port,
                            advertise_host=advertise, peers=list(peers), mdns=not no_mdns, priority=priority,
                            mdns_interfaces=list(mdns_interfaces) or None,
                            node_id=node_id, config=config, http_port=http_port, http_host=http_host,
                            python_path=[str(p) for p in python_path],
                            durability=durability, task_memory_bytes=task_memory)
    try:
        asyncio.run(run_node(settings))
    except (PKIError, StorageError, NodeFailed) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot start the node: {exc}") from None


_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_MINUS = "\x00"  # marks a negative number among ARGS while click parses options


class _SubmitCommand(click.Command):
    """Remembers whether `--` was given (`p2pq submit -- CMD ARGS` is a shell command), and
    reads a negative number among ARGS (`p2pq submit add -1 5`) as an argument, not an option."""

    def parse_args(self, ctx, args):
        ctx.meta["p2pq_shell"] = "--" in args
        takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag
                       for name in p.opts}
        marked, seen_task, value_next = [], False, False
        for arg in args[:args.index("--")] if "--" in args else args:
            if value_next:  # an option's value (--priority -3): click's to read
                marked.append(arg)
                value_next = False
            elif seen_task and _NUMBER.fullmatch(arg):
                marked.append(_MINUS + arg)
            else:
                value_next = arg in takes_value
                seen_task = seen_task or not arg.startswith("-")
                marked.append(arg)
        return super().parse_args(ctx, marked + args[len(marked):])


_LITERAL = "\x01"  # marks an argument --each made from a line: taken as it is (no @PATH, no -)


def _unmark(text: str) -> str:
    return text[1:] if text.startswith((_MINUS, _LITERAL)) else text


_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


def _read_input(arg: str) -> str:
    """@PATH is the file's text and - the standard input's (a big argument), anything else itself."""
    if arg.startswith(_LITERAL):
        return arg[1:]
    if arg == "-":
        return sys.stdin.read()
    if arg.startswith("@") and len(arg) > 1:
        try:
            return Path(arg[1:]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {arg[1:]}: {exc}") from None
    return arg


def _task_arguments(args: tuple[str, ...], kwargs_json: str | None) -> tuple[list, dict]:
    """ARGS of a built-in or Python task: JSON values or strings; NAME=VALUE is a keyword argument;
    @PATH (or - for stdin) stands for a file's text, read as JSON when it is JSON."""
    positional, keywords = [], {}
    if kwargs_json is not None:
        kwargs_json = _read_input(kwargs_json)
    for arg in args:
        arg = arg[1:] if arg.startswith(_MINUS) else arg
        literal = arg.startswith(_LITERAL)
        match = _KEYWORD.fullmatch(arg[1:] if literal else arg)
        if match:
            keywords[match[1]] = _json_arg(match[2] if literal else _read_input(match[2]))
        elif keywords:
            raise UserError(f"positional argument {arg!r} after keyword arguments")
        else:
            positional.append(_json_arg(_read_input(arg)))
    if kwargs_json is not None:
        try:
            extra = json.loads(kwargs_json)
        except ValueError as exc:
            raise UserError(f"--kwargs is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise UserError("--kwargs must be a JSON object, e.g. '{\"epochs\": 3}'")
        keywords.update(extra)
    return positional, keywords


def _client(node: str | None, cluster_dir: Path | None, timeout_s: float = 15.0):
    from .client import Client
    try:
        return Client(node, cluster_dir=cluster_dir, timeout_s=timeout_s)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _call(fn, *args, **kwargs):
    from .client import P2PQError
    try:
        return fn(*args, **kwargs)
    except P2PQError as exc:
        raise UserError(str(exc)) from None


@main.command(cls=_SubmitCommand, context_settings={"ignore_unknown_options": False})
@NODE
@CLUSTER_DIR
@click.option("--priority", type=INT64, default=5, show_default=True, help="Urgency: 1 runs before 5.")
@click.option("--retries", type=click.IntRange(0, schema.MAX_RETRIES), default=0, show_default=True,
              help="Extra attempts after a failure (with backoff).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, schema.MAX_TIMEOUT_S, min_open=True), default=None,
              help="Kill the task after this many seconds (at most 30 days).")
@click.option("--cwd", default=None, help="Working directory of a shell command.")
@click.option("--id", "task_id", default=None, callback=_check_id,
              help="Choose the task id (a retried submit is idempotent): up to 200 letters, digits "
                   "and . _ : @ + = ~ -.")
@click.option("--kwargs", "kwargs_json", default=None, metavar="JSON",
              help="Keyword arguments of a built-in or Python task, as a JSON object, @PATH or - (also "
                   "NAME=VALUE in ARGS).")
@click.option("--each", "each", default=None, metavar="FILE",
              help="One task per line of FILE (- for stdin): {} in ARGS stands for the line (else it is the "
                   "last argument). With --wait: a progress bar, then a summary; exit 1 if any failed.")
@click.option("--after", "after", multiple=True, callback=_check_ids, metavar="ID",
              help="Run only once task ID has succeeded (repeat for several); the task is blocked until "
                   "then, and fails with 'dependency ID failed' if one fails or is cancelled.")
@click.option("--wait", is_flag=True, help="Wait for the task to finish and print its result.")
@JSON
@click.argument("task")
@click.argument("args", nargs=-1)
@click.pass_context
def submit(ctx, node, cluster_dir, priority, retries, timeout_s, cwd, task_id, kwargs_json, each, after, wait,
           as_json, task, args):
    """Submit TASK with ARGS; prints its id once the cluster holds it on two nodes.

    \b
    TASK is a built-in (echo, sleep, fibonacci, is_prime, reverse_string,
    to_uppercase, noop, fail, cpu_burn), or a Python callable pkg.module:function
    (importable on every node), or, after --, a shell command run without a
    shell. ARGS of a built-in or Python task are JSON values (3, -1.5, true,
    '[1, 2]') or else strings; NAME=VALUE is a keyword argument; @PATH is
    the text of a file (JSON if it parses) and - that of the standard input.

    \b
    Examples:
      p2pq submit fibonacci 30 --priority 1 --wait
      p2pq submit mylab.jobs:train data.csv epochs=3 lr=0.01
      p2pq submit mylab.jobs:fit config=@params.json
      p2pq submit --timeout 60 -- python3 simulate.py --steps 1000
      p2pq submit --each params.txt --wait -- python3 sim.py --alpha {}
      p2pq submit --after 3f2a9c1e07b4d5a6 -- python3 plot.py results/
    """
    from .client import make_spec
    kind = "shell" if ctx.meta.get("p2pq_shell") else None
    if kind == "shell" and kwargs_json is not None:
        raise UserError("--kwargs is for built-in and Python tasks; a shell command takes ARGS only")

    def spec_of(raw_args) -> object:
        if kind == "shell":
            parsed, keywords = [_unmark(a) for a in raw_args], {}
        else:
            parsed, keywords = _task_arguments(tuple(raw_args), kwargs_json)
        try:
            return make_spec(task, parsed, kind=kind, priority=priority, retries=retries, timeout_s=timeout_s,
                             cwd=cwd, kwargs=keywords or None, after=after)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if each is not None:
        if task_id is not None:
            raise UserError("--id names one task; --each submits one per line (their ids are chosen for them)")
        lines = _lines(each)
        specs = [spec_of([_LITERAL + a.replace("{}", line) if "{}" in a else a for a in args]
                         if any("{}" in a for a in args) else [*args, _LITERAL + line]) for line in lines]
        _submit_each(node, cluster_dir, specs, lines, wait, as_json)
        return
    spec = spec_of(args)
    with _client(node, cluster_dir) as client:
        reply = _call(client.submit_spec, spec, task_id)
        tid = reply["ids"][0]
        if not as_json:  # the id as soon as the cluster holds the task, before any wait
            note = "" if reply["replicated"] else "  (unreplicated: a cluster of one node)"
            click.echo(f"{tid}{note}")
        result = _call(client.result, tid, wait=True) if wait else None
    if as_json:
        click.echo(_dumps({"id": tid, "replicated": reply["replicated"], "leader": reply["leader"],
                           "term": reply["term"], **({"task": result} if result else {})}))
    elif result is not None:
        _print_result(result)
    if result is not None and result["state"] != "succeeded":
        sys.exit(1)  # the same with --json: a script reads the exit code


def _lines(path: str) -> list[str]:
    """The non-empty lines of a file (- for stdin), without their line ends."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    lines = [line.rstrip("\r\n") for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"{path} has no line to submit")
    return lines


def _submit_each(node, cluster_dir, specs: list, lines: list[str], wait: bool, as_json: bool) -> None:
    """Submit one task per line in batches; with `wait`, follow them with a progress bar to a summary."""
    import asyncio

    from .client import AsyncClient, P2PQError, new_task_id

    batch = 200
    tasks = [(new_task_id(), spec) for spec in specs]  # chosen here: a retried batch is idempotent

    async def run() -> dict[str, dict]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        async with AsyncClient(node, cluster_dir=cluster_dir, timeout_s=30) as client:
            for start in range(0, len(tasks), batch):
                await client.submit_many(tasks[start:start + batch])
            if not as_json and not wait:
                for task_id, _ in tasks:
                    click.echo(task_id)
            if not wait:
                return {}
            done: dict[str, dict] = {}
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, transient=True, disable=as_json) as progress:
                bar = progress.add_task(f"{len(tasks)} tasks", total=len(tasks))

                async def follow(task_id: str) -> None:
                    done[task_id] = await ended[task_id]  # pushed by the node as each task ends
                    progress.advance(bar)
                ended = {task_id: client.watch(task_id) for task_id, _ in tasks}  # one request for all
                await asyncio.gather(*(follow(task_id) for task_id, _ in tasks))
            return done
    try:
        done = asyncio.run(run())
    except P2PQError as exc:
        raise UserError(str(exc)) from None
    ids = [task_id for task_id, _ in tasks]
    failed = [(task_id, line) for (task_id, line) in zip(ids, lines) if wait and done[task_id]["state"] != "succeeded"]
    if as_json:
        click.echo(_dumps({"ids": ids, **({"succeeded": len(ids) - len(failed),
                                           "failed": [task_id for task_id, _ in failed]} if wait else {})}))
    elif wait:
        click.echo(f"{len(ids)} tasks: {len(ids) - len(failed)} succeeded, {len(failed)} failed")
        for task_id, line in failed[:20]:
            result = done[task_id].get("result") or {}
            why = result.get("error") or f"{done[task_id]['state']}"
            click.echo(f"  {task_id}  {why}  (line: {line[:60]})")
        if len(failed) > 20:
            click.echo(f"  ... and {len(failed) - 20} more: p2pq ls --state failed")
    if failed:
        sys.exit(1)


def _json_arg(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _print_result(task: dict) -> None:
    result = task.get("result") or {}
    click.echo(f"state: {task['state']}")
    if "value" in result and result.get("value") is not None:
        click.echo(f"value: {json.dumps(result['value'], default=str)}")
    for stream in ("stdout", "stderr"):
        if result.get(stream):
            click.echo(f"{stream}:\n{result[stream].rstrip()}")
    if result.get("error"):
        click.echo(f"error: {result['error']}")


@main.command()
@NODE
@CLUSTER_DIR
@JSON
@click.argument("task_id")
def status(node, cluster_dir, as_json, task_id):
    """Show a task: state, priority, and every attempt (node, start, end, outcome)."""
    with _client(node, cluster_dir) as client:
        task = _call(client.status, task_id)
    if as_json:
        click.echo(_dumps(task))
        return
    from rich.console import Console
    from rich.table import Table
    console = Console()
    console.print(f"[bold]{task['id']}[/]  {task['kind']} {task['target']} {task['args']}  "
                  f"priority {task['priority']}  [bold]{task['state']}[/]")
    table = Table("attempt", "node", "started", "ended", "outcome")
    for a in task["attempts"]:
        table.add_row(a["id"], a["node"], _clock(a["started_at"]), _clock(a["ended_at"]), a["outcome"] or "running")
    console.print(table)


def _clock(t) -> str:
    import time as _time
    return "" if t is None else _time.strftime("%H:%M:%S", _time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


@main.command()
@NODE
@CLUSTER_DIR
@click.option("--wait", is_flag=True, help="Wait until the task has finished.")
@click.option("--wait-timeout", "timeout_s", type=click.FloatRange(0, schema.MAX_TIMEOUT_S), default=None,
              metavar="S", help="With --wait: give up waiting after S seconds (the task goes on).")
@JSON
@click.argument("task_id")
def result(node, cluster_dir, wait, timeout_s, as_json, task_id):
    """Print a task's result (value, or exit code and output of a shell command)."""
    with _client(node, cluster_dir) as client:
        task = _call(client.result, task_id, wait=wait, timeout_s=timeout_s)
    if as_json:
        click.echo(_dumps(task))
    else:
        _print_result(task)
    if task["state"] in ("failed", "cancelled"):
        sys.exit(1)


@main.command(name="ls")
@NODE
@CLUSTER_DIR
@click.option("--state", type=click.Choice(["blocked", "queued", "running", "succeeded", "failed", "cancelled"]),
              default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
@JSON
def ls(node, cluster_dir, state, limit, as_json):
    """List the newest tasks (optionally in one state)."""
    with _client(node, cluster_dir) as client:
        listing = _call(client.list, state, limit)
    if as_json:
        click.echo(_dumps(_public(listing)))
        return
    from rich.console import Console
    from rich.table import Table
    shown, total = len(listing["tasks"]), listing["total"]
    title = f"{total} task(s)" if shown == total else f"the newest {shown} of {total} tasks (--limit)"
    table = Table("id", "state", "prio", "task", "attempts", "node", title=title)
    for t in listing["tasks"]:
        last = t["attempts"][-1]["node"] if t["attempts"] else ""
        table.add_row(t["id"], t["state"], str(t["priority"]), f"{t['target']} {' '.join(map(str, t['args']))}"[:40],
                      str(len(t["attempts"])), last)
    Console().print(table)


@main.command()
@NODE
@CLUSTER_DIR
@JSON
@click.argument("task_id")
def cancel(node, cluster_dir, as_json, task_id):
    """Cancel a task (a running one is killed)."""
    with _client(node, cluster_dir) as client:
        reply = _call(client.cancel, task_id)
    click.echo(_dumps(_public(reply)) if as_json else f"{task_id}: {reply['state']}")


@main.command()
@NODE
@CLUSTER_DIR
@JSON
def peers(node, cluster_dir, as_json):
    """Who is in the cluster: leader, followers, term, alive, slots."""
    with _client(node, cluster_dir) as client:
        view = _call(client.peers)
    if as_json:
        click.echo(_dumps(_public(view)))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("node", "role", "priority", "alive", "slots", "address",
                  title=f"term {view['term']}, leader {view['leader']} (as seen by {view['node']})")
    for m in sorted(view["members"], key=lambda m: (-m["priority"], m["node"])):
        addr = ":".join(map(str, m["address"])) if m["address"] else ""
        table.add_row(m["node"] + (" (this)" if m["self"] else ""), m["role"], str(m["priority"]),
                      "yes" if m["alive"] else "[red]no[/]", str(m["slots"]), addr)
    Console().print(table)


@main.command()
@click.option("--nodes", type=click.IntRange(2, 9), default=3, show_default=True)
@click.option("--tasks", type=click.IntRange(10, 2000), default=60, show_default=True)
def demo(nodes, tasks):
    """Start a local cluster, submit tasks, kill the leader, and show that nothing is lost.

    Everything runs on 127.0.0.1 in a temporary directory (its own cluster
    CA), and is cleaned up afterwards. Takes well under a minute.
    """
    from .demo import run_demo
    if not run_demo(nodes, tasks):
        sys.exit(1)


from .sim.command import sim  # noqa: E402  (the simulator owns its command)

main.add_command(sim)

from .web.top import top  # noqa: E402  (the web layer owns `p2pq top`)

main.add_command(top)


if __name__ == "__main__":
    main()
