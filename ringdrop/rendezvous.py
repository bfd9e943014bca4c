"""The short-code rendezvous, sans-IO: two sides that hold one code meet at keys made from its
nameplate, run SPAKE2 with the code as the password, confirm the key, then swap sealed a ticket
for a peer id. tickets/PROTOCOL.md ("Short codes") specifies the bytes and the two tables.

Each side is a machine (`Sender`, `Receiver`) with one table, `TRANSITIONS`, mapping (state,
trigger) to the next state; PROTOCOL.md prints the same tables and a test keeps them equal.
Inputs carry `now` and outputs are (destination key, datagram) pairs, as in aioquic: nothing
here does I/O or reads a clock. Unlike the stream machines of `ringdrop.protocol`, a datagram
that does not parse, comes from the wrong key, belongs to another session or is not in the
table is dropped and counted (`dropped`), never an error: the rendezvous keys are derived
from a public nameplate, so anyone may write to them, and a stranger's junk must not end a code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from types import MappingProxyType
from typing import ClassVar, Literal

import nacl.exceptions
import nacl.secret
import nacl.signing
import spake2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ringdrop.errors import RendezvousError, TicketError
from ringdrop.identity import Identity, PeerId
from ringdrop.shortcode import ShortCode
from ringdrop.ticket import Ticket

__all__ = [
    "MAGIC",
    "MAX_TICKET_BYTES",
    "PAKE_RATE",
    "RETRANSMIT",
    "SESSION_BYTES",
    "Confirm",
    "Done",
    "Fail",
    "FailReason",
    "Message",
    "Pake",
    "Receiver",
    "Role",
    "Sender",
    "SessionKeys",
    "State",
    "Taken",
    "TicketMessage",
    "Transitions",
    "Trigger",
    "choose_relay",
    "decode",
    "encode",
    "hkdf",
    "rendezvous_identity",
    "rendezvous_seed",
    "session_keys",
    "transcript",
]

MAGIC = b"rdc\x01"
"""The first bytes of every rendezvous datagram: `rdc` and the version, 1."""
SESSION_BYTES = 16
PAKE_BYTES = 33  # SPAKE2's side byte and an Ed25519 group element
TAG_BYTES = 32
_BOX_OVERHEAD = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
MAX_TICKET_BYTES = 8192
"""A sealed ticket's plaintext is at most this long (a ticket with 255 IPv6 addresses fits)."""
RETRANSMIT = 1.0
"""Seconds between the receiver's repeats of its last message while no answer comes."""
PAKE_RATE = 4
"""SPAKE2 computations a side makes per second at most (each costs tens of milliseconds of pure
Python); PAKE beyond that is dropped unread, and the real peer's next repeat gets through."""

_CONTEXT = b"ringdrop code v1 "
_SENDER_ID = _CONTEXT + b"sender"
_RECEIVER_ID = _CONTEXT + b"receiver"
_NO_SESSION = bytes(SESSION_BYTES)


class Role(Enum):
    SENDER = "sender"
    RECEIVER = "receiver"


# -- key derivation -------------------------------------------------------------------------------


def hkdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with an empty salt: every key of the rendezvous comes from it."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"", info=info).derive(key)


def rendezvous_seed(nameplate: int, role: Role) -> bytes:
    """The Ed25519 seed of a role's rendezvous key for `nameplate`: public knowledge, by design."""
    return hkdf(str(nameplate).encode("ascii"), _CONTEXT + b"rendezvous " + role.value.encode())


def rendezvous_identity(nameplate: int, role: Role) -> Identity:
    return Identity(nacl.signing.SigningKey(rendezvous_seed(nameplate, role)))


def choose_relay(nameplate: int, relays: Sequence[str]) -> str:
    """The relay both sides use for `nameplate`: one of `relays` (taken in sorted order, so that
    two lists in different orders agree) picked by the nameplate."""
    if not relays:
        raise ValueError("no relay to meet on")
    return sorted(relays)[nameplate % len(relays)]


