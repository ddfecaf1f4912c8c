"""Outcome: how one run of a task ended, and its wire form."""

from __future__ import annotations

import dataclasses
import json
import signal
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "STATUSES", "exit_text"]

STATUSES = ("succeeded", "failed", "timeout", "cancelled")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run ended. `value` is JSON-able; `error` is one line."""

    status: str
    value: Any = None
    error: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0

    def to_wire(self) -> dict:
        """A msgpack-safe dict, read by clients as result["value"] etc.

        msgpack cannot carry ints beyond 64 bits (fibonacci(100) is one):
        such a value travels with those ints as digit strings in "value",
        plus the exact JSON text in "value_json", which from_wire prefers.
        """
        wire = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not _fits_msgpack(self.value):
            wire["value"] = _big_ints_as_strings(self.value)
            wire["value_json"] = json.dumps(self.value)
        return wire

    @classmethod
    def from_wire(cls, d: dict) -> Outcome:
        """Inverse of to_wire; ValueError if `d` is not a valid outcome."""
        if not isinstance(d, dict) or d.get("status") not in STATUSES:
            raise ValueError(f"not an outcome: {d!r:.200}")
        try:
            value = json.loads(d["value_json"]) if "value_json" in d else d.get("value")
            outcome = cls(
                status=d["status"], value=value, error=d.get("error"),
                exit_code=d.get("exit_code"), stdout=d.get("stdout", ""),
                stderr=d.get("stderr", ""), duration_s=float(d.get("duration_s", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed outcome: {exc}") from None
        _check_types(outcome)
        return outcome


_MSGPACK_INT_MIN, _MSGPACK_INT_MAX = -(2**63), 2**64 - 1


def _fits_msgpack(value: Any) -> bool:
    if isinstance(value, int):
        return _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX
    if isinstance(value, list):
        return all(_fits_msgpack(item) for item in value)
    if isinstance(value, dict):
        return all(_fits_msgpack(item) for item in value.values())
    return True


def _big_ints_as_strings(value: Any) -> Any:
    if isinstance(value, int) and not _fits_msgpack(value):
        return str(value)
    if isinstance(value, list):
        return [_big_ints_as_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _big_ints_as_strings(item) for key, item in value.items()}
    return value


def _check_types(outcome: Outcome) -> None:
    ok = (
        isinstance(outcome.error, (str, type(None)))
        and isinstance(outcome.exit_code, (int, type(None)))
        and isinstance(outcome.stdout, str)
        and isinstance(outcome.stderr, str)
    )
    if not ok:
        raise ValueError(f"malformed outcome: {outcome!r:.200}")


def exit_text(returncode: int) -> str:
    """'exit code 3', or 'killed by signal SIGKILL' for a negative code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


