"""A disk with a volatile write cache, as a FUSE file system, for power-cut tests.

    python -m p2pq.testing.powercut serve BACKING MOUNT    # the file system (foreground)
    python -m p2pq.testing.powercut cut MOUNT              # the power goes off, and comes back

Theory of operation
- The mount shows the *current* state: what programs have written. The
  backing directory holds the *durable* state: what the disk would still hold
  after a power cut. Every change lands in the current state only; a power
  cut throws the current state away and rebuilds it from the durable one.
- The state is a tree of inodes (files and directories), as on a real disk.
  What becomes durable, and when, follows POSIX and no more:
  - `fsync`/`fdatasync` of a file makes its content, size and mode durable
    (both are the same here). Not its name: a created or renamed file's
    directory entry is durable only once that directory is fsynced.
  - `fsync` of a directory (open it O_RDONLY and fsync the fd) makes its
    entries durable, as they are at that moment: creates, renames into it,
    unlinks from it. A file whose entry became durable but whose content
    never was synced comes back empty after a cut.
  - Everything else (write, truncate, create, mkdir, rename, unlink, chmod)
    is cached. An unsynced write to a file that was synced before reverts to
    the synced content; an unsynced rename comes back under its old name.
- The cut is atomic for the whole mount: the file system serves one request
  at a time (libfuse single-threaded), and the cut is one of them. It is
  asked for by writing `cut` to the control file MOUNT/.powercut (the write
  returns once the cut is done); reading that file gives counters as JSON.
  The kernel caches nothing that could outlive a cut: direct I/O, and zero
  timeouts for names and attributes.
- Durable content lives in BACKING/data/<inode>, the durable tree in
  BACKING/tree.json. Dirty file content is kept in memory as 4 KiB pages
  over the durable file. Restarting `serve` on the same BACKING is a power
  cycle too: it starts from the durable state.
- File locks are the kernel's (no lock operation is implemented, so FUSE
  keeps POSIX and flock locks local), which is what SQLite needs on one host.

Not modelled: torn or reordered writes inside the cache (a real disk may keep
any subset of its unsynced sectors; here all are lost together), hard links,
symlinks, xattrs.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = 4096
CONTROL = ".powercut"  # at the root of the mount; never listed
ROOT = 1
_CONTROL_FH = 1  # file handles of normal files start above it


def unavailable_reason() -> str | None:
    """Why the power-cut file system cannot run here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (FUSE)"
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return "needs root (mounting a FUSE file system)"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse (FUSE is not available in this kernel or container)"
    try:
        import mfusepy  # noqa: F401 -- loads libfuse3 at import
    except (ImportError, OSError, EnvironmentError) as exc:
        return f"cannot load mfusepy over libfuse3 ({exc}; pip install mfusepy, apt-get install fuse3 libfuse3-3)"
    return None


# -- the model --------------------------------------------------------------------------
@dataclass
class Inode:
    ino: int
    is_dir: bool
    mode: int
    size: int = 0                                             # current size (files)
    clip: int = 0        # durable bytes at or past this read as zeros (a shrink since the last sync)
    pages: dict[int, bytearray] = field(default_factory=dict)  # dirty pages, PAGE bytes each
    entries: dict[str, int] = field(default_factory=dict)      # current entries (directories)
    links: int = 0                                             # current names
    opens: int = 0                                             # open handles
    mtime_ns: int = field(default_factory=time.time_ns)