def transcript(session: bytes, sender_message: bytes, receiver_message: bytes) -> bytes:
    """What both confirmations are over: the session and both SPAKE2 messages."""
    return hashlib.sha256(
        _CONTEXT + b"transcript\x00" + session + sender_message + receiver_message
    ).digest()


@dataclass(frozen=True)
class SessionKeys:
    """The keys both sides derive from SPAKE2's shared key, one for each use and direction."""

    sender_confirm: bytes
    receiver_confirm: bytes
    receiver_done: bytes
    sender_box: bytes
    receiver_box: bytes


def session_keys(shared: bytes) -> SessionKeys:
    def derive(use: str) -> bytes:
        return hkdf(shared, _CONTEXT + use.encode())

    return SessionKeys(
        derive("sender confirm"),
        derive("receiver confirm"),
        derive("receiver done"),
        derive("sender box"),
        derive("receiver box"),
    )


def _tag(key: bytes, transcript_hash: bytes) -> bytes:
    return hmac.digest(key, transcript_hash, "sha256")


# -- messages -------------------------------------------------------------------------------------


class _Type:
    PAKE = 1
    CONFIRM = 2
    TICKET = 3
    DONE = 4
    FAIL = 5
    TAKEN = 6


FailReason = Literal["guessed", "busy"]
_FAIL_REASONS: dict[FailReason, int] = {"guessed": 1, "busy": 2}


@dataclass(frozen=True)
class Pake:
    """A SPAKE2 message (side byte and group element), either way."""

    session: bytes
    message: bytes


@dataclass(frozen=True)
class Confirm:
    """The receiver's key confirmation and its peer id, sealed."""

    session: bytes
    tag: bytes
    sealed: bytes


@dataclass(frozen=True)
class TicketMessage:
    """The sender's key confirmation and its ticket, sealed."""

    session: bytes
    tag: bytes
    sealed: bytes


@dataclass(frozen=True)
class Done:
    """The receiver is finished with the content; the sender may stop admitting it."""

    session: bytes
    tag: bytes


@dataclass(frozen=True)
class Fail:
    """The exchange of `session` is over: a key confirmation failed, or the sender is busy
    with another receiver. Unauthenticated: it can only end what a wrong guess could."""

    session: bytes
    reason: FailReason


@dataclass(frozen=True)
class Taken:
    """Sent to one's own rendezvous key after another connection took it on the relay."""


Message = Pake | Confirm | TicketMessage | Done | Fail | Taken
_SessionMessage = Pake | Confirm | TicketMessage | Done | Fail


def encode(message: Message) -> bytes:
    """The datagram of `message`: magic (4), type (1), session (16), body."""
    match message:
        case Pake(session, body):
            kind = _Type.PAKE
        case Confirm(session, tag, sealed):
            kind, body = _Type.CONFIRM, tag + sealed
        case TicketMessage(session, tag, sealed):
            kind, body = _Type.TICKET, tag + sealed
        case Done(session, body):
            kind = _Type.DONE
        case Fail(session, reason):
            kind, body = _Type.FAIL, bytes([_FAIL_REASONS[reason]])
        case Taken():
            kind, session, body = _Type.TAKEN, _NO_SESSION, b""
    if len(session) != SESSION_BYTES:
        raise ValueError(f"a session id is {SESSION_BYTES} bytes")
    return MAGIC + bytes([kind]) + session + body


_HEAD = len(MAGIC) + 1 + SESSION_BYTES
_SEALED_ID = _BOX_OVERHEAD + 32


