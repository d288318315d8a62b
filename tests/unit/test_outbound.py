"""The SSRF guard for outbound webhooks (services/runtime/outbound.py): which URLs and addresses
are refused, and that a refused address is never connected to - checked with a real listening
socket on loopback that counts the connections it receives."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from services.runtime.outbound import DestinationRefused, OutboundPolicy, check_url, guarded_client, is_refused

STRICT = OutboundPolicy()

REFUSED_ADDRESSES = [
    "127.0.0.1",  # loopback: the services' own ports, PostgreSQL on 15432, Kafka
    "127.1.2.3",
    "10.0.0.1",  # RFC 1918
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the cloud metadata service
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "255.255.255.255",
    "::1",
    "::ffff:127.0.0.1",  # an IPv4 loopback in IPv6 clothing
    "64:ff9b::7f00:1",  # NAT64 (RFC 6052) of 127.0.0.1: a translating gateway reaches loopback
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the cloud metadata service
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215) of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "fc00::1",  # unique local
    "fe80::1",  # link-local
    "::",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_a_non_public_address_is_refused(address):
    with pytest.raises(DestinationRefused, match="not a public address"):
        STRICT.check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "81.2.69.160", "2a00:1450:4009:81f::200e", "64:ff9b::808:808"])
def test_a_public_address_is_allowed(address):
    STRICT.check_address(ipaddress.ip_address(address))


def test_an_allowed_network_lets_its_addresses_through_and_no_others():
    policy = OutboundPolicy.from_settings(False, ["127.0.0.0/8", ""])
    policy.check_address(ipaddress.ip_address("127.0.0.1"))
    with pytest.raises(DestinationRefused):
        policy.check_address(ipaddress.ip_address("10.0.0.1"))


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://hooks.example.org/offer", "must use https"),
        ("ftp://hooks.example.org/offer", "must use https"),
        ("file:///etc/passwd", "must use https"),
        ("https://user:pw@hooks.example.org/", "user name or password"),
        ("https:///no-host", "no host"),
        ("https://hooks.example.org:99999/", "port"),
        ("https://1.1.1.1:0/", "port"),  # found by an attack: ":0" had passed as the default port and been stored
        ("https://hooks.example.org:00/", "port"),
        # Not URLs at all (the HTTP fuzzer's finds: a 500 before): urlsplit raises ValueError.
        ("http://\u00ad0\u023e\u0002\u0010c]", "cannot be read"),
        ("https://hooks.example.org]/", "cannot be read"),
        ("https://[::1/", "cannot be read"),
    ],
)
def test_a_url_with_a_scheme_or_shape_not_allowed_is_refused(url, reason):
    with pytest.raises(DestinationRefused, match=reason):
        STRICT.check_scheme(url)


@pytest.mark.parametrize(
    "url, port",
    [
        ("https://hooks.example.org/", 443),
        ("https://hooks.example.org:1/", 1),
        ("https://hooks.example.org:65535/", 65535),
    ],
)
def test_a_urls_port_is_its_own_or_the_schemes(url, port):
    assert STRICT.check_scheme(url) == ("hooks.example.org", port)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:15432/",  # the project's PostgreSQL
        "https://localhost:19092/",  # a name that resolves to loopback
        "https://[::1]:8001/",
        "https://169.254.169.254/latest/meta-data/",
        "https://2130706433/",  # 127.0.0.1 written as one number
        "https://" + "0" * 300 + "/",  # not a host name at all (schemathesis found this one: a 500)
    ],
)
async def test_registering_a_url_that_reaches_inside_is_refused(url):
    with pytest.raises(DestinationRefused):
        await check_url(url, STRICT)


async def test_plain_http_is_allowed_only_when_configured():
    await check_url(
        "http://127.0.0.1:9/", OutboundPolicy(allow_http=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    )
    with pytest.raises(DestinationRefused, match="https"):
        await check_url("http://127.0.0.1:9/", OutboundPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)))


class CountingServer:
    """A loopback HTTP server that counts the connections it accepts (a stand-in for PostgreSQL
    or any internal port the guard must keep webhooks away from)."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret")
        await writer.drain()
        writer.close()


async def test_the_guarded_client_never_connects_to_a_refused_address():
    counting = CountingServer()
    server = await asyncio.start_server(counting.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # Plain HTTP allowed, loopback not: the address check alone decides.
        async with guarded_client(OutboundPolicy(allow_http=True), timeout=5) as client:
            with pytest.raises(httpx.ConnectError) as refused:
                await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://localhost:{port}/hook", content=b"{}")
        assert is_refused(refused.value)
        assert counting.connections == 0
        # The same server is reached once loopback is explicitly allowed (the guard is what refused).
        allowed = OutboundPolicy(allow_http=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
        async with guarded_client(allowed, timeout=5) as client:
            response = await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")
        assert response.status_code == 200 and counting.connections == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_the_guarded_client_does_not_follow_redirects():
    counting = CountingServer()

    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(redirect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        allowed = OutboundPolicy(allow_http=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
        async with guarded_client(allowed, timeout=5) as client:
            response = await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")
        assert response.status_code == 307  # reported as a failure by the caller, not followed
    finally:
        server.close()
        await server.wait_closed()
    assert counting.connections == 0
