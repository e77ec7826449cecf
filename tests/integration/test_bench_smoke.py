"""The benchmark harness against a real bare server subprocess, for a couple of seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

# loadtests/ lives beside src/, outside the installed package.
from loadtests.bench import Options, parse_args
from loadtests.bench import run as run_bench
from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.paired_lone import paired_lone_latency
from loadtests.plane import plane, run_plane
from loadtests.plots import write_plots
from loadtests.procs import ServerProcess
from loadtests.tensors import predict_request, to_array
from modelplane.sample_models import reference_linear
from modelplane.v1 import inference_pb2_grpc, tensor_pb2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    model = write_model("tiny", tmp_path_factory.mktemp("models"))
    server = ServerProcess("loadtests.bare_server", ["--model", str(model), "--max-seconds", "300"])
    server.start()
    try:
        yield server
    finally:
        # SIGTERM must end it cleanly, not by the SIGKILL fallback.
        assert server.stop() == 0


def _payload(x: np.ndarray) -> bytes:
    return predict_request({"x": x}, endpoint="bench").SerializeToString()


def test_bare_server_answers_like_the_reference(bare_server: ServerProcess) -> None:
    x = MODELS["tiny"].sample_input(batch=3)
    with grpc.insecure_channel(bare_server.address) as channel:
        response = inference_pb2_grpc.InferenceServiceStub(channel).Predict(
            predict_request({"x": x}, endpoint="bench"), timeout=10
        )
    assert response.endpoint == "bench"
    assert [t.name for t in response.outputs] == ["y"]
    y = np.asarray(to_array(response.outputs[0]), dtype=np.float32)
    np.testing.assert_allclose(y, reference_linear(x), rtol=1e-5)


def test_bare_server_rejects_a_short_tensor_with_invalid_argument(
    bare_server: ServerProcess,
) -> None:
    request = predict_request({"x": np.zeros((1, 16), np.float32)}, endpoint="bench")
    request.inputs[0].data = request.inputs[0].data[:60]
    with grpc.insecure_channel(bare_server.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "inputs['x'].data: expected 64 bytes for shape [1, 16] float32, got 60"
    )


def test_closed_loop_against_the_bare_server(bare_server: ServerProcess) -> None:
    spec = LoadSpec(mode="closed", concurrency=8, duration_s=2.0, warmup_s=0.5, processes=2)
    target = Target.predict(bare_server.address, {"x": MODELS["tiny"].sample_input()}, model="m")
    result = run_load(target, spec)
    assert result["errors"] == 0, result["error_codes"]
    assert result["requests"] > 0
    assert result["throughput_rps"] == pytest.approx(result["requests"] / 2.0)
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["p999_ms"]
    assert result["p999_ms"] <= result["max_ms"]


def test_open_loop_sends_at_the_requested_rate(bare_server: ServerProcess) -> None:
    spec = LoadSpec(
        mode="open", rate=200.0, concurrency=16, duration_s=2.0, warmup_s=0.5, processes=2
    )
    result = run_load(Target(bare_server.address, _payload(MODELS["tiny"].sample_input())), spec)
    assert result["errors"] == 0, result["error_codes"]
    # Poisson arrivals: 400 expected over 2 s; 5 standard deviations is +-100.
    assert 300 <= result["requests"] <= 500
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_errors_are_counted_by_status_code(bare_server: ServerProcess) -> None:
    bad = tensor_pb2.Tensor(name="x", dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[1, 16], data=b"")
    request = predict_request({"x": np.zeros((1, 16), np.float32)}, endpoint="bench")
    del request.inputs[:]
    request.inputs.append(bad)
    spec = LoadSpec(mode="closed", concurrency=2, duration_s=0.5, warmup_s=0.0, processes=1)
    result = run_load(Target(bare_server.address, request.SerializeToString()), spec)
    assert result["requests"] == 0
    assert result["errors"] > 0
    assert set(result["error_codes"]) == {"INVALID_ARGUMENT"}
    assert result["p50_ms"] is None


@pytest.mark.e2e
@pytest.mark.skipif(
    os.environ.get("MODELPLANE_BENCH_SERVE_PROXY") != "1",
    reason="starts a second Ray (~30 s); set MODELPLANE_BENCH_SERVE_PROXY=1 to run",
)
def test_serve_proxy_answers_and_sustains_load(tmp_path: Path) -> None:
    model = write_model("tiny", tmp_path)
    server = ServerProcess(
        "loadtests.ray_serve_proxy",
        ["--model", str(model), "--max-seconds", "300"],
        startup_timeout=240.0,
        stop_timeout=90.0,
    )
    server.start()
    try:
        x = MODELS["tiny"].sample_input(batch=2)
        with grpc.insecure_channel(server.address) as channel:
            response = inference_pb2_grpc.InferenceServiceStub(channel).Predict(
                predict_request({"x": x}, endpoint="bench"), timeout=30
            )
        y = np.asarray(to_array(response.outputs[0]), dtype=np.float32)
        np.testing.assert_allclose(y, reference_linear(x), rtol=1e-5)
        spec = LoadSpec(mode="closed", concurrency=4, duration_s=2.0, warmup_s=0.5, processes=1)
        result = run_load(Target.predict(server.address, {"x": x}, endpoint="bench"), spec)
        assert result["errors"] == 0, result["error_codes"]
        assert result["requests"] > 0
    finally:
        assert server.stop() == 0


def _smoke_options(**overrides: object) -> Options:
    opts, _ = parse_args(["--smoke", "--no-plane"])
    return replace(opts, **overrides)  # type: ignore[arg-type]


def test_bench_smoke_measures_floor_and_bare_side_by_side(tmp_path: Path) -> None:
    report = run_bench(_smoke_options(), say=lambda _: None)
    closed = report["closed_loop"]["summary"]
    assert set(closed) == {"floor", "bare"}
    for name in ("floor", "bare"):
        assert closed[name]["errors"] == 0
        assert closed[name]["throughput_rps"] > 0
        assert 0 < closed[name]["p50_ms"] <= closed[name]["p99_ms"]
    # The floor has no network: it must beat the server it is the floor of.
    assert closed["floor"]["p50_ms"] < closed["bare"]["p50_ms"]
    assert closed["bare"]["cpu_s_per_1k"] > 0
    search = report["max_rate"]["bare"]
    assert search["max_rps"] >= 0 and search["p99_limit_ms"] == 10.0
    probes = report["probes"]["bare"]
    assert len(probes) == 1 and all(p["offered_rps"] > 0 for p in probes)
    level = report["levels"]["bare"]["50%"]
    assert level["errors"] == 0 and level["requests"] > 0 and level["cpu_s_per_1k"] > 0
    assert level["offered_rps"] == pytest.approx(closed["bare"]["throughput_rps"] * 0.5, rel=0.01)
    memory = report["memory"]["tiny"]
    assert 10 < memory["ort_session_rss_mb"] < 2000
    assert memory["bare_serving_rss_mb"] > 0
    assert report["ratios"]["closed_throughput_bare_over_floor"] > 0
    written = write_plots(report, tmp_path)
    assert [p.name for p in written] == [
        "latency_vs_throughput.png", "latency_over_time.png", "max_throughput.png"
    ][: len(written)]
    assert written and all(p.stat().st_size > 1000 for p in written)


def test_plane_figures_are_measured_on_real_processes(tmp_path: Path) -> None:
    results = run_plane(
        tmp_path, changes=3, register_rounds=1, batch_seconds=1.0, batch_rounds=0,
        say=lambda _: None,
    )
    assert 10 < results["control_plane_idle"]["rss_mb"] < 2000
    served = results["register_to_served"]
    assert served["rounds"] == 1 and 0 <= served["median_ms"] < 30_000
    route = results["route_propagation"]
    assert route["replicas"] == 2 and len(route["samples_ms"]) == 3
    assert 0 <= route["p50_ms"] <= route["p99_ms"] <= route["max_ms"] < 30_000
    assert "batching" not in results


def test_lone_request_is_compared_paired_inside_one_replica(tmp_path: Path) -> None:
    with plane(tmp_path) as p:
        results = paired_lone_latency(p, tmp_path / "paired", pairs=40, burst_s=1.0,
                                      say=lambda _: None)
    assert results["pairs"] == 40
    for endpoint in ("mlp-batched", "mlp-unbatched"):
        burst = results["burst_64_in_flight"][endpoint]
        assert burst["errors"] == 0 and burst["throughput_rps"] > 0
    for side in ("batched", "unbatched"):
        assert 0 < results[side]["p50_ms"] <= results[side]["p99_ms"]
    ratio = results["p50_batched_over_unbatched"]
    assert ratio == pytest.approx(
        results["batched"]["p50_ms"] / results["unbatched"]["p50_ms"], rel=1e-3
    )
    low, high = results["ci95"]
    assert low <= ratio <= high
    assert 0 <= results["pairs_batched_faster"] <= 1
