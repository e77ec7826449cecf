"""The Open Inference Protocol benchmark's baseline and load path, for a second."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.oip_vs_bare import MODEL_INFER, infer_request, wait_answer
from loadtests.procs import ServerProcess
from modelplane.sample_models import reference_linear

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bare_oip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    model = write_model("tiny", tmp_path_factory.mktemp("models"))
    server = ServerProcess(
        "loadtests.bare_oip_server", ["--model", str(model), "--max-seconds", "300"]
    )
    server.start()
    try:
        yield server
    finally:
        assert server.stop() == 0  # SIGTERM ends it cleanly


def test_bare_oip_server_answers_like_the_reference(bare_oip: ServerProcess) -> None:
    x = MODELS["tiny"].sample_input(batch=3)
    payload = infer_request("bench", {"x": x}).SerializeToString()
    y = wait_answer(bare_oip.address, payload, 10.0)["y"]
    np.testing.assert_allclose(y, reference_linear(x), rtol=1e-5)


def test_model_infer_load_runs_without_errors(bare_oip: ServerProcess) -> None:
    payload = infer_request("bench", {"x": MODELS["tiny"].sample_input()}).SerializeToString()
    spec = LoadSpec(concurrency=4, duration_s=1.0, warmup_s=0.2, processes=1)
    result = run_load(Target(bare_oip.address, payload, method=MODEL_INFER), spec)
    assert result["errors"] == 0
    assert result["throughput_rps"] > 0
