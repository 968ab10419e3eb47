"""Where a webhook may be sent: https URLs whose host resolves only to public addresses (no SSRF into the
deployment's own network: private, loopback, link-local, shared, multicast or reserved ranges are refused).

The URL is checked when an endpoint is registered and its host resolved again before every delivery batch, and the
delivery connects to the addresses checked (libcurl's RESOLVE), so a name that resolves to a public address at
registration and to 169.254.169.254 later (DNS rebinding) is refused then. WEBHOOK_ALLOW_PRIVATE_URLS=true (tests,
private deployments) turns the address checks off and allows http.
"""

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(Exception):
    """The host resolves to an address a webhook may not reach (or does not resolve)."""


def address_allowed(address: IPAddress) -> bool:
    """Public unicast only: `is_global` excludes private, loopback, link-local, shared (100.64/10), unspecified and
    reserved ranges; multicast is excluded too. An IPv4-mapped IPv6 address is judged as the IPv4 one it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def resolve_allowed(host: str, port: int) -> list[str]:
    """The host's addresses, every one of them allowed; AddressRefused naming the first that is not, or when the
    name does not resolve. A literal IP is checked as it is."""
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise AddressRefused(f"{host} does not resolve ({exc})") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in found))
        if not addresses:
            raise AddressRefused(f"{host} does not resolve")
    for address in addresses:
        if not address_allowed(address):
            raise AddressRefused(f"{host} resolves to {address}, a private, loopback or link-local address")
    return [str(address) for address in addresses]


def url_errors(url: str) -> list[str]:
    """What is wrong with a webhook URL (empty: nothing), as the API and the admin report it."""
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_URLS
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        return [f"Enter a valid URL ({exc})."]
    schemes = ("https", "http") if allow_private else ("https",)
    errors = []
    if parts.scheme not in schemes:
        errors.append("The URL must use https." if not allow_private else "The URL must use https or http.")
    if not parts.hostname:
        return [*errors, "The URL must name a host."]
    if parts.username is not None or parts.password is not None:
        errors.append("The URL must not carry credentials.")
    if parts.fragment:
        errors.append("The URL must not have a fragment.")
    if errors or allow_private:
        return errors
    try:
        resolve_allowed(parts.hostname, default_port(parts))
    except AddressRefused as exc:
        return [f"The URL's host is not allowed: {exc}."]
    return []
