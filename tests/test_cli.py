"""The `ringdrop` command line without a network: every command through its entry point (in this
process; the installed console script in a few), their output for people and for programs, errors
and exit codes."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import subprocess
import tomllib
from datetime import datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest

from ringdrop import __version__
from ringdrop.cli import build_parser, main
from ringdrop.cli.base import expiry
from ringdrop.cli.exits import ExitCode, classify, report
from ringdrop.cli.progress import describe
from ringdrop.display import safe, size
from ringdrop.errors import (
    AccessDeniedError,
    AlreadyServedError,
    AmbiguousError,
    DiskFullError,
    ExistsError,
    IntegrityError,
    InvalidNameError,
    LocalProtocolError,
    NotFoundError,
    OpenRingError,
    ProtocolError,
    RelayDisabledError,
    RingdropError,
    SettingsError,
    StoreError,
    TicketError,
    TransferError,
    UnsafePathError,
    WrongPeerError,
)
from ringdrop.identity import PeerId
from ringdrop.node.progress import FileProgress, Progress
from ringdrop.ticket import Address, Ticket

from .cli_util import TICKET, Node, cli_env, ringdrop
from .files import tree

PEER_ID_CHARS = 52


# -- the program ----------------------------------------------------------------------------------


def test_version_names_the_package_version(alice: Node) -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    version = project["project"]["version"]
    assert __version__ == version
    assert alice.run("--version").stdout.strip() == f"ringdrop {version}"


def test_the_first_command_that_makes_a_data_directory_says_so_once(alice: Node) -> None:
    first = alice.run("id")
    peer_id = first.stdout.strip()
    assert first.stderr == (
        f"ringdrop: created the data directory {alice.data_dir}; this node's peer id is {peer_id}\n"
    )
    again = alice.run("id")
    assert (again.stdout.strip(), again.stderr) == (peer_id, "")


@pytest.mark.parametrize(
    "command",
    [
        ("ring", "list"),
        ("ring", "members", "family"),
        ("ring", "add", "family", "x" * 52),
        ("peer", "list"),
        ("grant", "list"),
        ("log",),
        ("log", "--access"),
        ("blob", "list"),
        ("blob", "ticket", "notes.txt"),
        ("store", "check"),
        ("store", "gc"),
    ],
    ids=" ".join,
)
def test_a_command_that_only_reads_does_not_make_a_missing_data_directory(
    alice: Node, command: tuple[str, ...]
) -> None:
    err = alice.run(*command, code=5).stderr
    assert err.splitlines()[0] == (
        f"ringdrop: not found: there is no data directory at {alice.data_dir}"
    )
    assert "ringdrop id" in err
    assert not alice.data_dir.exists()


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append(" ".join((*prefix, name)))
                paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


@pytest.mark.parametrize("command", _command_paths(build_parser()))
def test_every_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main([*command.split(), "--help"])
    assert exit.value.code == 0
    assert "example" in capsys.readouterr().out


def _parser_of(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in command.split():
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize("command", _command_paths(build_parser()))
def test_every_argument_of_every_command_says_what_it_is(command: str) -> None:
    undescribed = [
        a.metavar or a.dest
        for a in _parser_of(command)._actions
        if not a.option_strings
        and not isinstance(a, argparse._SubParsersAction)
        and a.help in (None, "")
    ]
    assert undescribed == []


def _commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", _command_paths(build_parser()))
def test_the_parser_built_for_a_command_line_holds_that_command_as_the_full_one_does(
    command: str,
) -> None:
    argv = ["--data-dir", "d", "--debug", *command.split()]
    parser = build_parser(argv)
    for word in command.split():
        parser = _commands_of(parser)[word]
    assert parser.format_help() == _parser_of(command).format_help()


@pytest.mark.parametrize("command", sorted(set(_commands_of(build_parser())) - {"tui"}))
def test_a_command_line_builds_only_the_parsers_of_its_own_module(command: str) -> None:
    built = set(_commands_of(build_parser([command])))
    assert command in built
    assert built < set(_commands_of(build_parser()))


@pytest.mark.parametrize("spelling", ["apart", "joined"])
def test_a_command_line_is_read_past_every_global_option_as_the_full_parser_reads_it(
    spelling: str,
) -> None:
    # Each option's value is the name of another command: read as the command, only that
    # command's parser would be built, and `get` would be refused. Not read past, every
    # command's parser would be built.
    full = build_parser()
    takes_value = [
        a
        for a in full._actions
        if a.option_strings and a.nargs != 0 and a.dest not in ("help", "version")
    ]
    assert len(takes_value) >= 5
    for action in takes_value:
        value = "any" if action.choices else "send"
        option = action.option_strings[0]
        given = [option, value] if spelling == "apart" else [f"{option}={value}"]
        argv = [*given, "--debug", "get", "rdrop:x"]
        parser = build_parser(argv)
        assert set(_commands_of(parser)) < set(_commands_of(full)), f"{option}: all built"
        assert parser.parse_args(argv) == full.parse_args(argv), option


@pytest.mark.parametrize("command", ["", "get", "send", "share", "serve", "demo", "peer add"])
def test_help_paragraphs_are_wrapped_to_the_terminal(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    long = [line for line in out.splitlines() if len(line) > 80]
    assert long == []
    description = _parser_of(command).description or ""
    first_words = " ".join(description.split()[:12])
    assert first_words in " ".join(out.split()), "the description, wrapped, not cut"


def test_receive_is_get(alice: Node, capsys: pytest.CaptureFixture[str]) -> None:
    helps = []
    for name in ("get", "receive"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1]
    assert "TICKET the ticket the sharer gave you" in " ".join(helps[0].split())


def test_help_lists_every_command_and_the_exit_codes(alice: Node) -> None:
    out = alice.run("--help", process=True).stdout  # the installed console script
    for command in ("id", "share", "get", "info", "serve", "ring", "peer", "blob", "shares",
                    "grant", "remote", "log", "store", "hash"):  # fmt: skip
        assert f"    {command} " in out or f"({command})" in out
    for code in ExitCode:
        assert f"  {int(code):>3}  " in out


def test_the_error_tree_in_the_docstring_names_every_class_and_its_own_exit_code() -> None:
    import ringdrop.errors

    lines = (ringdrop.errors.__doc__ or "").splitlines()
    found = vars(ringdrop.errors).values()
    classes = [c for c in found if isinstance(c, type) and issubclass(c, RingdropError)]
    assert len(classes) >= 20
    for cls in classes:
        (line,) = [line for line in lines if f" {cls.__name__} " in f"{line} "]
        parent = cls.__mro__[1]
        own = cls is RingdropError or parent is RingdropError
        if own or cls.exit_code != getattr(parent, "exit_code", None):
            assert f"exit {int(cls.exit_code)} " in line, line
        else:
            assert "exit" not in line, line  # inherited: shown only on the parent


def test_a_wrong_command_line_exits_2(alice: Node) -> None:
    assert "invalid choice" in alice.run("fly", code=2, process=True).stderr
    assert "required" in alice.run("ring", "add", "friends", code=2).stderr


def test_data_dir_may_follow_the_command(alice: Node, tmp_path: Path) -> None:
    before = alice.peer_id()
    after = ringdrop(["id", "--data-dir", alice.data_dir], cwd=alice.cwd)
    assert after.stdout.strip() == before


def test_data_dir_comes_from_the_environment(alice: Node) -> None:
    expected = alice.peer_id()
    found = ringdrop(["id"], cwd=alice.cwd, env=cli_env(RINGDROP_DATA_DIR=str(alice.data_dir)))
    assert found.stdout.strip() == expected


def test_debug_shows_the_traceback(alice: Node) -> None:
    plain = alice.run("ring", "delete", "nothing", code=5).stderr
    assert "Traceback" not in plain
    # A real process: the interpreter prints the traceback and exits 1.
    debug = alice.run("--debug", "ring", "delete", "nothing", code=1, process=True).stderr
    assert "Traceback" in debug


def test_debug_logs_on_stderr_only_while_the_command_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def logs(args: argparse.Namespace) -> int:
        logging.getLogger("ringdrop.test").debug("inside the command")
        return 0

    monkeypatch.setattr("ringdrop.cli.transfer.cmd_id", logs)
    root = logging.getLogger()
    before = (root.level, root.handlers[:])
    assert main(["--debug", "id"]) == 0
    assert "inside the command" in capsys.readouterr().err
    assert (root.level, root.handlers) == before


# -- id -------------------------------------------------------------------------------------------


def test_id_prints_the_whole_peer_id_and_keeps_it(alice: Node) -> None:
    peer_id = alice.peer_id()
    assert len(peer_id) == PEER_ID_CHARS
    assert str(PeerId.parse(peer_id)) == peer_id
    assert alice.peer_id() == peer_id


def test_id_json(alice: Node) -> None:
    shown = alice.json("id")
    assert isinstance(shown, dict)
    assert set(shown) == {"peer_id", "data_dir", "port"}
    assert shown["peer_id"] == alice.peer_id()
    assert shown["data_dir"] == str(alice.data_dir)
    assert isinstance(shown["port"], int)


def test_id_qr_prints_a_code_of_blocks_and_the_id(alice: Node) -> None:
    out = alice.run("id", "--qr").stdout.splitlines()
    assert out[-1] == alice.peer_id()
    assert sum("█" in line or "▀" in line for line in out) > 10


# -- share and info -------------------------------------------------------------------------------


def test_share_prints_the_ticket_and_the_receiving_command(alice: Node, a_file: Path) -> None:
    out = alice.run("share", a_file, "--open").stdout
    ticket = TICKET.search(out)
    assert ticket is not None
    assert f"ringdrop get {ticket.group()}\n" in out
    assert "notes.txt" in out
    assert "Anyone with the ticket may download it" in out
    assert "No server is running" in out
    assert "ringdrop --data-dir" in out
    assert " serve" in out


def test_shared_ticket_names_the_sharer_on_loopback(alice: Node, a_file: Path) -> None:
    ticket = Ticket.decode(alice.share(a_file, "--open"))
    assert str(ticket.peer_id) == alice.peer_id()
    assert [str(a.ip) for a in ticket.addresses] == ["127.0.0.1"]
    assert ticket.name == "notes.txt"
    assert ticket.size == a_file.stat().st_size


def test_share_json(alice: Node, a_folder: Path) -> None:
    alice.run("ring", "new", "family")
    shown = alice.json("share", a_folder, "--ring", "family")
    assert isinstance(shown, dict)
    assert set(shown) == {"ticket", "command", "hash", "name", "format", "size", "rings",
                          "server_pid", "excluded", "skipped"}  # fmt: skip
    assert shown["command"] == f"ringdrop get {shown['ticket']}"
    assert shown["name"] == "photos"
    assert shown["format"] == "collection"
    assert shown["size"] == sum(map(len, tree(a_folder).values()))
    assert shown["rings"] == ["family"]
    assert shown["server_pid"] is None
    assert Ticket.decode(str(shown["ticket"])).content_hash.hex() == shown["hash"]


def test_share_with_no_ring_says_nobody_may_download_yet(alice: Node, a_file: Path) -> None:
    out = alice.run("share", a_file).stdout
    assert "Nobody may download it yet" in out
    assert "ringdrop blob attach" in out


def test_share_to_an_unknown_ring_exits_5_with_the_fix(alice: Node, a_file: Path) -> None:
    alice.peer_id()
    err = alice.run("share", a_file, "--ring", "nosuch", code=5).stderr
    assert "ringdrop ring new nosuch" in err
    assert len(err.splitlines()) <= 2


def test_share_of_a_missing_path_exits_5(alice: Node, tmp_path: Path) -> None:
    err = alice.run("share", tmp_path / "missing.bin", "--open", code=5).stderr
    assert "missing.bin" in err


def test_info_shows_a_ticket_offline(alice: Node, bob: Node, a_file: Path) -> None:
    ticket = alice.share(a_file, "--open")
    out = bob.run("info", ticket).stdout
    assert "notes.txt" in out
    assert alice.peer_id() in out
    assert "127.0.0.1:" in out
    assert f"ringdrop get {ticket}" in out


def test_info_json(alice: Node, a_folder: Path) -> None:
    ticket = Ticket.decode(alice.share(a_folder, "--open"))
    shown = alice.json("info", ticket.encode())
    assert shown == {
        "peer_id": str(ticket.peer_id),
        "hash": ticket.content_hash.hex(),
        "format": "collection",
        "name": "photos",
        "size": sum(map(len, tree(a_folder).values())),
        "addresses": [str(a) for a in ticket.addresses],
        "relay": None,
        "needs_discovery": False,
    }


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[:60], "cut short"),
        (lambda t: t[:40] + ("b" if t[40] != "b" else "c") + t[41:], "Copy the"),
        (lambda t: t.replace("rdrop:", "http:"), "starts with 'rdrop:'"),
        (lambda t: t[:30] + "1" + t[31:], "which no ticket contains"),
    ],
)
def test_info_on_a_garbled_ticket_exits_3(
    alice: Node, a_file: Path, mangle: object, message: str
) -> None:
    ticket = alice.share(a_file, "--open")
    err = alice.run("info", mangle(ticket), code=3).stderr  # type: ignore[operator]
    assert err.startswith("ringdrop: error: ")
    assert message in err
    assert len(err.splitlines()) <= 2


def test_info_prints_a_hostile_name_safely(alice: Node) -> None:
    peer = PeerId.parse(alice.peer_id())
    ticket = Ticket(
        peer, (Address(ip_address("127.0.0.1"), 4242),), bytes(32), name="invoice\u202egpj.exe"
    )
    out = alice.run("info", ticket.encode()).stdout
    assert "\u202e" not in out
    assert "invoice\\u202egpj.exe" in out


# -- relay and STUN settings, tickets without addresses ------------------------------------------

LOCAL_RELAY = "http://127.0.0.1:1/"  # never contacted: these commands make tickets offline


@pytest.mark.parametrize("command", ["share", "serve", "get", "tui", "demo", "id"])
@pytest.mark.parametrize("before", [True, False])
def test_relay_and_stun_options_go_before_or_after_any_command(command: str, before: bool) -> None:
    options = ["--relay", LOCAL_RELAY, "--relay", "http://127.0.0.1:2/", "--stun", "192.0.2.1:9"]
    arguments = {"share": ["x"], "get": ["rdrop:x"]}.get(command, [])
    argv = [*options, command, *arguments] if before else [command, *arguments, *options]
    args = build_parser().parse_args(argv)
    assert args.relay == [LOCAL_RELAY, "http://127.0.0.1:2/"]
    assert args.stun == ["192.0.2.1:9"]


def test_share_names_the_relay_of_the_option(alice: Node, a_file: Path) -> None:
    ticket = Ticket.decode(alice.share(a_file, "--open", "--relay", LOCAL_RELAY.rstrip("/")))
    assert ticket.relay == LOCAL_RELAY
    assert [str(a.ip) for a in ticket.addresses] == ["127.0.0.1"]


def test_share_without_a_relay_names_none(alice: Node, a_file: Path) -> None:
    assert Ticket.decode(alice.share(a_file, "--open")).relay is None


def _share_with_env(node: Node, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    argv: list[str | Path] = ["--data-dir", node.data_dir, "share", path, "--open", "--json"]
    return ringdrop(argv, cwd=node.cwd, env=cli_env(**env))


def test_share_names_the_relay_of_the_environment(alice: Node, a_file: Path) -> None:
    done = _share_with_env(alice, a_file, RINGDROP_RELAY=f"{LOCAL_RELAY},http://127.0.0.1:2/")
    assert done.returncode == 0, done.stderr
    assert Ticket.decode(json.loads(done.stdout)["ticket"]).relay == LOCAL_RELAY


def test_a_bad_relay_variable_exits_2_naming_it(alice: Node, a_file: Path) -> None:
    done = _share_with_env(alice, a_file, RINGDROP_RELAY="https://user@relay.example/")
    assert done.returncode == 2
    assert done.stderr.startswith("ringdrop: error: RINGDROP_RELAY: ")
    assert "user or password" in done.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--relay", "ftp://relay.example/", "http:// or https://"),
        ("--relay", "https://relay example/", "white space"),
        ("--stun", "stun.example:0", "not a STUN server"),
        ("--discovery", "ftp://dns.example/", "not a discovery service"),
    ],
)
def test_a_bad_setting_exits_2(alice: Node, option: str, value: str, message: str) -> None:
    err = alice.run(option, value, "id", code=2).stderr
    assert err.startswith(f"ringdrop: error: {option}: ")
    assert message in err


def test_disabled_among_relays_exits_2(alice: Node) -> None:
    err = alice.run("--relay", "disabled", "--relay", LOCAL_RELAY, "id", code=2).stderr
    assert "only value" in err


def test_share_no_addresses_names_only_the_relay(alice: Node, bob: Node, a_file: Path) -> None:
    text = alice.share(a_file, "--open", "--no-addresses", "--relay", LOCAL_RELAY)
    ticket = Ticket.decode(text)
    assert ticket.addresses == ()
    assert ticket.relay == LOCAL_RELAY
    out = bob.run("info", text).stdout
    assert LOCAL_RELAY in out
    assert "none (only through the relay)" in out
    assert bob.json("info", text)["relay"] == LOCAL_RELAY  # type: ignore[index]


def test_share_no_addresses_without_a_relay_exits_2_and_says_why(alice: Node, a_file: Path) -> None:
    err = alice.run("share", a_file, "--open", "--no-addresses", code=2).stderr
    assert "relaying is disabled" in err
    assert "--relay URL" in err
    assert alice.json("blob", "list") == {"shares": []}


def test_blob_ticket_no_addresses(alice: Node, a_file: Path) -> None:
    alice.share(a_file, "--open", "--relay", LOCAL_RELAY)
    ticket = Ticket.decode(
        alice.run("--relay", LOCAL_RELAY, "blob", "ticket", "notes.txt", "--no-addresses").stdout
    )
    assert ticket.addresses == ()
    assert ticket.relay == LOCAL_RELAY
    alice.run("blob", "ticket", "notes.txt", "--no-addresses", code=2)


# -- ring -----------------------------------------------------------------------------------------


def test_ring_new_list_rename_delete(alice: Node) -> None:
    alice.run("ring", "new", "family")
    listing = alice.run("ring", "list").stdout
    assert "family" in listing
    assert re.search(r"^open +anyone", listing, re.MULTILINE)
    alice.run("ring", "rename", "family", "relatives")
    listing = alice.run("ring").stdout
    assert "relatives" in listing
    assert "family" not in listing
    alice.run("ring", "delete", "relatives")
    assert "relatives" not in alice.run("ring", "list").stdout


def test_ring_add_members_remove(alice: Node, bob: Node) -> None:
    alice.run("ring", "new", "family")
    bob_id = bob.peer_id()
    assert bob_id in alice.run("ring", "add", "family", bob_id).stdout
    members = alice.run("ring", "members", "family").stdout
    assert bob_id in members
    assert "for good" in members
    alice.run("ring", "remove", "family", bob_id[:10])
    assert "no members" in alice.run("ring", "members", "family").stdout


def test_ring_add_with_an_expiry(alice: Node, bob: Node) -> None:
    alice.run("ring", "new", "family")
    alice.run("peer", "add", bob.peer_id(), "bob")
    assert "until" in alice.run("ring", "add", "family", "bob", "--expires", "2h").stdout
    assert "until" in alice.run("ring", "members", "family").stdout


def test_ring_errors(alice: Node, bob: Node) -> None:
    alice.run("ring", "new", "family")
    assert "already a ring" in alice.run("ring", "new", "family", code=10).stderr
    assert "cannot be a ring name" in alice.run("ring", "new", "bad name!", code=2).stderr
    assert "ringdrop ring list" in alice.run("ring", "members", "nosuch", code=5).stderr
    assert "ringdrop peer list" in alice.run("ring", "add", "family", "nobody", code=5).stderr
    err = alice.run("ring", "add", "family", "bob", "--expires", "yesterday", code=2).stderr
    assert "not a time" in err
    assert "does not include" in alice.run("ring", "remove", "family", bob.peer_id(), code=5).stderr


@pytest.mark.parametrize(
    "command",
    [("delete", "open"), ("rename", "open", "everyone"), ("add", "open", "PEER")],
)
def test_the_open_ring_is_protected(alice: Node, bob: Node, command: tuple[str, ...]) -> None:
    args = [bob.peer_id() if arg == "PEER" else arg for arg in command]
    alice.peer_id()
    err = alice.run("ring", *args, code=10).stderr
    assert "open ring" in err


# -- peer -----------------------------------------------------------------------------------------


def test_peer_add_with_the_nickname_and_the_id_swapped_says_so(alice: Node, bob: Node) -> None:
    bob_id = bob.peer_id()
    alice.peer_id()
    err = alice.run("peer", "add", "bob", bob_id, code=3).stderr
    assert err == (
        f"ringdrop: error: 'bob' is not a peer id, but {bob_id[:8]}… is: the peer id comes "
        "first, then the nickname\n"
    )
    assert "empty" in alice.run("peer", "list").stdout


def test_peer_add_list_remove_with_nicknames(alice: Node, bob: Node) -> None:
    bob_id = bob.peer_id()
    assert "bob" in alice.run("peer", "add", bob_id, "bob").stdout
    listing = alice.run("peer", "list").stdout
    assert "bob" in listing
    assert bob_id in listing
    alice.run("peer", "add", bob_id, "robert")
    assert "robert" in alice.run("peer").stdout
    alice.run("peer", "remove", "robert")
    assert "empty" in alice.run("peer", "list").stdout


def test_peer_errors(alice: Node, bob: Node) -> None:
    assert "peer id" in alice.run("peer", "add", "not-a-peer-id", code=3).stderr
    bad_last = bob.peer_id()[:-1] + ("a" if bob.peer_id()[-1] != "a" else "b")
    alice.run("peer", "add", bad_last, code=3)
    alice.run("peer", "add", bob.peer_id(), "bob")
    assert (
        "already the nickname" in alice.run("peer", "add", alice.peer_id(), "bob", code=10).stderr
    )
    assert "peer book" in alice.run("peer", "remove", "carol", code=5).stderr


# -- grant ----------------------------------------------------------------------------------------


def test_grant_add_list_remove(alice: Node, bob: Node) -> None:
    alice.run("peer", "add", bob.peer_id(), "bob")
    assert "No peer has a privilege" in alice.run("grant", "list").stdout
    alice.run("grant", "add", "bob")
    assert "catalog" in alice.run("grant", "list").stdout
    assert "catalog" in alice.run("grant", "list", "bob").stdout
    alice.run("grant", "remove", "bob", "catalog")
    assert "no privilege" in alice.run("grant", "list", "bob").stdout
    assert "no catalog grant" in alice.run("grant", "remove", "bob", code=5).stderr


# -- blob / shares --------------------------------------------------------------------------------


def test_blob_list_shows_shares_with_their_rings(alice: Node, a_file: Path, a_folder: Path) -> None:
    alice.peer_id()
    assert "Nothing is shared" in alice.run("blob", "list").stdout
    alice.run("share", a_file, "--open")
    alice.run("share", a_folder)
    listing = alice.run("blob", "list").stdout
    assert "notes.txt" in listing
    assert "photos" in listing
    assert "folder" in listing
    assert "open" in listing
    assert alice.run("shares").stdout == listing
    assert alice.run("shares", "list").stdout == listing


def test_blob_list_json(alice: Node, a_file: Path) -> None:
    ticket = alice.share(a_file, "--open")
    shown = alice.json("shares", "list")
    assert shown == {
        "shares": [
            {
                "hash": Ticket.decode(ticket).content_hash.hex(),
                "name": "notes.txt",
                "format": "blob",
                "size": a_file.stat().st_size,
                "rings": ["open"],
                "ticket": ticket,
            }
        ]
    }


def test_blob_attach_detach_remove(alice: Node, a_file: Path) -> None:
    alice.run("ring", "new", "family")
    alice.run("share", a_file)
    alice.run("blob", "attach", "notes.txt", "family")
    assert _rings_of(alice) == ["family"]
    root = str(_shares(alice)[0]["hash"])
    alice.run("shares", "attach", root[:8], "open")
    assert _rings_of(alice) == ["family", "open"]
    alice.run("blob", "detach", root[:8], "family")
    assert _rings_of(alice) == ["open"]
    assert "not attached" in alice.run("blob", "detach", "notes.txt", "family", code=5).stderr
    assert "store gc" in alice.run("blob", "remove", "notes.txt").stdout
    assert _shares(alice) == []


def test_blob_ticket_prints_the_share_ticket_again(alice: Node, a_file: Path) -> None:
    ticket = alice.share(a_file, "--open")
    assert alice.run("blob", "ticket", "notes.txt").stdout.strip() == ticket


def test_blob_commands_on_unknown_content_exit_5(alice: Node) -> None:
    alice.peer_id()
    assert "ringdrop blob list" in alice.run("blob", "remove", "abcdef", code=5).stderr
    alice.run("blob", "attach", "nothing.txt", "open", code=5)


def _shares(node: Node) -> list[dict[str, object]]:
    shown = node.json("blob", "list")
    assert isinstance(shown, dict)
    return list(shown["shares"])


def _rings_of(node: Node) -> list[str]:
    rings = _shares(node)[0]["rings"]
    assert isinstance(rings, list)
    return [str(ring) for ring in rings]


# -- log ------------------------------------------------------------------------------------------


def test_log_when_nothing_was_served(alice: Node) -> None:
    alice.peer_id()
    assert "Nothing has been served" in alice.run("log").stdout
    assert alice.json("log") == {"uploads": []}
    assert alice.json("log", "--access") == {"decisions": []}


# -- store ----------------------------------------------------------------------------------------


def test_store_check_and_gc_on_a_healthy_store(alice: Node, a_file: Path) -> None:
    alice.run("share", a_file)
    assert "intact" in alice.run("store", "check").stdout
    alice.run("blob", "remove", "notes.txt")
    assert "Deleted 1 blob," in alice.run("store", "gc").stdout


def test_store_check_finds_corruption_and_exits_6(alice: Node, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(100_000))
    alice.run("share", big)
    (data,) = (alice.data_dir / "blobs").rglob("*.data")
    with data.open("r+b") as file:
        file.seek(50_000)
        file.write(b"\0" * 16)
    result = alice.run("store", "check", code=6)
    assert "corrupt" in result.stdout
    assert "ringdrop blob remove" in result.stderr


# -- hash -----------------------------------------------------------------------------------------


def test_hash_prints_the_root_of_a_file(alice: Node, a_file: Path) -> None:
    import blake3

    out = alice.run("hash", a_file).stdout
    assert out.startswith(blake3.blake3(a_file.read_bytes()).hexdigest())


def test_hash_of_a_missing_file_exits_5(alice: Node, tmp_path: Path) -> None:
    err = alice.run("hash", tmp_path / "missing", code=5).stderr
    assert "missing" in err


# -- pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("holiday.jpg", "holiday.jpg"),
        ("Ünïcødé 日本 🎉.txt", "Ünïcødé 日本 🎉.txt"),
        ("red\x1b[31m.txt", "red\\x1b[31m.txt"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("two\nlines\r", "two\\x0alines\\x0d"),
        ("bell\x07del\x7f", "bell\\x07del\\x7f"),
        ("invoice\u202egpj.exe", "invoice\\u202egpj.exe"),
        ("sep\u2028x", "sep\\u2028x"),
        ("bad\udcffbyte", "bad\\udcffbyte"),
        ("family 👨\u200d👩\u200d👧", "family 👨\u200d👩\u200d👧"),
    ],
)
def test_safe_escapes_what_could_control_a_terminal(text: str, shown: str) -> None:
    assert safe(text) == shown


def test_size_for_people() -> None:
    assert [size(n) for n in (None, 0, 1023, 1024, 1536, 5 << 30)] == [
        "?", "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 GiB",
    ]  # fmt: skip


def test_expiry_reads_durations_and_dates() -> None:
    now = datetime(2026, 11, 21, 12, 0).astimezone()
    assert expiry("2h", now) == (now + timedelta(hours=2)).timestamp()
    assert expiry("1d12h", now) == (now + timedelta(days=1, hours=12)).timestamp()
    assert expiry("1w", now) == (now + timedelta(weeks=1)).timestamp()
    assert expiry("2026-12-24", now) == datetime(2026, 12, 24).astimezone().timestamp()
    assert (
        expiry("2026-12-24T18:00+00:00", now)
        == datetime.fromisoformat("2026-12-24T18:00+00:00").timestamp()
    )
    for bad in ("soon", "2026-01-01", "0h", "-3d"):
        with pytest.raises(argparse.ArgumentTypeError):
            expiry(bad, now)


def test_progress_line_shows_percent_bytes_rate_eta_and_the_file() -> None:
    progress = Progress(
        name="photos", state="transferring", total=4 << 20, done=1 << 20, present=0,
        rate=float(1 << 20), files_done=2, files_total=5,
        active=(FileProgress("b\x1b.jpg", 512, 1024), FileProgress("c.jpg", 0, 9)),
    )  # fmt: skip
    line = describe(progress)
    assert line.startswith("photos:  25%  1.0 MiB / 4.0 MiB  1.0 MiB/s  ETA 0:03")
    assert "[2/5 files] b\\x1b.jpg 50% (+1 more)" in line


def test_progress_line_says_when_it_retries() -> None:
    progress = Progress(
        name="x", state="retrying", total=None, done=0, present=0, rate=0.0, attempt=2,
        attempts=8, message="the connection was lost",
    )  # fmt: skip
    assert describe(progress) == "x: the connection was lost; retrying (attempt 2/8)"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RingdropError("x"), 1),
        (LocalProtocolError("x"), 1),
        (PermissionError(13, "Permission denied", "/root/x"), 1),
        (ValueError("bug"), 1),
        (InvalidNameError("x"), 2),
        (SettingsError("x"), 2),
        (RelayDisabledError("x"), 2),
        (TicketError("x"), 3),
        (AccessDeniedError("x"), 4),
        (NotFoundError("x"), 5),
        (FileNotFoundError(2, "No such file or directory", "x"), 5),
        (IntegrityError("x"), 6),
        (TransferError("x"), 7),
        (WrongPeerError("x", "a", "b"), 7),
        (ProtocolError("x"), 7),
        (DiskFullError("x"), 8),
        (OSError(28, "No space left on device", "/x"), 8),
        (UnsafePathError("x"), 9),
        (StoreError("x"), 10),
        (OpenRingError("x"), 10),
        (AmbiguousError("x"), 10),
        (ExistsError("x"), 10),
        (AlreadyServedError("x"), 10),
    ],
)
def test_each_error_class_has_its_exit_code(error: BaseException, code: int) -> None:
    assert classify(error)[0] == code


def test_an_error_is_one_line_plus_its_notes() -> None:
    error = AccessDeniedError("your peer id is not in a ring that may read this content")
    error.add_note("your peer id is abc")
    out = io.StringIO()
    assert report(error, out) == ExitCode.ACCESS_DENIED
    assert out.getvalue().splitlines() == [
        "ringdrop: access denied: your peer id is not in a ring that may read this content",
        "  your peer id is abc",
    ]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (NotFoundError("no ring 'x'", kind="ring"), "`ringdrop ring list`"),
        (NotFoundError("no peer 'x'", kind="peer"), "`ringdrop peer list`"),
        (ExistsError("out already exists"), "--force"),
        (AlreadyServedError("served by process 7", 7), "--data-dir"),
        (RelayDisabledError("relaying is disabled here"), "--relay URL"),
        (NotFoundError("/x was moved or deleted", kind="source"), "--reference"),
        (NotFoundError("a stored file is missing", kind="stored-file"), "`ringdrop store check`"),
        (StoreError("a collection cannot be read", kind="damaged"), "`ringdrop store check`"),
        (TransferError("lost (gave up after 8 attempts)", kind="gave-up"), "same command again"),
    ],
)
def test_the_cli_adds_its_hint_below_the_message(error: RingdropError, words: str) -> None:
    out = io.StringIO()
    report(error, out)
    first, hint = out.getvalue().splitlines()
    assert str(error) in first
    assert words in hint
    assert words not in str(error)


def test_an_error_without_a_hint_is_one_line() -> None:
    out = io.StringIO()
    report(NotFoundError("no such thing"), out)
    assert out.getvalue() == "ringdrop: not found: no such thing\n"


def test_an_os_error_names_its_file() -> None:
    out = io.StringIO()
    report(PermissionError(13, "Permission denied", "/root/secret"), out)
    assert out.getvalue() == "ringdrop: error: Permission denied: /root/secret\n"


def test_json_output_is_ascii(alice: Node, tmp_path: Path) -> None:
    odd = tmp_path / "çà\u202e.txt"
    odd.write_text("x")
    out = alice.run("share", odd, "--json").stdout
    assert out.isascii()
    assert json.loads(out)["name"] == "çà\u202e.txt"
