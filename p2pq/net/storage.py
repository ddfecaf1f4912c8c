"""Where a node keeps what the core asks it to persist (PersistTerm, PersistRecords)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

from p2pq.core.tasks import TaskRecord
from p2pq.core.types import ZERO_TERM, Term


@dataclass(slots=True)
class Restored:
    term: Term = ZERO_TERM
    records: list[TaskRecord] = field(default_factory=list)


class Store(Protocol):
    def load(self) -> Restored: ...
    def save_term(self, term: Term) -> None: ...
    def save_records(self, records: Iterable[TaskRecord]) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """Keeps nothing: a restarted node starts empty and catches up from its peers."""

    def load(self) -> Restored:
        return Restored()

    def save_term(self, term: Term) -> None:
        pass

    def save_records(self, records: Iterable[TaskRecord]) -> None:
        pass

    def close(self) -> None:
        pass


def open_store(data_dir: Path, durability: str) -> Store:
    if durability == "memory":
        return MemoryStore()
    raise ValueError(f"unknown durability {durability!r}")
