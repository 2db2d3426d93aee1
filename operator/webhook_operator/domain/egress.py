"""Egress policy: may the operator open a connection to this IP address?

Subscription URLs are chosen by whoever may create a WebhookSubscription, so without a policy
the operator would be a proxy into the cluster network and the cloud metadata service. The
sender resolves the host, asks `EgressPolicy.check` about every address it would connect to
and connects only to an address that passed (so DNS rebinding between check and connect
cannot slip through). This module is pure: no sockets, no DNS, only the decision.

By default everything that is not globally routable is refused; `--allow-cidr` and
`WEBHOOK_OPERATOR_ALLOW_CIDRS` admit ranges (10.0.0.0/8 in-cluster, 127.0.0.0/8 on a laptop).
"""

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "EgressConfigError",
    "EgressPolicy",
    "EgressRefusal",
    "IPAddress",
    "IPNetwork",
    "parse_ip_literal",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_ALLOW_HINT = "allow the range with --allow-cidr or WEBHOOK_OPERATOR_ALLOW_CIDRS"

_DESCRIPTIONS = {
    "cloud-metadata": "cloud metadata endpoint",
    "loopback": "loopback address",
    "private": "private address",
    "link-local": "link-local address",
    "unspecified": "unspecified address",
    "this-network": '"this network" address, 0.0.0.0/8',
    "shared-address": "shared address space, 100.64.0.0/10",
    "multicast": "multicast address",
    "broadcast": "broadcast address",
    "documentation": "documentation address",
    "benchmarking": "benchmarking address",
    "reserved": "reserved address",
    "local-nat64": "local-use NAT64 address, 64:ff9b:1::/48",
    "not-an-address": "not an IP address",
}


def _table(category: str, *cidrs: str) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), category) for cidr in cidrs)


