"""Where a channel may connect: a portal admin's settings must not reach the app's own network.

An SMTP host must resolve to global (public) addresses only; loopback, private, link-local,
CGNAT, multicast, reserved and unspecified addresses (also inside IPv4-mapped, 6to4 and NAT64
IPv6 addresses) are refused unless the operator sets ``MARKETAPP_ALLOW_PRIVATE_SMTP``. The check
returns the addresses it approved, and the caller connects to exactly those (no DNS-rebinding
window between check and connect).
"""

from __future__ import annotations

import ipaddress
import socket

from flask import has_app_context

from marketapp.config import Config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedHost(Exception):
    """The host does not resolve, or resolves to an address the app must not connect to."""


def operator_config() -> Config:
    """The running app's configuration; outside an app (a script, a unit test) the environment's."""
    if has_app_context():
        from marketapp.config import get_config

        return get_config()
    return Config()


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if ip.teredo is not None:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of ``host``, every one of them public unless ``allow_private``."""
    name = host.strip().removeprefix("[").removesuffix("]")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise BlockedHost("the host name does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address.partition("%")[0])):
                raise BlockedHost(
                    "it is not a public address (loopback, private and local networks are refused)"
                )
    if not addresses:
        raise BlockedHost("the host name does not resolve")
    return addresses
