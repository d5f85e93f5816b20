"""Validation of a submitter-supplied endpoint URL before Verity sends it a single request.

A submission's endpoint URL is hostile input: it could point Verity's workers at the site's own
database, Redis, the cloud metadata service, or anything on the private network (SSRF). The
rules:

- http/https only, a host is required, and no credentials in the URL (a URL with userinfo is
  refused, not silently stripped: the URL is shown publicly on the model page, and a key typed
  into it must not be stored or echoed).
- Every address the host name resolves to must be a public (globally routable) address.
  Loopback is allowed only when the operator says so (`allow_loopback`: tests and the CLI talk
  to a `vllm serve` on 127.0.0.1); private, link-local (169.254.0.0/16, fe80::/10, which holds
  the cloud metadata services), unique-local (fd00:ec2::254 is AWS's IPv6 metadata address),
  multicast, reserved and unspecified addresses are always refused.
- Named internal hosts (metadata.google.internal, ...) and the site's own service host:ports
  (`blocked_hostports`, e.g. the DB and Redis from settings) are refused, even with loopback
  allowed.
- No time-of-check/time-of-use gap: `pin_endpoint` resolves the name once, checks every
  address, and returns the addresses the HTTP client must connect to; the client never
  resolves the name again (a DNS answer that changes between check and connect cannot
  redirect it).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Host names of cloud metadata services and similar internals, refused by name (they also
# resolve to link-local addresses, which are refused by address).
BLOCKED_HOSTNAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
MAX_URL_LENGTH = 500  # ModelSubmission.endpoint_url's max_length


class EndpointURLError(ValueError):
    """The endpoint URL is refused; the message says why and never repeats credentials."""


@dataclass(frozen=True)
class PinnedEndpoint:
    """A validated endpoint: the URL to show, and the addresses to connect to (never re-resolved)."""

    url: str
    scheme: str
    host: str
    port: int
    base_path: str
    addresses: tuple[str, ...]


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _unwrap(ip: IPAddress) -> IPAddress:
    """IPv4-mapped / 6to4-style IPv6 addresses are judged by the IPv4 address they carry."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def check_address(ip: IPAddress, *, allow_loopback: bool) -> None:
    """Refuse every address that is not on the public internet (loopback only when allowed)."""
    ip = _unwrap(ip)
    if ip.is_loopback:
        if allow_loopback:
            return
        raise EndpointURLError(f"address {ip} is a loopback address; loopback endpoints are not allowed here")
    if ip.is_link_local:
        raise EndpointURLError(f"address {ip} is link-local (cloud metadata range); refused")
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        raise EndpointURLError(f"address {ip} is not a unicast internet address; refused")
    if not ip.is_global:
        raise EndpointURLError(f"address {ip} is a private/internal address; refused")


def _split_hostport(entry: str) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"blocked host:port entry {entry!r} must look like HOST:PORT")
    return host.strip("[]").lower(), int(port)


def blocked_hostports_from_urls(urls: Iterable[str]) -> set[str]:
    """"host:port" of the site's own services (DB, Redis, broker) from their connection URLs."""
    defaults = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379, "amqp": 5672}
    blocked: set[str] = set()
    for url in urls:
        if not url:
            continue
        parts = urlsplit(url)
        if not parts.hostname:
            continue  # sqlite files, unix sockets: nothing reachable over TCP
        port = parts.port or defaults.get(parts.scheme)
        if port:
            blocked.add(f"{parts.hostname.lower()}:{port}")
    return blocked


