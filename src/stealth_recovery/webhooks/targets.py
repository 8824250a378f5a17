"""Where a webhook may go: no server-side request forgery.

An endpoint's URL is checked when it is saved and again, with a fresh DNS lookup, before every
delivery, and the request goes to the address that lookup returned (the name stays in the Host
header and in TLS's SNI and certificate check). A name that resolved to a public address when it
was saved and to 127.0.0.1 later (DNS rebinding) is refused at delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from stealth_recovery.core.settings import get_settings

MAX_URL_LENGTH = 2048


class UnsafeTarget(ValueError):
    """The URL may not be called; the message is the rule it breaks."""


@dataclass(frozen=True)
class Target:
    url: str  # the URL with the host replaced by the pinned address
    host: str  # the name from the endpoint's URL (TLS's SNI and certificate check)
    host_header: str  # the name and port as the URL gives them
    address: str


def _split(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UnsafeTarget("must be an absolute http(s) URL") from exc
    settings = get_settings()
    schemes = {"https"} if settings.environment == "production" else {"https", "http"}
    if parts.scheme not in schemes:
        raise UnsafeTarget(
            "must use https" if settings.environment == "production" else "must be http or https"
        )
    if not parts.hostname:
        raise UnsafeTarget("must name a host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("must not carry a user name or password")
    if parts.fragment:
        raise UnsafeTarget("must not have a #fragment")
    return parts


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "reserved"  # 0.0.0.0 and :: reach this host
    if address.is_link_local:
        return "link-local (cloud metadata lives there)"
    if address.is_private:
        return "private"
    if address.is_multicast or address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not public"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"host {host} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_target(url: str) -> Target:
    """Check `url` and resolve its host now; every address it resolves to must be public.

    Raises `UnsafeTarget` naming the rule. `WEBHOOK_ALLOW_PRIVATE_TARGETS` (never in
    production) lets local set-ups and tests deliver to loopback and private addresses.
    """
    parts = _split(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses:
        raise UnsafeTarget(f"host {host} does not resolve")
    if not get_settings().webhook_allow_private_targets:
        for raw in addresses:
            reason = _refused(ipaddress.ip_address(raw.split("%")[0]))
            if reason is not None:
                raise UnsafeTarget(f"must not resolve to a {reason} address ({raw})")
    address = addresses[0]
    netloc_host = f"[{address}]" if ":" in address else address
    netloc = f"{netloc_host}:{parts.port}" if parts.port else netloc_host
    return Target(
        url=parts._replace(netloc=netloc).geturl(),
        host=host,
        host_header=parts.netloc,
        address=address,
    )


def check_url(url: str) -> None:
    """The check made when an endpoint is saved (the same as before each delivery)."""
    resolve_target(url)