def decode(datagram: bytes) -> Message | None:
    """The message of one datagram, or None if it is not a well-formed one."""
    if len(datagram) < _HEAD or not datagram.startswith(MAGIC):
        return None
    kind, session, body = datagram[4], datagram[5:_HEAD], datagram[_HEAD:]
    size = len(body)
    if kind == _Type.PAKE and size == PAKE_BYTES:
        return Pake(session, body)
    if kind == _Type.CONFIRM and size == TAG_BYTES + _SEALED_ID:
        return Confirm(session, body[:TAG_BYTES], body[TAG_BYTES:])
    if kind == _Type.TICKET and TAG_BYTES + _BOX_OVERHEAD < size <= (
        TAG_BYTES + _BOX_OVERHEAD + MAX_TICKET_BYTES
    ):
        return TicketMessage(session, body[:TAG_BYTES], body[TAG_BYTES:])
    if kind == _Type.DONE and size == TAG_BYTES:
        return Done(session, body)
    if kind == _Type.FAIL and size == 1:
        for reason, code in _FAIL_REASONS.items():
            if body[0] == code:
                return Fail(session, reason)
    if kind == _Type.TAKEN and size == 0 and session == _NO_SESSION:
        return Taken()
    return None


# -- the machines ---------------------------------------------------------------------------------


class State(Enum):
    """Where one side stands. The last six end the exchange, and no trigger leaves them."""

    WAIT_PAKE = auto()
    WAIT_CONFIRM = auto()
    CONFIRMED = auto()
    WAIT_DONE = auto()
    WAIT_TICKET = auto()
    HAVE_TICKET = auto()
    DONE = auto()
    GUESSED = auto()
    EXPIRED = auto()
    UNANSWERED = auto()
    TAKEN = auto()
    BUSY = auto()


class Trigger(Enum):
    """What moves a machine; each value is the trigger as tickets/PROTOCOL.md writes it."""

    RECEIVE_PAKE = "receive PAKE"
    RECEIVE_OTHER_PAKE = "receive PAKE of another session"
    RECEIVE_CONFIRM = "receive CONFIRM"
    RECEIVE_BAD_CONFIRM = "receive CONFIRM with a wrong tag"
    RECEIVE_TICKET = "receive TICKET"
    RECEIVE_BAD_TICKET = "receive TICKET with a wrong tag"
    RECEIVE_DONE = "receive DONE"
    RECEIVE_FAIL_GUESSED = "receive FAIL guessed"
    RECEIVE_FAIL_BUSY = "receive FAIL busy"
    RECEIVE_TAKEN = "receive TAKEN"
    SEND_TICKET = "send TICKET"
    SEND_DONE = "send DONE"
    DISPLACED = "displaced"
    RETRANSMIT = "retransmit time"
    DEADLINE = "deadline"


Transitions = Mapping[tuple[State, Trigger], State]
"""One role's table: (state, trigger) to the next state. What it lacks is dropped."""

_FINAL = frozenset(
    {State.DONE, State.GUESSED, State.EXPIRED, State.UNANSWERED, State.TAKEN, State.BUSY}
)

_Entropy = Callable[[int], bytes]


