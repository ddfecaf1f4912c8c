"""zeroconf's socket errors as one clear line, not a traceback per packet.

zeroconf logs a failing socket (e.g. "Network is unreachable" when there is
no multicast route) with a full traceback, for every packet it fails to
send. While a Discovery runs, this filter hands such errors to the running
instances, which log one line per cause, and keeps zeroconf's own record
only at debug level, without the traceback.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

_discovery_log = logging.getLogger("p2pq.net.discovery")


class SocketErrorOwner(Protocol):
    def note_socket_error(self, exc: BaseException | None) -> None: ...


class _SocketErrorFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.owners: set[SocketErrorOwner] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not (isinstance(msg, str) and msg.startswith("Error with socket")):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        for owner in list(self.owners):
            with contextlib.suppress(Exception):
                owner.note_socket_error(exc)
        if not _discovery_log.isEnabledFor(logging.DEBUG):
            return False
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return True


_filter = _SocketErrorFilter()


def attach(owner: SocketErrorOwner) -> None:
    """`owner` hears of zeroconf's socket errors until `detach`; the filter is on while anyone listens."""
    if not _filter.owners:
        logging.getLogger("zeroconf").addFilter(_filter)
    _filter.owners.add(owner)


def detach(owner: SocketErrorOwner) -> None:
    _filter.owners.discard(owner)
    if not _filter.owners:
        logging.getLogger("zeroconf").removeFilter(_filter)
