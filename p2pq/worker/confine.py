"""Task confinement: a memory limit per task, and a way to find (and kill) every
process a task started.

Theory of operation
- Each slot has two scopes: one for its long-lived Python child ("py") and
  one for the shell task it runs ("sh"). A scope is what a task's processes
  share: a cgroup v2 leaf where the node can make one (memory.max,
  memory.events, cgroup.kill), and always an environment marker
  P2PQ_TASK=<scope id> that every process inherits.
- Mechanism, chosen once at start (Confinement.setup) and logged:
  * tree: "cgroup" when a cgroup v2 hierarchy lets us create groups and move
    processes into them (nothing escapes a cgroup: not setsid, not a double
    fork); otherwise "marker": a scan of /proc/*/environ for the scope's
    marker (escaped only by a process that clears its environment).
  * memory: "memory.max" when the cgroup v2 memory controller can be enabled
    for our groups (it bounds the task's processes together); otherwise
    RLIMIT_DATA, set in each task process (it bounds each process alone).
- Killed processes may be re-parented to the node (Executor.start makes it
  a child subreaper, since init need not reap: in some containers it does
  not); wait_gone() reaps exactly those pids, never waitpid(-1), which would
  steal exit codes from asyncio's child watcher.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import time
from contextlib import suppress
from pathlib import Path

__all__ = ["Confinement", "Scope", "default_task_memory_bytes", "memory_limit_error",
           "parse_size", "wait_gone"]

log = logging.getLogger(__name__)

MARKER = "P2PQ_TASK"
DEFAULT_MEMORY_SHARE = 0.8  # of physical RAM, split between the slots
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_MIN_TASK_MEMORY_BYTES = 32 * 2**20  # a Python child needs some 20 MiB to start
_scope_ids = itertools.count()


def parse_size(text: str) -> int | None:
    """'512M', '2G', '1.5g', '1048576' -> bytes; '0' or 'none' -> None (no limit)."""
    if text.strip().lower() in ("0", "none", "off"):
        return None
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M, 2G, or none)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < _MIN_TASK_MEMORY_BYTES:
        raise ValueError(f"{text!r} is below the minimum of 32M (a worker process needs some 20 MiB)")
    return size


def default_task_memory_bytes(slots: int) -> int:
    """80 % of physical RAM split evenly between the slots.

    An even split means every slot can hit its limit at once and the node
    (and the machine) still have a fifth of RAM; a larger share would let
    busy slots together push the kernel into OOM-killing the node itself.
    """
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(_MIN_TASK_MEMORY_BYTES, int(total * DEFAULT_MEMORY_SHARE) // max(slots, 1))


def memory_limit_error(limit_bytes: int) -> str:
    return f"memory limit ({limit_bytes // 2**20} MiB) exceeded"


class Scope:
    """Where one kind of task of one slot runs: its marker, maybe its cgroup."""

    def __init__(self, marker: str, group: Path | None, rlimit_bytes: int | None) -> None:
        self.marker = marker
        self.group = group
        self.rlimit_bytes = rlimit_bytes  # set in each process (no memory.max here)
        self._needle = f"{MARKER}={marker}".encode()
        self._no_events = False  # the group has no memory.events (no memory controller): never will

    @property
    def env(self) -> dict[str, str]:
        return {MARKER: self.marker}

    @property
    def procs_path(self) -> str | None:
        return None if self.group is None else str(self.group / "cgroup.procs")

    def join(self, pid: int) -> None:
        """Move a process into the scope's cgroup (if it has one)."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many times the kernel OOM-killed in this scope (memory.max reached)."""
        if self.group is None or self._no_events:
            return 0
        try:
            for line in (self.group / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except FileNotFoundError:
            self._no_events = True  # not worth a failed open at every task
        except OSError:
            pass
        return 0

    def kill_all(self, root: int | None = None) -> list[int]:
        """SIGKILL every process in the scope; the pids killed, bar `root`.

        `root` is the process the executor started (asyncio reaps it); the
        others are for wait_gone() to reap. The members of root's process
        group count too, zombies included: one killed by the caller's killpg
        before it could leave the group (a setsid between fork and setsid())
        is a zombie the marker scan cannot see, and it comes to us to reap.
        """
        pids = [] if root is None else _group_members(root)
        for pid in pids:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.group is not None:
            pids += self._cgroup_pids()
            with suppress(OSError):
                (self.group / "cgroup.kill").write_text("1")  # the kernel's kill: forks cannot race it
        else:
            for _ in range(20):  # again and again: a process may fork while we scan
                # A process already sent SIGKILL cannot fork any more: only new ones count.
                found = [pid for pid in self._marked_pids() if pid not in pids]
                if not found:
                    break
                for pid in found:
                    with suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                pids += found
        return [pid for pid in dict.fromkeys(pids) if pid != root]

    def _cgroup_pids(self) -> list[int]:
        try:
            return [int(line) for line in (self.group / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def _marked_pids(self) -> list[int]:
        me = os.getpid()
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    entries = f.read().split(b"\0")
            except OSError:
                continue  # gone, or not ours to read
            if self._needle in entries:
                found.append(int(name))
        return found


class Confinement:
    """Chooses the mechanism once, makes the scopes, removes its cgroups at close."""

    def __init__(self, memory_bytes: int | None, *, cgroups: bool = True) -> None:
        self.memory_bytes = memory_bytes
        self._want_cgroups = cgroups
        self._root: Path | None = None
        self._memory_controller = False
        self._groups: list[Path] = []
        self._tag = f"{os.getpid()}-{next(_scope_ids)}"

    @property
    def tree(self) -> str:
        return "cgroup" if self._root is not None else "marker"

    @property
    def memory(self) -> str:
        if self.memory_bytes is None:
            return "none"
        return "memory.max" if self._memory_controller else "RLIMIT_DATA"

    def describe(self) -> str:
        if self.tree == "cgroup":
            tree = f"cgroup v2 {self._root} (cgroup.kill)"
        else:
            tree = f"{MARKER} marker scanned in /proc (no usable cgroup v2)"
        if self.memory_bytes is None:
            memory = "no memory limit"
        elif self._memory_controller:
            memory = f"memory.max {self.memory_bytes // 2**20} MiB per task"
        else:
            memory = f"RLIMIT_DATA {self.memory_bytes // 2**20} MiB per task process"
        return f"task processes tracked by {tree}; {memory}"

    def setup(self) -> None:
        """Find a cgroup v2 hierarchy we may write; without one, use the marker."""
        if not self._want_cgroups:
            return
        base = _own_cgroup()
        if base is None:
            return
        _remove_stale(base)
        try:
            root = base / f"p2pq-{self._tag}"
            root.mkdir()
        except OSError as exc:
            log.debug("no cgroup for tasks (%s): %s", base, exc)
            return
        self._root = root
        self._memory_controller = self.memory_bytes is not None and _enable_memory(base, root)

    def scope(self, name: str) -> Scope:
        marker = f"{self._tag}-{name}"
        if self._root is None:
            return Scope(marker, None, self.memory_bytes)
        group = self._root / name
        group.mkdir(exist_ok=True)
        self._groups.append(group)
        if self._memory_controller:
            assert self.memory_bytes is not None
            (group / "memory.max").write_text(str(self.memory_bytes))
            for knob, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                with suppress(OSError):  # no swap accounting: nothing to turn off
                    (group / knob).write_text(value)
            return Scope(marker, group, None)
        return Scope(marker, group, self.memory_bytes)

    def close(self) -> None:
        """Remove our cgroups (they are empty once every process is reaped)."""
        for group in [*self._groups, *([self._root] if self._root else [])]:
            try:
                group.rmdir()
            except OSError as exc:
                log.warning("cannot remove cgroup %s: %s", group, exc)
        self._groups.clear()


def _own_cgroup() -> Path | None:
    """This process's cgroup in the cgroup v2 hierarchy, if one is mounted."""
    mount = None
    with suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                mount = fields[4]
                break
    if mount is None:
        return None
    with suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return Path(mount) / line[3:].strip().lstrip("/")
    return None


_GROUP_RE = re.compile(r"^p2pq-(\d+)-\d+$")


def _remove_stale(base: Path) -> None:
    """Remove the groups of nodes that died without closing (kill -9): kill what
    is left in them, then rmdir (a group still emptying is left for next time)."""
    with suppress(OSError):
        for root in base.iterdir():
            match = _GROUP_RE.match(root.name)
            if match is None or os.path.exists(f"/proc/{match.group(1)}"):
                continue
            for group in [p for p in root.iterdir() if p.is_dir()] + [root]:
                with suppress(OSError):
                    (group / "cgroup.kill").write_text("1")
                with suppress(OSError):
                    group.rmdir()


def _enable_memory(base: Path, root: Path) -> bool:
    """Turn the memory controller on for our groups; False where it is not ours to turn on."""
    try:
        if "memory" not in (base / "cgroup.controllers").read_text().split():
            return False
        if "memory" not in (base / "cgroup.subtree_control").read_text().split():
            # EBUSY unless `base` is the root or holds no process: then no limit by cgroup.
            (base / "cgroup.subtree_control").write_text("+memory")
        (root / "cgroup.subtree_control").write_text("+memory")
        return True
    except OSError as exc:
        log.debug("cgroup memory controller not available in %s: %s", base, exc)
        return False


async def wait_gone(pids: list[int], timeout_s: float = 5.0) -> None:
    """Wait for killed processes to vanish, reaping those re-parented to us.

    A zombie whose parent is not us waits too: its parent is a killed task
    process (it cannot reap any more) or the root asyncio reaps, and either
    way the zombie is re-parented to us, a subreaper, next.
    """
    me = os.getpid()
    pending = set(pids)
    deadline_s = time.monotonic() + timeout_s
    while pending:
        for pid in list(pending):
            state, ppid = _state(pid)
            if state is None:
                pending.discard(pid)
            elif state == "Z" and ppid == me:
                with suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        if not pending:
            return
        if time.monotonic() > deadline_s:
            log.warning("task processes still present after %.0f s: %s", timeout_s, sorted(pending))
            return
        await asyncio.sleep(0.01)


def _group_members(pgid: int) -> list[int]:
    """Every process (zombies too) in process group `pgid`, bar its leader."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != pgid:
            fields = _stat_fields(int(name))
            if fields is not None and int(fields[2]) == pgid:
                found.append(int(name))
    return found


def _state(pid: int) -> tuple[str | None, int]:
    fields = _stat_fields(pid)
    if fields is None:
        return None, 0
    return fields[0].decode(), int(fields[1])


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ...; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
