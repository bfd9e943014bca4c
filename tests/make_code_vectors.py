"""Writes tickets/code_vectors.json: one whole short-code exchange with fixed randomness.

Run `python -m tests.make_code_vectors` from the repository root and commit the output. The
exchange is run by `ringdrop.rendezvous` itself, with each side's randomness drawn from SHAKE-256
of a fixed label, so another implementation that draws the same bytes in the same order (the
SPAKE2 scalar, then the session id, then each box nonce) reproduces every datagram;
tests/test_rendezvous.py recomputes every derived key and tag from the raw values without it.
"""

from __future__ import annotations

import hashlib
import json
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import blake3
import nacl.signing
import spake2

from ringdrop.identity import Identity
from ringdrop.rendezvous import Receiver, Role, Sender, rendezvous_seed
from ringdrop.shortcode import ShortCode
from ringdrop.ticket import Address, Ticket

OUT = Path(__file__).parent.parent / "tickets" / "code_vectors.json"
CODE = "7-revenge-guitarist"
RECEIVER_ID_SEED = b"r" * 32
SENDER_LABEL = b"ringdrop code vector sender"
RECEIVER_LABEL = b"ringdrop code vector receiver"
TICKET = Ticket(
    peer_id=Identity(nacl.signing.SigningKey(b"s" * 32)).peer_id,
    addresses=(Address(ip_address("192.0.2.1"), 4433),),
    content_hash=blake3.blake3(b"hello").digest(),
    format="blob",
    name="hello.txt",
    size=5,
    relay="https://relay.example/",
)


class Entropy:
    """Bytes from SHAKE-256(label), handed out in order, as `os.urandom` would hand them."""

    def __init__(self, label: bytes) -> None:
        self._stream = hashlib.shake_256(label).digest(4096)
        self._used = 0

    def __call__(self, count: int) -> bytes:
        out = self._stream[self._used : self._used + count]
        self._used += count
        return out


def exchange() -> dict[str, Any]:
    """Every datagram of one successful exchange, in order, and the values behind them."""
    code = ShortCode.parse(CODE)
    receiver_id = Identity(nacl.signing.SigningKey(RECEIVER_ID_SEED)).peer_id
    sender = Sender(code, 100.0, entropy=Entropy(SENDER_LABEL))
    receiver = Receiver(code, receiver_id, 0.0, 60.0, entropy=Entropy(RECEIVER_LABEL))
    datagrams: list[dict[str, str]] = []

    def carry(source: Sender | Receiver, target: Sender | Receiver) -> None:
        for destination, datagram in source.datagrams_to_send():
            assert destination == target.own_key
            side = "sender" if isinstance(source, Sender) else "receiver"
            datagrams.append({"from": side, "hex": datagram.hex()})
            target.receive(source.own_key, datagram, 1.0)

    carry(receiver, sender)  # PAKE
    carry(sender, receiver)  # PAKE
    carry(receiver, sender)  # CONFIRM
    sender.send_ticket(TICKET, 1.0)
    carry(sender, receiver)  # TICKET
    receiver.finish()
    carry(receiver, sender)  # DONE
    assert receiver.ticket == TICKET
    assert sender.receiver == receiver_id
    return {
        "code": CODE,
        "password": code.password.decode(),
        "sender_entropy_label": SENDER_LABEL.decode(),
        "receiver_entropy_label": RECEIVER_LABEL.decode(),
        "receiver_peer_id_seed": RECEIVER_ID_SEED.hex(),
        "ticket": TICKET.encode(),
        "spake2_key": spake2_key(code, bytes.fromhex(datagrams[0]["hex"])[21:]).hex(),
        "rendezvous": {
            role.value: {
                "seed": rendezvous_seed(code.nameplate, role).hex(),
                "public_key": (sender if role is Role.SENDER else receiver).own_key.hex(),
            }
            for role in Role
        },
        "datagrams": datagrams,
    }


def spake2_key(code: ShortCode, receiver_message: bytes) -> bytes:
    """SPAKE2's shared key, from the library alone with the sender's randomness."""
    half = spake2.SPAKE2_A(
        code.password,
        idA=b"ringdrop code v1 sender",
        idB=b"ringdrop code v1 receiver",
        entropy_f=Entropy(SENDER_LABEL),
    )
    half.start()
    return bytes(half.finish(receiver_message))


def main() -> None:
    OUT.write_text(json.dumps(exchange(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
