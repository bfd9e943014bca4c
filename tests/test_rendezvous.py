"""The short-code rendezvous as sans-IO machines: two sides in memory, no relay, no clock.

Key derivation is checked against values computed here with hashlib, hmac and nacl alone (and
this file's HKDF against RFC 5869's own test vector); the tables against tickets/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import blake3
import nacl.bindings
import nacl.secret
import nacl.signing
import pytest
import spake2
from hypothesis import given, settings
from hypothesis import strategies as st

from ringdrop.identity import Identity
from ringdrop.rendezvous import (
    MAGIC,
    PAKE_RATE,
    Confirm,
    Done,
    Fail,
    Pake,
    Receiver,
    Role,
    Sender,
    State,
    Taken,
    TicketMessage,
    choose_relay,
    decode,
    encode,
    rendezvous_identity,
    session_keys,
    transcript,
)
from ringdrop.shortcode import ShortCode
from ringdrop.ticket import Address, Ticket
from tests import make_code_vectors

SPEC = Path(__file__).resolve().parent.parent / "tickets" / "PROTOCOL.md"
VECTORS = Path(__file__).resolve().parent.parent / "tickets" / "code_vectors.json"
CODE = ShortCode.parse("7-revenge-guitarist")
WRONG = ShortCode.parse("7-revenge-passenger")
RECEIVER_ID = Identity(nacl.signing.SigningKey(b"R" * 32)).peer_id
TICKET = Ticket(
    peer_id=Identity(nacl.signing.SigningKey(b"S" * 32)).peer_id,
    addresses=(Address(ip_address("192.0.2.7"), 4433),),
    content_hash=blake3.blake3(b"content").digest(),
    format="blob",
    name="content.bin",
    size=7,
    relay="https://relay.example/",
)
EXPIRES = 600.0
WAIT = 60.0
SENDER_ID = b"ringdrop code v1 sender"
RECEIVER_NAME = b"ringdrop code v1 receiver"


def rfc5869(ikm: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 written out from RFC 5869, so that no test relies on the code's own."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def state(machine: Sender | Receiver) -> State:
    """The machine's state, read afresh (mypy would keep an earlier assertion's narrowing)."""
    return machine.state


def pair(code: ShortCode = CODE, receiver_code: ShortCode | None = None) -> tuple[Sender, Receiver]:
    return Sender(code, EXPIRES), Receiver(receiver_code or code, RECEIVER_ID, 0.0, WAIT)


def carry(source: Sender | Receiver, target: Sender | Receiver, now: float = 1.0) -> list[bytes]:
    """Deliver what `source` queued for `target`'s key; return those datagrams."""
    sent = [d for key, d in source.datagrams_to_send() if key == target.own_key]
    for datagram in sent:
        target.receive(source.own_key, datagram, now)
    return sent


def run(sender: Sender, receiver: Receiver) -> None:
    """The whole exchange, the sender handing over TICKET as soon as it is confirmed."""
    for _ in range(4):
        carry(receiver, sender)
        if sender.state is State.CONFIRMED:
            sender.send_ticket(TICKET, 1.0)
        carry(sender, receiver)
        if receiver.state is State.HAVE_TICKET:
            receiver.finish()  # at once: this test fetches nothing


# -- key derivation and vectors -------------------------------------------------------------------


