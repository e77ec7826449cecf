"""Static bearer tokens: generated random, stored only as their SHA-256.

Tokens are 256 random bits, so a fast hash cannot be brute-forced and keeps the
per-request check at one hash and one dict lookup; a slow KDF (scrypt) only pays
off for human-chosen passwords. Lookup is by the hash of what the caller sent,
so comparing against stored values leaks nothing an attacker could steer.

Token file (JSON, written 0600)::

    {"tokens": [{"name": "admin", "role": "admin", "sha256": "<64 hex>"}]}

The same entries can be given inline as ``name:role:sha256hex`` strings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelplane.security.principals import Principal, Role

TOKEN_PREFIX = "mpt_"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9._@:/+-]{1,128}")


def generate_token() -> str:
    """A new random token; the prefix makes leaked ones easy to find with secret scanners."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    name: str
    role: Role
    sha256: str

    @classmethod
    def parse(cls, text: str) -> TokenEntry:
        """``name:role:sha256hex`` (the form of the ``auth_tokens`` setting)."""
        name, sep, rest = text.rpartition(":")
        name, sep2, role = name.rpartition(":")
        if not sep or not sep2:
            raise ValueError(f"auth_tokens: expected 'name:role:sha256hex', got {text[:40]!r}")
        return cls.of(name, role, rest)

    @classmethod
    def of(cls, name: str, role: str, sha256: str) -> TokenEntry:
        if not _NAME.fullmatch(name):
            raise ValueError(f"token name: expected [A-Za-z0-9._@:/+-]{{1,128}}, got {name!r}")
        digest = sha256.strip().lower()
        if not _HEX64.fullmatch(digest):
            raise ValueError(f"token {name!r}: sha256 must be 64 hex digits")
        return cls(name, Role.parse(role), digest)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.label, "sha256": self.sha256}


class TokenStore:
    """Hash -> principal; immutable once built, so safe to share between threads."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self._by_hash: dict[str, Principal] = {}
        for entry in entries:
            self._by_hash[entry.sha256] = Principal(entry.name, entry.role, "token")

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, token: str) -> Principal | None:
        return self._by_hash.get(hash_token(token))


def read_token_file(path: Path) -> list[TokenEntry]:
    """The entries of a token file; a missing file is an error (a typo must not open the door)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"auth_tokens_file: {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"auth_tokens_file: {path} is not JSON: {error}") from None
    items = document.get("tokens") if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise ValueError(f"auth_tokens_file: {path} must hold {{'tokens': [...]}}")
    entries = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError(f"auth_tokens_file: {path}: every token must be an object")
        entries.append(
            TokenEntry.of(str(item.get("name", "")), str(item.get("role", "")),
                          str(item.get("sha256", "")))
        )
    return entries


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` readable by the owner only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_token_file(path: Path, entries: Iterable[TokenEntry]) -> None:
    write_private(path, json.dumps({"tokens": [e.to_json() for e in entries]}, indent=2) + "\n")


def add_token(path: Path, name: str, role: str) -> str:
    """Adds (or replaces, by name: a rotation) a token in a token file; returns it in clear."""
    entries = read_token_file(path) if path.exists() else []
    token = generate_token()
    entry = TokenEntry.of(name, role, hash_token(token))
    kept = [e for e in entries if e.name != name]
    write_token_file(path, [*kept, entry])
    return token