class DiskModel:
    """The current and durable states of a tree of files; no FUSE in here."""

    def __init__(self, backing: Path) -> None:
        self.backing = Path(backing).absolute()  # libfuse chdirs to / once mounted
        self.data_dir = self.backing / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.durable_entries: dict[int, dict[str, int]] = {ROOT: {}}
        self.durable_meta: dict[int, dict[str, Any]] = {ROOT: {"dir": True, "mode": stat.S_IFDIR | 0o755}}
        self.inodes: dict[int, Inode] = {}
        self._fds: dict[int, int] = {}          # inode -> open fd of its durable file
        self.handles: dict[int, int] = {}       # file handle -> inode
        self.next_fh = _CONTROL_FH + 1
        self.counters = {"cuts": 0, "fsyncs": 0, "fsyncdirs": 0, "writes": 0, "bytes_written": 0}
        self._load()
        self.next_ino = max([*self.durable_meta, *self._data_inodes(), ROOT]) + 1

    # -- durable state: load, save, rebuild -----------------------------------------------
    def _load(self) -> None:
        tree = self.backing / "tree.json"
        if tree.exists():
            saved = json.loads(tree.read_text())
            self.durable_meta = {int(k): v for k, v in saved["meta"].items()}
            self.durable_entries = {int(k): {n: int(i) for n, i in v.items()}
                                    for k, v in saved["entries"].items()}
        self._rebuild()

    def _save_tree(self) -> None:
        tree = self.backing / "tree.json"
        tmp = tree.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": self.durable_meta, "entries": self.durable_entries}))
        os.replace(tmp, tree)

    def _data_inodes(self) -> list[int]:
        return [int(p.name) for p in self.data_dir.iterdir() if p.name.isdigit()]

    def _reachable(self) -> set[int]:
        seen, todo = {ROOT}, [ROOT]
        while todo:
            for child in self.durable_entries.get(todo.pop(), {}).values():
                if child not in seen and child in self.durable_meta:
                    seen.add(child)
                    if self.durable_meta[child]["dir"]:
                        todo.append(child)
        return seen

    def _rebuild(self) -> None:
        """Current state := durable state; what no durable name reaches is deleted."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        live = self._reachable()
        self.durable_meta = {i: m for i, m in self.durable_meta.items() if i in live}
        self.durable_entries = {i: {n: c for n, c in e.items() if c in live}
                                for i, e in self.durable_entries.items() if i in live}
        for ino in self._data_inodes():
            if ino not in live:
                os.unlink(self.data_dir / str(ino))
        self.inodes = {}
        for ino, meta in self.durable_meta.items():
            node = Inode(ino, meta["dir"], meta["mode"])
            if node.is_dir:
                node.entries = dict(self.durable_entries.setdefault(ino, {}))
            else:
                node.size = node.clip = self._durable_size(ino)
            self.inodes[ino] = node
        for node in list(self.inodes.values()):
            for child in node.entries.values():
                self.inodes[child].links += 1
        self._save_tree()

    def _durable_size(self, ino: int) -> int:
        try:
            return (self.data_dir / str(ino)).stat().st_size
        except FileNotFoundError:
            return 0

    def _fd(self, ino: int) -> int:
        if ino not in self._fds:
            self._fds[ino] = os.open(self.data_dir / str(ino), os.O_RDWR | os.O_CREAT, 0o600)
        return self._fds[ino]

    def cut(self) -> None:
        """The power cut: every change not made durable is gone, on every file at once."""
        self.handles.clear()  # the processes that held them are dead (or will get ESTALE)
        self._rebuild()
        self.counters["cuts"] += 1

    # -- names ------------------------------------------------------------------------------
    def lookup(self, path: str) -> Inode:
        node = self.inodes[ROOT]
        for part in [p for p in path.split("/") if p]:
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            child = node.entries.get(part)
            if child is None:
                raise OSError(errno.ENOENT, path)
            node = self.inodes[child]
        return node

    def _parent(self, path: str) -> tuple[Inode, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.lookup(head or "/")
        if not parent.is_dir:
            raise OSError(errno.ENOTDIR, path)
        if not name or name == CONTROL and parent.ino == ROOT:
            raise OSError(errno.EPERM, path)
        return parent, name

    def make(self, path: str, mode: int, is_dir: bool) -> Inode:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise OSError(errno.EEXIST, path)
        node = Inode(self.next_ino, is_dir, mode | (stat.S_IFDIR if is_dir else stat.S_IFREG))
        self.next_ino += 1
        self.inodes[node.ino] = node
        self._link(parent, name, node)
        return node

    def _link(self, parent: Inode, name: str, node: Inode) -> None:
        parent.entries[name] = node.ino
        parent.mtime_ns = time.time_ns()
        node.links += 1

    def _unlink_name(self, parent: Inode, name: str) -> None:
        node = self.inodes[parent.entries.pop(name)]
        parent.mtime_ns = time.time_ns()
        node.links -= 1
        self._maybe_drop(node)

    def _maybe_drop(self, node: Inode) -> None:
        """An inode no name or handle reaches: its cached state can never be seen again."""
        if node.links == 0 and node.opens == 0 and node.ino != ROOT:
            self.inodes.pop(node.ino, None)
            fd = self._fds.pop(node.ino, None)
            if fd is not None:
                os.close(fd)

    def unlink(self, path: str) -> None:
        parent, name = self._parent(path)
        node = self.lookup(path)
        if node.is_dir:
            raise OSError(errno.EISDIR, path)
        self._unlink_name(parent, name)

    def rmdir(self, path: str) -> None:
        parent, name = self._parent(path)
        node = self.lookup(path)
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, path)
        if node.entries:
            raise OSError(errno.ENOTEMPTY, path)
        self._unlink_name(parent, name)

    def rename(self, old: str, new: str) -> None:
        """rename(2): atomic in the current state; durable per directory, when each is fsynced."""
        src_parent, src_name = self._parent(old)
        node = self.lookup(old)
        dst_parent, dst_name = self._parent(new)
        target = dst_parent.entries.get(dst_name)
        if target == node.ino:
            return
        if target is not None:
            existing = self.inodes[target]
            if existing.is_dir and (not node.is_dir or existing.entries):
                raise OSError(errno.EISDIR if not node.is_dir else errno.ENOTEMPTY, new)
            if node.is_dir and not existing.is_dir:
                raise OSError(errno.ENOTDIR, new)
        if node.is_dir and self._inside(dst_parent, node):
            raise OSError(errno.EINVAL, new)
        src_parent.entries.pop(src_name)
        node.links -= 1
        if target is not None:
            self._unlink_name(dst_parent, dst_name)
        self._link(dst_parent, dst_name, node)

    def _inside(self, directory: Inode, ancestor: Inode) -> bool:
        """Whether `directory` is `ancestor` or below it (a directory cannot move into itself)."""
        todo = [ancestor]
        while todo:
            current = todo.pop()
            if current.ino == directory.ino:
                return True
            todo += [self.inodes[c] for c in current.entries.values() if self.inodes[c].is_dir]
        return False

    # -- handles ----------------------------------------------------------------------------
    def open(self, node: Inode) -> int:
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.handles[fh] = node.ino
        node.opens += 1
        return fh

    def by_handle(self, fh: int) -> Inode:
        ino = self.handles.get(fh)
        if ino is None or ino not in self.inodes:
            raise OSError(errno.ESTALE, "a handle from before the power cut")
        return self.inodes[ino]

    def release(self, fh: int) -> None:
        ino = self.handles.pop(fh, None)
        node = self.inodes.get(ino) if ino is not None else None
        if node is not None:
            node.opens -= 1
            self._maybe_drop(node)

    # -- content ----------------------------------------------------------------------------
    def _page(self, node: Inode, index: int) -> bytes:
        """One page of the current content: dirty, else durable up to `clip`, else zeros."""
        if index in node.pages:
            return node.pages[index]
        start = index * PAGE
        if start >= node.clip:
            return bytes(PAGE)
        data = os.pread(self._fd(node.ino), min(PAGE, node.clip - start), start)
        return data + bytes(PAGE - len(data))

    def read(self, node: Inode, size: int, offset: int) -> bytes:
        end = min(offset + size, node.size)
        if end <= offset:
            return b""
        first, last = offset // PAGE, (end - 1) // PAGE
        data = b"".join(self._page(node, i) for i in range(first, last + 1))
        return data[offset - first * PAGE:end - first * PAGE]

    def write(self, node: Inode, data: bytes, offset: int) -> int:
        done = 0
        while done < len(data):
            index, at = divmod(offset + done, PAGE)
            chunk = data[done:done + PAGE - at]
            page = node.pages.get(index)
            if page is None:
                page = bytearray(PAGE) if len(chunk) == PAGE else bytearray(self._page(node, index))
                node.pages[index] = page
            page[at:at + len(chunk)] = chunk
            done += len(chunk)
        node.size = max(node.size, offset + len(data))
        node.mtime_ns = time.time_ns()
        self.counters["writes"] += 1
        self.counters["bytes_written"] += len(data)
        return len(data)

    def truncate(self, node: Inode, length: int) -> None:
        if node.is_dir:
            raise OSError(errno.EISDIR, "truncate of a directory")
        if length < node.size:
            node.pages = {i: p for i, p in node.pages.items() if i * PAGE < length}
            index, at = divmod(length, PAGE)
            if at and index in node.pages:
                node.pages[index][at:] = bytes(PAGE - at)  # a later regrow reads zeros
            node.clip = min(node.clip, length)
        node.size = length
        node.mtime_ns = time.time_ns()

    # -- durability -------------------------------------------------------------------------
    def fsync(self, node: Inode) -> None:
        """The file's content, size and mode become durable (its name does not)."""
        self.counters["fsyncs"] += 1
        if node.is_dir:
            self.fsyncdir(node)
            return
        fd = self._fd(node.ino)
        if node.clip < os.fstat(fd).st_size:
            os.ftruncate(fd, node.clip)  # what a shrink cut off stays cut off, even if regrown
        for index, page in sorted(node.pages.items()):
            os.pwrite(fd, bytes(page[:max(0, min(PAGE, node.size - index * PAGE))]), index * PAGE)
        os.ftruncate(fd, node.size)
        node.pages.clear()
        node.clip = node.size
        meta = {"dir": False, "mode": node.mode}
        if self.durable_meta.get(node.ino) != meta:
            self.durable_meta[node.ino] = meta
            self._save_tree()

    def fsyncdir(self, node: Inode) -> None:
        """The directory's entries become durable as they are now (not its files' content)."""
        self.counters["fsyncdirs"] += 1
        self.durable_entries[node.ino] = dict(node.entries)
        self.durable_meta.setdefault(node.ino, {"dir": True, "mode": node.mode})
        for child in node.entries.values():
            kid = self.inodes[child]
            self.durable_meta.setdefault(child, {"dir": kid.is_dir, "mode": kid.mode})
            if kid.is_dir:
                self.durable_entries.setdefault(child, {})
        self._save_tree()

    def attributes(self, node: Inode) -> dict[str, Any]:
        size = node.size if not node.is_dir else PAGE
        return {"st_mode": node.mode, "st_ino": node.ino, "st_size": size,
                "st_nlink": max(node.links, 1) + (1 if node.is_dir else 0),
                "st_uid": os.getuid(), "st_gid": os.getgid(), "st_blksize": PAGE,
                "st_blocks": (size + 511) // 512,
                "st_atime": node.mtime_ns, "st_mtime": node.mtime_ns, "st_ctime": node.mtime_ns}

    def report(self) -> bytes:
        dirty = sum(len(n.pages) for n in self.inodes.values())
        return (json.dumps({**self.counters, "dirty_pages": dirty, "inodes": len(self.inodes)}) + "\n").encode()


