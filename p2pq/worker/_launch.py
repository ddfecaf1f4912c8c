"""Shell-task launcher, and the process-tree helpers the worker child shares.

Theory of operation. A shell task runs as

    python -I -S _launch.py PROCS DATA_BYTES STATUS_FD -- argv...

(PROCS: the cgroup.procs file to join, DATA_BYTES: the memory rlimit; "-"
for none.) This file imports only small parts of the standard library (not
json, re or signal's enums), so it starts in about 15 ms.
It is the task's root: it joins the task's cgroup (if the node has one),
makes itself a child subreaper (PR_SET_CHILD_SUBREAPER: whatever the
command orphans, even after setsid, is re-parented to it and not to init),
forks, sets the memory rlimit and execs the command in the child. While
the command runs it reaps adopted orphans; once the command exits it kills
every process still below it, reaps them, writes b"D" (done, nothing left)
on STATUS_FD and exits as the command did (same code, or the same signal).
A failed exec is written as b"E<errno>" instead, so the node can say
"command not found" without guessing from an exit code.

If the node SIGKILLs the launcher (timeout, cancel), whatever escaped its
process group is found and killed by the node (executor.py, confine.py).
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
import time

# _signal, not signal: the same functions and constants without the enum
# wrappers, whose import (enum, functools, collections) costs some 5 ms a task.
import _signal as signal

PR_SET_CHILD_SUBREAPER = 36
_KILL_ROUNDS_S = 5.0  # give up on a tree that will not die (a process stuck in D state)


def set_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process; False where Linux says no."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_memory_rlimit(limit_bytes: int | None) -> None:
    """Cap this process's data segment (heap and private writable mappings).

    RLIMIT_DATA, not RLIMIT_AS: address space that is only reserved (glibc's
    per-thread malloc arenas, PROT_NONE guard regions, a JIT's reservations)
    counts against AS but is no memory; DATA counts what can be written.
    """
    if limit_bytes is not None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def descendants(root_pid: int) -> list[int]:
    """Every live process below `root_pid`, from one pass over /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone while we looked
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root_pid]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def end_descendants() -> int:
    """Kill and reap every process below this one (a subreaper); how many were killed.

    Fast path: no child at all means nothing below us (orphans come to us).
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return 0
    killed: set[int] = set()
    deadline_s = time.monotonic() + _KILL_ROUNDS_S
    while time.monotonic() < deadline_s:
        # Repeat: a process may fork between our scan and its SIGKILL.
        for pid in descendants(os.getpid()):
            killed.add(pid)
            _kill(pid)
        if not _reap_all():
            return len(killed)
        time.sleep(0.005)
    return len(killed)


def _reap_all() -> bool:
    """Reap every exited child; True while some child is still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exec_command(argv: list[str], limit_bytes: int | None, errpipe: int) -> None:
    """In the forked child: restore what Python changed, cap memory, exec."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        set_memory_rlimit(limit_bytes)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(errpipe, str(exc.errno or 0).encode())
    finally:
        os._exit(127)


def _wait_for(command_pid: int) -> int:
    """Wait for the command, reaping adopted orphans meanwhile; its wait status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == command_pid:
            return status


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal that does not kill: exit as a shell would
    os._exit(os.waitstatus_to_exitcode(status))


def main() -> None:
    procs, data_bytes, status_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    argv = sys.argv[5:]  # sys.argv[4] is "--"
    if procs != "-":
        with open(procs, "w") as f:  # join the task's cgroup before any fork
            f.write(str(os.getpid()))
    set_subreaper()
    errpipe_r, errpipe_w = os.pipe()  # close-on-exec: EOF means the exec worked
    command_pid = os.fork()
    if command_pid == 0:
        os.close(errpipe_r)
        os.close(status_fd)
        _exec_command(argv, None if data_bytes == "-" else int(data_bytes), errpipe_w)
    os.close(errpipe_w)
    with os.fdopen(errpipe_r, "rb") as errpipe:
        exec_errno = errpipe.read()
    status = _wait_for(command_pid)
    end_descendants()
    os.write(status_fd, b"E" + exec_errno if exec_errno else b"D")
    _exit_like(status)


if __name__ == "__main__":
    main()
