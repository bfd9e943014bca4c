"""A ring serves itself, with real processes: the owner's and members' `ringdrop serve`, and
`ringdrop get` in its own process. A member that received content re-serves it to the ring; a
download takes stripes from every provider at once; the owner's death costs nothing but its
stripes in flight; a slow provider is left the share it can carry; strangers get nothing.

Every provider here is limited with `serve --limit-rate`, so that the share each carries follows
the limits and not the machine's load; nothing here asserts a time (see bench/bench_swarm.py)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.access.manifest import ManifestMember, parse_manifest, sign_manifest
from ringdrop.bao import ChunkRanges
from ringdrop.identity import Identity, PeerId
from ringdrop.node import Node as ApiNode
from ringdrop.protocol import AboutRequest, GetRequest, ResponseHeader, RingsRequest, encode
from ringdrop.ticket import Ticket
from tests.cli_util import RINGDROP, Node, Process, cli_env
from tests.files import write
from tests.hostile import first_frame, hostile

MiB = 1 << 20


def big(path: Path, size: int) -> Path:
    """`size` bytes that do not repeat, written in pieces (a 256 MiB file is never in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for block in range(0, size, MiB):
            seed = hashlib.sha256(block.to_bytes(8, "big")).digest()
            out.write((seed * (MiB // 32))[: min(MiB, size - block)])
    return path


def digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.digest()


def node(tmp_path: Path, name: str) -> Node:
    (tmp_path / f"{name}-cwd").mkdir()
    return Node(tmp_path / name, tmp_path / f"{name}-cwd")


def serve(who: Node, limit: str | None = "20M") -> Process:
    process = who.spawn("serve", *(["--limit-rate", limit] if limit else []))
    process.wait_for(r"^serving as ")
    return process


def get(
    who: Node, ticket: str, dest: Path, *options: str, timeout: float = 600
) -> dict[str, object]:
    """`ringdrop get --json` in its own process."""
    done = subprocess.run(
        [*RINGDROP, "--data-dir", str(who.data_dir), "get", ticket, "--dest", str(dest),
         "--json", *options],
        capture_output=True, text=True, env=cli_env(), cwd=who.cwd, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert isinstance(found, dict)
    return found


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    running: list[Process] = []
    yield running
    for process in running:
        process.stop(signal.SIGTERM)


def ring_of(tmp_path: Path, *members: str) -> tuple[Node, dict[str, Node]]:
    """The owner A with the ring `family` of `members`."""
    owner = node(tmp_path, "a")
    owner.run("ring", "new", "family")
    nodes = {}
    for name in members:
        nodes[name] = node(tmp_path, name)
        owner.run("peer", "add", nodes[name].peer_id(), name)
        owner.run("ring", "add", "family", name)
    return owner, nodes


def test_a_member_takes_a_substantial_part_from_the_owner_and_from_another_member(
    tmp_path: Path, processes: list[Process]
) -> None:
    owner, m = ring_of(tmp_path, "b", "c")
    original = big(tmp_path / "share.bin", 256 * MiB)
    ticket = owner.share(original, "--ring", "family")
    processes.append(serve(owner))
    processes.append(serve(m["b"]))
    first = get(m["b"], ticket, tmp_path / "b.bin")
    assert first["providers"] == {owner.peer_id(): 256 * MiB}

    received = get(m["c"], ticket, tmp_path / "c.bin")

    providers = received["providers"]
    assert isinstance(providers, dict)
    assert set(providers) == {owner.peer_id(), m["b"].peer_id()}
    assert sum(providers.values()) == 256 * MiB
    for peer, taken in providers.items():
        assert taken >= 256 * MiB // 4, f"{peer} sent only {taken} bytes"
    assert digest(tmp_path / "c.bin") == digest(original)
    # The owner's upload log holds the bytes B sent C, as C reported them.
    uploads = owner.json("log")
    assert isinstance(uploads, dict)
    via_b = [u for u in uploads["uploads"] if u["via"] == m["b"].peer_id()]
    assert [u["peer_id"] for u in via_b] == [m["c"].peer_id()]
    assert via_b[0]["bytes_sent"] == providers[m["b"].peer_id()]


def test_the_owner_killed_mid_transfer_costs_only_its_stripes_in_flight(
    tmp_path: Path, processes: list[Process]
) -> None:
    owner, m = ring_of(tmp_path, "b", "d")
    original = big(tmp_path / "share.bin", 128 * MiB)
    ticket = owner.share(original, "--ring", "family")
    owner_server = serve(owner)
    get(m["b"], ticket, tmp_path / "b.bin")
    processes.append(serve(m["b"]))

    d = m["d"]
    receiving = subprocess.Popen(
        [*RINGDROP, "--data-dir", str(d.data_dir), "get", ticket, "--dest", str(tmp_path / "d.bin"),
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=cli_env(), cwd=d.cwd,
    )  # fmt: skip
    # A stripe D fetched from the owner shows in the owner's log: D is under way from both.
    owner_server.wait_for(r"\bd \(\S+\)\s+get .*: complete", timeout=120)
    owner_server.popen.send_signal(signal.SIGKILL)
    owner_server.popen.wait(15)
    out, _ = receiving.communicate(timeout=600)
    assert receiving.returncode == 0

    found = json.loads(out)
    assert digest(tmp_path / "d.bin") == digest(original)
    assert found["providers"][m["b"].peer_id()] > found["providers"].get(owner.peer_id(), 0)


def test_a_provider_throttled_to_a_tenth_is_left_about_its_share(
    tmp_path: Path, processes: list[Process]
) -> None:
    owner, m = ring_of(tmp_path, "b", "slow", "d")
    original = big(tmp_path / "share.bin", 96 * MiB)
    ticket = owner.share(original, "--ring", "family")
    processes.append(serve(owner))
    get(m["b"], ticket, tmp_path / "b.bin")
    processes.append(serve(m["b"]))
    get(m["slow"], ticket, tmp_path / "slow.bin")
    processes.append(serve(m["slow"], limit="2M"))

    received = get(m["d"], ticket, tmp_path / "d.bin")

    providers = received["providers"]
    assert isinstance(providers, dict)
    assert digest(tmp_path / "d.bin") == digest(original)
    slow = providers.get(m["slow"].peer_id(), 0)
    fast = providers[owner.peer_id()] + providers[m["b"].peer_id()]
    # At a tenth of the others' rate, its fair share is 1/21 of the bytes; stripes it could not
    # finish in time were taken by the others, so it carried little more than that.
    assert slow <= 96 * MiB * 2 // 21, providers
    assert fast + slow == 96 * MiB


async def test_a_removed_member_is_refused_by_members_once_they_learn_the_new_manifest(
    tmp_path: Path, processes: list[Process]
) -> None:
    owner, m = ring_of(tmp_path, "b", "c", "e")
    original = write(tmp_path / "share.bin", b"family photos " * 100_000)
    ticket = Ticket.decode(owner.share(original, "--ring", "family"))
    processes.append(serve(owner, limit=None))
    get(m["b"], ticket.encode(), tmp_path / "b.bin")
    b_server = serve(m["b"], limit=None)
    processes.append(b_server)
    e = Identity.load_or_create(m["e"].data_dir)
    b_port = json.loads((m["b"].data_dir / "config.json").read_text())["port"]
    b_id = PeerId.parse(m["b"].peer_id())
    request = encode(GetRequest(ticket.content_hash, ChunkRanges.all()))

    async def e_asks_b(*before: bytes) -> str:
        async with hostile(b_port) as peer:
            await peer.authenticate(e, b_id)
            for frame in before:
                await peer.ask(frame)
            header = first_frame(await peer.ask(request))
        assert isinstance(header, ResponseHeader)
        return header.status

    assert await e_asks_b() == "allowed"  # B serves E by the manifest it holds
    held = m["b"].run("ring", "sync", owner.peer_id(), process=True).stdout
    assert "is now at version" not in held  # nothing newer yet
    with ApiNode(owner.data_dir) as owner_node:  # the version that still lists E
        (older,) = [x.raw for x in owner_node._access.held_manifests()]

    owner.run("ring", "remove", "family", "e")
    synced = m["b"].run("ring", "sync", owner.peer_id(), process=True).stdout
    assert "is now at version" in synced
    assert await e_asks_b() == "denied"
    b_server.wait_for(rf"{e.peer_id}\s+get .*denied", timeout=30)

    # E pushes the older manifest that still lists it, and one a member signed that re-adds it.
    c = Identity.load_or_create(m["c"].data_dir)
    newest = parse_manifest(older)
    forged = sign_manifest(
        c,
        ring_id=newest.ring_id,
        version=newest.version + 10,
        name=newest.name,
        members=[ManifestMember(x.peer_id) for x in newest.members],
        members_serve=True,
        issued_at=int(time.time()),
        valid_until=int(time.time()) + 3600,
    )
    pushes = [encode(RingsRequest((older,))), encode(RingsRequest((forged.raw,)))]
    assert await e_asks_b(*pushes) == "denied"


async def test_a_stranger_gets_neither_the_providers_nor_the_content_from_a_member(
    tmp_path: Path, processes: list[Process]
) -> None:
    owner, m = ring_of(tmp_path, "b")
    ticket = Ticket.decode(
        owner.share(write(tmp_path / "s.bin", b"x" * 300_000), "--ring", "family")
    )
    processes.append(serve(owner, limit=None))
    get(m["b"], ticket.encode(), tmp_path / "b.bin")
    b_server = serve(m["b"], limit=None)
    processes.append(b_server)
    b_port = json.loads((m["b"].data_dir / "config.json").read_text())["port"]
    stranger = Identity(nacl.signing.SigningKey.generate())

    async with hostile(b_port) as peer:
        await peer.authenticate(stranger, PeerId.parse(m["b"].peer_id()))
        about = await peer.ask(encode(AboutRequest(ticket.content_hash)))
        content = await peer.ask(encode(GetRequest(ticket.content_hash, ChunkRanges.all())))

    for answer in (about, content):
        header = first_frame(answer)
        assert isinstance(header, ResponseHeader)
        assert header.status == "denied"
        assert len(answer) == len(encode(header))  # nothing but the refusal
    b_server.wait_for(rf"{stranger.peer_id}\s+about .*denied", timeout=30)
    b_server.wait_for(rf"{stranger.peer_id}\s+get .*denied", timeout=30)


async def test_a_member_cannot_make_another_re_serve_what_the_ring_never_had(
    tmp_path: Path, processes: list[Process]
) -> None:
    # B holds a diary of its own, in no ring. Mallory, a member of the same ring as B, shares a
    # folder listing the diary's root and claims, as a hostile node may, that the folder came
    # under the ring: B must not take a member's word for what the ring holds.
    owner, m = ring_of(tmp_path, "b", "mallory")
    diary = b"B's diary, for B alone. " * 20_000
    secret = Ticket.decode(m["b"].share(write(tmp_path / "b-own" / "diary.txt", diary)))
    write(tmp_path / "bait" / "diary.txt", diary)
    write(tmp_path / "bait" / "other.txt", b"something to fetch " * 1_000)
    bait = Ticket.decode(m["mallory"].share(tmp_path / "bait", "--ring", "open"))
    hello = owner.share(write(tmp_path / "hello.txt", b"hello, family"), "--ring", "family")
    processes.append(serve(owner, limit=None))
    get(m["mallory"], hello, tmp_path / "m-hello.txt")  # Mallory holds the ring's manifest now
    with ApiNode(m["mallory"].data_dir) as mallory_node:
        (family,) = mallory_node._access.held_manifests()
        mallory_node._access.record_received(bait.content_hash, [family])
    processes.append(serve(m["mallory"], limit=None))

    got = get(m["b"], bait.encode(), tmp_path / "b-bait")
    assert Path(str(got["dest"])).joinpath("diary.txt").read_bytes() == diary
    b_server = serve(m["b"], limit=None)
    processes.append(b_server)
    b_port = json.loads((m["b"].data_dir / "config.json").read_text())["port"]
    mallory = Identity.load_or_create(m["mallory"].data_dir)
    async with hostile(b_port) as peer:
        await peer.authenticate(mallory, PeerId.parse(m["b"].peer_id()))
        answer = await peer.ask(encode(GetRequest(secret.content_hash, ChunkRanges.all())))
    header = first_frame(answer)
    assert isinstance(header, ResponseHeader)
    assert header.status == "denied"
    assert len(answer) == len(encode(header))
    b_server.wait_for(rf"{mallory.peer_id}\s+get .*denied", timeout=30)
