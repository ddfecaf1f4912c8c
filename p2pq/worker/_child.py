"""Worker child process: runs builtin and Python tasks for one Executor slot.

Theory of operation. The executor starts this module as a separate Python
process whose stdin and stdout are pipes to the node. Both directions carry
frames: a 4-byte big-endian length, then a pickle. The child first sends
("ready", pid), then loops:

    request  (target "module:qualname", args, kwargs)
    reply    ("ok", json_text, stdout, stderr)
           | ("error", one_line, stdout, stderr_and_traceback)

one task at a time. The reply carries the result as JSON text, so only
JSON-able results leave the child, and the parent sees exactly what a
client will. Timeouts and cancellation are the parent's job: it SIGKILLs
this process group and starts a fresh child, so nothing here has to be
interruptible. Task code that prints cannot corrupt the frames: the pipes
move to private descriptors. What a task prints (fds 1 and 2, so its
subprocesses' output too) goes to two files of its own and comes back in
the reply, its last ``output_cap_bytes`` each: the task's result shows it,
not the node's log. A failed task's traceback starts at the task's own code:
the worker's frames (this module's) are left out.

Limits. argv[2] is a JSON config from the executor: {"data_bytes": N}
sets RLIMIT_DATA on this process (where no cgroup bounds the task), so an
allocation past it raises MemoryError here; "output_cap_bytes" bounds what
of each stream is kept. The child is a child
subreaper: whatever a task starts, even after setsid, stays below it, and
after every task it kills and reaps all of it before replying.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from p2pq.worker._launch import descendants, end_descendants, set_memory_rlimit, set_subreaper

HEADER = struct.Struct(">I")
_MAX_ERROR_CHARS = 1000
_ORPHAN_POLL_S = 1.0
_OURS = str(Path(__file__).resolve())  # this machinery: its frames are not the task's


def encode_frame(obj: Any) -> bytes:
    """Length-prefixed pickle, ready for one write()."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def one_line(exc: BaseException) -> str:
    """'ValueError: message' on a single line, bounded in length."""
    text = " ".join(str(exc).split("\n")).strip()
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line[:_MAX_ERROR_CHARS]


class _NotJsonable(TypeError):
    pass


class _LoadError(Exception):
    """The target could not be imported; `line` is the finished error line."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def _reject(obj: Any) -> Any:
    raise _NotJsonable(type(obj).__qualname__)


def result_to_json(value: Any) -> str:
    """JSON text of a task's result, or ValueError naming what is not JSON-able."""
    try:
        return json.dumps(value, default=_reject)
    except _NotJsonable as exc:
        raise ValueError(f"result is not JSON-serialisable: {exc}") from None
    except (TypeError, ValueError) as exc:  # circular, huge int, bad dict key
        raise ValueError(f"result is not JSON-serialisable: {exc}") from None


def _source_mtime(module: Any) -> float | None:
    try:
        return os.stat(module.__file__).st_mtime_ns
    except (AttributeError, TypeError, OSError):
        return None  # a built-in or namespace module, or its file is gone


def _resolve(target: str, cache: dict[str, Any]) -> Callable[..., Any]:
    """Import 'pkg.mod:attr.path' once; later calls hit the cache, unless the module's file
    changed since: then it is reloaded, so code edited on disk runs without restarting the
    node (the modules it imports itself are not reloaded)."""
    cached = cache.get(target)
    if cached is not None:
        fn, module, mtime = cached
        if _source_mtime(module) == mtime:
            return fn
        try:
            importlib.reload(module)
        except Exception as exc:  # a broken edit: every task of it fails until the file is fixed
            detail = one_line(exc).partition(": ")[2]
            raise _LoadError(f"{type(exc).__name__}: cannot reload {target!r}: {detail}") from exc
        del cache[target]
    module_name, _, qualname = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        # Keep the original type first: "ModuleNotFoundError: cannot load ...".
        detail = one_line(exc).partition(": ")[2]
        line = f"{type(exc).__name__}: cannot load {target!r}"
        raise _LoadError(f"{line}: {detail}" if detail else line) from exc
    if not callable(obj):
        raise _LoadError(f"TypeError: {target!r} is not callable "
                         f"(it is a {type(obj).__name__})")
    cache[target] = (obj, module, _source_mtime(module))
    return obj