class _Side:
    """What both roles share: the code, the two keys, the table, the queue of datagrams."""

    TRANSITIONS: ClassVar[Transitions]
    ROLE: ClassVar[Role]

    def __init__(self, code: ShortCode, deadline: float, entropy: _Entropy) -> None:
        self.code = code
        self.deadline = deadline
        self._entropy = entropy
        peer_role = Role.RECEIVER if self.ROLE is Role.SENDER else Role.SENDER
        self.identity = rendezvous_identity(code.nameplate, self.ROLE)
        """The key this side holds on the relay."""
        self.peer_key = rendezvous_identity(code.nameplate, peer_role).peer_id.raw
        self.own_key = self.identity.peer_id.raw
        self._state = State.WAIT_PAKE
        self.dropped = 0
        """Datagrams dropped: malformed, from another key or session, or not in the table."""
        self.throttled = 0
        """PAKE dropped unread because `PAKE_RATE` was spent (counted in `dropped` too)."""
        self._budget = float(PAKE_RATE)
        self._budget_at = 0.0
        self._outbox: list[tuple[bytes, bytes]] = []
        self._session = _NO_SESSION
        self._keys: SessionKeys | None = None
        self._transcript = b""

    @property
    def state(self) -> State:
        return self._state

    @property
    def finished(self) -> bool:
        return self.state in _FINAL

    def datagrams_to_send(self) -> list[tuple[bytes, bytes]]:
        """(destination key, datagram) pairs queued since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def next_timer(self) -> float | None:
        """When `handle_timer` should next be called (None once finished)."""
        return None if self.finished else self.deadline

    def handle_timer(self, now: float) -> None:
        if now >= self.deadline:
            self._move(Trigger.DEADLINE)

    def displaced(self) -> None:
        """Our connection to the relay lost our key to a newer one: tell its holder."""
        if self._move(Trigger.DISPLACED):
            self._outbox.append((self.own_key, encode(Taken())))

    def receive(self, source: bytes, datagram: bytes, now: float) -> None:
        """A datagram the relay delivered from the key `source`."""
        if self.finished:
            return
        message = decode(datagram)
        if isinstance(message, Taken):
            if source != self.own_key or not self._move(Trigger.RECEIVE_TAKEN):
                self.dropped += 1
        elif message is None or source != self.peer_key or not self._handle(message, now):
            self.dropped += 1
        self.handle_timer(now)

    def error(self) -> RendezvousError | None:
        """What ended the exchange, for a person; None while it runs or once it succeeded."""
        nameplate = self.code.nameplate
        if self.state is State.GUESSED:
            return RendezvousError(
                "guessed",
                f"The code {nameplate}-… was ended: a key confirmation failed, so someone may "
                "have guessed it (or the other side typed a wrong one). Nothing was exchanged, "
                "and the code cannot be used again; make a new one.",
            )
        if self.state is State.EXPIRED:
            return RendezvousError("expired", f"The code {nameplate}-… expired unused.")
        if self.state is State.TAKEN:
            whom = "sender" if self.ROLE is Role.SENDER else "receiver"
            return RendezvousError(
                "taken",
                f"Another {whom} is using the nameplate {nameplate} on this relay: pick a "
                "code with another number.",
            )
        if self.state is State.BUSY:
            return RendezvousError(
                "busy", f"The sender of {nameplate}-… is already exchanging it with someone else."
            )
        if self.state is State.UNANSWERED:
            return RendezvousError(
                "unanswered",
                f"Nobody answered on the nameplate {nameplate}: the code may have expired or "
                "been used, its sender may have stopped, or the number is mistyped.",
            )
        return None

    def _handle(self, message: _SessionMessage, now: float) -> bool:
        raise NotImplementedError

    def _move(self, trigger: Trigger) -> bool:
        """Take `trigger` if the table has it from the current state."""
        following = self.TRANSITIONS.get((self.state, trigger))
        if following is None:
            return False
        self._state = following
        return True

    def _finish_pake(self, serialized: bytes, message: bytes, now: float) -> bytes | None:
        """SPAKE2's shared key from a fresh copy of our half (so that a malformed message
        leaves it usable), or None if the message is not a valid one from the other side, or
        if this second's computations are spent."""
        cls = spake2.SPAKE2_A if self.ROLE is Role.SENDER else spake2.SPAKE2_B
        if message[:1] != (b"B" if self.ROLE is Role.SENDER else b"A"):
            return None  # the wrong side: no need to compute anything
        self._budget = min(PAKE_RATE, self._budget + (now - self._budget_at) * PAKE_RATE)
        self._budget_at = now
        if self._budget < 1:
            self.throttled += 1
            return None
        self._budget -= 1
        try:
            return bytes(cls.from_serialized(serialized).finish(message))
        except (ValueError, spake2.SPAKEError):
            return None

    def _fail(self, reason: FailReason, session: bytes) -> None:
        self._outbox.append((self.peer_key, encode(Fail(session, reason))))


def _spake(role: Role, code: ShortCode, entropy: _Entropy) -> tuple[bytes, bytes]:
    """Our SPAKE2 message and the serialized half that can finish it."""
    cls = spake2.SPAKE2_A if role is Role.SENDER else spake2.SPAKE2_B
    half = cls(code.password, idA=_SENDER_ID, idB=_RECEIVER_ID, entropy_f=entropy)
    message = bytes(half.start())
    return message, bytes(half.serialize())


