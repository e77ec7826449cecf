"""JWTs signed by an identity provider, checked against a JWKS file.

Only asymmetric algorithms are accepted (a JWKS holds public keys); ``alg`` is
pinned per key, so a token cannot pick ``none`` or downgrade to HMAC with the
public key as secret. Expiry is required, issuer and audience when configured.
"""

from __future__ import annotations

import json
from pathlib import Path

import jwt

from modelplane.domain.errors import Unauthenticated
from modelplane.security.principals import Principal, Role

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA")
LEEWAY_S = 30


class JwtVerifier:
    def __init__(
        self,
        jwks_path: Path,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        role_claim: str = "modelplane_role",
    ) -> None:
        try:
            document = json.loads(jwks_path.read_text(encoding="utf-8"))
            self._keys = jwt.PyJWKSet.from_dict(document)
        except FileNotFoundError:
            raise ValueError(f"auth_jwks_file: {jwks_path} does not exist") from None
        except (ValueError, jwt.PyJWTError) as error:
            raise ValueError(f"auth_jwks_file: {jwks_path} is not a usable JWKS: {error}") from None
        self._issuer = issuer
        self._audience = audience
        self._role_claim = role_claim

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("authorization: malformed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthenticated(f"authorization: JWT algorithm {algorithm!r} is not accepted")
        key = self._key_for(header.get("kid"))
        required = ["exp", "sub"] + (["iss"] if self._issuer else []) + (
            ["aud"] if self._audience else []
        )
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_S,
                options={"require": required, "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("authorization: the JWT has expired") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"authorization: JWT rejected: {error}") from None
        role_text = claims.get(self._role_claim)
        try:
            role = Role.parse(str(role_text)) if role_text is not None else None
        except ValueError:
            role = None
        if role is None:
            raise Unauthenticated(
                f"authorization: the JWT's {self._role_claim!r} claim must be "
                "reader, deployer or admin"
            )
        return Principal(str(claims["sub"])[:128], role, "jwt")

    def _key_for(self, kid: object) -> jwt.PyJWK:
        keys = self._keys.keys
        if kid is None and len(keys) == 1:
            return keys[0]
        for key in keys:
            if key.key_id == kid:
                return key
        raise Unauthenticated(f"authorization: no key {kid!r} in the configured JWKS")
