"""The ring commands of issue 24 from the command line: members-serve on ring new and set, ring
expire, the version each change signs, ring sync with nobody to ask, and the settings that
limit what a node uploads (`serve --limit-rate`, `limit_rate` and `serve_rings` in
config.json)."""

from __future__ import annotations

import json
import re

import pytest

from ringdrop.node import Node as ApiNode
from tests.cli_util import Node


def version(alice: Node, ring: str) -> int:
    row = re.search(rf"^{ring} +\S+ +\S+ +\S+ +(\d+)", alice.run("ring", "list").stdout, re.M)
    assert row is not None
    return int(row[1])


def test_every_change_to_a_ring_signs_a_higher_version(alice: Node, bob: Node) -> None:
    alice.run("ring", "new", "family", "--members-serve", "off")
    assert re.search(r"^family +0 +0 +no +1$", alice.run("ring", "list").stdout, re.M)
    alice.run("peer", "add", bob.peer_id(), "bob")
    steps = [
        ("ring", "add", "family", "bob"),
        ("ring", "set", "family", "--members-serve", "on"),
        ("ring", "expire", "family", "bob", "2h"),
        ("ring", "expire", "family", "bob"),
        ("ring", "remove", "family", "bob"),
    ]
    seen = [version(alice, "family")]
    for step in steps:
        alice.run(*step)
        seen.append(version(alice, "family"))
    assert seen == sorted(set(seen)), seen
    with ApiNode(alice.data_dir) as node:
        (manifest,) = node._access.held_manifests()
    assert (manifest.version, manifest.members_serve, manifest.members) == (seen[-1], True, ())


def test_ring_expire_ends_a_membership_now_or_later(alice: Node, bob: Node) -> None:
    alice.run("ring", "new", "family")
    alice.run("peer", "add", bob.peer_id(), "bob")
    alice.run("ring", "add", "family", "bob")
    assert "ends at" in alice.run("ring", "expire", "family", "bob", "3d").stdout
    assert "until" in alice.run("ring", "members", "family").stdout
    assert "ends now" in alice.run("ring", "expire", "family", "bob").stdout
    assert "expired" in alice.run("ring", "members", "family").stdout
    assert "does not include" in alice.run("ring", "expire", "open", "bob", code=5).stderr


def test_ring_set_needs_a_setting_and_the_open_ring_has_none(alice: Node) -> None:
    alice.run("ring", "new", "family")
    assert "--members-serve" in alice.run("ring", "set", "family", code=2).stderr
    alice.run("ring", "set", "open", "--members-serve", "off", code=10)


def test_ring_sync_with_no_ring_of_others_says_so(alice: Node) -> None:
    assert "newest known" in alice.run("ring", "sync").stdout


@pytest.mark.parametrize("bad", ["fast", "0", "=-5M", "20X"])
def test_a_rate_limit_that_is_no_rate_is_refused(alice: Node, bad: str) -> None:
    option = f"--limit-rate{bad}" if bad.startswith("=") else f"--limit-rate={bad}"
    assert "not a rate" in alice.run("serve", option, code=2).stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [("limit_rate", "20M"), ("limit_rate", 0), ("serve_rings", "yes"), ("limit_rate", True)],
)
def test_config_json_refuses_bad_upload_settings(alice: Node, setting: str, value: object) -> None:
    alice.run("id")
    config = alice.data_dir / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {setting: value}))
    assert setting in alice.run("ring", "list", code=10).stderr


def test_config_json_upload_settings_reach_the_node(alice: Node) -> None:
    alice.run("id")
    config = alice.data_dir / "config.json"
    config.write_text(
        json.dumps(
            json.loads(config.read_text()) | {"limit_rate": 20_000_000, "serve_rings": False}
        )
    )
    with ApiNode(alice.data_dir) as node:
        assert (node.limit_rate, node.config.serve_rings) == (20_000_000, False)