# -- the FUSE side ------------------------------------------------------------------------
def _operations(model: DiskModel):
    """An mfusepy Operations over `model` (made here: mfusepy loads libfuse3 on import)."""
    import mfusepy
    class PowercutFS(mfusepy.Operations):
        """OSError(errno) raised by the model reaches the caller as that errno (mfusepy's wrapper)."""

        use_ns = True

        def _node(self, path: str | None, fh: int | None) -> Inode:
            if fh:
                return model.by_handle(fh)
            return model.lookup(path)

        @staticmethod
        def _control(path: str | None) -> bool:
            return path == "/" + CONTROL

        def init_with_config(self, conn_info, config) -> None:
            if config is not None:  # nothing the kernel caches may outlive a cut
                config.entry_timeout = config.attr_timeout = config.negative_timeout = 0.0
                config.direct_io = config.hard_remove = config.use_ino = 1
                config.kernel_cache = config.auto_cache = 0

        def getattr(self, path, fh=None):
            if fh == _CONTROL_FH or (self._control(path) and not fh):
                return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": len(model.report())}
            return model.attributes(self._node(path, fh))

        def readdir(self, path, fh):
            node = self._node(path, fh)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            # use_ino: every entry needs its inode number (a zero one is skipped by readdir(3))
            entries = [(".", node.ino), ("..", ROOT), *node.entries.items()]
            return [(name, {"st_ino": ino, "st_mode": model.inodes[ino].mode}, 0) for name, ino in entries
                    if ino in model.inodes]

        def opendir(self, path):
            node = model.lookup(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            return model.open(node)

        def releasedir(self, path, fh):
            model.release(fh)
            return 0

        def fsyncdir(self, path, datasync, fh):
            model.fsyncdir(self._node(path, fh))
            return 0

        def mkdir(self, path, mode):
            model.make(path, mode & 0o7777, True)
            return 0

        def rmdir(self, path):
            model.rmdir(path)
            return 0

        def create(self, path, mode, flags=0):
            return model.open(model.make(path, mode & 0o7777, False))

        def open(self, path, flags):
            if self._control(path):
                return _CONTROL_FH
            node = model.lookup(path)
            if flags & os.O_TRUNC:
                model.truncate(node, 0)
            return model.open(node)

        def release(self, path, fh):
            if fh != _CONTROL_FH:
                model.release(fh)
            return 0

        def flush(self, path, fh):
            return 0

        def read(self, path, size, offset, fh):
            if fh == _CONTROL_FH:
                return model.report()[offset:offset + size]
            return model.read(model.by_handle(fh), size, offset)

        def write(self, path, data, offset, fh):
            if fh == _CONTROL_FH:
                if data.strip() != b"cut":
                    raise OSError(errno.EINVAL, "write `cut` to cut the power")
                model.cut()
                return len(data)
            return model.write(model.by_handle(fh), data, offset)

        def truncate(self, path, length, fh=None):
            if self._control(path) or fh == _CONTROL_FH:
                return 0
            model.truncate(self._node(path, fh), length)
            return 0

        def fallocate(self, path, mode, offset, size, fh):
            if mode:
                raise OSError(errno.EOPNOTSUPP, "only plain fallocate")
            node = model.by_handle(fh)
            if offset + size > node.size:
                model.truncate(node, offset + size)
            return 0

        def fsync(self, path, datasync, fh):
            if fh != _CONTROL_FH:
                model.fsync(model.by_handle(fh))
            return 0

        def unlink(self, path):
            model.unlink(path)
            return 0

        def rename(self, old, new):
            model.rename(old, new)
            return 0

        def chmod(self, path, mode, fh=None):
            node = self._node(path, fh)
            node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            return 0

        def chown(self, path, uid, gid, fh=None):
            return 0  # one user (root) on this disk

        def utimens(self, path, times=None, fh=None):
            node = self._node(path, fh)
            node.mtime_ns = times[1] if times else time.time_ns()
            return 0

        def access(self, path, amode):
            return 0

        def statfs(self, path):
            st = os.statvfs(model.backing)
            return {key: getattr(st, key) for key in
                    ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                     "f_favail", "f_namemax")}

    return PowercutFS()


