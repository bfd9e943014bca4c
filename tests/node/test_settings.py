"""Relay and STUN settings: options over environment over defaults, `disabled`, the checks on
each value, the home relay, and the tickets a node makes with them. Nothing is contacted: the
relay URLs here are never dialled."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from ringdrop.errors import RelayDisabledError, SettingsError, StoreError
from ringdrop.node import Node
from ringdrop.node.config import (
    DEFAULT_RELAYS,
    DEFAULT_STUN,
    relay_url,
    relays_from,
    stun_server,
    stun_servers_from,
)
from ringdrop.ticket import Ticket

LOCAL_RELAY = "http://127.0.0.1:1/"
OTHER_RELAY = "http://127.0.0.1:2/"


# Where the settings come from


def test_without_option_or_variable_the_defaults_apply() -> None:
    assert relays_from(None, {}) == DEFAULT_RELAYS
    assert stun_servers_from(None, {}) == (
        ("stun.l.google.com", 19302),
        ("stun.cloudflare.com", 3478),
    )
    assert len(DEFAULT_STUN) == 2


def test_an_empty_variable_counts_as_unset() -> None:
    assert relays_from(None, {"RINGDROP_RELAY": " , "}) == DEFAULT_RELAYS


def test_the_variable_is_comma_separated() -> None:
    environ = {"RINGDROP_RELAY": f" {LOCAL_RELAY} ,{OTHER_RELAY}", "RINGDROP_STUN": "a.test:1,b"}
    assert relays_from(None, environ) == (LOCAL_RELAY, OTHER_RELAY)
    assert stun_servers_from(None, environ) == (("a.test", 1), ("b", 3478))


def test_options_win_over_the_variable() -> None:
    environ = {"RINGDROP_RELAY": LOCAL_RELAY, "RINGDROP_STUN": "a.test:1"}
    assert relays_from([OTHER_RELAY], environ) == (OTHER_RELAY,)
    assert stun_servers_from(["c.test:3"], environ) == (("c.test", 3),)


@pytest.mark.parametrize("value", ["disabled", "Disabled", " disabled "])
def test_disabled_alone_turns_them_off(value: str) -> None:
    assert relays_from([value], {}) == ()
    assert stun_servers_from(None, {"RINGDROP_STUN": value}) == ()


def test_disabled_among_other_values_is_refused() -> None:
    with pytest.raises(SettingsError, match="only value"):
        relays_from(None, {"RINGDROP_RELAY": f"disabled,{LOCAL_RELAY}"})


def test_repeated_values_count_once() -> None:
    assert relays_from([LOCAL_RELAY, LOCAL_RELAY.rstrip("/")], {}) == (LOCAL_RELAY,)


# Each value


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("https://relay.example.net", "https://relay.example.net/"),
        ("HTTPS://relay.example.net/", "https://relay.example.net/"),
        ("  http://[2001:db8::2]:3340/x ", "http://[2001:db8::2]:3340/x"),
    ],
)
def test_relay_urls_are_normalised(given: str, used: str) -> None:
    assert relay_url(given) == used


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("ftp://relay.example.net/", "http:// or https://"),
        ("relay.example.net", "http:// or https://"),
        ("https://user:pw@relay.example.net/", "user or password"),
        ("https:///relay", "no host"),
        ("https://relay example/", "white space"),
        ("https://relay.example.net:70000/", "cannot be read"),
        ("https://r" + "e" * 260 + ".net/", "255"),
    ],
)
def test_bad_relay_urls_are_refused_naming_their_source(bad: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        relays_from(None, {"RINGDROP_RELAY": bad})
    assert str(caught.value).startswith("RINGDROP_RELAY: ")


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("stun.example.net:3478", ("stun.example.net", 3478)),
        ("stun.example.net", ("stun.example.net", 3478)),
        ("192.0.2.7:19302", ("192.0.2.7", 19302)),
        ("[2001:db8::1]:5349", ("2001:db8::1", 5349)),
        ("2001:db8::1", ("2001:db8::1", 3478)),
    ],
)
def test_stun_servers_are_host_and_port(given: str, used: tuple[str, int]) -> None:
    assert stun_server(given) == used


@pytest.mark.parametrize(
    "bad", ["stun.example.net:0", "stun.example.net:", "stun.example.net:http", ":3478",
            "stun example:3478", "[2001:db8::1", "a:b:c", "-bad-.example:1"],
)  # fmt: skip
def test_bad_stun_servers_are_refused(bad: str) -> None:
    with pytest.raises(SettingsError, match=r"^the STUN setting: .* is not a STUN server") as e:
        stun_servers_from([bad], {})
    assert (e.value.setting, e.value.variable) == ("stun", None)  # the CLI names its option
    assert str(e.value).endswith(e.value.problem)


# The node


def test_the_test_suite_configures_no_relay_and_no_stun(tmp_path: Path) -> None:
    with Node(tmp_path / "n") as node:
        assert node.relays == ()
        assert node.stun_servers == ()
        assert node.home_relay is None


def test_node_takes_its_settings_from_keywords(tmp_path: Path) -> None:
    with Node(tmp_path / "n", relays=[LOCAL_RELAY], stun=["192.0.2.9:1", ("::1", 2)]) as node:
        assert node.relays == (LOCAL_RELAY,)
        assert node.stun_servers == (("192.0.2.9", 1), ("::1", 2))


def test_node_takes_its_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGDROP_RELAY", f"{LOCAL_RELAY},{OTHER_RELAY}")
    monkeypatch.setenv("RINGDROP_STUN", "192.0.2.9:1")
    with Node(tmp_path / "n") as node:
        assert node.relays == (LOCAL_RELAY, OTHER_RELAY)
        assert node.stun_servers == (("192.0.2.9", 1),)


def test_node_with_a_bad_setting_opens_nothing(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        Node(tmp_path / "n", relays=["ftp://x/"])
    assert not (tmp_path / "n").exists()


def test_ticket_addresses_come_from_the_keyword_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGDROP_ADDRESSES", "192.0.2.7, 192.0.2.8")
    with Node(tmp_path / "n", addresses=["::1"]) as given, Node(tmp_path / "m") as from_env:
        assert [str(a.ip) for a in given.addresses()] == ["::1"]
        assert [str(a.ip) for a in from_env.addresses()] == ["192.0.2.7", "192.0.2.8"]


def test_a_bad_address_is_a_usage_error_naming_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError, match=r"^addresses holds a bad address"):
        Node(tmp_path / "n", addresses=["192.0.2.300"])
    assert not (tmp_path / "n").exists()
    monkeypatch.setenv("RINGDROP_ADDRESSES", "nowhere")
    with (
        Node(tmp_path / "m") as node,
        pytest.raises(SettingsError, match=r"^RINGDROP_ADDRESSES holds a bad address"),
    ):
        node.addresses()


async def test_home_relay_is_chosen_by_an_explicit_step_and_saved(tmp_path: Path) -> None:
    with Node(tmp_path / "n", relays=[LOCAL_RELAY, OTHER_RELAY]) as node:
        assert node.home_relay is None  # never blocks: nothing chosen yet
        # Neither answers its probe: the first is chosen.
        assert await node.choose_home_relay() == LOCAL_RELAY
        assert node.home_relay == LOCAL_RELAY
    with Node(tmp_path / "n", relays=[LOCAL_RELAY, OTHER_RELAY]) as node:
        assert node.home_relay == LOCAL_RELAY  # saved in config.json


def _save_home_relay(data_dir: Path, relay: object) -> None:
    with Node(data_dir):
        pass  # creates config.json
    path = data_dir / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | {"home_relay": relay}))


async def test_home_relay_is_the_saved_choice_while_it_is_configured(tmp_path: Path) -> None:
    _save_home_relay(tmp_path / "n", OTHER_RELAY)
    with Node(tmp_path / "n", relays=[LOCAL_RELAY, OTHER_RELAY]) as node:
        assert node.home_relay == OTHER_RELAY
        assert await node.choose_home_relay() == OTHER_RELAY
    with Node(tmp_path / "n", relays=[LOCAL_RELAY]) as node:
        assert node.home_relay is None
        assert await node.choose_home_relay() == LOCAL_RELAY
    with Node(tmp_path / "n", relays=["disabled"]) as node:
        assert node.home_relay is None
        assert await node.choose_home_relay() is None


async def test_a_saved_home_relay_that_is_not_text_is_ignored(tmp_path: Path) -> None:
    _save_home_relay(tmp_path / "n", 42)
    with Node(tmp_path / "n", relays=[LOCAL_RELAY]) as node:
        assert await node.choose_home_relay() == LOCAL_RELAY
        assert node.config.port > 0


def test_shared_ticket_names_the_home_relay_and_the_addresses(tmp_path: Path, a_file: Path) -> None:
    with Node(tmp_path / "n", relays=[LOCAL_RELAY]) as node:
        text = node.share(a_file, open=True).ticket.encode()
    ticket = Ticket.decode(text)
    assert ticket.relay == LOCAL_RELAY
    assert [str(a.ip) for a in ticket.addresses] == ["127.0.0.1"]


def test_shared_ticket_without_addresses_names_only_the_relay(tmp_path: Path, a_file: Path) -> None:
    with Node(tmp_path / "n", relays=[LOCAL_RELAY]) as node:
        ticket = Ticket.decode(node.share(a_file, open=True, addresses=False).ticket.encode())
    assert ticket.addresses == ()
    assert ticket.relay == LOCAL_RELAY


def test_a_ticket_without_addresses_needs_a_relay(tmp_path: Path, a_file: Path) -> None:
    with Node(tmp_path / "n") as node:
        with pytest.raises(RelayDisabledError, match="relaying is disabled"):
            node.share(a_file, open=True, addresses=False)
        assert node.shares() == []  # refused before importing anything


async def test_getting_a_relay_only_ticket_fails_at_once_saying_why(tmp_path: Path) -> None:
    with Node(tmp_path / "sharer", relays=[LOCAL_RELAY]) as sharer:
        ticket = sharer.ticket(bytes(32), "blob", "x", 1, at=())
    with (
        Node(tmp_path / "receiver") as receiver,
        pytest.raises(RelayDisabledError, match=re.escape(f"only its relay {LOCAL_RELAY}")),
    ):
        await asyncio.wait_for(receiver.get(ticket, tmp_path / "out"), 5)


# How much of the logs a serving node keeps


def _set_config(data_dir: Path, **values: object) -> None:
    with Node(data_dir):
        pass
    path = data_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def test_the_logs_are_kept_90_days_and_100000_entries_by_default(tmp_path: Path) -> None:
    with Node(tmp_path / "n") as node:
        assert (node.config.retention.days, node.config.retention.entries) == (90.0, 100_000)
    saved = json.loads((tmp_path / "n" / "config.json").read_text())
    assert (saved["log_keep_days"], saved["log_keep_entries"]) == (90.0, 100_000)


def test_the_log_retention_is_read_from_the_config_file(tmp_path: Path) -> None:
    _set_config(tmp_path / "n", log_keep_days=7, log_keep_entries=500)
    with Node(tmp_path / "n") as node:
        assert (node.config.retention.days, node.config.retention.entries) == (7.0, 500)


@pytest.mark.parametrize(
    "values",
    [{"log_keep_days": 0}, {"log_keep_days": "long"}, {"log_keep_entries": 1.5},
     {"log_keep_entries": 0}, {"log_keep_entries": True}],
)  # fmt: skip
def test_a_bad_log_retention_is_an_error_naming_the_file(
    tmp_path: Path, values: dict[str, object]
) -> None:
    _set_config(tmp_path / "n", **values)
    with pytest.raises(StoreError, match=re.escape(str(tmp_path / "n" / "config.json"))):
        Node(tmp_path / "n")