class Sender(_Side):
    """The side that holds the content: waits for a receiver's SPAKE2 message, answers it,
    checks the receiver's confirmation, and hands the application the receiver's peer id
    (`receiver`); the application admits it, then calls `send_ticket`."""

    ROLE = Role.SENDER
    TRANSITIONS = MappingProxyType(
        {
            (State.WAIT_PAKE, Trigger.RECEIVE_PAKE): State.WAIT_CONFIRM,
            (State.WAIT_PAKE, Trigger.RECEIVE_TAKEN): State.TAKEN,
            (State.WAIT_PAKE, Trigger.RECEIVE_FAIL_GUESSED): State.GUESSED,
            (State.WAIT_PAKE, Trigger.DISPLACED): State.WAIT_PAKE,
            (State.WAIT_PAKE, Trigger.DEADLINE): State.EXPIRED,
            (State.WAIT_CONFIRM, Trigger.RECEIVE_PAKE): State.WAIT_CONFIRM,
            (State.WAIT_CONFIRM, Trigger.RECEIVE_OTHER_PAKE): State.WAIT_CONFIRM,
            (State.WAIT_CONFIRM, Trigger.RECEIVE_CONFIRM): State.CONFIRMED,
            (State.WAIT_CONFIRM, Trigger.RECEIVE_BAD_CONFIRM): State.GUESSED,
            (State.WAIT_CONFIRM, Trigger.RECEIVE_TAKEN): State.TAKEN,
            (State.WAIT_CONFIRM, Trigger.RECEIVE_FAIL_GUESSED): State.GUESSED,
            (State.WAIT_CONFIRM, Trigger.DISPLACED): State.WAIT_CONFIRM,
            (State.WAIT_CONFIRM, Trigger.DEADLINE): State.EXPIRED,
            (State.CONFIRMED, Trigger.RECEIVE_OTHER_PAKE): State.CONFIRMED,
            (State.CONFIRMED, Trigger.SEND_TICKET): State.WAIT_DONE,
            (State.CONFIRMED, Trigger.DISPLACED): State.CONFIRMED,
            (State.WAIT_DONE, Trigger.RECEIVE_OTHER_PAKE): State.WAIT_DONE,
            (State.WAIT_DONE, Trigger.RECEIVE_CONFIRM): State.WAIT_DONE,
            (State.WAIT_DONE, Trigger.RECEIVE_DONE): State.DONE,
            (State.WAIT_DONE, Trigger.DISPLACED): State.WAIT_DONE,
            (State.WAIT_DONE, Trigger.DEADLINE): State.DONE,
        }
    )

    def __init__(
        self,
        code: ShortCode,
        deadline: float,
        *,
        admission: float = 600.0,
        entropy: _Entropy = os.urandom,
    ) -> None:
        super().__init__(code, deadline, entropy)
        self._admission = admission
        self._message, self._half = _spake(Role.SENDER, code, entropy)
        self.receiver: PeerId | None = None
        """The receiver's peer id, once its confirmation checked out."""
        self._sealed_ticket = b""

    def send_ticket(self, ticket: Ticket, now: float) -> None:
        """Seal `ticket` for the confirmed receiver and send it (again for each repeat of the
        receiver's confirmation). The receiver then has `admission` seconds until its DONE."""
        assert self._keys is not None, "send_ticket follows the receiver's confirmation"
        text = ticket.encode().encode("ascii")
        if len(text) > MAX_TICKET_BYTES:
            raise ValueError(f"a ticket sent by code is at most {MAX_TICKET_BYTES} bytes")
        if not self._move(Trigger.SEND_TICKET):
            raise ValueError(f"no ticket can be sent in state {self.state.name}")
        box = nacl.secret.SecretBox(self._keys.sender_box)
        nonce = self._entropy(nacl.secret.SecretBox.NONCE_SIZE)
        self._sealed_ticket = bytes(box.encrypt(text, nonce))
        self.deadline = now + self._admission
        self._send_ticket()

    def _send_ticket(self) -> None:
        assert self._keys is not None
        tag = _tag(self._keys.sender_confirm, self._transcript)
        message = TicketMessage(self._session, tag, self._sealed_ticket)
        self._outbox.append((self.peer_key, encode(message)))

    def _handle(self, message: _SessionMessage, now: float) -> bool:
        session = message.session
        if isinstance(message, Fail):
            # Before any session, whoever watched a guess fail may end the code: a guess of
            # their own could have ended it as well.
            known = self.state is State.WAIT_PAKE or session == self._session
            return (
                known and message.reason == "guessed" and self._move(Trigger.RECEIVE_FAIL_GUESSED)
            )
        if isinstance(message, Pake):
            if self.state is not State.WAIT_PAKE and session != self._session:
                if self._move(Trigger.RECEIVE_OTHER_PAKE):
                    self._fail("busy", session)
                    return True
                return False
            return self._on_pake(message, now)
        if session != self._session:
            return False
        if isinstance(message, Confirm):
            return self._on_confirm(message)
        if isinstance(message, Done):
            assert self._keys is not None
            good = hmac.compare_digest(
                message.tag, _tag(self._keys.receiver_done, self._transcript)
            )
            return good and self._move(Trigger.RECEIVE_DONE)
        return False

    def _on_pake(self, message: Pake, now: float) -> bool:
        if self.state is State.WAIT_PAKE:
            shared = self._finish_pake(self._half, message.message, now)
            if shared is None:
                return False
            self._session = message.session
            self._keys = session_keys(shared)
            self._transcript = transcript(message.session, self._message, message.message)
        if not self._move(Trigger.RECEIVE_PAKE):
            return False
        self._outbox.append((self.peer_key, encode(Pake(self._session, self._message))))
        return True

    def _on_confirm(self, message: Confirm) -> bool:
        if self.state is State.WAIT_DONE:
            self._move(Trigger.RECEIVE_CONFIRM)
            self._send_ticket()  # our ticket did not arrive: the receiver still confirms
            return True
        if self.state is not State.WAIT_CONFIRM:
            return False
        assert self._keys is not None
        expected = _tag(self._keys.receiver_confirm, self._transcript)
        if not hmac.compare_digest(message.tag, expected):
            self._move(Trigger.RECEIVE_BAD_CONFIRM)
            self._fail("guessed", self._session)
            return True
        try:
            opened = nacl.secret.SecretBox(self._keys.receiver_box).decrypt(message.sealed)
            receiver = PeerId(bytes(opened))
        except (nacl.exceptions.CryptoError, TicketError):
            return False  # a key holder's garbage: wait for a better repeat
        self.receiver = receiver
        return self._move(Trigger.RECEIVE_CONFIRM)