def _fuse_class():
    import mfusepy

    class FUSE(mfusepy.FUSE):
        """mfusepy's FUSE, but ftruncate(fd) passes its handle (mfusepy 3.1 drops it for libfuse 3)."""

        def truncate_fuse_3(self, path, length, fip):
            fh = fip.contents.fh if fip else None
            return self.operations.truncate(None if path is None else path.decode(self.encoding, self.errors),
                                            length, fh)
    return FUSE


def serve(backing: Path, mount: Path) -> None:
    """Mount the file system at `mount` over `backing`, in the foreground, until unmounted."""
    model = DiskModel(backing)
    _fuse_class()(_operations(model), str(mount), foreground=True, nothreads=True,
                 fsname="p2pq-powercut", direct_io=True, hard_remove=True, use_ino=True,
                 entry_timeout=0, attr_timeout=0, negative_timeout=0)


# -- driving it from a test -----------------------------------------------------------------
def cut_power(mount: Path) -> None:
    """Cut the power of the disk mounted at `mount`; returns once only durable state is left."""
    fd = os.open(Path(mount) / CONTROL, os.O_WRONLY)
    try:
        os.write(fd, b"cut")
    finally:
        os.close(fd)


def counters(mount: Path) -> dict[str, int]:
    """The disk's counters: cuts, fsyncs, fsyncdirs, writes, bytes_written, dirty_pages, inodes."""
    return json.loads((Path(mount) / CONTROL).read_bytes())


