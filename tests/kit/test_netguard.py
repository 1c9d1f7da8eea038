"""The egress policy (``kit.netguard``): which URLs and addresses the server may call, and the
httpx client that enforces it when it connects (after its own DNS resolution)."""

from __future__ import annotations

import socket

import httpx
import pytest

from dukenet.kit import netguard
from dukenet.kit.netguard import EgressPolicy, EgressRefused
from tests.llm_double import LLMDouble

NOTHING_ALLOWED = EgressPolicy()
LOOPBACK_ALLOWED = EgressPolicy(allowed_networks=netguard.parse_networks("127.0.0.0/8,::1/128"))

REFUSED_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/v1",
    "http://172.16.3.4/v1",
    "http://192.168.1.1/v1",
    "http://100.64.0.1/v1",  # carrier-grade NAT
    "http://127.0.0.1:8000/api/v2",
    "http://[::1]/v1",
    "http://0.0.0.0/v1",
    "http://[::]/v1",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[fe80::1%25eth0]/",
    "http://[fd00::1]/",
    "http://2852039166/",  # decimal 169.254.169.254
    "http://0xa9fea9fe/",  # hex
    "http://0251.0376.0251.0376/",  # octal
    "http://127.1/",
    "http://224.0.0.1/",
    "http://localhost:11434/v1",
    "http://LOCALHOST./v1",
    "http://api.localhost/v1",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://printer.local/",
    "http://user:pass@10.0.0.1/v1",
    "http://user:pass@api.openai.com/v1",
    "ftp://api.openai.com/v1",
    "file:///etc/passwd",
    "gopher://10.0.0.1:6379/",
]


class TestCheckUrl:
    @pytest.mark.parametrize("url", REFUSED_URLS)
    def test_local_metadata_and_disguised_targets_are_refused(self, url: str) -> None:
        with pytest.raises(EgressRefused):
            netguard.check_url(url, NOTHING_ALLOWED)

    @pytest.mark.parametrize(
        "url", ["https://api.openai.com/v1", "http://8.8.8.8:8080/v1", "https://[2606:4700::1]/v1"]
    )
    def test_public_targets_are_accepted(self, url: str) -> None:
        assert netguard.check_url(url, NOTHING_ALLOWED) == url

    def test_the_reason_names_the_kind_of_address(self) -> None:
        with pytest.raises(EgressRefused, match=r"link-local address.*ALLOWED_AGENT_NETWORKS"):
            netguard.check_url("http://[::ffff:169.254.169.254]/", NOTHING_ALLOWED)
        with pytest.raises(EgressRefused, match="credentials"):
            netguard.check_url("https://k:s@api.openai.com/v1", NOTHING_ALLOWED)

    def test_an_allowed_network_admits_its_addresses_only(self) -> None:
        assert netguard.check_url("http://127.0.0.1:9/v1", LOOPBACK_ALLOWED)
        assert netguard.check_url("http://[::1]:9/v1", LOOPBACK_ALLOWED)
        for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://localhost:9/"):
            with pytest.raises(EgressRefused):
                netguard.check_url(url, LOOPBACK_ALLOWED)

    def test_the_api_itself_is_refused_even_where_its_network_is_allowed(self) -> None:
        policy = EgressPolicy(
            allowed_networks=netguard.parse_networks("127.0.0.0/8"),
            own_ports=frozenset({8000}),
            own_hosts=frozenset({"127.0.0.1"}),
        )
        with pytest.raises(EgressRefused, match="this API itself"):
            netguard.check_url("http://127.0.0.1:8000/api/v2", policy)
        assert netguard.check_url("http://127.0.0.1:8001/v1", policy)

    def test_allowed_networks_must_be_cidrs(self) -> None:
        with pytest.raises(ValueError, match="not a network"):
            netguard.parse_networks("127.0.0.0/8, localhost")


class TestResolved:
    async def test_a_name_resolving_to_a_local_address_is_refused(self) -> None:
        name = socket.gethostname()  # resolves to this machine (loopback or a private address)
        address = socket.gethostbyname(name)
        with pytest.raises(EgressRefused, match=address.replace(".", r"\.")):
            await netguard.check_url_resolved(f"http://{name}:9/v1", NOTHING_ALLOWED)

    async def test_a_name_that_does_not_resolve_is_left_to_the_connection_check(self) -> None:
        url = "http://no-such-host.invalid/v1"
        assert await netguard.check_url_resolved(url, NOTHING_ALLOWED) == url


class TestGuardedClient:
    async def test_a_refused_target_is_never_connected_to(self, double: LLMDouble) -> None:
        async with netguard.guarded_client(NOTHING_ALLOWED, timeout=5) as client:
            for url in (double.base_url, double.base_url.replace("127.0.0.1", "localhost")):
                with pytest.raises(httpx.ConnectError) as caught:
                    await client.post(url + "/chat/completions", json={})
                assert netguard.is_refusal(caught.value)
        assert double.requests == []

    async def test_the_name_is_resolved_checked_and_the_checked_address_connected(
        self, double: LLMDouble
    ) -> None:
        name = socket.gethostname()
        port = int(double.base_url.rsplit(":", 1)[1].split("/")[0])
        address = socket.gethostbyname(name)
        async with netguard.guarded_client(NOTHING_ALLOWED, timeout=5) as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"http://{name}:{port}/")
        assert netguard.is_refusal(caught.value) and address in str(caught.value)

    async def test_an_allowed_target_is_called_with_its_own_host_header(
        self, double: LLMDouble
    ) -> None:
        async with netguard.guarded_client(LOOPBACK_ALLOWED, timeout=5) as client:
            response = await client.post(
                double.base_url + "/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert response.status_code == 200
        [request] = double.requests
        assert request.headers["host"] == double.base_url.split("/")[2]

    async def test_credentials_in_the_url_are_refused_before_any_connection(
        self, double: LLMDouble
    ) -> None:
        url = double.base_url.replace("http://", "http://user:pw@")
        async with netguard.guarded_client(LOOPBACK_ALLOWED, timeout=5) as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.post(url + "/chat/completions", json={})
        assert netguard.is_refusal(caught.value)
        assert double.requests == []
