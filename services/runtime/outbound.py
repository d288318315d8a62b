"""Outbound HTTP calls to addresses that people typed in (webhooks): the SSRF guard.

A webhook URL is chosen by a provider's or a family's contact record, so the platform must not
become a way to reach what sits next to it (the database, Kafka, the cloud metadata service,
the admin ports of the services). Every outbound webhook goes through :func:`guarded_client`:

- the URL must be ``https`` unless ``OUTBOUND_ALLOW_HTTP`` is set (development and tests only);
- the host is resolved, and EVERY address it resolves to must be public: loopback, private
  (RFC 1918, unique local), link-local (including 169.254.169.254), shared (100.64/10),
  multicast, reserved and unspecified addresses are refused - unless inside a network listed in
  ``OUTBOUND_ALLOWED_NETWORKS`` (e.g. ``127.0.0.0/8`` for the tests' local receivers);
- the check runs at connection time, on the very address the socket connects to (no second
  DNS lookup after the check, so DNS rebinding cannot swap in a private address), and again
  for every redirect (redirects are not followed at all).

The same rules check a URL when it is registered (:func:`check_url`), so a bad one is a 422 at
once rather than a failed delivery later. Response bodies are never kept: callers record the
status code and the time taken only (decision 0070).

Written by hand because no maintained library does this for an asyncio HTTP client; it is a
thin network backend under httpx/httpcore, which do everything else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(ValueError):
    """An outbound URL or the address it resolves to is not allowed; the message says why."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Where outbound webhooks may go. The default refuses plain HTTP and every non-public address."""

    allow_http: bool = False
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, allow_http: bool, allowed_networks: Iterable[str]) -> OutboundPolicy:
        return cls(allow_http, tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allowed_networks if n))

    def check_address(self, address: Address) -> None:
        """Raise :class:`DestinationRefused` unless the address is public or explicitly allowed."""
        embedded = embedded_ipv4(address)
        if any(a in network for network in self.allowed_networks for a in (address, *embedded)):
            return
        for candidate in (address, *embedded):
            if not candidate.is_global or candidate.is_multicast:
                raise DestinationRefused(f"the address {address} is not a public address")

    def check_scheme(self, url: str) -> tuple[str, int]:
        """The URL's host and port, or :class:`DestinationRefused` for a scheme not allowed."""
        try:  # "http://a]" (an unopened IPv6 bracket) or a host not valid under NFKC: not a URL at all
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError as exc:
            raise DestinationRefused(f"the URL cannot be read ({exc})") from None
        allowed = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in allowed:
            raise DestinationRefused(f"the URL must use {' or '.join(allowed)}")
        if not hostname:
            raise DestinationRefused("the URL has no host")
        if parts.username or parts.password:
            raise DestinationRefused("the URL must not carry a user name or password")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port is None:
            return hostname, 443 if parts.scheme == "https" else 80
        # Port 0 is no port (urlsplit reads ":0" as 0): it had passed as the default 443 and been
        # stored (found by an attack).
        if not 1 <= port <= 65535:
            raise DestinationRefused("the URL's port is not a number from 1 to 65535")
        return hostname, port


# IPv6 prefixes that carry an IPv4 address a gateway translates to: NAT64 (RFC 6052, RFC 8215).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translator or tunnel, each to be judged
    as the IPv6 one is: IPv4-mapped (``::ffff:127.0.0.1``), 6to4 (``2002:7f00:1::``), Teredo's
    client, and NAT64's last 32 bits (``64:ff9b::7f00:1``, ``64:ff9b::a9fe:a9fe`` = 169.254.169.254).
    Without this, a NAT64 network reached loopback or the cloud's metadata service."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.append(address.teredo[1])
    if any(address in network for network in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"the host {host!r} does not resolve ({exc.strerror})") from None
    except (UnicodeError, ValueError):  # e.g. a label over 63 characters: not a name at all
        raise DestinationRefused("the host is not a valid name") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def check_url(url: str, policy: OutboundPolicy) -> None:
    """Check a webhook URL when it is registered: the scheme, and every address it resolves to.

    Raises :class:`DestinationRefused` with the reason (for a 422 naming the field)."""
    host, port = policy.check_scheme(url)
    addresses = await resolve(host, port)
    if not addresses:
        raise DestinationRefused(f"the host {host!r} does not resolve")
    for address in addresses:
        policy.check_address(address)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself and connects only to an address the policy allows."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
            for address in addresses:  # every address must pass: one bad answer refuses the host
                self._policy.check_address(address)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(f"{REFUSED}: {exc}") from None
        # Connect to the checked address itself; TLS still verifies the certificate against the
        # URL's host name (httpcore takes the SNI name from the URL, not from this address).
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[typing.Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"{REFUSED}: unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__(trust_env=False)  # no proxy from the environment to route around the guard
        # httpx's own transport with its connection pool rebuilt on the guarded backend
        # (httpx 0.28 exposes no network_backend argument; the pool is the documented httpcore one).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(policy)
        )


def guarded_client(policy: OutboundPolicy, *, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for webhooks: the policy enforced at every connection, no redirects
    followed, no proxy or credentials from the environment."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy), timeout=timeout, follow_redirects=False, trust_env=False
    )


REFUSED = "destination refused"


def is_refused(exc: BaseException) -> bool:
    """Whether an httpx error is the guard refusing the destination (which no retry will change)."""
    return isinstance(exc, httpx.ConnectError) and str(exc).startswith(REFUSED)
