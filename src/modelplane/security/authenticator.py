"""Bearer credentials -> principal: static tokens first, then JWTs.

A token file is re-read when it changes (checked at most once a second), so
adding, rotating or revoking a token needs no restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from modelplane.domain.errors import Unauthenticated
from modelplane.security.jwt_verify import JwtVerifier
from modelplane.security.principals import Principal
from modelplane.security.tokens import TokenEntry, TokenStore, read_token_file

_log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
RELOAD_CHECK_S = 1.0
_BEARER = "bearer "


class Authenticator:
    def __init__(
        self,
        tokens: TokenStore,
        jwt: JwtVerifier | None = None,
        *,
        inline: Sequence[TokenEntry] = (),
        tokens_file: Path | None = None,
    ) -> None:
        self._tokens = tokens
        self._jwt = jwt
        self._inline = list(inline)
        self._file = tokens_file
        self._file_stamp = _stamp(tokens_file)
        self._next_check = time.monotonic() + RELOAD_CHECK_S
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        inline: Sequence[str] = (),
        tokens_file: Path | None = None,
        jwks_file: Path | None = None,
        *,
        jwt_issuer: str | None = None,
        jwt_audience: str | None = None,
        jwt_role_claim: str = "modelplane_role",
    ) -> Authenticator:
        inline_entries = [TokenEntry.parse(text) for text in inline]
        entries = list(inline_entries)
        if tokens_file is not None:
            entries += read_token_file(tokens_file)
        verifier = (
            JwtVerifier(jwks_file, issuer=jwt_issuer, audience=jwt_audience,
                        role_claim=jwt_role_claim)
            if jwks_file is not None
            else None
        )
        if not entries and verifier is None:
            raise ValueError(
                "auth_enabled: no credentials configured (auth_tokens, auth_tokens_file "
                "or auth_jwks_file); nobody could call the server"
            )
        return cls(TokenStore(entries), verifier, inline=inline_entries, tokens_file=tokens_file)

    def _maybe_reload(self) -> None:
        if self._file is None or time.monotonic() < self._next_check:
            return
        with self._lock:
            self._next_check = time.monotonic() + RELOAD_CHECK_S
            stamp = _stamp(self._file)
            if stamp == self._file_stamp:
                return
            try:
                entries = read_token_file(self._file)
            except (ValueError, OSError) as error:
                # Keep the tokens in force: a half-written or broken file must not lock
                # everyone out, nor open the door.
                _log.warning("token file not reloaded: %s", error)
                return
            self._tokens = TokenStore([*self._inline, *entries])
            self._file_stamp = stamp
            _log.info("token file %s reloaded: %d token(s)", self._file, len(self._tokens))

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller named by the request's ``authorization: Bearer ...`` metadata."""
        header: str | bytes | None = None
        for key, value in metadata or ():
            if key == AUTHORIZATION:
                header = value
                break
        if header is None:
            raise Unauthenticated("authorization: missing bearer token")
        if isinstance(header, bytes):
            header = header.decode("utf-8", "replace")
        if not header[: len(_BEARER)].lower() == _BEARER:
            raise Unauthenticated("authorization: expected 'Bearer <token>'")
        credential = header[len(_BEARER):].strip()
        if not credential:
            raise Unauthenticated("authorization: empty bearer token")
        self._maybe_reload()
        principal = self._tokens.lookup(credential)
        if principal is not None:
            return principal
        if self._jwt is not None and credential.count(".") == 2:
            return self._jwt.verify(credential)
        raise Unauthenticated("authorization: unknown or revoked token")


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)
