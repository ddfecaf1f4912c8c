"""This machine's network interfaces, as mDNS needs them: where to listen, what to publish.

``--mdns-interface`` names interfaces (``eth0``) or addresses; zeroconf
wants addresses, or one of its ``InterfaceChoice`` values. The addresses a
node publishes by default are its IPv4 addresses on the chosen interfaces,
loopback only when there is nothing else; the local networks it finds on
the way are how a peer's addresses are ranked (same subnet first,
``mdns.pick_host``).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence

import ifaddr
from zeroconf import InterfaceChoice

from .mdns import Network, is_ip_literal


def zeroconf_interfaces(interfaces: InterfaceChoice | Sequence[str]) -> InterfaceChoice | list[str]:
    """The interface choice in zeroconf's terms (names mapped to their IPv4 addresses)."""
    if isinstance(interfaces, InterfaceChoice):
        return interfaces
    out: list[str] = []
    adapters = None
    for item in interfaces:
        if is_ip_literal(item):
            if item not in out:
                out.append(item)
            continue
        if adapters is None:
            adapters = ifaddr.get_adapters()
        for adapter in adapters:
            if adapter.nice_name == item or adapter.name == item:
                for ip in adapter.ips:
                    if ip.is_IPv4 and ip.ip not in out:
                        out.append(ip.ip)
    return out


def host_addresses(interfaces: InterfaceChoice | Sequence[str]) -> tuple[list[str], list[Network]]:
    """The addresses to publish by default, and the local networks (read afresh each time)."""
    nets: list[Network] = []
    all_v4: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4:
                assert isinstance(ip.ip, str)
                all_v4.append(ip.ip)
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False))
    choice = zeroconf_interfaces(interfaces)
    if isinstance(choice, list):
        candidates = [a for a in choice if a not in ("0.0.0.0", "::")]
    else:
        candidates = all_v4
    non_loop = [a for a in candidates if not ipaddress.ip_address(a.split("%", 1)[0]).is_loopback]
    chosen = non_loop or candidates
    return sorted(set(chosen), key=lambda a: (":" in a, a)), nets
