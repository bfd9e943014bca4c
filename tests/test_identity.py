"""Identity: the private key file, signatures, and the text of peer ids."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import stat
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.errors import StoreError, TicketError
from ringdrop.identity import KEY_FILE, Identity, PeerId, base32_encode, verify

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
seeds = st.binary(min_size=32, max_size=32)


def identity(seed: bytes) -> Identity:
    return Identity(nacl.signing.SigningKey(seed))


def flip_bit(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


def report_peer_id(data_dir: Path, start: Barrier, results: Queue[str]) -> None:
    start.wait()
    results.put(str(Identity.load_or_create(data_dir).peer_id))


# The key file


def test_key_file_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        Identity.load_or_create(tmp_path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600


def test_creation_leaves_only_the_key_file(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path)
    assert os.listdir(tmp_path) == [KEY_FILE]


def test_reloading_gives_the_same_peer_id(tmp_path: Path) -> None:
    first = Identity.load_or_create(tmp_path)
    assert Identity.load_or_create(tmp_path).peer_id == first.peer_id


def test_missing_data_directory_is_created(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path / "new" / "data")
    assert (tmp_path / "new" / "data" / KEY_FILE).is_file()


def test_processes_starting_at_once_agree_on_one_identity(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(8), context.Queue()
    processes = [
        context.Process(target=report_peer_id, args=(tmp_path, start, results)) for _ in range(8)
    ]
    for process in processes:
        process.start()
    peer_ids = {results.get(timeout=60) for _ in processes}
    for process in processes:
        process.join()
    assert peer_ids == {str(Identity.load_or_create(tmp_path).peer_id)}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644], ids=oct)
def test_key_file_others_may_read_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    Identity.load_or_create(tmp_path)
    (tmp_path / KEY_FILE).chmod(mode)
    with pytest.raises(StoreError, match="chmod 600"):
        Identity.load_or_create(tmp_path)


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"x" * 33], ids=len)
def test_key_file_of_the_wrong_size_is_refused_as_damaged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / KEY_FILE
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(StoreError, match="damaged"):
        Identity.load_or_create(tmp_path)


def test_key_file_that_cannot_be_read_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).mkdir()
    with pytest.raises(StoreError, match="Cannot read"):
        Identity.load_or_create(tmp_path)


# Signatures


@given(seeds, st.binary())
def test_signature_verifies_under_the_signers_peer_id(seed: bytes, message: bytes) -> None:
    signer = identity(seed)
    assert verify(signer.peer_id, message, signer.sign(message))


@given(seeds, st.binary(min_size=1), st.data())
def test_signature_fails_for_a_message_with_a_flipped_bit(
    seed: bytes, message: bytes, data: st.DataObject
) -> None:
    signer = identity(seed)
    bit = data.draw(st.integers(0, len(message) * 8 - 1))
    assert not verify(signer.peer_id, flip_bit(message, bit), signer.sign(message))


@given(seeds, st.integers(0, 64 * 8 - 1))
def test_signature_with_a_flipped_bit_fails(seed: bytes, bit: int) -> None:
    signer = identity(seed)
    signature = signer.sign(b"message")
    assert not verify(signer.peer_id, b"message", flip_bit(signature, bit))


def test_signature_fails_under_another_peer_id() -> None:
    signature = identity(bytes(32)).sign(b"message")
    assert not verify(identity(bytes([1]) * 32).peer_id, b"message", signature)


@pytest.mark.parametrize("signature", [b"", b"x" * 63, b"x" * 65], ids=len)
def test_malformed_signature_is_false_not_an_error(signature: bytes) -> None:
    assert not verify(identity(bytes(32)).peer_id, b"message", signature)


def test_repr_shows_the_peer_id_and_never_the_secret() -> None:
    seed = bytes(range(32))
    text = repr(identity(seed))
    assert str(identity(seed).peer_id) in text
    for secret_form in (seed.hex(), repr(seed), base32_encode(seed), str(list(seed))):
        assert secret_form not in text


# Peer ids


@given(seeds)
def test_peer_id_text_is_52_lowercase_base32_characters(seed: bytes) -> None:
    text = str(identity(seed).peer_id)
    assert len(text) == 52
    assert set(text) <= set(BASE32)


@given(seeds)
def test_peer_id_text_parses_back_to_the_same_peer_id(seed: bytes) -> None:
    peer_id = identity(seed).peer_id
    assert PeerId.parse(str(peer_id)) == peer_id


def test_parse_accepts_surrounding_whitespace_and_upper_case() -> None:
    peer_id = identity(bytes(32)).peer_id
    assert PeerId.parse(f" \t{str(peer_id).upper()}\n") == peer_id


@pytest.mark.parametrize("length", [0, 51, 53, 131])
def test_parse_of_the_wrong_length_says_how_long_a_peer_id_is(length: int) -> None:
    with pytest.raises(TicketError, match=f"52 characters, and this has {length}"):
        PeerId.parse("a" * length)


def test_parse_names_the_bad_character_and_its_position() -> None:
    text = str(identity(bytes(32)).peer_id)
    with pytest.raises(TicketError, match=r"Character 10 of the peer id is '1'"):
        PeerId.parse(text[:9] + "1" + text[10:])


def test_parse_refuses_a_last_character_with_its_spare_bits_set() -> None:
    text = str(identity(bytes(32)).peer_id)
    spare_bits_set = BASE32[BASE32.index(text[-1]) ^ 1]
    with pytest.raises(TicketError, match="last character"):
        PeerId.parse(text[:-1] + spare_bits_set)


def test_parse_refuses_text_that_is_not_an_ed25519_key() -> None:
    with pytest.raises(TicketError, match="not an Ed25519 public key"):
        PeerId.parse(base32_encode(bytes(32)))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_peer_id_of_the_wrong_number_of_bytes_is_refused(size: int) -> None:
    with pytest.raises(TicketError, match="32 bytes"):
        PeerId(bytes(size))


def test_short_form_is_the_first_eight_characters() -> None:
    peer_id = identity(bytes(32)).peer_id
    assert peer_id.short() == str(peer_id)[:8]


def test_repr_of_a_peer_id_is_its_text() -> None:
    peer_id = identity(bytes(32)).peer_id
    assert repr(peer_id) == f"PeerId('{peer_id}')"


@given(st.text())
def test_parsing_any_text_gives_a_peer_id_or_a_ticket_error(text: str) -> None:
    with contextlib.suppress(TicketError):
        PeerId.parse(text)


@given(st.text(alphabet=BASE32 + BASE32.upper() + "01 =", min_size=50, max_size=54))
def test_parsing_near_peer_ids_gives_a_peer_id_or_a_ticket_error(text: str) -> None:
    with contextlib.suppress(TicketError):
        PeerId.parse(text)


@given(st.binary(min_size=32, max_size=32))
def test_parsing_any_32_bytes_as_text_gives_those_bytes_or_a_ticket_error(raw: bytes) -> None:
    with contextlib.suppress(TicketError):
        assert PeerId.parse(base32_encode(raw)).raw == raw