# First match wins, so the narrow ranges come before the ranges that contain them. Explicit
# lists rather than `ipaddress.is_global` alone: what the stdlib calls global has changed
# between patch releases of 3.11 (e.g. ::/96 and 64:ff9b:1::/48 are "global" in 3.11.7).
_SPECIAL_RANGES: tuple[tuple[IPNetwork, str], ...] = (
    *_table(
        "cloud-metadata",
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ... instance metadata
        "169.254.170.2/32",  # AWS ECS task metadata and credentials
        "169.254.170.23/32",  # AWS EKS Pod Identity agent (credentials)
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud (legacy)
        "168.63.129.16/32",  # Azure WireServer: a public address reachable only from inside Azure
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "fd00:ec2::23/128",  # AWS EKS Pod Identity agent over IPv6
        "fd20:ce::254/128",  # GCP metadata over IPv6
    ),
    *_table("unspecified", "0.0.0.0/32", "::/128"),
    *_table("loopback", "127.0.0.0/8", "::1/128"),
    *_table("this-network", "0.0.0.0/8"),
    *_table("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10"),
    *_table("shared-address", "100.64.0.0/10"),
    *_table("link-local", "169.254.0.0/16", "fe80::/10"),
    *_table("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),
    *_table("documentation", "2001:db8::/32", "3fff::/20"),
    *_table("benchmarking", "198.18.0.0/15", "2001:2::/48"),
    *_table("broadcast", "255.255.255.255/32"),
    *_table("multicast", "224.0.0.0/4", "ff00::/8"),
    *_table(
        "reserved",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "240.0.0.0/4",  # future use
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo is unpacked before this)
        "5f00::/16",  # SRv6 segment identifiers
    ),
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated, RFC 4291
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _category(address: IPAddress) -> str | None:
    """The reason `address` is refused by default, or None for a globally routable one."""
    for network, category in _SPECIAL_RANGES:
        if address in network:
            return category
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "reserved"
    # Backstop for whatever the running Python knows about and the table above does not.
    return None if address.is_global else "reserved"


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[tuple[str, ipaddress.IPv4Address], ...]:
    """IPv4 addresses a packet to `address` may really be delivered to, named by the form."""
    if address in _IPV4_MAPPED:
        return (("IPv4-mapped", _low32(address)),)
    if address in _IPV4_TRANSLATED:
        return (("IPv4-translated", _low32(address)),)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        return (("IPv4-compatible", _low32(address)),)
    if address in _NAT64_WELL_KNOWN:
        return (("NAT64", _low32(address)),)
    if address in _NAT64_LOCAL:
        # The prefix length of a local NAT64 is a site choice; /96 is the common layout.
        return (("NAT64", _low32(address)),)
    if address.sixtofour is not None:
        return (("6to4", address.sixtofour),)
    if address.teredo is not None:
        server, client = address.teredo
        return (("Teredo server", server), ("Teredo client", client))
    return ()


def _without_scope(address: IPAddress) -> IPAddress:
    # A zone ("%eth0") says which interface, not which address; the ranges ignore it.
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address


class EgressConfigError(ValueError):
    """An allow-list entry that is not a CIDR or an address."""


@dataclass(frozen=True)
class EgressRefusal:
    """Why the policy refuses to connect to `address`."""

    address: str
    category: str
    via: str = ""  # for IPv6 forms that carry an IPv4 address, e.g. "IPv4-mapped 127.0.0.1"

    @property
    def message(self) -> str:
        reason = _DESCRIPTIONS.get(self.category, f"{self.category} address")
        if self.via:
            reason = f"{reason}, {self.via}"
        if self.category == "not-an-address":
            return f"egress policy refuses {self.address} ({reason}; resolve it and check each address)"
        return f"egress policy refuses {self.address} ({reason}); {_ALLOW_HINT}"


@dataclass(frozen=True)
class EgressPolicy:
    """Refuse everything that is not globally routable, except the `allowed` networks."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> "EgressPolicy":
        """Parse --allow-cidr values or WEBHOOK_OPERATOR_ALLOW_CIDRS (entries may hold commas)."""
        if isinstance(cidrs, str):  # iterating a str would yield one-digit "networks"
            cidrs = [cidrs]
        entries = [entry.strip() for value in cidrs for entry in value.split(",")]
        return cls(tuple(_parse_cidr(entry) for entry in entries if entry))

    def check(self, address: IPAddress | str) -> EgressRefusal | None:
        """None when the operator may connect to `address`, otherwise the refusal."""
        parsed = parse_ip_literal(address) if isinstance(address, str) else address
        if parsed is None:  # fail closed: a name must be resolved and its addresses checked
            return EgressRefusal(str(address), "not-an-address")
        plain = _without_scope(parsed)
        if self._admits(plain):
            return None
        embedded = _embedded_ipv4(plain) if isinstance(plain, ipaddress.IPv6Address) else ()
        if not embedded:
            category = _category(plain)
            return None if category is None else EgressRefusal(str(parsed), category)
        for form, ipv4 in embedded:
            if self._admits(ipv4):
                continue
            category = _category(ipv4)
            if category is not None:
                return EgressRefusal(str(parsed), category, f"{form} {ipv4}")
        if plain in _NAT64_LOCAL and not all(self._admits(ipv4) for _, ipv4 in embedded):
            return EgressRefusal(str(parsed), "local-nat64")  # not globally reachable by definition
        return None

    def _admits(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed)


def _parse_cidr(entry: str) -> IPNetwork:
    def invalid(why: str) -> EgressConfigError:
        return EgressConfigError(f"invalid egress allow-list entry {entry!r}: {why}")

    if "%" in entry:  # a zone names an interface, which an allow-list cannot mean
        raise invalid("zone identifiers (%...) are not allowed")
    try:
        interface = ipaddress.ip_interface(entry)
    except ValueError:
        raise invalid("expected a CIDR such as 10.0.0.0/8 or an address such as 127.0.0.1") from None
    if interface.ip != interface.network.network_address:
        # "10.0.0.1/8" might mean 10.0.0.0/8 or 10.0.0.1/32; make the operator say which.
        raise invalid(
            f"host bits are set; use {interface.network} for the range "
            f"or {interface.ip}/{interface.max_prefixlen} for one address"
        )
    return interface.network


# One part of an inet_aton address: hex, octal (leading 0) or decimal, ASCII only.
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]{0,9}")
# The last part fills whatever bits the parts before it left: a, a.b, a.b.c, a.b.c.d.
_LAST_PART_MAX = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)
# IDNA's label separators: NFKC folds the fullwidth and halfwidth full stops into "." and
# U+3002, so only the ideographic full stop is left to map.
_IDEOGRAPHIC_FULL_STOP = str.maketrans({"\u3002": "."})


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names when it is an IP literal in any spelling a resolver accepts.

    Covers what glibc's inet_aton takes ("2130706433", "0x7f.1", "0177.0.0.1", "127.1"), IPv6
    with or without brackets and zone, the one trailing dot URL parsers drop, and Unicode
    digits and full stops that IDNA folds to ASCII (fullwidth "127.0.0.1"). None for host names.
    """
    if host.startswith("[") and host.endswith("]"):
        return _parse_ipv6(host[1:-1])
    if ":" in host:
        return _parse_ipv6(host)
    if not host.isascii():
        # What Python's socket module (IDNA 2003) and yarl (UTS 46) do before resolving.
        host = unicodedata.normalize("NFKC", host).translate(_IDEOGRAPHIC_FULL_STOP)
    return _parse_inet_aton(host)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    text = text.replace("%25", "%", 1)  # RFC 6874 zone in a URL: [fe80::1%25eth0]
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _parse_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 4 or not all(_INET_ATON_PART.fullmatch(part) for part in parts):
        return None
    values = [_part_value(part) for part in parts]
    *leading, last = values
    if any(value > 0xFF for value in leading) or last > _LAST_PART_MAX[len(leading)]:
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _part_value(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)  # WHATWG reads a bare "0x" as 0; glibc rejects it
    if part.startswith("0"):
        return int(part, 8)
    return int(part)
