"""Which network addresses a fetch may contact, checked on the addresses a connection actually uses.

``address_refusal`` says why an IP address is refused: cloud metadata endpoints (169.254.169.254 and
kin) always, and unless private networks are allowed, loopback, link-local, private, multicast,
unspecified, reserved and shared (CGNAT) addresses. An IPv6 address that carries an IPv4 address
(IPv4-mapped ``::ffff:0:0/96``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``,
Teredo ``2001::/32``) is judged by the IPv4 address too, so a tunnel cannot reach what the plain
address could not. ``numeric_host_refusal`` refuses host names that are numbers in disguise
(``2130706433``, ``127.1``, ``0x7f.0.0.1``, ``0177.0.0.1``): the C resolver reads them as addresses,
and no genuine site is named that way. The resolver from ``guarded_resolver_class`` filters what DNS
returns, so the connection can only use checked addresses; with the check on every redirect hop
(pipelines/net/fetch.py), DNS tricks and redirects cannot reach a refused network.

``Refused`` is how every step of a fetch stops with a recorded outcome, the address checks included.
"""

from __future__ import annotations

import ipaddress
import re
import socket

METADATA_NETS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack instance metadata
    "169.254.170.2/32",  # AWS ECS task credentials
    "169.254.170.23/32",  # AWS EKS pod identity agent
    "168.63.129.16/32",  # Azure wire server
    "100.100.100.200/32",  # Alibaba Cloud
    "192.0.0.192/32",  # Oracle Cloud
    "fd00:ec2::254/128",  # AWS instance metadata over IPv6
    "fd00:ec2::23/128",  # AWS EKS pod identity agent over IPv6
))
SHARED_NET = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not public, not "private" to ipaddress
NAT64_NETS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
ALLOW_HINT = ("; private networks are refused by default: pass --allow-private-net "
              "(or --set fetch.allow_private_net=true) to fetch from them")
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.IGNORECASE)


class Refused(Exception):
    """A fetch stops with a recorded outcome (not an error of the program)."""

    def __init__(self, outcome: str, detail: str = ""):
        super().__init__(f"{outcome}: {detail}")
        self.outcome, self.detail = outcome, detail


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo client), or None."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if any(addr in n for n in NAT64_NETS):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def _refusal(addr, allow_private: bool) -> str | None:
    if any(addr in n for n in METADATA_NETS):
        return f"{addr} is a cloud metadata address"
    if allow_private:
        return None
    for test, what in ((addr.is_loopback, "loopback"), (addr.is_link_local, "link-local"),
                       (addr.is_private, "private"), (addr.is_multicast, "multicast"),
                       (addr.is_unspecified, "unspecified"), (addr.is_reserved, "reserved"),
                       (addr.version == 4 and addr in SHARED_NET, "shared (CGNAT)")):
        if test:
            return f"{addr} is a {what} address" + ALLOW_HINT
    return None


def address_refusal(ip: str, allow_private: bool) -> str | None:
    """Why an address is refused, or None when it may be contacted.

    Refusals that ``allow_private`` would lift end with a hint naming the flag; metadata refusals do not.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return f"{ip!r} is not an IP address"
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None:
            why = _refusal(inner, allow_private)
            if why:
                return f"{addr} carries {why}"
            if addr.ipv4_mapped is not None or any(addr in n for n in NAT64_NETS):
                return None  # the IPv4 address is what the connection reaches: it alone decides
    return _refusal(addr, allow_private)


def numeric_host_refusal(host: str) -> str | None:
    """Why a host written as a bare or partial number (``2130706433``, ``127.1``, hex, octal) is refused."""
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        ipaddress.IPv4Address(host)
        return None  # a canonical dotted quad: checked as an address
    except ValueError:
        pass
    try:
        meant = socket.inet_ntoa(socket.inet_aton(host.rstrip(".")))
    except OSError:
        meant = "no valid address"
    return f"host {host!r} is an IP address in a non-standard numeric form (= {meant}); such hosts are refused"


def guarded_resolver_class():
    """The aiohttp resolver class that drops refused addresses; built on first use, as aiohttp loads lazily."""
    import aiohttp
    from aiohttp.abc import AbstractResolver

    class GuardedResolver(AbstractResolver):
        """Resolves, then keeps only allowed addresses: the connection can only use checked ones."""

        def __init__(self, allow_private: bool):
            self.inner, self.allow_private = aiohttp.ThreadedResolver(), allow_private

        async def resolve(self, host, port=0, family=socket.AF_INET):
            why = numeric_host_refusal(host)
            if why:
                raise Refused("refused_address", why)
            infos = await self.inner.resolve(host, port, family)
            ok = [i for i in infos if address_refusal(i["host"], self.allow_private) is None]
            if not ok:
                why = address_refusal(infos[0]["host"], self.allow_private) if infos else "no address"
                raise Refused("refused_address", f"{host} -> {why}")
            return ok

        async def close(self):
            await self.inner.close()

    return GuardedResolver
