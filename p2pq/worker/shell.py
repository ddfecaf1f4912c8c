"""Shell tasks: run argv directly (no shell) as a process group of its own.

start_new_session=True makes the command a process-group leader, so one
killpg reaches it and everything it started: a timeout or cancel leaves
nothing behind. Output is captured through pipes, keeping only the tail
(the end of a log says why it failed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from contextlib import suppress

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


async def run_shell(shell: Shell, stdout: Tail, stderr: Tail) -> Outcome:
    """Run the command to completion; output goes into the given tails
    (the caller keeps them, to report partial output after a timeout)."""
    if shell.cwd is not None and not os.path.isdir(shell.cwd):
        return Outcome("failed", error=f"working directory not found: {shell.cwd}")
    env = None if shell.env is None else {**os.environ, **shell.env}
    start = asyncio.ensure_future(asyncio.get_running_loop().subprocess_exec(
        lambda: _ShellProtocol(stdout, stderr), *shell.argv,
        cwd=shell.cwd, env=env, stdin=subprocess.DEVNULL,
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
        await _stop(transport, protocol)
        raise
    try:
        await asyncio.shield(protocol.exited)  # shield: keep it awaitable below
        # Helpers it left running would hold the pipes open (and the slot).
        _kill_group(transport.get_pid())
        await asyncio.wait([protocol.closed], timeout=_PIPE_GRACE_S)
    finally:
        await _stop(transport, protocol)  # on timeout or cancel, this is the kill
    returncode = transport.get_returncode()
    assert returncode is not None
    return Outcome(
        "succeeded" if returncode == 0 else "failed",
        error=None if returncode == 0 else exit_text(returncode),
        exit_code=returncode, stdout=stdout.text(), stderr=stderr.text(),
    )


async def _stop(transport: asyncio.SubprocessTransport, protocol: _ShellProtocol) -> None:
    """Kill the process group, then wait (briefly) for the exit and the pipes' end.

    SIGKILL is prompt; waiting lets run() report a dead process, and reading
    the pipes to their end keeps the output written before the kill.
    """
    _kill_group(transport.get_pid())
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
