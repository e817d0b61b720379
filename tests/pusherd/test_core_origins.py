"""The Origin rule of allowed_origins as a table (protocol §1.4; pusherd.core.origins)."""

from __future__ import annotations

import pytest

from pusherd.core.origins import origin_allowed, origin_entry_problem, parse_origin

WILDCARD = ["*.example.com"]

CASES = [
    # Wildcard entries: the host only, whatever the scheme and port.
    (WILDCARD, "http://app.example.com:5173", True),
    (WILDCARD, "https://a.b.example.com:8443", True),
    (WILDCARD, "https://app.example.com", True),
    (WILDCARD, "http://APP.Example.COM", True),
    (WILDCARD, "https://app.example.com.", True),
    (WILDCARD, "https://example.com", False),  # the apex is not below itself
    (WILDCARD, "https://evil-example.com", False),
    (WILDCARD, "http://.example.com", False),  # an empty label is no host below the domain
    (WILDCARD, "http://a..example.com", False),
    (WILDCARD, "https://app.example.com.evil.net", False),
    (WILDCARD, "https://appexample.com", False),
    # Host entries without a wildcard: that host, any scheme and port.
    (["app.example.com"], "http://app.example.com:3000", True),
    (["app.example.com"], "https://a.app.example.com", False),
    # Exact entries: scheme, host and port; default ports equal absent ones.
    (["https://app.example.com"], "https://app.example.com", True),
    (["https://app.example.com"], "https://app.example.com:443", True),
    (["https://app.example.com:443"], "https://app.example.com", True),
    (["http://app.example.com"], "http://app.example.com:80", True),
    (["https://app.example.com"], "http://app.example.com", False),
    (["https://app.example.com"], "https://app.example.com:8443", False),
    (["https://app.example.com"], "https://APP.EXAMPLE.COM", True),
    (["https://app.example.com/"], "https://app.example.com", True),
    (["http://localhost:5173"], "http://localhost:5173", True),
    (["http://localhost:5173"], "http://localhost:5174", False),
    (["https://app.example.com"], "https://sub.app.example.com", False),
    # IPv6 literals, in brackets, compared as addresses.
    (["http://[::1]:8080"], "http://[::1]:8080", True),
    (["http://[::1]:8080"], "http://[0:0::1]:8080", True),
    (["http://[::1]:8080"], "http://[::2]:8080", False),
    (["[::1]"], "https://[::1]:9000", True),
    (["http://127.0.0.1:8000"], "http://127.0.0.1:8000", True),
    # No Origin, or something that is not an origin: refused unless "*".
    (WILDCARD, None, False),
    (WILDCARD, "null", False),
    (WILDCARD, "app.example.com", False),
    (WILDCARD, "https://app.example.com/path", False),
    (WILDCARD, "https://user@app.example.com", False),
    (WILDCARD, "https://app.example.com:99999", False),
    (["*"], None, True),
    (["*"], "null", True),
    (["https://x.test", "*"], "https://evil.test", True),
    ([], "https://app.example.com", False),
]


@pytest.mark.parametrize(("allowed", "origin", "expected"), CASES)
def test_an_origin_is_admitted_by_the_documented_rule(
    allowed: list[str], origin: str | None, expected: bool
) -> None:
    assert origin_allowed(origin, allowed) is expected


def test_a_parsed_origin_carries_the_default_port_of_its_scheme() -> None:
    assert parse_origin("https://App.Example.com") == ("https", "app.example.com", 443)
    assert parse_origin("http://[::1]") == ("http", "::1", 80)
    assert parse_origin("http://h:5173") == ("http", "h", 5173)


@pytest.mark.parametrize("entry", [
    "*", "*.example.com", "app.example.com", "[::1]", "https://app.example.com",
    "http://localhost:5173", "http://[::1]:8080",
])
def test_well_formed_entries_have_no_problem(entry: str) -> None:
    assert origin_entry_problem(entry) is None


@pytest.mark.parametrize("entry", [
    "https://*.example.com", "*example.com", "app.example.com:5173", "https://", "*.", "",
    "example.*", "https://app.example.com/path",
])
def test_malformed_entries_are_named(entry: str) -> None:
    assert origin_entry_problem(entry) is not None
