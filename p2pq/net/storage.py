"""A node's journal: what the core asks it to persist, in SQLite (WAL) in --data-dir.

Theory of operation
- The journal holds state, not a log: one row per task with its latest
  record (already the join of everything this node knew about the task), the
  highest term, the node's identity (id, priority), and the tombstones of
  pruned tasks (so a restarted node never takes a pruned task back). A restarted node loads
  it and hands it to the core. Records form a lattice, so an old row can only
  merge upward with what peers hold; nothing needs replaying.
- Every core step's PersistTerm/PersistRecords/ForgetRecords become one
  `Batch`, written in ONE transaction: that is the group commit.
- Durability (docs/durability.md): `memory` writes on a writer thread with
  synchronous=OFF, at most every MEMORY_FLUSH_S, and nobody waits. `written`
  commits with synchronous=NORMAL (survives kill -9, not a power cut) at
  once, on the caller's thread: such a commit only hands pages to the OS
  (tens of microseconds), less than a hand-off to a thread costs. `fsync`
  commits with synchronous=FULL (the WAL is fsynced) on the writer thread,
  so the event loop runs on during the flush; batches that queue up
  meanwhile share the next transaction and its flush.
- Rows are keyed by an integer in the order tasks were first written (the
  store keeps the task id -> key map in memory), so a transaction appends
  to, and updates, the last pages of the table instead of pages all over it
  (task ids are random).
- Corruption: every row carries a crc32 of its key and body, and the file is
  checked with PRAGMA quick_check at open. A journal that fails is never
  served: `open_store` reports it in one line, moves it aside and starts
  with no tasks (keeping the term and identity if those rows verify); the
  protocol then brings the cluster's tasks back from the peers.
- After a write fails the store refuses all later writes: the driver stops
  the node rather than acknowledge what it could not keep.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import msgpack

from p2pq.core.compaction import TOMBSTONES
from p2pq.core.events import ForgetRecords, PersistRecords, PersistTerm
from p2pq.core.messages import record_from_wire, record_to_wire
from p2pq.core.tasks import TaskRecord
from p2pq.core.types import ZERO_TERM, Term

from .framing import pack

log = logging.getLogger("p2pq.storage")

JOURNAL_FILE = "journal.db"
SCHEMA_VERSION = 2  # 2: records keyed by write order (1: by task id)
DURABILITIES = ("memory", "written", "fsync")
MEMORY_FLUSH_S = 0.02  # `memory` mode: the longest a change waits in this process before its commit
_SYNCHRONOUS = {"memory": "OFF", "written": "NORMAL", "fsync": "FULL"}
_CACHE_KIB = 64 * 1024  # SQLite's page cache: the whole table of a busy node, not the default 2 MiB
_RECORDS = """CREATE TABLE IF NOT EXISTS records (
    n INTEGER PRIMARY KEY, task_id TEXT NOT NULL, body BLOB NOT NULL, crc INTEGER NOT NULL)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, body BLOB NOT NULL, crc INTEGER NOT NULL);
{_RECORDS};
CREATE TABLE IF NOT EXISTS forgotten (n INTEGER PRIMARY KEY, task_id TEXT UNIQUE NOT NULL, crc INTEGER NOT NULL);
"""


class StorageError(Exception):
    """The journal cannot be used (in use, unwritable, newer format): one clear line for the user."""


class EncodingBug(StorageError):
    """A row that msgpack cannot encode: input validation let a bad value through."""


class CorruptJournal(Exception):
    """The journal failed a check; `salvaged` holds the meta rows that still verified."""

    def __init__(self, reason: str, salvaged: dict | None = None) -> None:
        super().__init__(reason)
        self.reason, self.salvaged = reason, salvaged or {}


@dataclass(slots=True)
class Restored:
    term: Term = ZERO_TERM
    records: list[TaskRecord] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)  # tombstones of pruned tasks, oldest first
    node_id: str | None = None
    priority: int | None = None


@dataclass(slots=True)
class Batch:
    """What one core step asked to persist; written in one transaction.

    Invariant: `records` and `forgotten` are disjoint, and the later command
    about a task wins (persist-then-forget deletes it, forget-then-persist keeps it).
    """

    term: Term | None = None
    records: dict[str, TaskRecord] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    identity: tuple[str, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.term is not None or self.records or self.forgotten or self.identity)

    def add_term(self, term: Term) -> None:
        self.term = term  # the core persists the highest term seen, only as it grows (G3)

    def add_records(self, records: Iterable[TaskRecord]) -> None:
        for record in records:
            self.records[record.task_id] = record
            self.forgotten.discard(record.task_id)

    def forget(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self.forgotten.add(task_id)
            self.records.pop(task_id, None)

    def absorb(self, later: Batch) -> None:
        """Fold a later batch into this one (the writer's cross-batch group commit)."""
        if later.term is not None:
            self.add_term(later.term)
        self.forget(later.forgotten)
        self.add_records(later.records.values())
        self.identity = later.identity or self.identity


def batch_of(durable: Iterable[Any]) -> Batch:
    """One journal batch of a core step's durable commands (`Step.durable`), in their order."""
    batch = Batch()
    for command in durable:
        if isinstance(command, PersistTerm):
            batch.add_term(command.term)
        elif isinstance(command, PersistRecords):
            batch.add_records(command.records)
        elif isinstance(command, ForgetRecords):
            batch.forget(command.task_ids)
        else:
            raise TypeError(f"the journal does not keep {type(command).__name__}: not a durable command")
    return batch


class Store(Protocol):
    path: Path
    durability: str
    corruption: str | None

    def load(self) -> Restored: ...
    def write(self, batch: Batch) -> concurrent.futures.Future: ...
    def save_term(self, term: Term) -> None: ...
    def save_records(self, records: Iterable[TaskRecord]) -> None: ...
    def forget(self, task_ids: Iterable[str]) -> None: ...
    def save_identity(self, node_id: str, priority: int) -> None: ...
    def close(self) -> None: ...


# -- rows ------------------------------------------------------------------------------
def _pack_row(key: str, value: Any) -> tuple[str, bytes, int]:
    try:
        body = pack(value)
        return key, body, zlib.crc32(body, zlib.crc32(key.encode()))
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        # The decoder (core/schema.py) admits only what encodes; this is its bug, not the disk's.
        raise EncodingBug(f"the row {key!r} cannot be encoded ({type(exc).__name__}: {exc})") from None


def _unpack_row(key: str, body: bytes, crc: int) -> Any:
    """The row's value; CorruptJournal if its checksum or encoding is wrong."""
    if not isinstance(body, bytes) or zlib.crc32(body, zlib.crc32(key.encode())) != crc:
        raise CorruptJournal(f"checksum mismatch in the row of {key!r}")
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except ValueError as exc:  # msgpack's errors derive from ValueError
        raise CorruptJournal(f"undecodable row {key!r}: {exc}") from None


def _decode_record(task_id: str, body: bytes, crc: int) -> TaskRecord:
    try:
        record = record_from_wire(_unpack_row(task_id, body, crc))
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise CorruptJournal(f"malformed record {task_id!r}: {exc}") from None
    if record.task_id != task_id:
        raise CorruptJournal(f"row {task_id!r} holds task {record.task_id!r}")
    return record


def _tombstone_row(task_id: str) -> tuple[str, int]:
    return task_id, zlib.crc32(task_id.encode())


def _check_tombstone(task_id: str, crc: int) -> str:
    if not isinstance(task_id, str) or zlib.crc32(task_id.encode()) != crc:
        raise CorruptJournal(f"checksum mismatch in the tombstone of {task_id!r}")
    return task_id


def _restored_from_meta(meta: dict) -> Restored:
    """Term and identity from verified meta rows (CorruptJournal if one has a wrong shape)."""
    checked = _checked_meta(meta)
    if {"term", "node_id", "priority"} & meta.keys() - checked.keys():
        raise CorruptJournal("malformed term or identity")
    term = checked.get("term")
    return Restored(term=Term(*term) if term else ZERO_TERM,
                    node_id=checked.get("node_id"), priority=checked.get("priority"))


def _classify(exc: sqlite3.Error, path: Path) -> Exception:
    """Corruption (the file is damaged) versus a problem the user must fix."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CorruptJournal(str(exc))
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageError(f"the journal {path} is in use by another process "
                            "(is another node running with this --data-dir?)")
    return StorageError(f"cannot use the journal {path}: {exc}")


def _connect(path: Path, durability: str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _classify(exc, path) from None
    try:
        # Exclusive: one node per data dir (a second one gets SQLITE_BUSY at once).
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
        db.execute(f"PRAGMA cache_size={-_CACHE_KIB}")
        fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None
        db.executescript(_SCHEMA)
        if fresh:
            db.execute("INSERT INTO meta VALUES (?, ?, ?)", _pack_row("schema", SCHEMA_VERSION))
        else:
            _upgrade(db)
    except sqlite3.Error as exc:
        db.close()
        raise _classify(exc, path) from None
    return db


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a schema-1 journal (records keyed by task id) to this one, in one transaction."""
    row = db.execute("SELECT key, body, crc FROM meta WHERE key = 'schema'").fetchone()
    try:
        if row is None or _unpack_row(*row) != 1:
            return  # current, or newer (refused when read)
    except CorruptJournal:
        return  # found and reported when the journal is read
    db.execute("BEGIN IMMEDIATE")
    db.execute("ALTER TABLE records RENAME TO records_v1")
    db.execute(_RECORDS)
    db.execute("INSERT INTO records (task_id, body, crc) SELECT task_id, body, crc FROM records_v1")
    db.execute("DROP TABLE records_v1")
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", _pack_row("schema", SCHEMA_VERSION))
    db.execute("COMMIT")
    log.info("upgraded the journal to schema %d", SCHEMA_VERSION)


# -- the store --------------------------------------------------------------------------
class SqliteStore:
    """The journal DIR/journal.db; reads at open, then commits batches in order."""

    def __init__(self, path: Path, durability: str) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"unknown durability {durability!r}: use one of {', '.join(DURABILITIES)}")
        self.path, self.durability = Path(path), durability
        self.corruption: str | None = None  # set by open_store when it replaced a bad journal
        self.failure: BaseException | None = None
        self.commits = self.batches = self.rows_written = 0  # group-commit accounting
        self.commit_s_total = self.commit_s_max = 0.0
        self._db = _connect(self.path, durability)
        try:
            self._restored: Restored | None = self._read()
        except BaseException:
            self._db.close()
            raise
        self._term = self._restored.term
        self._next_key = max(self._keys.values(), default=0) + 1
        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if durability != "written":  # `written` commits on the caller's thread
            self._thread = threading.Thread(target=self._write_loop, name="p2pq-journal", daemon=True)
            self._thread.start()

    @property
    def waits(self) -> bool:
        """Whether the driver must wait for a batch's commit before it sends anything of it."""
        return self.durability != "memory"

    def _read(self) -> Restored:
        """Everything the journal holds, verified; CorruptJournal if any of it is not intact."""
        try:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise CorruptJournal(f"quick_check: {problems[0]}")
            meta = {key: _unpack_row(key, body, crc)
                    for key, body, crc in self._db.execute("SELECT key, body, crc FROM meta")}
        except sqlite3.Error as exc:
            raise _classify(exc, self.path) from None
        if not isinstance(meta.get("schema"), int):
            raise CorruptJournal("no schema version")
        if meta["schema"] > SCHEMA_VERSION:
            raise StorageError(f"the journal {self.path} was written by a newer p2pq "
                               f"(schema {meta['schema']}, this one reads {SCHEMA_VERSION})")
        restored = _restored_from_meta(meta)
        self._keys: dict[str, int] = {}  # task id -> its row's key
        try:
            for n, task_id, body, crc in self._db.execute("SELECT n, task_id, body, crc FROM records ORDER BY n"):
                restored.records.append(_decode_record(task_id, body, crc))
                self._keys[task_id] = n
            restored.forgotten = [_check_tombstone(*row) for row in
                                  self._db.execute("SELECT task_id, crc FROM forgotten ORDER BY n")]
        except sqlite3.Error as exc:
            error = _classify(exc, self.path)
            if isinstance(error, CorruptJournal):
                error.salvaged = meta
            raise error from None
        except CorruptJournal as exc:
            exc.salvaged = meta
            raise
        return restored

    def load(self) -> Restored:
        """What the journal held at open (once: the records are then the core's)."""
        restored, self._restored = self._restored, Restored(self._term)
        return restored

    # -- writing ----------------------------------------------------------------------
    def write(self, batch: Batch) -> concurrent.futures.Future:
        """Commit a batch (`written`) or queue it for the writer; the future resolves once committed."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self.failure is not None:
            future.set_exception(self.failure)
        elif self._closed:
            future.set_exception(StorageError(f"the journal {self.path} is closed"))
        elif self._thread is None:
            future.set_running_or_notify_cancel()
            self._commit([(batch, future)])
        else:
            self._queue.put((batch, future))
        return future

    def save_term(self, term: Term) -> None:
        self.write(Batch(term=term)).result()

    def save_records(self, records: Iterable[TaskRecord]) -> None:
        batch = Batch()
        batch.add_records(records)
        self.write(batch).result()

    def forget(self, task_ids: Iterable[str]) -> None:
        """Delete these tasks from the journal (pruned past their retention)."""
        batch = Batch()
        batch.forget(task_ids)
        self.write(batch).result()

    def save_identity(self, node_id: str, priority: int) -> None:
        self.write(Batch(identity=(node_id, priority))).result()

    def _write_loop(self) -> None:
        """Commit whatever is queued as one transaction, in order, until told to stop."""
        while True:
            jobs = [self._queue.get()]
            if not self.waits and jobs[0] is not None:
                # Nobody waits in `memory` mode: let the steps of the next
                # MEMORY_FLUSH_S pile up (puts to a sleeping thread cost no
                # wake-up) and commit them as one transaction, in which a
                # task's several changes become one row write.
                time.sleep(MEMORY_FLUSH_S)
            while not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            stop = None in jobs
            jobs = [job for job in jobs if job is not None]
            for _, future in jobs:  # running: a waiter giving up can no longer cancel it
                future.set_running_or_notify_cancel()
            if jobs:
                self._commit(jobs)
            if stop:
                return

    def _commit(self, jobs: list[tuple[Batch, concurrent.futures.Future]]) -> None:
        merged = Batch()
        for batch, _ in jobs:
            merged.absorb(batch)
        try:
            if self.failure is not None:
                raise self.failure
            self._apply(merged)
        except BaseException as exc:  # noqa: BLE001 -- handed to every waiter
            self.failure = self.failure or exc
            for _, future in jobs:
                if not future.cancelled():
                    future.set_exception(exc)
            return
        self.batches += len(jobs)
        for _, future in jobs:
            if not future.cancelled():  # cancelled before the writer took it: written anyway
                future.set_result(None)

    def _apply(self, batch: Batch) -> None:
        """One transaction: the group commit of a core step (or of several queued ones)."""
        db, started = self._db, time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        try:
            term = batch.term
            if term is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", _pack_row("term", list(term)))
            if batch.identity is not None:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
                               [_pack_row("node_id", batch.identity[0]),
                                _pack_row("priority", batch.identity[1])])
            if batch.forgotten:
                self._forget_rows(batch.forgotten)
            added = [task_id for task_id in batch.records if task_id not in self._keys]
            for n, task_id in enumerate(added, self._next_key):
                self._keys[task_id] = n
            db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                           [(self._keys[r.task_id], *_pack_row(r.task_id, record_to_wire(r)))
                            for r in batch.records.values()])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise  # the store is failed now: its key map is never used again
        self._next_key += len(added)
        if term is not None:
            self._term = term
        elapsed_s = time.perf_counter() - started
        self.commits += 1
        self.rows_written += len(batch.records)
        self.commit_s_total += elapsed_s
        self.commit_s_max = max(self.commit_s_max, elapsed_s)

    def adopt(self, meta: dict) -> bool:
        """Carry a corrupted journal's verified term and identity into this fresh one."""
        try:
            restored = _restored_from_meta(meta)
        except CorruptJournal:
            return False
        batch = Batch(term=restored.term if restored.term != ZERO_TERM else None,
                      identity=(restored.node_id, restored.priority) if restored.node_id else None)
        if not batch:
            return False
        self.write(batch).result()
        self._restored = restored
        return True

    def _forget_rows(self, task_ids: set[str]) -> None:
        """Delete pruned tasks and keep their tombstones (the newest TOMBSTONES, as the core does)."""
        db = self._db
        db.executemany("DELETE FROM records WHERE n = ?",
                       [(self._keys.pop(t),) for t in task_ids if t in self._keys])
        db.executemany("INSERT OR IGNORE INTO forgotten (task_id, crc) VALUES (?, ?)",
                       [_tombstone_row(t) for t in task_ids])
        db.execute("DELETE FROM forgotten WHERE n <= (SELECT max(n) FROM forgotten) - ?", (TOMBSTONES,))

    def close(self) -> None:
        """Write what is queued, shrink the WAL, close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        log.info("journal %s (%s): %d transactions for %d batches, %d records; commit mean "
                 "%.2f ms, max %.1f ms", self.path, self.durability, self.commits, self.batches,
                 self.rows_written, 1000 * self.commit_s_total / max(1, self.commits),
                 1000 * self.commit_s_max)
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # closing anyway; the WAL is replayed at the next open
        self._db.close()


# -- opening, and what to do with a corrupted journal ------------------------------------
def open_store(data_dir: Path, durability: str) -> SqliteStore:
    """Open DIR/journal.db; a corrupted one is reported in one line, moved aside and replaced."""
    path = Path(data_dir) / JOURNAL_FILE
    try:
        return SqliteStore(path, durability)
    except CorruptJournal as exc:
        aside = _move_aside(path)
        store = SqliteStore(path, durability)
        kept = store.adopt(exc.salvaged)
        store.corruption = (
            f"journal {path} is corrupted ({exc.reason}); moved it to {aside.name} and starting "
            f"empty{' (its term and identity verified and are kept)' if kept else ''}: "
            "this node will recover the cluster's tasks from its peers")
        log.error("%s", store.corruption)
        return store


def _move_aside(path: Path) -> Path:
    """Rename the journal (and its WAL) to journal.db.corrupt-<timestamp> for a post-mortem."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{aside}{suffix}")
    return aside


def _checked_meta(meta: dict) -> dict:
    """The meta values that have the right shapes (a term, an id with its priority)."""
    ok = {}
    term = meta.get("term")
    if isinstance(term, list) and len(term) == 2 and isinstance(term[0], int) and isinstance(term[1], str):
        ok["term"] = term
    if isinstance(meta.get("node_id"), str) and isinstance(meta.get("priority"), int):
        ok["node_id"], ok["priority"] = meta["node_id"], meta["priority"]
    return ok
