"""Endpoint URL validation: schemes, credentials, internal addresses, the site's own services."""

from __future__ import annotations

import pytest

from verification.endpoint.urlcheck import (
    EndpointURLError,
    blocked_hostports_from_urls,
    pin_endpoint,
    validate_endpoint_url,
)

SITE_SERVICES = blocked_hostports_from_urls(
    ["postgres://postgres@127.0.0.1:5432/test", "redis://localhost:6379/0", "sqlite:////tmp/x.sqlite3"]
)


def public(url: str) -> str:
    return validate_endpoint_url(url, allow_loopback=False, blocked_hostports=SITE_SERVICES)


def local(url: str) -> str:
    return validate_endpoint_url(url, allow_loopback=True, blocked_hostports=SITE_SERVICES)


def test_site_services_are_read_from_their_urls():
    assert SITE_SERVICES == {"127.0.0.1:5432", "localhost:6379"}


def test_public_https_url_is_normalised():
    assert public("HTTPS://API.Example.COM/v1/") == "https://api.example.com/v1"
    assert public("http://93.184.216.34:8000/v1?x=1#frag") == "http://93.184.216.34:8000/v1"
    assert public("https://[2606:4700::1111]/v1") == "https://[2606:4700::1111]/v1"


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://example.com/v1", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com", "scheme"),
        ("example.com/v1", "scheme"),
        ("https://user:sk-secret@example.com/v1", "credentials"),
        ("https://sk-secret@example.com/v1", "credentials"),
        ("https:///v1", "no host"),
        ("http://exa mple.com", "whitespace"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fd00:ec2::254]/latest", "private"),
        ("http://metadata.google.internal/computeMetadata/v1", "metadata"),
        ("http://foo.internal/v1", "internal"),
        ("http://10.0.0.5:8000/v1", "private"),
        ("http://192.168.1.1/v1", "private"),
        ("http://172.16.0.1/v1", "private"),
        ("http://100.64.0.1/v1", "private"),
        ("http://0.0.0.0:8000/v1", "unicast"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[::ffff:127.0.0.1]:8000/", "loopback"),
        ("http://127.0.0.1:8000/v1", "loopback"),
        ("http://[::1]:8000/v1", "loopback"),
        ("http://localhost:8000/v1", "localhost"),
        ("http://example.com:99999/", "malformed"),
    ],
)
def test_refused_urls_say_why_and_never_echo_credentials(url: str, reason: str):
    with pytest.raises(EndpointURLError) as info:
        public(url)
    assert reason in str(info.value)
    assert "sk-secret" not in str(info.value)


def test_loopback_needs_the_explicit_allowance_and_never_reaches_site_services():
    assert local("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert local("http://localhost:8123") == "http://localhost:8123"
    for url in ("http://127.0.0.1:5432", "http://localhost:5432/v1", "http://127.0.0.1:6379", "http://127.0.0.2:6379"):
        with pytest.raises(EndpointURLError, match="internal services"):
            local(url)
    # Metadata and private ranges stay refused even with loopback allowed.
    with pytest.raises(EndpointURLError):
        local("http://169.254.169.254/")
    with pytest.raises(EndpointURLError):
        local("http://10.1.2.3/")


def test_pin_resolves_names_and_checks_every_address():
    pinned = pin_endpoint("http://localhost:8123/v1", allow_loopback=True, blocked_hostports=SITE_SERVICES)
    assert pinned.port == 8123 and pinned.base_path == "/v1"
    assert set(pinned.addresses) <= {"127.0.0.1", "::1"} and pinned.addresses
    # localhost resolves to loopback: refused when loopback is not allowed, even by IP literal.
    with pytest.raises(EndpointURLError):
        pin_endpoint("http://127.0.0.1:8123", allow_loopback=False, blocked_hostports=set())
    # The blocked service is matched by resolved address, not only by spelling.
    with pytest.raises(EndpointURLError, match="internal services"):
        pin_endpoint("http://localhost:5432", allow_loopback=True, blocked_hostports=SITE_SERVICES)


def test_unresolvable_host_is_a_clear_error():
    with pytest.raises(EndpointURLError, match="does not resolve"):
        pin_endpoint("https://no-such-host.invalid/v1", allow_loopback=False, blocked_hostports=set())
