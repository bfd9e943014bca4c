"""Where records are published and looked up: --discovery, $RINGDROP_DISCOVERY and
$RINGDROP_DISCOVERY_DNS, and what a bad value says."""

from __future__ import annotations

import pytest

from ringdrop.discovery import Services
from ringdrop.errors import SettingsError
from ringdrop.node.config import DEFAULT_DISCOVERY, DEFAULT_DNS_ORIGIN, discovery_from

OWN = "https://dns.example.org/pkarr"


def test_by_default_n0s_relay_and_zone_are_used() -> None:
    assert discovery_from(None, {}) == Services(DEFAULT_DISCOVERY, DEFAULT_DNS_ORIGIN)


def test_the_option_wins_over_the_variable_and_disabled_turns_both_lookups_off() -> None:
    environ = {"RINGDROP_DISCOVERY": "https://other.example/pkarr"}
    assert discovery_from([OWN + "/"], environ).pkarr == (OWN,)
    assert discovery_from(["disabled"], {}) == Services()
    assert not discovery_from(None, {"RINGDROP_DISCOVERY": "disabled"}).enabled


def test_a_self_hosted_relay_is_not_doubled_by_dns_lookups_at_n0() -> None:
    assert discovery_from([OWN], {}) == Services((OWN,))


def test_the_dns_zone_and_its_server_can_be_named() -> None:
    environ = {"RINGDROP_DISCOVERY": OWN, "RINGDROP_DISCOVERY_DNS": "Dns.Example.org.@[::1]:5300"}
    assert discovery_from(None, environ) == Services((OWN,), "dns.example.org", ("::1", 5300))
    environ["RINGDROP_DISCOVERY_DNS"] = "dns.example.org@192.0.2.1"
    assert discovery_from(None, environ).dns_server == ("192.0.2.1", 53)
    environ["RINGDROP_DISCOVERY_DNS"] = "disabled"
    assert discovery_from(None, environ) == Services((OWN,))


@pytest.mark.parametrize(
    ("given", "environ", "says"),
    [
        (["ftp://dns.example.org/"], {}, "the discovery setting: 'ftp://dns.example.org/' is"),
        (["https://user@dns.example.org/"], {}, "is not a discovery service"),
        ([f"disabled,{OWN}"], {}, None),
        (None, {"RINGDROP_DISCOVERY_DNS": "a b"}, "RINGDROP_DISCOVERY_DNS: 'a b' is not a DNS"),
        (None, {"RINGDROP_DISCOVERY_DNS": "dns.test@h:0"}, "is not a number from 1 to 65535"),
        (None, {"RINGDROP_DISCOVERY": f"disabled,{OWN}"}, "must be the only value"),
    ],
)
def test_a_bad_setting_says_what_is_wrong(
    given: list[str] | None, environ: dict[str, str], says: str | None
) -> None:
    with pytest.raises(SettingsError) as caught:
        discovery_from(given, environ)
    if says is not None:
        assert says in str(caught.value)
