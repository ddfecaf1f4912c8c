"""p2pq: a zero-configuration, brokerless, peer-to-peer task queue."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