class Receiver(_Side):
    """The side that holds a typed code: sends its SPAKE2 message until the sender answers,
    confirms the key with its peer id, and checks the sender's confirmation on the ticket
    (`ticket`, once HAVE_TICKET); `finish` tells the sender when it is done with the content."""

    ROLE = Role.RECEIVER
    TRANSITIONS = MappingProxyType(
        {
            (State.WAIT_PAKE, Trigger.RECEIVE_PAKE): State.WAIT_TICKET,
            (State.WAIT_PAKE, Trigger.RECEIVE_FAIL_BUSY): State.BUSY,
            (State.WAIT_PAKE, Trigger.RECEIVE_FAIL_GUESSED): State.GUESSED,
            (State.WAIT_PAKE, Trigger.RECEIVE_TAKEN): State.TAKEN,
            (State.WAIT_PAKE, Trigger.DISPLACED): State.WAIT_PAKE,
            (State.WAIT_PAKE, Trigger.RETRANSMIT): State.WAIT_PAKE,
            (State.WAIT_PAKE, Trigger.DEADLINE): State.UNANSWERED,
            (State.WAIT_TICKET, Trigger.RECEIVE_TICKET): State.HAVE_TICKET,
            (State.WAIT_TICKET, Trigger.RECEIVE_BAD_TICKET): State.GUESSED,
            (State.WAIT_TICKET, Trigger.RECEIVE_FAIL_GUESSED): State.GUESSED,
            (State.WAIT_TICKET, Trigger.RECEIVE_TAKEN): State.TAKEN,
            (State.WAIT_TICKET, Trigger.DISPLACED): State.WAIT_TICKET,
            (State.WAIT_TICKET, Trigger.RETRANSMIT): State.WAIT_TICKET,
            (State.WAIT_TICKET, Trigger.DEADLINE): State.UNANSWERED,
            (State.HAVE_TICKET, Trigger.SEND_DONE): State.DONE,
        }
    )

    def __init__(
        self,
        code: ShortCode,
        peer_id: PeerId,
        now: float,
        deadline: float,
        *,
        entropy: _Entropy = os.urandom,
    ) -> None:
        super().__init__(code, deadline, entropy)
        self._peer_id = peer_id
        self._message, self._half = _spake(Role.RECEIVER, code, entropy)
        self._session = entropy(SESSION_BYTES)
        self.ticket: Ticket | None = None
        """The sender's ticket, once its confirmation checked out."""
        self._last = encode(Pake(self._session, self._message))
        self._resend_at = now
        self.handle_timer(now)

    def next_timer(self) -> float | None:
        if self.finished or self.state is State.HAVE_TICKET:
            return None
        return min(self._resend_at, self.deadline)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if now >= self._resend_at and self._move(Trigger.RETRANSMIT):
            self._outbox.append((self.peer_key, self._last))
            self._resend_at = now + RETRANSMIT

    def _handle(self, message: _SessionMessage, now: float) -> bool:
        if message.session != self._session:
            return False
        if isinstance(message, Pake):
            return self.state is State.WAIT_PAKE and self._on_pake(message, now)
        if isinstance(message, TicketMessage):
            return self._on_ticket(message)
        if isinstance(message, Fail):
            trigger = (
                Trigger.RECEIVE_FAIL_GUESSED if message.reason == "guessed" else
                Trigger.RECEIVE_FAIL_BUSY
            )  # fmt: skip
            return self._move(trigger)
        return False

    def _on_pake(self, message: Pake, now: float) -> bool:
        shared = self._finish_pake(self._half, message.message, now)
        if shared is None:
            return False
        self._keys = keys = session_keys(shared)
        self._transcript = transcript(self._session, message.message, self._message)
        box = nacl.secret.SecretBox(keys.receiver_box)
        sealed = bytes(box.encrypt(self._peer_id.raw, self._entropy(box.NONCE_SIZE)))
        confirm = Confirm(self._session, _tag(keys.receiver_confirm, self._transcript), sealed)
        self._move(Trigger.RECEIVE_PAKE)
        self._last = encode(confirm)
        self._outbox.append((self.peer_key, self._last))
        self._resend_at = now + RETRANSMIT
        return True

    def _on_ticket(self, message: TicketMessage) -> bool:
        keys = self._keys
        if keys is None:
            return False
        if not hmac.compare_digest(message.tag, _tag(keys.sender_confirm, self._transcript)):
            if self._move(Trigger.RECEIVE_BAD_TICKET):
                self._fail("guessed", self._session)
                return True
            return False
        try:
            opened = nacl.secret.SecretBox(keys.sender_box).decrypt(message.sealed)
            ticket = Ticket.decode(bytes(opened).decode("ascii"))
        except (nacl.exceptions.CryptoError, UnicodeDecodeError, TicketError):
            return False  # a key holder's garbage: wait for a better repeat
        if not self._move(Trigger.RECEIVE_TICKET):
            return False
        self.ticket = ticket
        return True

    def finish(self) -> None:
        """Tell the sender this receiver is finished with the content (fetched, or given up):
        the sender may then stop admitting it."""
        keys = self._keys
        if keys is None or not self._move(Trigger.SEND_DONE):
            raise ValueError(f"DONE follows the ticket, not state {self.state.name}")
        done = Done(self._session, _tag(keys.receiver_done, self._transcript))
        self._outbox.append((self.peer_key, encode(done)))
