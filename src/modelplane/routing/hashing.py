"""Sticky assignment: weighted rendezvous (highest random weight) hashing.

Each candidate version scores ``weight / -ln(u)``, where ``u`` in (0, 1) is a
hash of (request key, version); the highest score wins. Two properties make
this the right tool for gradual rollouts:

- a key's choice depends only on its own scores, not on the order or number of
  the other candidates, so a key stays on its version across route revisions;
- a key moves from version X to version Y only if Y's weight grew relative to
  X's (its winner changes only when ``w_Y / w_X`` passes the key's own fixed
  threshold). In a rollout from one version to another, exactly the keys the
  weight shift demands move, all from old to new, and none ever comes back;
  a version that gains against all others never loses a key.

The share of keys each version receives converges to its share of the weight.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from modelplane.domain.models import VersionKey

_SCALE = float(1 << 64)


def unit_hash(key: bytes, salt: bytes) -> float:
    """A uniform value in the open interval (0, 1), stable across processes and runs."""
    digest = hashlib.blake2b(key, digest_size=8, key=salt[:64]).digest()
    # +0.5 keeps both ends open, so -ln(u) is never 0 or infinite.
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def salt_of(version: VersionKey) -> bytes:
    return str(version).encode()


def rendezvous_pick(
    key: bytes, versions: Sequence[VersionKey], weights: Sequence[int], salts: Sequence[bytes]
) -> int:
    """Index of the version ``key`` is assigned to; every weight must be positive."""
    best = 0
    best_score = -1.0
    for index, weight in enumerate(weights):
        score = weight / -math.log(unit_hash(key, salts[index]))
        if score > best_score:
            best, best_score = index, score
    return best
