"""Tokens, JWTs and role checks: the pure logic behind the auth interceptors."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from modelplane.domain.errors import PermissionDenied, Unauthenticated
from modelplane.security.authenticator import Authenticator
from modelplane.security.interceptors import EndpointPolicy, authorize
from modelplane.security.jwt_verify import JwtVerifier
from modelplane.security.principals import Principal, Role
from modelplane.security.tokens import (
    TokenEntry,
    TokenStore,
    add_token,
    generate_token,
    hash_token,
    read_token_file,
    write_token_file,
)
from tests.security_material import JwtIssuer


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> JwtIssuer:
    """One RSA key for the module: generating one costs a while on a small machine."""
    return JwtIssuer(tmp_path_factory.mktemp("jwks"))


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_tokens_are_random_prefixed_and_stored_only_as_sha256(tmp_path: Path) -> None:
    first, second = generate_token(), generate_token()
    assert first != second and first.startswith("mpt_") and len(first) > 40
    path = tmp_path / "tokens.json"
    token = add_token(path, "alice", "deployer")
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (entry,) = read_token_file(path)
    assert (entry.name, entry.role) == ("alice", Role.DEPLOYER)


def test_rotating_a_token_replaces_it_and_the_old_one_stops_working(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    old = add_token(path, "ci", "reader")
    auth = Authenticator.from_config(tokens_file=path)
    assert auth.authenticate(_bearer(old)).name == "ci"
    time.sleep(0.01)
    new = add_token(path, "ci", "deployer")
    assert len(read_token_file(path)) == 1
    auth._next_check = 0.0  # skip the once-a-second reload throttle
    assert auth.authenticate(_bearer(new)).role is Role.DEPLOYER
    with pytest.raises(Unauthenticated, match="unknown or revoked token"):
        auth.authenticate(_bearer(old))


def test_a_broken_token_file_keeps_the_tokens_in_force(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = add_token(path, "ops", "admin")
    auth = Authenticator.from_config(tokens_file=path)
    path.write_text("{not json")
    auth._next_check = 0.0
    assert auth.authenticate(_bearer(token)).name == "ops"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice:reader", "expected 'name:role:sha256hex'"),
        ("alice:root:" + "a" * 64, "expected one of reader, deployer, admin"),
        ("alice:reader:abc", "64 hex digits"),
        ("bad name:reader:" + "a" * 64, "token name"),
        ("x:anyone:" + "a" * 64, "must carry reader, deployer or admin"),
    ],
)
def test_malformed_token_entries_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenEntry.parse(text)


def test_inline_entries_parse_with_colons_in_the_name() -> None:
    entry = TokenEntry.parse("svc:fraud:reader:" + hash_token("t"))
    assert (entry.name, entry.role) == ("svc:fraud", Role.READER)


def test_no_credentials_at_all_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="no credentials configured"):
        Authenticator.from_config()


def test_missing_token_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Authenticator.from_config(tokens_file=tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "missing bearer token"),
        ([("authorization", "Basic dXNlcjpwdw==")], "expected 'Bearer <token>'"),
        ([("authorization", "Bearer ")], "empty bearer token"),
        ([("authorization", "Bearer mpt_guess")], "unknown or revoked token"),
    ],
)
def test_bad_bearer_headers_are_unauthenticated(
    metadata: list[tuple[str, str]], message: str
) -> None:
    auth = Authenticator(TokenStore([TokenEntry.of("a", "admin", hash_token("secret"))]))
    with pytest.raises(Unauthenticated, match=message):
        auth.authenticate(metadata)


def test_roles_are_ordered_and_checked_per_method() -> None:
    token = "reader-token"
    auth = Authenticator(TokenStore([TokenEntry.of("rita", "reader", hash_token(token))]))
    assert authorize(auth, "/s/Get", Role.READER, _bearer(token)) == Principal(
        "rita", Role.READER
    )
    with pytest.raises(PermissionDenied, match="needs role deployer; rita has reader"):
        authorize(auth, "/s/Set", Role.DEPLOYER, _bearer(token))
    with pytest.raises(PermissionDenied, match="no role is mapped"):
        authorize(auth, "/s/New", None, _bearer(token))
    assert authorize(auth, "/grpc.health.v1.Health/Check", Role.ANYONE, []) is None


def test_jwts_from_the_jwks_authenticate_with_their_subject_and_role(issuer: JwtIssuer) -> None:
    auth = Authenticator.from_config(jwks_file=issuer.jwks_file)
    principal = auth.authenticate(_bearer(issuer.token("carol@example.com", "deployer")))
    assert principal == Principal("carol@example.com", Role.DEPLOYER, "jwt")


def test_expired_forged_and_unsigned_jwts_are_unauthenticated(issuer: JwtIssuer) -> None:
    verifier = JwtVerifier(issuer.jwks_file)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(issuer.token("a", "admin", ttl_s=-120))
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        verifier.verify(issuer.forged("a", "admin"))
    unsigned = jwt.encode({"sub": "a", "modelplane_role": "admin", "exp": 2**31}, None, "none")
    with pytest.raises(Unauthenticated, match="algorithm 'none' is not accepted"):
        verifier.verify(unsigned)
    hs = jwt.encode({"sub": "a", "modelplane_role": "admin", "exp": 2**31}, "k" * 32, "HS256")
    with pytest.raises(Unauthenticated, match="algorithm 'HS256' is not accepted"):
        verifier.verify(hs)
    with pytest.raises(Unauthenticated, match="'modelplane_role' claim"):
        verifier.verify(issuer.token("a", "superuser"))
    with pytest.raises(Unauthenticated, match="malformed JWT"):
        verifier.verify("a.b.c")


def test_issuer_and_audience_are_enforced_when_configured(issuer: JwtIssuer) -> None:
    verifier = JwtVerifier(issuer.jwks_file, issuer="https://idp", audience="modelplane")
    good = issuer.token("a", "reader", iss="https://idp", aud="modelplane")
    assert verifier.verify(good).name == "a"
    with pytest.raises(Unauthenticated, match=r"Audience doesn.t match"):
        verifier.verify(issuer.token("a", "reader", iss="https://idp", aud="other"))
    with pytest.raises(Unauthenticated, match="iss"):
        verifier.verify(issuer.token("a", "reader", aud="modelplane"))


def test_endpoint_policy_protects_listed_endpoints_and_direct_model_calls() -> None:
    open_policy = EndpointPolicy([])
    assert not open_policy.active and not open_policy.requires_token("")
    some = EndpointPolicy(["fraud"])
    assert some.requires_token("fraud") and not some.requires_token("recs")
    assert some.requires_token("")  # a model named directly could be fraud's model
    assert EndpointPolicy(["*"]).requires_token("recs")


def test_token_file_round_trip(tmp_path: Path) -> None:
    entries = [TokenEntry.of("a", "reader", hash_token("1")), TokenEntry.of("b", "admin", "F" * 64)]
    path = tmp_path / "t.json"
    write_token_file(path, entries)
    assert read_token_file(path) == [entries[0], TokenEntry("b", Role.ADMIN, "f" * 64)]
