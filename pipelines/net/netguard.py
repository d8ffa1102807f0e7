"""Which network addresses a fetch may contact, checked on the addresses a connection actually uses.

``address_refusal`` says why an IP address is refused: cloud metadata endpoints (169.254.169.254 and
kin) always, and unless private networks are allowed, loopback, link-local, private, multicast,
unspecified, reserved and shared (CGNAT) addresses. The resolver from ``guarded_resolver_class``
filters what DNS returns, so the connection can only use checked addresses; with the check on every
redirect hop (pipelines/fetch.py), DNS tricks and redirects cannot reach a refused network.

``Refused`` is how every step of a fetch stops with a recorded outcome, the address checks included.
"""

from __future__ import annotations

import ipaddress
import socket

METADATA_NETS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32", "fd00:ec2::254/128", "192.0.0.192/32"))
SHARED_NET = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not public, not "private" to ipaddress


class Refused(Exception):
    """A fetch stops with a recorded outcome (not an error of the program)."""

    def __init__(self, outcome: str, detail: str = ""):
        super().__init__(f"{outcome}: {detail}")
        self.outcome, self.detail = outcome, detail


def address_refusal(ip: str, allow_private: bool) -> str | None:
    """Why an address is refused, or None when it may be contacted."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return f"{ip!r} is not an IP address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in n for n in METADATA_NETS):
        return f"{addr} is a cloud metadata address"
    if allow_private:
        return None
    for test, what in ((addr.is_loopback, "loopback"), (addr.is_link_local, "link-local"),
                       (addr.is_private, "private"), (addr.is_multicast, "multicast"),
                       (addr.is_unspecified, "unspecified"), (addr.is_reserved, "reserved"),
                       (addr.version == 4 and addr in SHARED_NET, "shared (CGNAT)")):
        if test:
            return f"{addr} is a {what} address"
    return None


def guarded_resolver_class():
    """The aiohttp resolver class that drops refused addresses; built on first use, as aiohttp loads lazily."""
    import aiohttp
    from aiohttp.abc import AbstractResolver

    class GuardedResolver(AbstractResolver):
        """Resolves, then keeps only allowed addresses: the connection can only use checked ones."""

        def __init__(self, allow_private: bool):
            self.inner, self.allow_private = aiohttp.ThreadedResolver(), allow_private

        async def resolve(self, host, port=0, family=socket.AF_INET):
            infos = await self.inner.resolve(host, port, family)
            ok = [i for i in infos if address_refusal(i["host"], self.allow_private) is None]
            if not ok:
                raise Refused("refused_address", f"{host} -> {address_refusal(infos[0]['host'], self.allow_private)}")
            return ok

        async def close(self):
            await self.inner.close()

    return GuardedResolver
