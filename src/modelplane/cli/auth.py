"""Tokens of a local install, and `modelplane token create|list|revoke`.

`modelplane up` turns authentication on by default. On first start it creates
``<data_dir>/auth/tokens.json`` (hashes only, 0600) with an ``admin`` token and
a ``data-plane`` token (the replicas' telemetry export), and writes the admin
token in clear to ``<data_dir>/auth/admin.token`` (0600), which every CLI
command on this machine reads, so the local demo needs no configuration.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelplane.config import Settings
from modelplane.security.tokens import (
    TokenEntry,
    add_token,
    read_token_file,
    write_private,
    write_token_file,
)

AUTH_DIR = "auth"
TOKENS_FILE = "tokens.json"
ADMIN_TOKEN_FILE = "admin.token"
DATA_PLANE_TOKEN_FILE = "data-plane.token"
ADMIN = "admin"
DATA_PLANE = "data-plane"


def auth_dir(settings: Settings) -> Path:
    return settings.data_dir / AUTH_DIR


def read_local_token(data_dir: Path, name: str = ADMIN_TOKEN_FILE) -> str | None:
    """A token ``up`` left for the local CLI, if this user may read it."""
    try:
        return (data_dir / AUTH_DIR / name).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def prepare_local_auth(settings: Settings) -> tuple[Settings, list[str]]:
    """The settings ``up`` runs with, and what to tell the operator.

    Auth is on unless ``MODELPLANE_AUTH_ENABLED`` (or the flag) says otherwise.
    Without a configured token file, ``up`` manages its own in the data dir.
    """
    explicit = "auth_enabled" in settings.model_fields_set
    if explicit and not settings.auth_enabled:
        return settings, ["auth             OFF (every caller may do everything)"]
    notes: list[str] = []
    updates: dict[str, Any] = {"auth_enabled": True}
    if settings.auth_tokens_file is None:
        folder = auth_dir(settings)
        tokens_file = folder / TOKENS_FILE
        admin_file = folder / ADMIN_TOKEN_FILE
        if not tokens_file.exists():
            write_token_file(tokens_file, [])
            admin = add_token(tokens_file, ADMIN, "admin")
            write_private(admin_file, admin + "\n")
            notes.append(f"admin token      {admin}  (shown once)")
        if read_local_token(settings.data_dir, DATA_PLANE_TOKEN_FILE) is None or not any(
            e.name == DATA_PLANE for e in read_token_file(tokens_file)
        ):
            data_plane = add_token(tokens_file, DATA_PLANE, "deployer")
            write_private(folder / DATA_PLANE_TOKEN_FILE, data_plane + "\n")
        updates["auth_tokens_file"] = tokens_file
        notes.append(f"auth             on; admin token in {admin_file} (0600)")
    else:
        notes.append(f"auth             on; tokens from {settings.auth_tokens_file}")
    return settings.model_copy(update=updates), notes


def with_configured_auth(settings: Settings) -> Settings:
    """`control-plane`: auth on whenever credentials are configured, unless turned off."""
    if "auth_enabled" in settings.model_fields_set:
        return settings
    configured = bool(
        settings.auth_tokens or settings.auth_tokens_file or settings.auth_jwks_file
    )
    return settings.model_copy(update={"auth_enabled": configured})


def export_telemetry_token(settings: Settings) -> None:
    """Lets the replicas' OTLP exporters authenticate to the control plane.

    The stock exporter reads ``OTEL_EXPORTER_OTLP_HEADERS``; local Ray workers
    inherit this process's environment.
    """
    token = read_local_token(settings.data_dir, DATA_PLANE_TOKEN_FILE)
    if token and "OTEL_EXPORTER_OTLP_HEADERS" not in os.environ:
        os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = "authorization=" + quote(f"Bearer {token}")


# ----------------------------------------------------------------- commands


def add_commands(sub: Any) -> None:
    token = sub.add_parser("token", help="create, list and revoke bearer tokens")
    actions = token.add_subparsers(metavar="ACTION")

    create = actions.add_parser("create", help="create (or rotate) a token; printed once")
    create.add_argument("name")
    create.add_argument("--role", choices=("reader", "deployer", "admin"), default="reader")
    _file_options(create)
    create.set_defaults(handler=_cmd_create)

    listing = actions.add_parser("list", help="names and roles (tokens are stored hashed)")
    _file_options(listing)
    listing.set_defaults(handler=_cmd_list)

    revoke = actions.add_parser("revoke", help="remove a token; takes effect within a second")
    revoke.add_argument("name")
    _file_options(revoke)
    revoke.set_defaults(handler=_cmd_revoke)


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="where `up` keeps its state")
    parser.add_argument("--tokens-file", type=Path, help="the token file to edit")


def _tokens_file(args: argparse.Namespace) -> Path:
    if args.tokens_file:
        return Path(args.tokens_file)
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    return settings.auth_tokens_file or auth_dir(settings) / TOKENS_FILE


def _cmd_create(args: argparse.Namespace) -> int:
    path = _tokens_file(args)
    token = add_token(path, args.name, args.role)
    print(token)
    print(f"{args.name} ({args.role}) stored hashed in {path}; the token is not shown again")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for entry in read_token_file(_tokens_file(args)):
        print(f"{entry.name}\t{entry.role.label}\tsha256:{entry.sha256[:12]}…")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    path = _tokens_file(args)
    entries: list[TokenEntry] = read_token_file(path)
    kept = [e for e in entries if e.name != args.name]
    if len(kept) == len(entries):
        raise ValueError(f"name: no token named {args.name!r} in {path}")
    write_token_file(path, kept)
    print(f"revoked {args.name}")
    return 0
