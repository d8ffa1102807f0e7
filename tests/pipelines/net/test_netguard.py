"""The address guard: metadata endpoints, IPv4 inside IPv6, numeric host forms, and the flag hint."""

from __future__ import annotations

import pytest

from pipelines.net.fetch import FetchConfig, Fetcher
from pipelines.net.netguard import address_refusal, numeric_host_refusal

METADATA = ["169.254.169.254", "168.63.129.16", "169.254.170.23", "169.254.170.2", "fd00:ec2::23",
            "fd00:ec2::254"]
# IPv4 addresses carried in IPv6: mapped, NAT64, 6to4, Teredo (client 127.0.0.1 / 169.254.169.254, XOR-ed)
EMBEDDED_PRIVATE = ["::ffff:127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::1", "2002:c0a8:101::1",
                    "2001:0:4136:e378:8000:63bf:80ff:fffe"]
EMBEDDED_METADATA = ["::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "2002:a83f:8110::",
                     "2001:0:4136:e378:8000:63bf:5601:5601"]


@pytest.mark.parametrize("ip", METADATA + EMBEDDED_METADATA)
def test_metadata_refused_even_with_private_nets_allowed(ip):
    why = address_refusal(ip, allow_private=True)
    assert why is not None and "metadata" in why, (ip, why)
    assert "--allow-private-net" not in why  # the flag would not help: do not suggest it


@pytest.mark.parametrize("ip", EMBEDDED_PRIVATE)
def test_private_ipv4_inside_ipv6_refused(ip):
    why = address_refusal(ip, allow_private=False)
    assert why is not None, ip
    assert "--allow-private-net" in why and "fetch.allow_private_net=true" in why
    assert address_refusal(ip, allow_private=True) is None


def test_public_addresses_pass():
    for ip in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "2002:5db8:d822::1", "64:ff9b::5db8:d822",
               "::ffff:93.184.216.34"):
        assert address_refusal(ip, allow_private=False) is None, ip


def test_numeric_host_forms():
    for host in ("2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1", "0x7f000001", "127.0.1", "017700000001"):
        assert numeric_host_refusal(host) is not None, host
    for host in ("127.0.0.1", "example.org", "1e100.net", "123.example", "localhost"):
        assert numeric_host_refusal(host) is None, host


@pytest.mark.timeout(60)
def test_numeric_hosts_end_refused_not_retried():
    urls = ["http://2130706433/", "http://127.1/", "http://0x7f.0.0.1/", "http://0177.0.0.1/",
            "http://[::ffff:127.0.0.1]:9/", "http://[64:ff9b::7f00:1]:9/", "http://168.63.129.16/"]
    with Fetcher(FetchConfig(retries=2, backoff_s=0.01, timeout_s=2.0, svg="reject")) as f:
        res = f.fetch(urls)
    assert [r.outcome for r in res] == ["refused_address"] * len(urls), [(r.url, r.outcome, r.detail) for r in res]
    assert all(r.attempts <= 1 for r in res)
