"""Which WebSocket ``Origin`` an app's ``allowed_origins`` admits (protocol §1.4, close 4009).

The rule, in full (``docs/protocol.md`` §1.4 and ``config.example.toml`` say the same):

* ``"*"`` anywhere in the list admits every connection, with or without an ``Origin``.
* A **host entry** has no scheme: ``"app.example.com"``, ``"[::1]"``, or a subdomain
  wildcard ``"*.example.com"``. It is matched against the Origin's host only, whatever its
  scheme and port. ``"*.example.com"`` admits any host *below* ``example.com``
  (``app.example.com``, ``a.b.example.com``), not the apex ``example.com`` and not
  look-alikes (``evil-example.com``, ``app.example.com.evil.net``).
* An **exact entry** has a scheme: ``"https://app.example.com"``,
  ``"http://localhost:5173"``. Scheme, host and port must all be equal; a default port
  (80 for http, 443 for https) is the same as no port.
* Hosts compare case-insensitively; one trailing dot is ignored; IPv6 literals are
  written in brackets and compare as addresses (``[::1]`` equals ``[0:0::1]``).
* A connection without an ``Origin`` (a server-side client) or with an ``Origin`` that is
  not ``scheme://host[:port]`` (``null``, a path, user info) is refused unless ``"*"`` is
  listed.

Pure functions: strings in, a boolean or a problem description out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class Origin(NamedTuple):
    """A parsed ``scheme://host[:port]``; `port` is filled in from the scheme's default."""

    scheme: str
    host: str
    port: int | None


def _normalize_host(host: str) -> str | None:
    """Lower-cased host without a trailing dot; IPv6 literals compressed; None if empty."""
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        return None
    if ":" in host:  # only an IPv6 literal has a colon once the port is split off
        try:
            return str(ipaddress.IPv6Address(host.split("%", 1)[0]))
        except ValueError:
            return None
    if "" in host.split("."):  # ".example.com", "a..b": an empty label is no host name
        return None
    return host


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` (an ``Origin`` header or an exact entry), or None if it is
    not one (``null``, no scheme, a path, user info, a bad port)."""
    value = value.strip()
    if value.endswith("/"):
        value = value[:-1]
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if (not parts.scheme or parts.path or parts.query or parts.fragment
            or "@" in parts.netloc or parts.hostname is None):
        return None
    host = _normalize_host(parts.hostname)
    if host is None:
        return None
    scheme = parts.scheme.lower()
    return Origin(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme))


def _host_entry(entry: str) -> tuple[bool, str] | None:
    """A host entry as (is a wildcard, normalized host or domain), or None if malformed."""
    wildcard = entry.startswith("*.")
    host = entry[2:] if wildcard else entry
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or "*" in host or "/" in host or "@" in host:
        return None
    if ":" in host and not host.count(":") >= 2:  # a port on a host entry: not allowed
        return None
    normalized = _normalize_host(host)
    return None if normalized is None else (wildcard, normalized)


def origin_entry_problem(entry: str) -> str | None:
    """Why `entry` cannot be an ``allowed_origins`` entry, or None if it is well-formed."""
    if entry == "*":
        return None
    if "://" in entry:
        if "*" in entry:
            return "a wildcard entry has no scheme: write *.example.com"
        return None if parse_origin(entry) else "expected scheme://host[:port]"
    if _host_entry(entry) is None:
        return "expected a host, *.domain, scheme://host[:port] or *"
    return None


def origin_allowed(origin: str | None, allowed_origins: Iterable[str]) -> bool:
    """Whether a WebSocket whose ``Origin`` header is `origin` (None: absent) may connect."""
    entries = tuple(allowed_origins)
    if "*" in entries:
        return True
    if origin is None:
        return False
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    for entry in entries:
        if "://" in entry:
            if parse_origin(entry) == parsed:
                return True
            continue
        host_entry = _host_entry(entry)
        if host_entry is None:
            continue
        wildcard, host = host_entry
        if parsed.host == host if not wildcard else parsed.host.endswith("." + host):
            return True
    return False
