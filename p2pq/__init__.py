"""p2pq: a zero-configuration, brokerless, peer-to-peer task queue."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

_CLIENT = ("Client", "AsyncClient", "P2PQError", "InvalidRequest")
_FUTURES = ("Executor", "TaskFuture", "TaskFailed", "shell", "wait", "as_completed", "FIRST_COMPLETED",
            "FIRST_EXCEPTION", "ALL_COMPLETED")


def __getattr__(name: str):
    # The client pulls in asyncio, TLS and msgpack; load it only when asked for.
    if name in _CLIENT:
        from . import client
        return getattr(client, name)
    if name in _FUTURES:
        from . import futures
        return getattr(futures, name)
    raise AttributeError(name)


def __dir__():
    return sorted([*globals(), *_CLIENT, *_FUTURES])
