"""What every client command shares: settings, addresses, the client."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import grpc

from modelplane.cli.auth import read_local_token
from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.security.tls import channel_credentials

RUN_FILE = "run.json"


def client_options() -> argparse.ArgumentParser:
    """Options every client command accepts; used as an argparse parent."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--control", help="control-plane address host:port")
    common.add_argument("--inference", help="data-plane address host:port")
    common.add_argument("--data-dir", type=Path, help="where `up` keeps its state (run.json)")
    common.add_argument("-v", "--verbose", action="store_true")
    return common


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for field in ("redis_url", "ray_address", "data_dir", "control_port", "inference_port",
                  "replicas", "host"):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def client_from(args: argparse.Namespace) -> ModelplaneClient:
    settings = settings_from(args)
    control = args.control or os.environ.get("MODELPLANE_CONTROL_ADDRESS")
    inference = args.inference or os.environ.get("MODELPLANE_INFERENCE_ADDRESS")
    run_file = settings.data_dir / RUN_FILE
    if (not control or not inference) and run_file.exists():
        running = json.loads(run_file.read_text())
        control = control or running["control_address"]
        inference = inference or running["inference_address"]
    return ModelplaneClient(
        control or settings.control_address,
        inference or settings.inference_address,
        # MODELPLANE_TOKEN, else the admin token `up` left in the data dir.
        token=settings.token or read_local_token(settings.data_dir),
        credentials=_tls_credentials(settings),
    )


def _tls_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    if not (settings.tls_ca_file or settings.tls_client_cert_file):
        return None
    return channel_credentials(
        settings.tls_ca_file, settings.tls_client_cert_file, settings.tls_client_key_file
    )