def user_traceback(exc: BaseException) -> str:
    """The traceback from the task's own code on: the worker's and the import machinery's frames left out."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not (str(Path(f.filename).resolve()) == _OURS or f.filename.startswith("<frozen importlib"))]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    return "".join(lines + traceback.format_exception_only(type(exc), exc))


def handle(request: tuple, cache: dict[str, Any]) -> tuple:
    """Run one request: ("ok", json_text) or ("error", one_line, traceback_text)."""
    target, args, kwargs, *rest = request
    path = rest[0] if rest else None
    if path and path not in sys.path:  # the task's own directory (a script's), searched first
        sys.path.insert(0, path)
    try:
        value = _resolve(target, cache)(*args, **kwargs)
        return ("ok", result_to_json(value))
    except _LoadError as exc:  # why the import failed (a SyntaxError in their module, say)
        return ("error", exc.line, user_traceback(exc.__cause__) if exc.__cause__ else "")
    # BaseException: a task calling sys.exit() fails; it must not end the child.
    except BaseException as exc:  # noqa: BLE001
        return ("error", one_line(exc), user_traceback(exc))


class Capture:
    """Fds 1 and 2 of a task go to files of their own; `output` returns their tails and restores them."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap = cap_bytes
        self._saved = (os.dup(1), os.dup(2))  # where they point between tasks (the node's stderr)
        self._files = (tempfile.TemporaryFile(), tempfile.TemporaryFile())  # emptied for each task

    def start(self) -> None:
        for fd, file in zip((1, 2), self._files):
            os.ftruncate(file.fileno(), 0)
            file.seek(0)
            os.dup2(file.fileno(), fd)

    def output(self) -> tuple[str, str]:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
        return self._tail(self._files[0]), self._tail(self._files[1])

    def _tail(self, file) -> str:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - self.cap))
        text = file.read().decode("utf-8", errors="replace")
        dropped = max(0, size - self.cap)
        return f"[... {dropped} bytes truncated ...]\n{text}" if dropped else text


def run_captured(request: tuple, cache: dict[str, Any], capture: Capture) -> tuple:
    """One request with its output captured: the reply frame of the module docstring."""
    capture.start()
    try:
        reply = handle(request, cache)
    finally:
        end_descendants()  # a task's processes end with it (so nothing writes to its files after)
        stdout, stderr = capture.output()
    if reply[0] == "ok":
        return ("ok", reply[1], stdout, stderr)
    return ("error", reply[1], stdout, stderr + reply[2])


def _read_frame(rfile: BinaryIO) -> Any | None:
    header = rfile.read(HEADER.size)
    if len(header) < HEADER.size:
        return None  # the parent closed the pipe: time to go
    (size,) = HEADER.unpack(header)
    body = rfile.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _claim_stdio() -> tuple[int, int]:
    """Move the protocol pipes off fds 0/1 so task code cannot touch them."""
    proto_in, proto_out = os.dup(0), os.dup(1)  # dup()s are not inheritable
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # between tasks (a stray thread's print) output lands in the node's stderr
    return proto_in, proto_out


def _watch_for_orphaning(parent_pid: int) -> None:
    """Die with the node: without it a killed node would leave busy children."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_ORPHAN_POLL_S)
        for pid in descendants(os.getpid()):  # tasks' children, even those in new sessions
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if os.getpgid(0) == os.getpid():  # we lead our group: take tasks' children too
            os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="p2pq-orphan-watch", daemon=True).start()


def main() -> None:
    """Serve requests on the inherited pipes until the parent closes them."""
    import p2pq.worker.builtins  # noqa: F401  (warm the import before the first task)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node decides when we stop
    config = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    set_memory_rlimit(config.get("data_bytes"))
    set_subreaper()
    parent_pid = os.getppid()
    proto_in, proto_out = _claim_stdio()
    _watch_for_orphaning(parent_pid)
    rfile = os.fdopen(proto_in, "rb")
    cache: dict[str, Any] = {}  # target -> (callable, its module, the module file's mtime)
    capture = Capture(int(config.get("output_cap_bytes", 64 * 1024)))
    _write_all(proto_out, encode_frame(("ready", os.getpid())))
    try:
        while (request := _read_frame(rfile)) is not None:
            _write_all(proto_out, encode_frame(run_captured(request, cache, capture)))
    except BrokenPipeError:
        pass  # the node went away mid-reply; nobody is left to tell
    sys.exit(0)


if __name__ == "__main__":
    main()