@dataclass
class PowercutDisk:
    """One `serve` process: a disk at `mount` whose durable state is kept in `backing`."""

    backing: Path
    mount: Path
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    def __enter__(self) -> PowercutDisk:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout_s: float = 15.0) -> PowercutDisk:
        from .cluster import wait_for
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "p2pq.testing.powercut", "serve",
                                         str(self.backing.absolute()), str(self.mount.absolute())],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.log_path:
            log.close()

        def mounted() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the power-cut file system exited ({self.process.returncode})"
                                   + (f": {self.log_path.read_text()[-2000:]}" if self.log_path else ""))
            return os.path.ismount(self.mount)
        wait_for(mounted, timeout_s, f"the power-cut file system at {self.mount}")
        return self

    def cut(self) -> None:
        cut_power(self.mount)

    def counters(self) -> dict[str, int]:
        return counters(self.mount)

    def stop(self) -> None:
        """Unmount (lazily if something still holds a file) and wait for the process."""
        if self.process is None:
            return
        if os.path.ismount(self.mount):
            done = subprocess.run(["umount", str(self.mount)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "serve":
        serve(Path(args[1]), Path(args[2]))
        return 0
    if len(args) == 2 and args[0] == "cut":
        cut_power(Path(args[1]))
        return 0
    if len(args) == 2 and args[0] == "counters":
        print(json.dumps(counters(Path(args[1]))))
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


__all__ = ["DiskModel", "PowercutDisk", "cut_power", "counters", "serve", "unavailable_reason", "PAGE"]

if __name__ == "__main__":
    sys.exit(main())
