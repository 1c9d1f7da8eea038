"""Outbound-request policy against SSRF: which URLs the server may call on a user's behalf.

A user-supplied URL (an ``llm`` agent's ``base_url``, a webhook) must not make the server call
its own network: loopback, private, link-local (cloud metadata at ``169.254.169.254``),
carrier-grade NAT, unspecified, multicast, reserved or documentation addresses, in any
spelling (``[::ffff:169.254.169.254]``, ``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``,
6to4, Teredo, NAT64), local names (``localhost``, ``*.internal``, ``metadata.google.internal``),
nor the API itself. Only ``http``/``https`` without credentials in the URL is accepted. An admin
allows networks explicitly with CIDRs (``DUKENET_ALLOWED_AGENT_NETWORKS``); an address in an
allowed network is accepted whatever its kind (the API's own port excepted).

Public API:

* :class:`EgressPolicy` (``EgressPolicy.from_settings(settings)``), the rule;
* :func:`check_url` (syntax and literal addresses, no I/O) and :func:`check_url_resolved`
  (also resolves the name and checks every address), for validating a URL when it is stored;
* :func:`guarded_transport` / :func:`guarded_client`, an httpx transport / client that resolves
  each connection's host itself, checks every address and connects to the checked one (so DNS
  rebinding between the check and the connection cannot redirect it), TLS SNI and ``Host``
  still naming the URL's host. Redirects are not followed, proxies from the environment are not
  used.

Every refusal raises :class:`EgressRefused` (a ``ValueError``) whose message says why; at
connect time it arrives as the ``__cause__`` of an ``httpx.ConnectError``
(:func:`is_refusal` tells).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpcore
import httpx

if TYPE_CHECKING:
    from dukenet.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
BLOCKED_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
"""Host names refused whatever they resolve to (loopback aliases, cloud metadata services)."""
BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain")
"""Name suffixes reserved for local networks (RFC 6761, RFC 6762, RFC 8375, ICANN 2024)."""

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
DEFAULT_RESOLVE_TIMEOUT_S = 5.0


class EgressRefused(ValueError):
    """The URL or address is not one the server may call (the message says why)."""


class _EgressConnectRefused(httpcore.ConnectError, EgressRefused):
    """An :class:`EgressRefused` raised inside httpcore, mapped to ``httpx.ConnectError``."""


def is_refusal(exc: BaseException) -> bool:
    """Return True if ``exc`` is, or was caused by, an :class:`EgressRefused`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, EgressRefused):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def parse_networks(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Return the networks of a comma-separated CIDR list (``"127.0.0.0/8, ::1"``).

    Raises:
        ValueError: an entry is not an IP network (host bits set count as an error).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network in CIDR notation ({exc})") from None
    return tuple(networks)


def embedded_addresses(address: IPAddress) -> list[IPAddress]:
    """Return ``address`` and every IPv4 address it carries (mapped, compatible, 6to4, Teredo,
    NAT64): an IPv6 spelling reaches the IPv4 host on a dual-stack or translating network."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        compatible = address in _IPV4_COMPATIBLE and int(address) > 1  # not :: nor ::1
        if compatible or any(address in net for net in _NAT64):
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """Return the IP address a URL host spells, in any form ``getaddrinfo`` accepts (dotted,
    decimal ``2852039166``, hex ``0xa9fea9fe``, octal, shortened ``127.1``, bracketed IPv6 with
    an optional zone), or None if ``host`` is a name."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outbound calls may reach.

    ``allowed_networks``: networks accepted whatever their kind (admin-configured CIDRs).
    ``own_ports``: TCP ports of the API itself; a local address (not global, or ``own_hosts``)
    on one of them is refused even where a network allows it, so that a user cannot make the
    server call its own API. ``resolve_timeout_s``: bound on one DNS lookup (seconds).
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    own_ports: frozenset[int] = frozenset()
    own_hosts: frozenset[str] = frozenset()
    resolve_timeout_s: float = DEFAULT_RESOLVE_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """Return the policy of ``settings``: ``allowed_agent_networks`` and the API's own
        ``host``/``port``."""
        return cls(
            allowed_networks=parse_networks(settings.allowed_agent_networks),
            own_ports=frozenset({settings.port}),
            own_hosts=frozenset({settings.host}),
        )

    def check_address(self, address: IPAddress | str, port: int | None = None) -> None:
        """Accept an address (and port) the server may connect to.

        Raises:
            EgressRefused: the address (or an IPv4 address embedded in it) is not public and
                no allowed network holds it, or it is the API itself.
        """
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        candidates = embedded_addresses(ip)[::-1]  # an embedded IPv4 address gives the reason
        if port is not None and port in self.own_ports:
            for candidate in candidates:
                if not _is_public(candidate) or str(candidate) in self.own_hosts:
                    raise EgressRefused(f"{ip} port {port} is this API itself")
        for candidate in candidates:
            if _is_public(candidate) or self.allows(candidate) or self.allows(ip):
                continue
            raise EgressRefused(
                f"{ip} is a {_kind(candidate)} address"
                + ("" if candidate == ip else f" ({candidate})")
                + "; an admin can allow its network with DUKENET_ALLOWED_AGENT_NETWORKS"
            )

    def allows(self, address: IPAddress) -> bool:
        """Return True if an allowed network holds ``address``."""
        return any(
            address.version == net.version and address in net for net in self.allowed_networks
        )

    def check_host(self, host: str, port: int | None = None) -> IPAddress | None:
        """Accept a URL host without resolving it; return its address if it is a literal one.

        Raises:
            EgressRefused: a refused name or a refused literal address.
        """
        name = host.strip("[]").rstrip(".").lower()
        if not name:
            raise EgressRefused("the URL has no host")
        literal = literal_address(name)
        if literal is not None:
            self.check_address(literal, port)
            return literal
        if name in BLOCKED_NAMES or name.endswith(BLOCKED_SUFFIXES):
            raise EgressRefused(f"{host!r} is a local or metadata host name")
        return None

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return its addresses, every one of them checked.

        Raises:
            EgressRefused: the name is refused, or any address it resolves to is (one bad
                answer among good ones is refused too: the client could be steered to it).
            OSError: the name does not resolve (``socket.gaierror``) or the lookup timed out.
        """
        literal = self.check_host(host, port)
        if literal is not None:
            return [str(literal)]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.resolve_timeout_s
            )
        except TimeoutError:
            raise OSError(f"resolving {host!r} timed out") from None
        addresses: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = str(sockaddr[0]).split("%", 1)[0]
            self.check_address(address, port)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise OSError(f"{host!r} resolves to no address")
        return addresses


def _kind(address: IPAddress) -> str:
    for attribute, kind in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, attribute):
            return kind
    return "non-public"


def _split(url: str) -> tuple[str, int]:
    """Return the host and port of ``url`` after the syntax checks.

    Raises:
        EgressRefused: not http(s), credentials in the URL, no host, a bad port.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise EgressRefused("only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EgressRefused("credentials in the URL (user:password@) are not allowed")
    host = parts.hostname
    if not host:
        raise EgressRefused("the URL has no host")
    return host, port or (443 if scheme == "https" else 80)


def check_url(url: str, policy: EgressPolicy) -> str:
    """Accept ``url`` on its syntax and literal host alone (no DNS); return it unchanged.

    Raises:
        EgressRefused: see :func:`_split` and :meth:`EgressPolicy.check_host`.
    """
    host, port = _split(url)
    policy.check_host(host, port)
    return url


async def check_url_resolved(url: str, policy: EgressPolicy) -> str:
    """Accept ``url`` as :func:`check_url` does and, when its host name resolves, every address
    it resolves to; a name that does not resolve now is accepted (the connection is checked
    again, see :func:`guarded_transport`). Return ``url`` unchanged.

    Raises:
        EgressRefused: the URL or a resolved address is refused.
    """
    host, port = _split(url)
    if policy.check_host(host, port) is None:
        with contextlib.suppress(OSError):  # checked again when connecting
            await policy.resolve(host, port)
    return url


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking each host before connecting to the
    checked address (never to the name, which could resolve differently a second time)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address and connect to the first one that answers.

        Raises:
            httpcore.ConnectError: refused by the policy (an :class:`EgressRefused` too), the
                name does not resolve, or no address accepted the connection.
        """
        try:
            addresses = await self._policy.resolve(host, port)
        except EgressRefused as exc:
            raise _EgressConnectRefused(f"refused to connect to {host}: {exc}") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse: outbound calls go over TCP only."""
        raise _EgressConnectRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the wrapped backend does."""
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` whose connections obey an :class:`EgressPolicy`."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: bool | str = True,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        http2: bool = False,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits, http2=http2)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse a URL with credentials or a non-http(s) scheme, then send as httpx does.

        Raises:
            httpx.ConnectError: the policy refused the target (its ``__cause__`` is an
                :class:`EgressRefused`).
        """
        try:
            _split(str(request.url))
        except EgressRefused as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return await super().handle_async_request(request)


def guarded_transport(policy: EgressPolicy) -> GuardedTransport:
    """Return an httpx transport that checks every connection against ``policy``."""
    return GuardedTransport(policy)


def guarded_client(policy: EgressPolicy, **kwargs: Any) -> httpx.AsyncClient:
    """Return an ``httpx.AsyncClient`` (``kwargs`` as httpx's, e.g. ``timeout``) whose
    connections obey ``policy``; it follows no redirects and ignores proxy variables."""
    kwargs.setdefault("follow_redirects", False)
    return httpx.AsyncClient(transport=guarded_transport(policy), trust_env=False, **kwargs)
