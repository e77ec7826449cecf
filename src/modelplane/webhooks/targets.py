"""Which URLs a webhook may be delivered to: never a request-forgery channel.

A URL must be http(s) with a host, and every address its host resolves to must
be public: loopback, link-local (which holds the cloud metadata services at
169.254.169.254 and fd00:ec2::254), private, shared, multicast, reserved and
unspecified addresses are refused, unless the operator allows them (for a
receiver on the same host or network). The check runs when a subscription is
created and again before every delivery, since DNS answers can change.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelplane.domain.errors import InvalidArgument

Resolver = Callable[[str, int], Sequence[str]]
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class TargetPolicy:
    # Hosts (exact names) allowed whatever they resolve to, e.g. an internal CI.
    allowed_hosts: tuple[str, ...] = ()
    # Loopback and private networks: for a receiver beside the control plane.
    allow_private: bool = False
    resolver: Resolver = resolve

    def check(self, url: str, field: str = "url") -> str:
        """Returns ``url`` when it may receive deliveries; InvalidArgument naming why not."""
        if len(url) > 2048:
            raise InvalidArgument(f"{field}: expected at most 2048 characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(f"{field}: expected an http:// or https:// URL, got {url!r:.80}")
        if parts.username or parts.password:
            raise InvalidArgument(f"{field}: credentials in the URL are not accepted")
        host = parts.hostname
        if host in self.allowed_hosts:
            return url
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            addresses = self.resolver(host, port)
        except (OSError, ValueError) as error:
            raise InvalidArgument(f"{field}: cannot resolve host {host!r}: {error}") from None
        if not addresses:
            raise InvalidArgument(f"{field}: host {host!r} resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self._refusal(address)
            if reason:
                raise InvalidArgument(
                    f"{field}: host {host!r} resolves to {address}, a {reason} address; "
                    "webhooks go to public addresses unless the operator allows others"
                )
        return url

    def _refusal(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if address in _METADATA:
            return "cloud metadata"
        if address.is_link_local:
            return "link-local"
        if address.is_multicast or address.is_reserved or address.is_unspecified:
            return "reserved"
        if address.is_loopback:
            return "" if self.allow_private else "loopback"
        if address.is_private or not address.is_global:
            return "" if self.allow_private else "private"
        return ""
