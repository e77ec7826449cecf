"""One whole modelplane (embedded Redis, control plane, Ray Serve data plane) per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.launcher import LocalStack


@pytest.fixture(scope="session")
def stack(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data_dir: Path = tmp_path_factory.mktemp("modelplane")
    settings = Settings(
        data_dir=data_dir,
        control_port=0,
        inference_port=0,
        key_prefix="e2e",
        metric_export_interval_ms=300,
    )
    with LocalStack(settings) as running:
        yield running


@pytest.fixture()
def client(stack: LocalStack) -> Iterator[ModelplaneClient]:
    with ModelplaneClient(stack.control_address, stack.inference_address) as c:
        yield c
