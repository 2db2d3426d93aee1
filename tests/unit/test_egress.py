"""The egress policy: which addresses the operator may connect to, in any spelling."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.domain.egress import (
    EgressConfigError,
    EgressPolicy,
    EgressRefusal,
    IPAddress,
    parse_ip_literal,
)

DEFAULT = EgressPolicy()


def refusal_category(address: str, policy: EgressPolicy = DEFAULT) -> str | None:
    refusal = policy.check(address)
    return None if refusal is None else refusal.category


# --- what is refused by default -------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this-network"),
        ("100.64.0.1", "shared-address"),
        ("100.127.255.255", "shared-address"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.0.8", "reserved"),
        ("192.88.99.1", "reserved"),
        ("100::1", "reserved"),
        ("5f00::1", "reserved"),
        ("4000::1", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("2001:2::1", "benchmarking"),
    ],
)
def test_addresses_that_are_not_globally_routable_are_refused_by_default(address: str, category: str) -> None:
    assert refusal_category(address) == category


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity
        "100.100.100.200",  # Alibaba
        "192.0.0.192",  # Oracle
        "168.63.129.16",  # Azure WireServer, a public address
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",
        "fd20:ce::254",  # GCP over IPv6
    ],
)
def test_cloud_metadata_endpoints_are_refused_as_cloud_metadata(address: str) -> None:
    assert refusal_category(address) == "cloud-metadata"


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.check(address) is None


def test_check_accepts_address_objects_as_well_as_text() -> None:
    assert DEFAULT.check(ipaddress.IPv4Address("10.0.0.5")) == EgressRefusal("10.0.0.5", "private")
    assert DEFAULT.check(ipaddress.IPv6Address("2606:4700::1111")) is None


def test_a_link_local_address_with_a_zone_is_refused_and_the_refusal_keeps_the_zone() -> None:
    refusal = DEFAULT.check("fe80::1%eth0")
    assert refusal == EgressRefusal("fe80::1%eth0", "link-local")


def test_a_host_name_given_to_check_is_refused_rather_than_trusted() -> None:
    refusal = DEFAULT.check("metadata.google.internal")
    assert refusal is not None
    assert refusal.category == "not-an-address"
    assert "resolve it" in refusal.message


# --- odd spellings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0000000177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1.2", "10.1.0.2"),
        ("10.65535", "10.0.255.255"),
        ("0", "0.0.0.0"),
        ("0x.0x.0x.0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
        ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "127.0.0.1"),  # fullwidth
        ("127\u30020\u30020\u30021", "127.0.0.1"),  # ideographic full stops
        ("\u2460\u2461\u2466.0.0.1", "127.0.0.1"),  # circled digits, folded by NFKC
    ],
)
def test_odd_spellings_parse_to_the_address_a_resolver_would_connect_to(spelling: str, address: str) -> None:
    assert parse_ip_literal(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "spelling",
    [
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0177.0.0.1",
        "017700000001",
        "127.1",
        "10.1.2",
        "0xa9fea9fe",
        "[::ffff:127.0.0.1]",
        "[::ffff:a9fe:a9fe]",
        "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",
    ],
)
def test_odd_spellings_of_refused_addresses_are_refused(spelling: str) -> None:
    assert DEFAULT.check(spelling) is not None


def test_a_leading_zero_means_octal_so_010_0_0_1_is_the_public_8_0_0_1() -> None:
    # glibc reads "010" as octal 8; refusing it as 10.0.0.1 would misreport what is connected to.
    assert parse_ip_literal("010.0.0.1") == ipaddress.IPv4Address("8.0.0.1")
    assert DEFAULT.check("010.0.0.1") is None


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "0x7f.example.com",
        "127.0.0.1.example.com",
        "localhost",
        "1.2.3.4.5",
        "08.0.0.1",  # 8 is not an octal digit
        "256.0.0.1",
        "1.2.3.256",
        "1.2.65536",
        "4294967296",
        "0x100000000",
        "99999999999",
        "0x7f..1",
        "",
        ".",
        " 127.0.0.1",
        "127.0.0.1 ",
        "+127.0.0.1",
        "0x7f_00_00_01",  # int() would accept the underscores; a resolver does not
        "\u0661\u0662\u0667.0.0.1",  # Arabic-Indic digits: int() would accept them, IDNA does not fold them
        "[127.0.0.1]",
        "[::1",
        "[fe80::1%25]",
    ],
)
def test_host_names_and_malformed_literals_are_not_ip_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


# --- IPv6 forms that carry an IPv4 address ----------------------------------------------------


@pytest.mark.parametrize(
    ("address", "category", "via"),
    [
        ("::ffff:127.0.0.1", "loopback", "IPv4-mapped 127.0.0.1"),
        ("::ffff:10.0.0.5", "private", "IPv4-mapped 10.0.0.5"),
        ("::ffff:169.254.169.254", "cloud-metadata", "IPv4-mapped 169.254.169.254"),
        ("::ffff:0:127.0.0.1", "loopback", "IPv4-translated 127.0.0.1"),
        ("::127.0.0.1", "loopback", "IPv4-compatible 127.0.0.1"),
        ("::10.0.0.5", "private", "IPv4-compatible 10.0.0.5"),
        ("2002:7f00:1::1", "loopback", "6to4 127.0.0.1"),
        ("2002:a9fe:a9fe::", "cloud-metadata", "6to4 169.254.169.254"),
        ("64:ff9b::127.0.0.1", "loopback", "NAT64 127.0.0.1"),
        ("64:ff9b::10.0.0.5", "private", "NAT64 10.0.0.5"),
        ("64:ff9b:1::192.168.0.1", "private", "NAT64 192.168.0.1"),
        # Teredo: server 65.54.227.120 (public), client obfuscated as ~0.0.0.0 ^ ... = 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private", "Teredo client 10.0.0.1"),
        ("2001:0:a00:1::", "private", "Teredo server 10.0.0.1"),
    ],
)
def test_ipv6_forms_embedding_a_refused_ipv4_address_are_refused(
    address: str, category: str, via: str
) -> None:
    assert DEFAULT.check(address) == EgressRefusal(str(ipaddress.ip_address(address)), category, via)


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:8.8.8.8",
        "::ffff:0:8.8.8.8",
        "::8.8.8.8",
        "2002:808:808::1",
        "64:ff9b::8.8.8.8",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # server 65.54.227.120, client 8.8.8.8
    ],
)
def test_ipv6_forms_embedding_a_public_ipv4_address_are_allowed(address: str) -> None:
    assert DEFAULT.check(address) is None


def test_local_use_nat64_is_refused_even_when_it_carries_a_public_address() -> None:
    # 64:ff9b:1::/48 is not globally reachable and its layout is a site choice.
    assert refusal_category("64:ff9b:1::8.8.8.8") == "local-nat64"


def test_local_use_nat64_is_allowed_when_its_prefix_is_allowed() -> None:
    assert EgressPolicy.from_cidrs(["64:ff9b:1::/48"]).check("64:ff9b:1::10.0.0.5") is None


def test_an_embedded_form_is_allowed_when_its_ipv4_address_is_allowed() -> None:
    policy = EgressPolicy.from_cidrs(["127.0.0.0/8"])
    assert policy.check("::ffff:127.0.0.1") is None
    assert policy.check("64:ff9b::127.0.0.1") is None
    assert policy.check("2002:7f00:1::") is None


def test_an_embedded_form_is_allowed_when_the_ipv6_address_itself_is_allowed() -> None:
    policy = EgressPolicy.from_cidrs(["::ffff:127.0.0.1/128"])
    assert policy.check("::ffff:127.0.0.1") is None
    assert policy.check("127.0.0.1") is not None


def test_a_teredo_address_needs_both_its_embedded_addresses_acceptable() -> None:
    only_client_allowed = EgressPolicy.from_cidrs(["10.0.0.1/32"])
    both_allowed = EgressPolicy.from_cidrs(["10.0.0.1/32", "10.0.0.2/32"])
    teredo = "2001:0:a00:2::f5ff:fffe"  # server 10.0.0.2, client 10.0.0.1
    assert only_client_allowed.check(teredo) == EgressRefusal(
        str(ipaddress.ip_address(teredo)), "private", "Teredo server 10.0.0.2"
    )
    assert both_allowed.check(teredo) is None


# --- the allow-list ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "first", "last", "below", "above"),
    [
        ("10.1.0.0/16", "10.1.0.0", "10.1.255.255", "10.0.255.255", "10.2.0.0"),
        ("127.0.0.1/32", "127.0.0.1", "127.0.0.1", "127.0.0.0", "127.0.0.2"),
        ("192.168.1.0/24", "192.168.1.0", "192.168.1.255", "192.168.0.255", "192.168.2.0"),
        (
            "fd12:3456::/32",
            "fd12:3456::",
            "fd12:3456:ffff:ffff:ffff:ffff:ffff:ffff",
            "fd12:3455:ffff:ffff:ffff:ffff:ffff:ffff",
            "fd12:3457::",
        ),
    ],
)
def test_the_allow_list_admits_exactly_its_range(
    cidr: str, first: str, last: str, below: str, above: str
) -> None:
    policy = EgressPolicy.from_cidrs([cidr])
    assert policy.check(first) is None
    assert policy.check(last) is None
    assert policy.check(below) is not None
    assert policy.check(above) is not None


def test_an_allowed_range_admits_odd_spellings_of_its_addresses() -> None:
    assert EgressPolicy.from_cidrs(["127.0.0.0/8"]).check("2130706433") is None


def test_allowing_one_range_keeps_refusing_the_others() -> None:
    policy = EgressPolicy.from_cidrs(["10.0.0.0/8"])
    assert refusal_category("127.0.0.1", policy) == "loopback"
    assert refusal_category("169.254.169.254", policy) == "cloud-metadata"


def test_from_cidrs_strips_blanks_and_reads_single_addresses_as_one_address_networks() -> None:
    policy = EgressPolicy.from_cidrs([" 10.0.0.0/8 ", "", "  ", "127.0.0.1", "::1/128"])
    assert policy.allowed == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )


def test_from_cidrs_reads_comma_separated_entries_like_the_environment_variable() -> None:
    policy = EgressPolicy.from_cidrs("10.0.0.0/8, 127.0.0.0/8,")
    assert policy.allowed == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8"))


def test_from_cidrs_of_nothing_is_the_default_policy() -> None:
    assert EgressPolicy.from_cidrs([]) == DEFAULT


@pytest.mark.parametrize(
    "entry",
    [
        "bogus",
        "10.0.0.0/33",
        "10.0.0.1/8",
        "0x7f.1/8",
        "010.0.0.0/8",
        "256.0.0.0/8",
        "fe80::%eth0/64",
        "10.0.0.0/",
    ],
)
def test_a_bad_allow_list_entry_is_a_config_error_naming_the_entry(entry: str) -> None:
    with pytest.raises(EgressConfigError, match="invalid egress allow-list entry") as raised:
        EgressPolicy.from_cidrs(["127.0.0.0/8", entry])
    assert repr(entry) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_cidr_with_host_bits_set_suggests_both_meanings() -> None:
    with pytest.raises(
        EgressConfigError, match=r"10\.0\.0\.0/8 for the range or 10\.0\.0\.1/32 for one address"
    ):
        EgressPolicy.from_cidrs(["10.0.0.1/8"])


# --- the refusal message ----------------------------------------------------------------------


def test_the_refusal_message_names_the_address_the_policy_and_how_to_allow_it() -> None:
    refusal = DEFAULT.check("10.0.0.5")
    assert refusal is not None
    assert refusal.message == (
        "egress policy refuses 10.0.0.5 (private address); "
        "allow the range with --allow-cidr or WEBHOOK_OPERATOR_ALLOW_CIDRS"
    )


def test_the_refusal_message_of_an_embedded_form_names_the_ipv4_address_too() -> None:
    refusal = DEFAULT.check("::ffff:127.0.0.1")
    assert refusal is not None
    assert "IPv4-mapped 127.0.0.1" in refusal.message
    assert "--allow-cidr" in refusal.message


def test_the_refusal_names_the_address_connected_to_not_its_spelling() -> None:
    refusal = DEFAULT.check("0x7f.1")
    assert refusal is not None
    assert refusal.address == "127.0.0.1"


# --- properties -------------------------------------------------------------------------------


@given(st.ip_addresses(network="10.0.0.0/8"))
def test_any_address_in_10_slash_8_is_refused_by_default(address: IPAddress) -> None:
    assert refusal_category(str(address)) == "private"


@given(st.ip_addresses(network="10.0.0.0/8"), st.integers(min_value=8, max_value=32))
def test_any_address_in_10_slash_8_is_allowed_once_a_range_holding_it_is(
    address: IPAddress, prefix: int
) -> None:
    policy = EgressPolicy((ipaddress.ip_network((address, prefix), strict=False),))
    assert policy.check(address) is None


@given(st.ip_addresses(), st.data())
def test_an_address_inside_an_allowed_network_is_always_allowed(
    address: IPAddress, data: st.DataObject
) -> None:
    prefix = data.draw(st.integers(min_value=0, max_value=address.max_prefixlen))
    policy = EgressPolicy((ipaddress.ip_network((address, prefix), strict=False),))
    assert policy.check(address) is None


@given(st.ip_addresses())
def test_the_canonical_text_of_any_address_parses_back_to_it(address: IPAddress) -> None:
    assert parse_ip_literal(str(address)) == address


@given(st.ip_addresses(v=6))
def test_a_bracketed_ipv6_address_parses_back_to_it(address: ipaddress.IPv6Address) -> None:
    assert parse_ip_literal(f"[{address}]") == address


@given(st.ip_addresses(v=4))
def test_the_integer_spelling_of_an_ipv4_address_parses_to_it(address: ipaddress.IPv4Address) -> None:
    assert parse_ip_literal(str(int(address))) == address
    assert parse_ip_literal(hex(int(address))) == address
    assert parse_ip_literal(f"0{int(address):o}") == address


def _spell(value: int, base: str) -> str:
    return {"dec": str(value), "oct": f"0{value:o}", "hex": f"0x{value:x}"}[base]


@given(
    st.ip_addresses(v=4),
    st.integers(min_value=1, max_value=4),
    st.lists(st.sampled_from(["dec", "oct", "hex"]), min_size=4, max_size=4),
)
def test_any_inet_aton_spelling_of_an_ipv4_address_parses_to_it(
    address: ipaddress.IPv4Address, part_count: int, bases: list[str]
) -> None:
    octets = address.packed
    leading = list(octets[: part_count - 1])
    last = int.from_bytes(octets[part_count - 1 :], "big")
    spelling = ".".join(_spell(value, base) for value, base in zip([*leading, last], bases, strict=False))
    assert parse_ip_literal(spelling) == address


@given(st.text() | st.text(alphabet="0123456789abcdefxX.:[]%25 \uff10\u3002"))
def test_parse_ip_literal_and_check_never_raise_on_any_text(text: str) -> None:
    parsed = parse_ip_literal(text)
    assert parsed is None or isinstance(parsed, ipaddress.IPv4Address | ipaddress.IPv6Address)
    verdict = DEFAULT.check(text)
    if parsed is None:
        assert verdict is not None  # a name fails closed
    else:
        assert verdict == DEFAULT.check(parsed)
