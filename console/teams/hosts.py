"""Which hosts a connection may reach: public addresses only (SSRF guard).

A team admin types a connection's base URL, and the console then sends that
team's API key there, from inside the console's own network. So the host must
not be (or resolve to) a loopback, private, link-local, shared (CGNAT) or
otherwise non-public address, and never a cloud-metadata service:

- loopback is allowed where SKYVERN_ALLOW_LOOPBACK is on (the demo's simulator);
- every other non-public address only where SKYVERN_ALLOW_PRIVATE_HOSTS is on,
  a deployment setting, for a self-hosted Skyvern in the same network;
- metadata addresses and names, unspecified and multicast addresses: never.

The rules are checked when a connection is saved (forms.py) and again on
every new TCP connection (clients.py), against the very addresses the socket
then connects to.
"""

import ipaddress
import socket

from django.conf import settings

from console.skyvern import SkyvernUnreachable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance-metadata services: they hand out the cloud account's credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean…
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync, same link-local service network
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


class HostNotAllowed(SkyvernUnreachable):
    """The connection's host is, or resolves to, an address the console won't call.

    A SkyvernUnreachable: nothing was sent, so nothing can have happened at
    Skyvern, and every caller already handles it.
    """


def _unwrap(address: IPAddress) -> IPAddress:
    """An IPv4 address smuggled inside IPv6 (::ffff:10.0.0.1) is that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def address_refusal(address: str | IPAddress) -> str | None:
    """Why the console must not connect to `address`; None when it may."""
    ip = _unwrap(ipaddress.ip_address(str(address).split("%", 1)[0]))
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a host address"
    if ip.is_loopback:
        if settings.SKYVERN_ALLOW_LOOPBACK or settings.SKYVERN_ALLOW_PRIVATE_HOSTS:
            return None
        return "a loopback address"
    if ip.is_global:
        return None
    if settings.SKYVERN_ALLOW_PRIVATE_HOSTS:
        return None
    if ip.is_link_local:
        return "a link-local address"
    return "a private address"


def resolve(host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple]:
    """getaddrinfo for a TCP connection (a seam for tests: no real DNS there)."""
    return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)


def _refuse(host: str, reason: str, *, resolved: bool = False) -> HostNotAllowed:
    verb = "resolves to" if resolved and not _is_address(host) else "is"
    return HostNotAllowed(
        f"The connection's host {host} {verb} {reason}; the console only calls public "
        "addresses. Check the base URL."
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def name_refusal(host: str) -> str | None:
    if host.lower().rstrip(".") in METADATA_NAMES:
        return "a cloud metadata service"
    return None


def vetted_addresses(host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple]:
    """The addresses `host` resolves to, every one allowed; else HostNotAllowed.

    One disallowed address refuses the whole host: a name that answers with a
    public and a private address could have either used.
    Raises socket.gaierror when the name doesn't resolve.
    """
    host = host.strip("[]")
    if reason := name_refusal(host):
        raise _refuse(host, reason)
    infos = resolve(host, port, family)
    for *_, sockaddr in infos:
        if reason := address_refusal(sockaddr[0]):
            raise _refuse(host, reason, resolved=True)
    return infos


def check_host(host: str, port: int) -> None:
    """For saving a connection: HostNotAllowed if `host` is or resolves to a
    refused address. A name that doesn't resolve (yet) is let through: it
    reaches nothing, and it is checked again before every connection."""
    try:
        vetted_addresses(host, port)
    except socket.gaierror:
        return
