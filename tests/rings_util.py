"""Signed ring manifests for tests: a ring named "family" whose members may re-serve, valid for
an hour from now."""

from __future__ import annotations

import time

from ringdrop.access.manifest import Manifest, ManifestMember, sign_manifest
from ringdrop.identity import Identity, PeerId


def family_manifest(
    owner: Identity, *members: PeerId, ring_id: bytes, version: int = 1
) -> Manifest:
    """`owner`'s manifest of ring `ring_id` listing `members`, signed now."""
    now = int(time.time())
    return sign_manifest(
        owner,
        ring_id=ring_id,
        version=version,
        name="family",
        members=[ManifestMember(m) for m in members],
        members_serve=True,
        issued_at=now,
        valid_until=now + 3600,
    )
