"""Shell tasks: run argv directly (no shell) as a process group of its own.

The command runs under the launcher (_launch.py), a small Python process
that joins the task's cgroup, caps its memory and, as child subreaper,
kills whatever the command left behind once it exits. start_new_session=True
makes the launcher a process-group leader, so one killpg reaches it and
the command; on a timeout or cancel, what escaped the group (setsid) is
killed through the task's scope (confine.py). Output is captured through
pipes, keeping only the tail (the end of a log says why it failed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import suppress
from typing import Callable

from p2pq.worker import _launch
from p2pq.worker.confine import Scope
from p2pq.worker.outcome import Outcome, exit_text
from p2pq.worker.spec import Shell

__all__ = ["Tail", "run_shell", "tail_text"]

# After the command exits, how long its pipes may stay open. Only a helper
# that escaped the group (setsid) can hold them this long.
_PIPE_GRACE_S = 1.0


class Tail:
    """Keeps the last `cap_bytes` of a stream: the end of a log says why it failed."""

    def __init__(self, cap_bytes: int) -> None:
        self._cap = cap_bytes
        self._buf = bytearray()
        self._dropped = 0

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        excess = len(self._buf) - self._cap
        if excess > 0:
            del self._buf[:excess]
            self._dropped += excess

    def text(self) -> str:
        text = self._buf.decode("utf-8", errors="replace")
        if self._dropped:
            return f"[... {self._dropped} bytes truncated ...]\n{text}"
        return text


def tail_text(text: str, cap_bytes: int) -> str:
    tail = Tail(cap_bytes)
    tail.feed(text.encode("utf-8", errors="replace"))
    return tail.text()


class _ShellProtocol(asyncio.SubprocessProtocol):
    """Feeds the pipes into tails and signals exit and pipe closure apart.

    Process.wait() is no use here: in 3.11 it also waits for the pipes to
    close, which a helper left running in the background can delay forever.
    """

    def __init__(self, stdout: Tail, stderr: Tail) -> None:
        loop = asyncio.get_running_loop()
        self._tails = {1: stdout, 2: stderr}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._tails[fd].feed(data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():  # exited and every pipe closed
            self.closed.set_result(None)


async def run_shell(shell: Shell, stdout: Tail, stderr: Tail, scope: Scope,
                    reap: Callable[[list[int]], None]) -> Outcome:
    """Run the command to completion in `scope`; output goes into the given tails
    (the caller keeps them, to report partial output after a timeout).
    Processes killed after the launcher are handed to `reap`."""
    if shell.cwd is not None and not os.path.isdir(shell.cwd):
        return Outcome("failed", error=f"working directory not found: {shell.cwd}")
    status_r, status_w = os.pipe()
    status = _StatusPipe(status_r, status_w)
    try:
        return await _run(shell, stdout, stderr, scope, reap, status)
    finally:
        status.close()


class _StatusPipe:
    """The pipe the launcher reports on; each end closed exactly once
    (a second close could hit a descriptor another task has just opened)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd: int | None = read_fd
        self.write_fd: int | None = write_fd

    def close_write(self) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def read(self) -> bytes:
        """What the launcher said (b"D" done, b"E<errno>" exec failed, b"" killed)."""
        assert self.read_fd is not None
        os.set_blocking(self.read_fd, False)
        try:
            return os.read(self.read_fd, 64)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        self.close_write()
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None


async def _run(shell: Shell, stdout: Tail, stderr: Tail, scope: Scope,
               reap: Callable[[list[int]], None], status: _StatusPipe) -> Outcome:
    assert status.write_fd is not None
    env = {**os.environ, **(shell.env or {}), **scope.env}
    argv = [sys.executable, "-I", "-S", _launch.__file__, scope.procs_path or "-",
            "-" if scope.rlimit_bytes is None else str(scope.rlimit_bytes), str(status.write_fd),
            "--", *shell.argv]
    start = asyncio.ensure_future(asyncio.get_running_loop().subprocess_exec(
        lambda: _ShellProtocol(stdout, stderr), *argv,
        cwd=shell.cwd, env=env, stdin=subprocess.DEVNULL, pass_fds=(status.write_fd,),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    ))
    try:
        # Shielded: a cancel that lands while the process starts must still find it
        # (and its group) to kill, and keep what it already wrote.
        transport, protocol = await asyncio.shield(start)
    except OSError as exc:
        return Outcome("failed", error=_start_error(shell, exc))
    except asyncio.CancelledError:
        try:
            transport, protocol = await start
        except OSError:
            raise asyncio.CancelledError from None
        status.close_write()
        await _stop(transport, protocol, scope, reap, clean=False)
        raise
    status.close_write()  # the launcher holds its copy
    clean = False
    try:
        await asyncio.shield(protocol.exited)  # shield: keep it awaitable below
        said = status.read()
        # "D": the launcher killed and reaped all the command left; "E": it never ran.
        clean = said == b"D" or said.startswith(b"E")
        if said.startswith(b"E"):
            code = int(said[1:] or 0)
            return Outcome("failed", error=_start_error(shell, OSError(code, os.strerror(code))))
        # Helpers it left running would hold the pipes open (and the slot).
        _kill_group(transport.get_pid())
        await asyncio.wait([protocol.closed], timeout=_PIPE_GRACE_S)
    finally:
        # On timeout or cancel, this is the kill.
        await _stop(transport, protocol, scope, reap, clean=clean)
    returncode = transport.get_returncode()
    assert returncode is not None
    return Outcome(
        "succeeded" if returncode == 0 else "failed",
        error=None if returncode == 0 else exit_text(returncode),
        exit_code=returncode, stdout=stdout.text(), stderr=stderr.text(),
    )


async def _stop(transport: asyncio.SubprocessTransport, protocol: _ShellProtocol,
                scope: Scope, reap: Callable[[list[int]], None], *, clean: bool) -> None:
    """Kill the process group and the rest of the scope (unless the launcher left
    it `clean`), then wait (briefly) for the exit and the pipes' end.

    SIGKILL is prompt; waiting lets run() report a dead process, and reading
    the pipes to their end keeps the output written before the kill.
    """
    _kill_group(transport.get_pid())
    if not clean:
        reap(scope.kill_all(root=transport.get_pid()))
    try:
        await asyncio.wait([protocol.exited, protocol.closed], timeout=_PIPE_GRACE_S)
    finally:
        transport.close()


def _start_error(shell: Shell, exc: OSError) -> str:
    command = shell.argv[0]
    if shell.cwd is not None and exc.filename == shell.cwd:
        return f"working directory not usable: {shell.cwd} ({exc.strerror})"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {command}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {command}"
    return f"cannot run {command}: {exc.strerror or exc}"


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
