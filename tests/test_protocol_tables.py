"""The transition tables in tickets/PROTOCOL.md are the ones the code consults, row for row: the
stream machines' (`ringdrop.protocol`) and the path layer's candidates'
(`ringdrop.transport._candidates`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.identity import Identity
from ringdrop.protocol import (
    ClientAuth,
    MembersReader,
    PathsChannel,
    Requester,
    Responder,
    ServerAuth,
    State,
)
from ringdrop.transport import _candidates

SPEC = Path(__file__).resolve().parent.parent / "tickets" / "PROTOCOL.md"
KEY = Identity(nacl.signing.SigningKey(b"k" * 32))
Machine = ClientAuth | ServerAuth | Requester | Responder | PathsChannel | MembersReader
FRESH: dict[str, Callable[[], Machine]] = {
    "ClientAuth": lambda: ClientAuth(KEY, KEY.peer_id),
    "ServerAuth": lambda: ServerAuth(KEY.peer_id, bytes(32)),
    "Requester": Requester,
    "Responder": Responder,
    "PathsChannel": PathsChannel,
    "MembersReader": lambda: MembersReader(1),
}
Rows = list[tuple[str, str, str]]


def documented() -> dict[str, Rows]:
    """Each role's table in the spec's "Stream state machines" section, as rows of text."""
    section = SPEC.read_text().split("\n## Stream state machines\n")[1].split("\n## ")[0]
    tables: dict[str, Rows] = {}
    for block in section.split("\n### ")[1:]:
        name = block.split(":")[0]
        rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| (\w+) \|$", block, re.MULTILINE)
        tables[name] = [row for row in rows if row[0] != "state"]
    return tables


def implemented(name: str) -> Rows:
    machine = FRESH[name]()
    return [(s.name, t.value, n.name) for (s, t), n in machine.TRANSITIONS.items()]


def test_the_spec_documents_every_role_and_no_other() -> None:
    assert sorted(documented()) == sorted(FRESH)


@pytest.mark.parametrize("name", sorted(FRESH))
def test_the_spec_table_is_the_code_table(name: str) -> None:
    assert documented()[name] == implemented(name)


@pytest.mark.parametrize("name", sorted(FRESH))
def test_a_machine_starts_in_the_state_of_its_first_row(name: str) -> None:
    assert FRESH[name]().state.name == documented()[name][0][0]


@pytest.mark.parametrize("name", sorted(FRESH))
def test_error_is_in_no_table_so_nothing_leads_out_of_it(name: str) -> None:
    states = {state for row in implemented(name) for state in (row[0], row[2])}
    assert State.ERROR.name not in states


def test_the_spec_candidate_table_is_the_code_table() -> None:
    section = SPEC.read_text().split("\n### Candidates: each direct address of the peer\n")[1]
    block = section.split("\n## ")[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| (\w+) \|$", block, re.MULTILINE)
    documented = [row for row in rows if row[0] != "state"]
    code = [(s.name, t.value, n.name) for (s, t), n in _candidates.TRANSITIONS.items()]
    assert documented == code


def test_no_candidate_leaves_dead() -> None:
    assert not [key for key in _candidates.TRANSITIONS if key[0] is _candidates.State.DEAD]
