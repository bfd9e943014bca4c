"""Ed25519 identity: this node's key pair in the data directory, and peer ids as text.

Peer ids and tickets share one text alphabet: lowercase RFC 4648 base32 without padding.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from ringdrop.errors import StoreError, TicketError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "KEY_FILE",
    "PEER_ID_CHARS",
    "Identity",
    "PeerId",
    "base32_decode",
    "base32_encode",
    "first_non_base32",
    "verify",
]

KEY_FILE = "identity.key"

PEER_ID_CHARS = 52
_BASE32_EITHER_CASE = frozenset("abcdefghijklmnopqrstuvwxyz234567ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def base32_encode(data: bytes) -> str:
    """Lowercase RFC 4648 base32 without padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def base32_decode(text: str) -> bytes:
    """Invert `base32_encode`; ValueError for a character outside it or a length it never gives.

    The spare low bits of the last character are ignored: a caller that wants the one canonical
    text of the bytes encodes them again and compares.
    """
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def first_non_base32(text: str) -> int | None:
    """Index of the first character that is not base32 in either case, or None."""
    return next((i for i, char in enumerate(text) if char not in _BASE32_EITHER_CASE), None)


@dataclass(frozen=True, slots=True, repr=False)
class PeerId:
    """A peer's Ed25519 public key; its text is 52 characters of lowercase base32."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise TicketError(f"A peer id is 32 bytes long, not {len(self.raw)}.")
        if not nacl.bindings.crypto_core_ed25519_is_valid_point(self.raw):
            raise TicketError(
                f"{self} is not an Ed25519 public key, so it names no peer: it was probably "
                "mistyped. Ask the peer for their peer id again."
            )

    @classmethod
    def parse(cls, text: str) -> PeerId:
        """Read a peer id as a person pastes it: surrounding whitespace and upper case are fine."""
        text = text.strip()
        if len(text) != PEER_ID_CHARS:
            raise TicketError(
                f"A peer id has {PEER_ID_CHARS} characters, and this has {len(text)}. "
                "Copy the whole peer id and nothing else."
            )
        bad = first_non_base32(text)
        if bad is not None:
            raise TicketError(
                f"Character {bad + 1} of the peer id is {text[bad]!a}, which no peer id contains "
                "(they use only the letters a-z and the digits 2-7). Check it and copy it again."
            )
        raw = base32_decode(text.lower())
        if base32_encode(raw) != text.lower():
            raise TicketError(
                f"No peer id ends in {text[-1]!a}: its last character was mistyped. "
                "Check it and copy it again."
            )
        return cls(raw)

    def __str__(self) -> str:
        return base32_encode(self.raw)

    def __repr__(self) -> str:
        return f"PeerId({str(self)!r})"

    def short(self) -> str:
        """The first 8 characters of the text, for display where the whole id does not fit."""
        return str(self)[:8]


class Identity:
    """This node's Ed25519 key pair; the secret half leaves only as `tls_key()`, for TLS."""

    __slots__ = ("_key", "_peer_id")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._key = signing_key
        self._peer_id = PeerId(signing_key.verify_key.encode())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Identity:
        """Load the key in `data_dir`, or make one there (mode 0600) if there is none yet."""
        path = data_dir / KEY_FILE
        try:
            return cls(_read_key(path))
        except FileNotFoundError:
            pass
        key = nacl.signing.SigningKey.generate()
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_key_file(path, bytes(key))
        except FileExistsError:
            return cls(_read_key(path))
        except OSError as error:
            raise StoreError(
                f"Cannot create the private key file {path}: {error.strerror}."
            ) from error
        return cls(key)

    @property
    def peer_id(self) -> PeerId:
        return self._peer_id

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        return self._key.sign(message).signature

    def tls_key(self) -> Ed25519PrivateKey:
        """The same key for a TLS library, which signs the handshakes that prove it."""
        # Imported here: only a server needs it, and cryptography is slow to load.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(bytes(self._key))

    def curve25519_key(self) -> nacl.public.PrivateKey:
        """The same key as X25519, for the path layer's sealed probes (`crypto_box`)."""
        return self._key.to_curve25519_private_key()

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"


def verify(peer_id: PeerId, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is `peer_id`'s signature of `message`; never raises for a bad one."""
    try:
        nacl.signing.VerifyKey(peer_id.raw).verify(message, signature)
    except nacl.exceptions.CryptoError:
        return False
    return True


def _read_key(path: Path) -> nacl.signing.SigningKey:
    """Read the 32-byte seed, refusing a file others may read, as ssh does with its keys."""
    try:
        with path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode & 0o777
            seed = file.read(33)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise StoreError(f"Cannot read the private key file {path}: {error.strerror}.") from error
    if mode & 0o077:
        raise StoreError(
            f"Other users have access to the private key file {path} (mode {mode:o}), so "
            f"ringdrop refuses to use it. Run `chmod 600 {path}` and try again."
        )
    if len(seed) != 32:
        raise StoreError(
            f"The private key file {path} is damaged: a key is 32 bytes. Restore it from a "
            "backup, or delete it to make a new identity (peers will then see a new peer id)."
        )
    return nacl.signing.SigningKey(seed)


def _create_key_file(path: Path, seed: bytes) -> None:
    """Write `seed` to `path` whole or not at all; FileExistsError if `path` exists.

    The temporary file is private from its creation (mkstemp makes it 0600). It is linked into
    place rather than renamed, so that when two processes start at once the second one reads the
    first one's key instead of replacing it.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".identity-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(seed)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    finally:
        os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
