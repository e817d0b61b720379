"""The client address behind trusted reverse proxies (``[server] trusted_proxies``).

A request whose TCP peer is a trusted proxy is from the address that proxy names in
``X-Forwarded-For``: the header is read from the right (the entry the nearest proxy
added) past every trusted proxy, and the first untrusted entry is the client. A peer that
is not trusted is the client itself, whatever it sends: anyone can write the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``::1``) as networks.

    Raises :class:`ValueError` naming the entry that is neither.
    """
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR block: {entry!r}") from None
    return tuple(networks)


class TrustedProxies:
    """Which peers may name the client (``X-Forwarded-For``); none by default."""

    __slots__ = ("networks",)

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks

    def trusts(self, address: str) -> bool:
        """Whether `address` (an IP address as text) is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client(self, peer: object, forwarded_for: bytes | None) -> object:
        """The client of a request from `peer` (a transport's ``peername``) with the
        ``X-Forwarded-For`` header `forwarded_for`: the forwarded address (a string,
        no port) when `peer` is trusted and the header names one, else `peer` itself."""
        if (not self.networks or forwarded_for is None or not isinstance(peer, tuple)
                or not peer or not self.trusts(str(peer[0]))):
            return peer
        entries = [e.strip() for e in forwarded_for.decode("latin-1").split(",")]
        for entry in reversed(entries):
            if not entry:
                continue
            if not self.trusts(entry):
                try:
                    return str(ipaddress.ip_address(entry.strip("[]")))
                except ValueError:
                    return peer  # garbage from the client's side: keep the proxy's word
        # Every hop trusted: the leftmost is the furthest one known.
        first = next((e for e in entries if e), None)
        return first if first is not None else peer
