"""Short codes end to end through a real iroh-relay on loopback: two nodes meet at the keys of a
code's nameplate, run SPAKE2, swap the ticket for the receiver's peer id, and the receiver fetches
the content through the one-time ring that admits it to that content only.

Hostile participants are relay clients holding the public rendezvous keys and sending real bytes
built with `ringdrop.rendezvous`. Every wait is for an event, with a generous deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import spake2

from ringdrop.errors import AccessDeniedError, RendezvousError, UsageError
from ringdrop.node import OPEN_RING, CodeOffer, Node, Share, ShortCode
from ringdrop.node.codes import CODE_RING_PREFIX, remove_stale_rings
from ringdrop.rendezvous import Role, decode, encode, rendezvous_identity
from ringdrop.ticket import Ticket
from ringdrop.transport.relay import RelayClient
from tests.files import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay
from tests.test_rendezvous import malformed_pakes

DEADLINE = 60.0


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[IrohRelay]:
    with IrohRelay(require_iroh_relay(), tmp_path / "iroh-relay") as server:
        yield server


def make_node(path: Path, relay: IrohRelay) -> Node:
    return Node(path, relays=(relay.url,), stun=(), addresses=("127.0.0.1",))


@pytest.fixture
def receiver(tmp_path: Path, relay: IrohRelay) -> Iterator[Node]:
    with make_node(tmp_path / "receiver", relay) as node:
        yield node


@pytest.fixture
async def sender(tmp_path: Path, relay: IrohRelay) -> AsyncIterator[Node]:
    """A node serving on 127.0.0.1, connected to its home relay."""
    with make_node(tmp_path / "sender", relay) as node:
        connected = asyncio.Event()
        task = asyncio.create_task(
            node.serve(
                host="127.0.0.1",
                on_relay=lambda state: connected.set() if state == "connected" else None,
            )
        )
        await asyncio.wait_for(connected.wait(), DEADLINE)
        yield node
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def offering(
    node: Node, path: Path, code: ShortCode | None = None, expires: float = 600.0
) -> tuple[asyncio.Task[CodeOffer], CodeOffer]:
    """Shares `path` with no ring and offers it under a code; returns once the code is held."""
    share = node.share(path)
    ready: asyncio.Future[CodeOffer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        node.offer_code(share, code, expires=expires, on_ready=ready.set_result)
    )
    done, _ = await asyncio.wait([ready, task], timeout=DEADLINE, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises what went wrong
    return task, await ready


def code_rings(node: Node) -> list[str]:
    return [r.name for r in node.rings() if r.name.startswith(CODE_RING_PREFIX)]


async def test_a_file_sent_by_code_reaches_its_receiver_who_may_read_that_content_only(
    sender: Node, receiver: Node, tmp_path: Path
) -> None:
    data = pseudo_random(300_000, seed=26)
    (tmp_path / "report.bin").write_bytes(data)
    (tmp_path / "other.bin").write_bytes(b"not for the receiver")
    sender.create_ring("family")
    other = sender.share(tmp_path / "other.bin", rings=["family"])
    task, pending = await offering(sender, tmp_path / "report.bin")

    async with receiver.redeeming_code(pending.code) as ticket:
        received = await receiver.get(ticket, tmp_path / "out")
        # While the receiver fetches, one ring admits it, to this content alone.
        assert [m.peer_id for m in sender.members(pending.ring)] == [receiver.peer_id]
        assert code_rings(sender) == [pending.ring]
        with pytest.raises(AccessDeniedError):
            await receiver.get(other.ticket, tmp_path / "other-out")
        assert sender._access.decide(receiver.peer_id, ticket.content_hash).allowed
    offer = await asyncio.wait_for(task, DEADLINE)  # ends when the receiver says it is done

    assert received.path.read_bytes() == data
    assert offer.receiver == receiver.peer_id
    assert code_rings(sender) == []
    assert receiver.peer_id not in [p.peer_id for p in sender.peers()]
    assert not sender._access.decide(receiver.peer_id, ticket.content_hash).allowed


async def test_a_folder_sent_by_code_arrives_whole(
    sender: Node, receiver: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "album"
    (folder / "sub").mkdir(parents=True)
    files = {
        "a.txt": b"first",
        "sub/b.bin": pseudo_random(200_000, seed=2),
        "sub/c.bin": pseudo_random(40_000, seed=3),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    task, pending = await offering(sender, folder)

    tickets: list[Ticket] = []
    received = await receiver.receive_code(
        ShortCode.parse(str(pending.code)), tmp_path / "out", on_ticket=tickets.append
    )
    await asyncio.wait_for(task, DEADLINE)

    assert tickets[0].format == "collection"
    for name, content in files.items():
        assert (received.path / name).read_bytes() == content


async def test_a_wrong_code_ends_both_sides_as_guessed_and_the_right_code_no_longer_works(
    sender: Node, receiver: Node, tmp_path: Path
) -> None:
    (tmp_path / "secret.bin").write_bytes(b"secret")
    task, pending = await offering(sender, tmp_path / "secret.bin")
    right = pending.code
    wrong = ShortCode(right.nameplate, ("zulu", "yucatan") if right.words[0] != "zulu" else
                      ("aardvark", "adroitness"))  # fmt: skip

    with pytest.raises(RendezvousError) as guesser_saw:
        await receiver.receive_code(wrong, tmp_path / "out")
    with pytest.raises(RendezvousError) as sender_saw:
        await asyncio.wait_for(task, DEADLINE)

    for error in (guesser_saw.value, sender_saw.value):
        assert error.kind == "guessed"
        assert "someone may have guessed" in str(error)
    assert code_rings(sender) == []  # the one-time ring went with the code
    with pytest.raises(RendezvousError) as late:
        await receiver.receive_code(right, tmp_path / "out", timeout=3)
    assert late.value.kind == "unanswered"
    assert not (tmp_path / "out").exists()


async def test_an_expired_code_is_refused(sender: Node, receiver: Node, tmp_path: Path) -> None:
    (tmp_path / "soon.bin").write_bytes(b"soon gone")
    task, pending = await offering(sender, tmp_path / "soon.bin", expires=1.0)

    with pytest.raises(RendezvousError) as expired:
        await asyncio.wait_for(task, DEADLINE)
    assert expired.value.kind == "expired"
    assert code_rings(sender) == []
    with pytest.raises(RendezvousError) as late:
        await receiver.receive_code(pending.code, tmp_path / "out", timeout=3)
    assert late.value.kind == "unanswered"


async def test_a_second_sender_on_the_same_nameplate_is_told_to_pick_another(
    sender: Node, receiver: Node, tmp_path: Path, relay: IrohRelay, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "first.bin").write_bytes(b"the first")
    (tmp_path / "second.bin").write_bytes(b"the second")
    first_code = ShortCode.parse("42-revenge-guitarist")
    task, _ = await offering(sender, tmp_path / "first.bin", first_code)

    with make_node(tmp_path / "another", relay) as another:
        second = another.share(tmp_path / "second.bin")
        with pytest.raises(RendezvousError) as taken:
            await asyncio.wait_for(
                another.offer_code(second, ShortCode.parse("42-zulu-yucatan")), DEADLINE
            )
        assert taken.value.kind == "taken"
        assert "pick" in str(taken.value)
        assert code_rings(another) == []
    # The first sender's relay client was displaced for a moment, and says by whom it may be.
    assert "another client with the sender's rendezvous key of nameplate 42" in caplog.text
    assert "this node's key" not in caplog.text

    received = await receiver.receive_code(first_code, tmp_path / "out")  # still there
    assert received.path.read_bytes() == b"the first"
    await asyncio.wait_for(task, DEADLINE)


async def hostile_client(
    relay: IrohRelay, nameplate: int, role: Role
) -> tuple[RelayClient, asyncio.Queue[bytes]]:
    """A relay client holding one of the (public) rendezvous keys of `nameplate`."""
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    def hear(_source: bytes, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            heard.put_nowait(datagram)

    client = RelayClient(relay.url, rendezvous_identity(nameplate, role), on_datagrams=hear)
    client.start()
    await client.wait_connected(DEADLINE)
    return client, heard


async def drained(client: RelayClient) -> None:
    while client.queued_bytes:
        await asyncio.sleep(0.01)
    await client.close()


async def test_malformed_pake_messages_from_a_hostile_receiver_do_not_end_the_code(
    sender: Node, receiver: Node, tmp_path: Path, relay: IrohRelay
) -> None:
    (tmp_path / "f.bin").write_bytes(b"still delivered")
    task, pending = await offering(sender, tmp_path / "f.bin")
    nameplate = pending.code.nameplate
    hostile, _ = await hostile_client(relay, nameplate, Role.RECEIVER)
    side_a = spake2.SPAKE2_A(pending.code.password).start()  # the wrong side's message
    sender_key = rendezvous_identity(nameplate, Role.SENDER).peer_id.raw
    for datagram in malformed_pakes(b"h" * 16, side_a):
        if datagram:
            hostile.send(sender_key, [datagram])
    await drained(hostile)

    received = await receiver.receive_code(pending.code, tmp_path / "out")
    assert received.path.read_bytes() == b"still delivered"
    assert (await asyncio.wait_for(task, DEADLINE)).receiver == receiver.peer_id


async def test_a_hostile_sender_answering_with_malformed_pake_does_not_derail_the_receiver(
    sender: Node, receiver: Node, tmp_path: Path, relay: IrohRelay
) -> None:
    code = ShortCode.parse("314-revenge-guitarist")
    hostile, heard = await hostile_client(relay, code.nameplate, Role.SENDER)
    redeeming = asyncio.create_task(receiver.receive_code(code, tmp_path / "out"))
    pake = decode(await asyncio.wait_for(heard.get(), DEADLINE))  # the receiver's real PAKE
    assert pake is not None
    receiver_key = rendezvous_identity(code.nameplate, Role.RECEIVER).peer_id.raw
    session = encode(pake)[5:21]
    for datagram in malformed_pakes(session, encode(pake)[21:]):  # its own message reflected
        if datagram:
            hostile.send(receiver_key, [datagram])
    await drained(hostile)
    assert not redeeming.done()

    (tmp_path / "f.bin").write_bytes(b"from the real sender")
    task, _ = await offering(sender, tmp_path / "f.bin", code)
    received = await asyncio.wait_for(redeeming, DEADLINE)
    assert received.path.read_bytes() == b"from the real sender"
    await asyncio.wait_for(task, DEADLINE)


def test_stale_one_time_rings_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    with Node(tmp_path / "n", relays=(), stun=()) as node:
        node.create_ring("code-7-1000-ab12")
        node.create_ring("code-8-4000000000-cd34")
        node.create_ring("codebook")
        assert remove_stale_rings(node._access, now=2000.0) == ["code-7-1000-ab12"]
        assert sorted(r.name for r in node.rings()) == [
            "code-8-4000000000-cd34", "codebook", "open",
        ]  # fmt: skip


async def test_send_with_a_code_lets_its_receiver_alone_fetch_never_anyone_with_the_ticket(
    receiver: Node, tmp_path: Path, relay: IrohRelay
) -> None:
    data = pseudo_random(200_000, seed=27)
    (tmp_path / "plan.bin").write_bytes(data)
    code = ShortCode.generate()
    with (
        make_node(tmp_path / "sender", relay) as sender,
        make_node(tmp_path / "third", relay) as third,
    ):
        ready: asyncio.Future[Share] = asyncio.get_running_loop().create_future()
        sending = asyncio.create_task(
            sender.send(tmp_path / "plan.bin", code=code, ready=ready.set_result, host="127.0.0.1")
        )
        share = await asyncio.wait_for(asyncio.shield(ready), DEADLINE)
        assert OPEN_RING not in share.rings

        async with receiver.redeeming_code(code) as ticket:
            with pytest.raises(AccessDeniedError):  # the ticket alone lets nobody in
                await third.get(Ticket.decode(ticket.encode()), tmp_path / "third-out")
            received = await receiver.get(ticket, tmp_path / "out")
        sent = await asyncio.wait_for(sending, DEADLINE)

        assert received.path.read_bytes() == data
        assert [f.peer for f in sent.receivers] == [str(receiver.peer_id)]
        assert sent.offer is not None
        assert sent.offer.receiver == receiver.peer_id
        assert code_rings(sender) == []
        assert [s.name for s in sender.shares()] == []  # sent once: nothing stays offered


async def test_send_with_a_code_takes_no_ring_and_one_receiver(
    tmp_path: Path, relay: IrohRelay
) -> None:
    (tmp_path / "f.bin").write_bytes(b"f")
    with make_node(tmp_path / "sender", relay) as sender:
        sender.create_ring("family")
        for options in ({"rings": ["family"]}, {"rings": [OPEN_RING]}, {"times": 2}):
            with pytest.raises(UsageError):
                await sender.send(tmp_path / "f.bin", code=ShortCode.generate(), **options)
        assert sender.shares() == []