def test_the_tests_hkdf_is_rfc_5869s() -> None:
    # RFC 5869, test case 3: SHA-256, empty salt and info.
    okm = rfc5869(bytes([0x0B] * 22), b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


@pytest.mark.parametrize("role", list(Role))
def test_rendezvous_keys_are_hkdf_of_the_nameplate_and_the_roles_context(role: Role) -> None:
    seed = rfc5869(b"7", b"ringdrop code v1 rendezvous " + role.value.encode())
    public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
    assert rendezvous_identity(7, role).peer_id.raw == public


def test_the_vectors_in_the_spec_and_the_json_are_independently_derived() -> None:
    vectors = json.loads(VECTORS.read_text())
    spec = SPEC.read_text().split("\n## Short codes")[1]
    for role in ("sender", "receiver"):
        seed = rfc5869(b"7", f"ringdrop code v1 rendezvous {role}".encode())
        public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
        assert vectors["rendezvous"][role] == {"seed": seed.hex(), "public_key": public.hex()}
        assert f"| {role} | `{seed.hex()}` | `{public.hex()}` |" in spec
    assert f"SPAKE2's key for it is `{vectors['spake2_key']}`" in spec


def test_the_vector_exchange_checks_out_with_hashlib_hmac_and_nacl_alone() -> None:
    vectors = json.loads(VECTORS.read_text())
    key = bytes.fromhex(vectors["spake2_key"])
    grams = [bytes.fromhex(d["hex"]) for d in vectors["datagrams"]]
    assert [d["from"] for d in vectors["datagrams"]] == [
        "receiver", "sender", "receiver", "sender", "receiver",
    ]  # fmt: skip
    assert all(g.startswith(b"rdc\x01") for g in grams)
    assert [g[4] for g in grams] == [1, 1, 2, 3, 4]
    session = grams[0][5:21]
    assert all(g[5:21] == session for g in grams)
    receiver_pake, sender_pake = grams[0][21:], grams[1][21:]
    assert (receiver_pake[:1], sender_pake[:1], len(receiver_pake)) == (b"B", b"A", 33)

    # SPAKE2 itself, from the library with the sender's recorded randomness.
    half = spake2.SPAKE2_A(
        vectors["password"].encode(),
        idA=b"ringdrop code v1 sender",
        idB=b"ringdrop code v1 receiver",
        entropy_f=make_code_vectors.Entropy(vectors["sender_entropy_label"].encode()),
    )
    assert half.start() == sender_pake
    assert half.finish(receiver_pake) == key

    def derived(use: str) -> bytes:
        return rfc5869(key, f"ringdrop code v1 {use}".encode())

    transcript = hashlib.sha256(
        b"ringdrop code v1 transcript\x00" + session + sender_pake + receiver_pake
    ).digest()

    def tag(use: str) -> bytes:
        return hmac.new(derived(use), transcript, hashlib.sha256).digest()

    confirm, ticket, done = grams[2][21:], grams[3][21:], grams[4][21:]
    assert confirm[:32] == tag("receiver confirm")
    assert ticket[:32] == tag("sender confirm")
    assert done == tag("receiver done")
    receiver_key = nacl.signing.SigningKey(bytes.fromhex(vectors["receiver_peer_id_seed"]))
    opened_id = nacl.secret.SecretBox(derived("receiver box")).decrypt(confirm[32:])
    assert opened_id == bytes(receiver_key.verify_key)
    opened_ticket = nacl.secret.SecretBox(derived("sender box")).decrypt(ticket[32:])
    assert opened_ticket.decode() == vectors["ticket"]


def test_the_implementation_reproduces_the_committed_vector() -> None:
    assert make_code_vectors.exchange() == json.loads(VECTORS.read_text())


def test_session_keys_are_hkdf_of_the_spake2_key_one_for_each_use() -> None:
    shared = bytes(range(32))
    keys = session_keys(shared)
    for use, value in [
        ("sender confirm", keys.sender_confirm),
        ("receiver confirm", keys.receiver_confirm),
        ("receiver done", keys.receiver_done),
        ("sender box", keys.sender_box),
        ("receiver box", keys.receiver_box),
    ]:
        assert value == rfc5869(shared, f"ringdrop code v1 {use}".encode())


def test_the_relay_is_picked_by_the_nameplate_from_the_sorted_list() -> None:
    relays = ["https://c.example/", "https://a.example/", "https://b.example/"]
    assert choose_relay(7, relays) == "https://b.example/"  # sorted: a, b, c; 7 mod 3 = 1
    assert choose_relay(7, list(reversed(relays))) == "https://b.example/"
    assert choose_relay(9, relays) == "https://a.example/"


# -- the tables -----------------------------------------------------------------------------------


def documented() -> dict[str, list[tuple[str, str, str]]]:
    section = SPEC.read_text().split("\n## Short codes")[1].split("\n## ")[0]
    tables = {}
    for block in section.split("\n#### ")[1:]:
        name = block.split("\n")[0].strip()
        rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| (\w+) \|$", block, re.MULTILINE)
        tables[name] = [row for row in rows if row[0] != "state"]
    return tables


@pytest.mark.parametrize("machine", [Sender, Receiver], ids=lambda m: m.__name__)
def test_the_spec_table_is_the_code_table(machine: type[Sender] | type[Receiver]) -> None:
    implemented = [(s.name, t.value, n.name) for (s, t), n in machine.TRANSITIONS.items()]
    assert documented()[machine.__name__] == implemented


def test_the_spec_documents_both_roles_and_no_other() -> None:
    assert sorted(documented()) == ["Receiver", "Sender"]


# -- exchanges ------------------------------------------------------------------------------------


def test_the_right_code_swaps_the_ticket_for_the_receivers_peer_id() -> None:
    sender, receiver = pair()
    run(sender, receiver)
    assert (sender.state, receiver.state) == (State.DONE, State.DONE)
    assert receiver.ticket == TICKET
    assert sender.receiver == RECEIVER_ID
    assert sender.error() is None
    assert receiver.error() is None
    assert sender.dropped == receiver.dropped == 0


def test_a_wrong_code_ends_both_sides_as_guessed_and_the_right_one_no_longer_works() -> None:
    sender, guesser = pair(receiver_code=WRONG)
    run(sender, guesser)
    assert (sender.state, guesser.state) == (State.GUESSED, State.GUESSED)
    assert sender.receiver is None
    assert guesser.ticket is None
    for side in (sender, guesser):
        error = side.error()
        assert error is not None
        assert error.kind == "guessed"
        assert "someone may have guessed" in str(error)
    late = Receiver(CODE, RECEIVER_ID, 2.0, WAIT)
    assert carry(late, sender)  # its PAKE reaches the sender ...
    assert sender.datagrams_to_send() == []  # ... which answers nothing any more
    late.handle_timer(2.0 + WAIT)
    assert state(late) is State.UNANSWERED
    assert late.ticket is None


def test_a_sender_with_another_code_is_caught_by_the_receivers_check_of_the_ticket() -> None:
    receiver = Receiver(CODE, RECEIVER_ID, 0.0, WAIT)
    [(_, first)] = receiver.datagrams_to_send()
    pake = decode(first)
    assert isinstance(pake, Pake)
    # An impostor on the sender's key, built from the library and this module's parts.
    half = spake2.SPAKE2_A(WRONG.password, idA=SENDER_ID, idB=RECEIVER_NAME)
    message = half.start()
    keys = session_keys(half.finish(pake.message))
    summary = transcript(pake.session, message, pake.message)
    receiver.receive(receiver.peer_key, encode(Pake(pake.session, message)), 0.5)
    assert state(receiver) is State.WAIT_TICKET
    sealed = nacl.secret.SecretBox(keys.sender_box).encrypt(TICKET.encode().encode())
    tag = hmac.new(keys.sender_confirm, summary, hashlib.sha256).digest()
    receiver.receive(receiver.peer_key, encode(TicketMessage(pake.session, tag, sealed)), 0.6)
    assert state(receiver) is State.GUESSED
    assert receiver.ticket is None
    assert decode(receiver.datagrams_to_send()[-1][1]) == Fail(pake.session, "guessed")
    error = receiver.error()
    assert error is not None
    assert error.kind == "guessed"


def test_an_unused_code_expires() -> None:
    sender = Sender(CODE, 10.0)
    sender.handle_timer(9.9)
    assert state(sender) is State.WAIT_PAKE
    sender.handle_timer(10.0)
    assert state(sender) is State.EXPIRED
    error = sender.error()
    assert error is not None
    assert error.kind == "expired"
    late = Receiver(CODE, RECEIVER_ID, 11.0, 11.0 + WAIT)
    carry(late, sender, 11.0)
    assert sender.datagrams_to_send() == []
    assert state(sender) is State.EXPIRED


def test_the_receiver_repeats_its_message_until_answered_then_gives_up() -> None:
    receiver = Receiver(CODE, RECEIVER_ID, 0.0, 5.0)
    first = receiver.datagrams_to_send()
    assert len(first) == 1
    assert receiver.next_timer() == 1.0
    receiver.handle_timer(0.5)
    assert receiver.datagrams_to_send() == []
    receiver.handle_timer(1.0)
    assert receiver.datagrams_to_send() == first  # the same PAKE again
    receiver.handle_timer(5.0)
    assert state(receiver) is State.UNANSWERED
    error = receiver.error()
    assert error is not None
    assert error.kind == "unanswered"


def test_lost_datagrams_are_repeated_and_the_exchange_completes() -> None:
    sender, receiver = pair()
    receiver.datagrams_to_send()  # the first PAKE is lost
    receiver.handle_timer(1.0)
    carry(receiver, sender)
    sender.datagrams_to_send()  # the sender's answer is lost
    receiver.handle_timer(2.0)
    carry(receiver, sender)
    carry(sender, receiver)
    carry(receiver, sender)  # CONFIRM
    sender.send_ticket(TICKET, 1.0)
    sender.datagrams_to_send()  # the TICKET is lost
    receiver.handle_timer(3.0)  # CONFIRM again, which the sender answers with the TICKET again
    carry(receiver, sender)
    carry(sender, receiver)
    assert state(receiver) is State.HAVE_TICKET
    assert receiver.next_timer() is None  # nothing more to repeat while it fetches
    receiver.finish()
    carry(receiver, sender)
    assert (sender.state, receiver.state) == (State.DONE, State.DONE)
    assert receiver.ticket == TICKET


def test_a_second_receiver_is_told_the_sender_is_busy() -> None:
    sender, first = pair()
    carry(first, sender)
    carry(sender, first)  # the two keys are the same: the relay delivers to one at a time
    second = Receiver(CODE, RECEIVER_ID, 0.0, WAIT)
    carry(second, sender)
    carry(sender, second)
    assert state(second) is State.BUSY
    error = second.error()
    assert error is not None
    assert error.kind == "busy"
    run(sender, first)
    assert first.ticket == TICKET


@pytest.mark.parametrize("side", ["sender", "receiver"])
def test_a_displaced_side_tells_its_own_key_and_a_newcomer_gives_up(side: str) -> None:
    incumbent: Sender | Receiver = Sender(CODE, EXPIRES) if side == "sender" else pair()[1]
    newcomer: Sender | Receiver = (
        Sender(ShortCode.parse("7-zulu-yucatan"), EXPIRES)
        if side == "sender"
        else Receiver(CODE, RECEIVER_ID, 0.0, WAIT)
    )
    incumbent.datagrams_to_send()
    incumbent.displaced()
    [(destination, datagram)] = incumbent.datagrams_to_send()
    assert destination == incumbent.own_key == newcomer.own_key
    assert decode(datagram) == Taken()
    newcomer.receive(incumbent.own_key, datagram, 1.0)
    assert state(newcomer) is State.TAKEN
    error = newcomer.error()
    assert error is not None
    assert error.kind == "taken"
    assert "pick" in str(error)
    assert not incumbent.finished


def test_taken_from_another_key_than_ones_own_is_dropped() -> None:
    sender = Sender(CODE, EXPIRES)
    sender.receive(sender.peer_key, encode(Taken()), 1.0)
    assert state(sender) is State.WAIT_PAKE
    assert sender.dropped == 1


def test_the_sender_admits_for_the_transfer_then_as_long_again_as_the_code_lived() -> None:
    sender, receiver = pair()
    carry(receiver, sender)
    carry(sender, receiver)
    carry(receiver, sender)
    sender.send_ticket(TICKET, 500.0)  # the code would have expired at 600
    carry(sender, receiver)
    assert state(receiver) is State.HAVE_TICKET
    sender.handle_timer(EXPIRES + 1)
    assert state(sender) is State.WAIT_DONE  # the receiver is still fetching
    sender.handle_timer(500.0 + EXPIRES)
    assert state(sender) is State.DONE
    assert sender.error() is None


def test_a_confirmed_sender_ignores_a_later_fail() -> None:
    sender, receiver = pair()
    carry(receiver, sender)
    carry(sender, receiver)
    carry(receiver, sender)
    sender.send_ticket(TICKET, 1.0)
    session = decode(sender.datagrams_to_send()[0][1])
    assert isinstance(session, TicketMessage)
    sender.receive(sender.peer_key, encode(Fail(session.session, "guessed")), 1.0)
    sender.receive(sender.own_key, encode(Taken()), 1.0)
    assert state(sender) is State.WAIT_DONE
    assert sender.dropped == 2


# -- hostile input --------------------------------------------------------------------------------


def malformed_pakes(session: bytes, sender_message: bytes) -> list[bytes]:
    element = bytes.fromhex("01" + "00" * 31)  # not a point of the curve's prime-order group
    return [
        b"",
        b"rdc",
        b"xdc\x01" + encode(Pake(session, b"B" + bytes(32)))[4:],  # wrong magic
        encode(Pake(session, b"B" + bytes(32)))[:-1],  # one byte short
        encode(Pake(session, b"B" + bytes(32))) + b"\x00",  # one byte long
        encode(Pake(session, b"B" + element)),  # not a group element
        encode(Pake(session, b"B" + b"\xff" * 32)),  # not an encoding at all
        encode(Pake(session, b"C" + sender_message[1:])),  # unknown side
        encode(Pake(session, sender_message)),  # the sender's own message reflected
        MAGIC + b"\x09" + session + b"junk",  # unknown type
        MAGIC + b"\x01" + session + b"\x00" * 60_000,  # huge
    ]


def test_malformed_pake_messages_are_dropped_and_the_real_exchange_still_works() -> None:
    sender, receiver = pair()
    side_a = spake2.SPAKE2_A(CODE.password, idA=SENDER_ID, idB=RECEIVER_NAME).start()
    hostile = malformed_pakes(b"h" * 16, side_a)  # the sender's side, as a reflection would be
    for datagram in hostile:
        sender.receive(sender.peer_key, datagram, 1.0)
    assert state(sender) is State.WAIT_PAKE
    assert sender.dropped == len(hostile)
    assert sender.datagrams_to_send() == []  # no answer to any of them
    run(sender, receiver)
    assert receiver.ticket == TICKET
    assert sender.receiver == RECEIVER_ID


def test_a_hostile_sender_cannot_derail_a_waiting_receiver() -> None:
    sender, receiver = pair()
    [(_, first)] = receiver.datagrams_to_send()
    session = first[5:21]
    hostile = [
        *malformed_pakes(session, first[21:]),
        encode(Confirm(session, bytes(32), bytes(72))),
        encode(TicketMessage(session, bytes(32), bytes(60))),  # no keys yet: dropped
        encode(Done(session, bytes(32))),
        encode(Fail(b"x" * 16, "guessed")),  # another session
    ]
    for datagram in hostile:
        receiver.receive(receiver.peer_key, datagram, 0.5)
    assert state(receiver) is State.WAIT_PAKE
    assert receiver.dropped == len(hostile)
    receiver.receive(b"\x01" * 32, encode(Fail(session, "guessed")), 0.5)  # from a stranger
    assert state(receiver) is State.WAIT_PAKE
    receiver.handle_timer(1.0)
    run(sender, receiver)
    assert receiver.ticket == TICKET


def test_a_confirm_with_a_right_tag_but_a_box_that_does_not_open_is_dropped() -> None:
    sender, receiver = pair()
    carry(receiver, sender)
    carry(sender, receiver)
    [(_, confirm)] = receiver.datagrams_to_send()
    message = decode(confirm)
    assert isinstance(message, Confirm)
    broken = bytearray(message.sealed)
    broken[-1] ^= 1
    sender.receive(sender.peer_key, encode(Confirm(message.session, message.tag, bytes(broken))), 1)
    assert state(sender) is State.WAIT_CONFIRM
    sender.receive(sender.peer_key, confirm, 1.0)
    assert state(sender) is State.CONFIRMED
    assert sender.receiver == RECEIVER_ID


def test_a_flood_of_pake_costs_at_most_pake_rate_computations_a_second() -> None:
    sender, receiver = pair()
    not_a_point = encode(Pake(b"f" * 16, b"B" + b"\xff" * 32))
    for _ in range(3 * PAKE_RATE):
        sender.receive(sender.peer_key, not_a_point, 5.0)
    assert sender.throttled == 2 * PAKE_RATE  # the rest were dropped without computing
    assert sender.dropped == 3 * PAKE_RATE
    [(_, real)] = receiver.datagrams_to_send()
    sender.receive(sender.peer_key, real, 5.0)  # this second's budget is spent
    assert state(sender) is State.WAIT_PAKE
    sender.receive(sender.peer_key, real, 5.0 + 1 / PAKE_RATE)  # the receiver's next repeat
    assert state(sender) is State.WAIT_CONFIRM


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["sender", "receiver"]))
def test_no_datagram_from_the_peers_key_breaks_a_machine(datagram: bytes, side: str) -> None:
    machine: Sender | Receiver = (
        Sender(CODE, EXPIRES) if side == "sender" else Receiver(CODE, RECEIVER_ID, 0.0, WAIT)
    )
    machine.datagrams_to_send()
    machine.receive(machine.peer_key, MAGIC + datagram, 0.5)
    machine.receive(machine.peer_key, datagram, 0.5)
    assert machine.state in (State.WAIT_PAKE, State.BUSY, State.GUESSED)
    assert sum(len(d) for _, d in machine.datagrams_to_send()) <= 3 * (len(datagram) + 4)


def test_message_bytes_round_trip() -> None:
    session = b"s" * 16
    messages: list[Any] = [
        Pake(session, b"A" + bytes(32)),
        Confirm(session, b"t" * 32, b"b" * 72),
        TicketMessage(session, b"t" * 32, b"b" * 100),
        Done(session, b"d" * 32),
        Fail(session, "guessed"),
        Fail(session, "busy"),
        Taken(),
    ]
    for message in messages:
        assert decode(encode(message)) == message
