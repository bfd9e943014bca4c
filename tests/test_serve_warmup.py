"""A server loads the QUIC library for paths off its machine as it starts, in a fresh process,
not in its first client's handshake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ringdrop.transport import available_backends

# Serves on loopback with no client at all, and prints the QUIC libraries loaded once the
# off-machine one is (or once the failsafe passes: then the test fails).
_SCRIPT = """
import asyncio, sys, time
import nacl.signing
from ringdrop.identity import Identity
from ringdrop.transport import serve
from ringdrop.transport import _backend

async def handler(peer, request):
    raise AssertionError("no client connects")

async def main():
    server = await serve(Identity(nacl.signing.SigningKey.generate()), 0, handler, host="127.0.0.1")
    deadline = time.monotonic() + 30
    while sys.argv[1] not in _backend._LOADED and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    print(",".join(sorted(_backend._LOADED)))
    await server.close()

asyncio.run(main())
"""


@pytest.mark.skipif("qh3" not in available_backends(), reason="qh3 is not installed")
def test_a_new_server_loads_the_off_machine_library_before_any_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "qh3"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "qh3", done.stderr
