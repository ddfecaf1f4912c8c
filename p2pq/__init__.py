"""p2pq: a zero-configuration, brokerless, peer-to-peer task queue."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1


def __getattr__(name: str):
    # The client pulls in asyncio, TLS and msgpack; load it only when asked for.
    if name in ("Client", "AsyncClient", "P2PQError"):
        from . import client
        return getattr(client, name)
    raise AttributeError(name)