def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointURLError(f"host {host!r} does not resolve: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = _parse_ip(str(info[4][0]))
        if ip is not None and ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise EndpointURLError(f"host {host!r} has no addresses")
    return addresses


def _blocked_ip_ports(blocked_hostports: Iterable[str]) -> set[tuple[IPAddress | str, int]]:
    """Blocked entries as (address, port); a loopback entry blocks that port on all of
    127.0.0.0/8 and ::1 (a service bound to 0.0.0.0 answers on every loopback address)."""
    out: set[tuple[IPAddress | str, int]] = set()
    for entry in blocked_hostports:
        host, port = _split_hostport(entry)
        out.add((host, port))
        try:
            resolved = _resolve(host, port)
        except EndpointURLError:
            continue  # a blocked name that does not resolve here cannot be reached either
        for ip in resolved:
            ip = _unwrap(ip)
            out.add((ip, port))
            if ip.is_loopback or ip.is_unspecified:
                out.add(("loopback", port))
    return out


def _is_blocked(ip: IPAddress, port: int, blocked: set[tuple[IPAddress | str, int]]) -> bool:
    ip = _unwrap(ip)
    return (ip, port) in blocked or ((ip.is_loopback or ip.is_unspecified) and ("loopback", port) in blocked)


def validate_endpoint_url(url: str, *, allow_loopback: bool, blocked_hostports: set[str] | frozenset[str]) -> str:
    """Check the URL's shape, scheme, credentials, host name and (for IP literals) address;
    return the normalised URL (lower-case scheme and host, no trailing slash, no query or
    fragment) that is safe to store and show. Does not resolve DNS: `pin_endpoint` does that
    right before connecting."""
    if not isinstance(url, str) or not url.strip():
        raise EndpointURLError("endpoint URL is empty")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise EndpointURLError(f"endpoint URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise EndpointURLError("endpoint URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointURLError(f"endpoint URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise EndpointURLError(f"endpoint URL scheme must be http or https, not {scheme or 'missing'!r}")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise EndpointURLError(
            "endpoint URL must not contain credentials (user:password@); they would be shown publicly"
        )
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise EndpointURLError("endpoint URL has no host")
    if host in BLOCKED_HOSTNAMES or host.endswith(".internal"):
        raise EndpointURLError(f"host {host!r} is an internal/metadata host; refused")
    if host == "localhost" or host.endswith(".localhost"):
        if not allow_loopback:
            raise EndpointURLError("localhost endpoints are not allowed here")
    literal = _parse_ip(host)
    if literal is not None:
        check_address(literal, allow_loopback=allow_loopback)
    port = port or _default_port(scheme)
    if (host, port) in {_split_hostport(e) for e in blocked_hostports}:
        raise EndpointURLError(f"{host}:{port} is one of this site's internal services; refused")
    blocked = _blocked_ip_ports(blocked_hostports)
    is_localhost_name = host == "localhost" or host.endswith(".localhost")
    if (literal is not None and _is_blocked(literal, port, blocked)) or (
        is_localhost_name and ("loopback", port) in blocked
    ):
        raise EndpointURLError(f"{host}:{port} is one of this site's internal services; refused")
    netloc_host = f"[{host}]" if ":" in host else host
    netloc = netloc_host if parts.port is None else f"{netloc_host}:{parts.port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def pin_endpoint(
    url: str, *, allow_loopback: bool, blocked_hostports: set[str] | frozenset[str]
) -> PinnedEndpoint:
    """Validate, resolve once, check every resolved address; the result's addresses are the
    only ones the client may connect to."""
    clean = validate_endpoint_url(url, allow_loopback=allow_loopback, blocked_hostports=blocked_hostports)
    parts = urlsplit(clean)
    host = parts.hostname or ""
    port = parts.port or _default_port(parts.scheme)
    addresses = _resolve(host, port)
    blocked = _blocked_ip_ports(blocked_hostports)
    for ip in addresses:
        # Every address, not just the first: a name with one public and one internal address
        # would otherwise reach the internal one on a retry.
        check_address(ip, allow_loopback=allow_loopback)
        if _is_blocked(ip, port, blocked):
            raise EndpointURLError(f"{host}:{port} resolves to one of this site's internal services; refused")
    return PinnedEndpoint(
        url=clean,
        scheme=parts.scheme,
        host=host,
        port=port,
        base_path=parts.path,
        addresses=tuple(str(ip) for ip in addresses),
    )
