"""SLO-gated rollouts end to end, in process: the real control plane (gRPC, Redis),
a real replica exporting real OTLP to it, real onnxruntime, live traffic.

A deliberately slow version (a MatMul chain in its graph) is rolled back by the
control plane on its own; a good version is promoted on its own. Intervals are
short (1 s) so the whole file runs in seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.domain.models import RouteTarget
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.sample_models import linear_model
from modelplane.serving.replica import ReplicaRuntime
from modelplane.telemetry.data_plane import DataPlaneTelemetry
from modelplane.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)

pytestmark = pytest.mark.integration

X = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)


def slow_linear_model(width: int = 384, depth: int = 96, seed: int = 9) -> bytes:
    """Same signature as ``linear_model`` (x [-1,16] -> y [-1,4]) but a MatMul chain
    of ``depth`` width x width layers in between: milliseconds instead of microseconds."""
    rng = np.random.default_rng(seed)
    shapes = [(16, width)] + [(width, width)] * depth + [(width, 4)]
    nodes, initializers, current = [], [], "x"
    for i, shape in enumerate(shapes):
        w = (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
        initializers.append(numpy_helper.from_array(w, f"W{i}"))
        out = "y" if i == len(shapes) - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow_linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass
class Loop:
    control: ControlPlane
    rollouts: rollout_pb2_grpc.RolloutServiceStub
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub
    predictions: list[inference_pb2.PredictResponse]
    redis_url: str


@pytest.fixture()
def loop(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Loop]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_dir=tmp_path,
        control_port=0,
        inference_port=0,
        rollout_tick_s=0.2,
        telemetry_flush_interval_s=1.0,
    )
    control = ControlPlane(settings, redis_url)
    control.registry.route_ack_timeout_s = 2.0
    control.start()
    registry = control.registry
    registry.register_version("m", "good v1", create_model=True, chunks=[linear_model(seed=1)])
    registry.register_version("m", "slow v2", create_model=False, chunks=[slow_linear_model()])
    registry.register_version("m", "good v3", create_model=False, chunks=[linear_model(seed=3)])
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], expected_revision=0)

    telemetry = DataPlaneTelemetry(
        [control.address], "test-replica", "r1", metric_export_interval_ms=200
    )
    runtime = ReplicaRuntime(settings, "r1", telemetry=telemetry)
    control_channel = grpc.insecure_channel(control.address)
    inference_channel = grpc.insecure_channel(runtime.address)
    stub = inference_pb2_grpc.InferenceServiceStub(inference_channel)
    stop = threading.Event()
    predictions: list[inference_pb2.PredictResponse] = []
    request = inference_pb2.PredictRequest(endpoint="fraud", inputs=[array_to_tensor("x", X)])

    def traffic() -> None:
        # Closed loop, one request at a time, ~1-2 ms pause: steady, modest load.
        while not stop.is_set():
            with contextlib.suppress(grpc.RpcError):
                predictions.append(stub.Predict(request, timeout=5))
            time.sleep(0.001)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        yield Loop(
            control,
            rollout_pb2_grpc.RolloutServiceStub(control_channel),
            telemetry_pb2_grpc.TelemetryServiceStub(control_channel),
            stub,
            predictions,
            redis_url,
        )
    finally:
        stop.set()
        sender.join()
        control_channel.close()
        inference_channel.close()
        runtime.close()
        telemetry.shutdown()
        control.stop(0)


def _start(
    loop: Loop, version: int, max_p99_ratio: float, min_requests: int = 20
) -> rollout_pb2.Rollout:
    return loop.rollouts.StartRollout(
        rollout_pb2.StartRolloutRequest(
            endpoint="fraud",
            version=version,
            steps=[10, 50, 100],
            interval_seconds=1.0,
            gates=rollout_pb2.RolloutGates(
                max_p99_ratio=max_p99_ratio, max_error_rate=0.01, min_requests=min_requests
            ),
        ),
        timeout=10,
    )


def _wait_done(loop: Loop, timeout_s: float = 40.0) -> rollout_pb2.Rollout:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rollout = loop.rollouts.GetRollout(
            rollout_pb2.GetRolloutRequest(endpoint="fraud"), timeout=5
        )
        if rollout.state != "running":
            return rollout
        time.sleep(0.2)
    raise AssertionError(f"rollout still running after {timeout_s} s: {rollout}")


def test_slow_version_is_rolled_back_and_good_one_promoted_by_themselves(loop: Loop) -> None:
    registry = loop.control.registry
    # Warm up: the stable version has traffic in the control plane's windows.
    deadline = time.monotonic() + 10
    while not loop.telemetry.GetStats(telemetry_pb2.GetStatsRequest(endpoint="fraud")).stats:
        assert time.monotonic() < deadline, "no telemetry reached the control plane"
        time.sleep(0.1)

    started = _start(loop, version=2, max_p99_ratio=1.5)
    assert (started.state, started.canary_weight, started.stable_version) == ("running", 10, 1)
    targets = registry.get_route("fraud").targets
    assert [(t.version, t.weight) for t in targets] == [(1, 90), (2, 10)]

    slow = _wait_done(loop)
    assert slow.state == "rolled_back", slow.reason
    assert "canary p90" in slow.reason and "stable p90" in slow.reason
    assert slow.canary_weight == 0
    route = registry.get_route("fraud")
    assert [(t.version, t.weight) for t in route.targets] == [(1, 100)]
    assert [e.action for e in slow.history] == ["started", "rolled_back"]

    # Same model as the stable one, so the latency matches: the gates hold at every
    # step, on the default 20 requests. Below 200 requests per version the gate reads
    # p90s, so one scheduling hiccup on a 2-core machine does not decide it; the slow
    # version above failed the same gate on every one of its requests.
    time.sleep(1.0)  # let the slow canary's last requests leave the window
    good = _start(loop, version=3, max_p99_ratio=6.0)
    assert good.canary_weight == 10
    done = _wait_done(loop)
    assert done.state == "promoted", done.reason
    assert [e.action for e in done.history] == ["started", "advanced", "promoted"]
    assert [(t.version, t.weight) for t in registry.get_route("fraud").targets] == [(3, 100)]

    # Every step is in the audit trail, by the rollout, with its reason.
    # Read through a decoding client: what `modelplane audit` shows.
    store = RedisRegistryStore.from_url(loop.redis_url, loop.control.settings.key_prefix)
    try:
        events = [e for e in store.audit_events(None, None)
                  if e.actor == "rollout" and e.endpoint == "fraud"]
    finally:
        store._redis.close()
    # Each transition: the route write (set_route), then the rollout's own event,
    # which webhooks deliver as rollout.advanced / rollout.rolled_back.
    routes = [e for e in events if e.action == "set_route"]
    reasons = [e.reason for e in routes]
    assert len(routes) == 5, reasons
    assert reasons[1].startswith("rolled back at 10%: canary p90")
    assert reasons[3].startswith("advanced to 50%: gates held at 10%")
    assert reasons[4].startswith("promoted: gates held at 50%")
    transitions = [(e.action, e.reason) for e in events if e.action != "set_route"]
    assert [action for action, _ in transitions] == [
        "rollout_started", "rollout_rolled_back", "rollout_started", "rollout_advanced",
        "rollout_promoted",
    ]
    assert [reason for _, reason in transitions] == reasons
    # And live traffic ended up on the promoted version.
    time.sleep(0.3)
    assert loop.predictions[-1].version == 3


def test_bad_start_requests_are_refused(loop: Loop) -> None:
    with pytest.raises(grpc.RpcError) as error:
        loop.rollouts.StartRollout(
            rollout_pb2.StartRolloutRequest(
                endpoint="fraud", version=2, steps=[50, 25, 100], interval_seconds=1,
                gates=rollout_pb2.RolloutGates(max_p99_ratio=1.2, max_error_rate=0.01),
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "steps: expected strictly increasing weights" in (error.value.details() or "")
    with pytest.raises(grpc.RpcError) as error:
        loop.rollouts.GetRollout(rollout_pb2.GetRolloutRequest(endpoint="nope"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no rollout for 'nope'" in (error.value.details() or "")
    with pytest.raises(grpc.RpcError) as error:
        _start(loop, version=9, max_p99_ratio=1.2)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _feedback(loop: Loop, **label: object) -> telemetry_pb2.FeedbackResponse:
    return loop.telemetry.Feedback(telemetry_pb2.FeedbackRequest(**label), timeout=5)  # type: ignore[arg-type]


def test_feedback_joins_shipped_predictions_and_refuses_bad_labels(loop: Loop) -> None:
    deadline = time.monotonic() + 10
    while len(loop.predictions) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    prediction = loop.predictions[2]
    # linear_model's 4 scores per row: the predicted class is their argmax.
    predicted = int(np.argmax(tensor_to_array(prediction.outputs[0])[0]))
    while True:  # shipped off the request path, within an export interval or so
        try:
            answer = _feedback(loop, prediction_id=prediction.prediction_id,
                               class_index=predicted)
            break
        except grpc.RpcError as missing:
            assert missing.code() == grpc.StatusCode.NOT_FOUND
            assert time.monotonic() < deadline, "the prediction never reached the control plane"
            time.sleep(0.1)
    assert (answer.model, answer.version, answer.correct) == ("m", 1, True)
    wrong = _feedback(loop, prediction_id=prediction.prediction_id, class_index=predicted + 1)
    assert not wrong.correct

    with pytest.raises(grpc.RpcError) as error:
        _feedback(loop, prediction_id=prediction.prediction_id, class_name="cat")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "predicts class indices; expected class_index, got str" in (
        error.value.details() or "")
    with pytest.raises(grpc.RpcError) as error:
        _feedback(loop, prediction_id="0" * 32, class_index=1)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"prediction_id: '{'0' * 32}' is unknown or expired" in (error.value.details() or "")

    [stats] = loop.telemetry.GetStats(telemetry_pb2.GetStatsRequest(endpoint="fraud")).stats
    assert stats.feedback_count == 2
    assert stats.accuracy == pytest.approx(0.5)
    assert not stats.HasField("mae")


def test_latency_series_covers_the_window_in_steps(loop: Loop) -> None:
    deadline = time.monotonic() + 10
    while not loop.telemetry.GetStats(telemetry_pb2.GetStatsRequest(endpoint="fraud")).stats:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    response = loop.telemetry.GetLatencySeries(
        telemetry_pb2.GetLatencySeriesRequest(endpoint="fraud", window_seconds=600,
                                              step_seconds=60)
    )
    [series] = response.series
    assert (series.model, series.version, series.step_seconds) == ("m", 1, 60)
    assert len(series.points) == 10
    assert series.points[-1].requests > 0 and series.points[-1].p99_ms > 0
    assert all(p.requests == 0 for p in series.points[:-2])
    assert series.points[1].start_unix_s - series.points[0].start_unix_s == 60


def test_input_drift_shows_in_stats_and_alerts(loop: Loop) -> None:
    def v1_stats() -> telemetry_pb2.VersionStats | None:
        stats = loop.telemetry.GetStats(telemetry_pb2.GetStatsRequest(endpoint="fraud")).stats
        return stats[0] if stats else None

    deadline = time.monotonic() + 20
    while (s := v1_stats()) is None or not s.HasField("drift_psi"):
        assert time.monotonic() < deadline, "no drift score: baseline never filled"
        time.sleep(0.2)
    assert s.drift_psi < 0.1, s  # the same inputs as the baseline
    assert s.drift_feature.startswith(("input:x[", "output:y["))

    shifted = inference_pb2.PredictRequest(endpoint="fraud",
                                           inputs=[array_to_tensor("x", X + 5.0)])
    deadline = time.monotonic() + 20
    while True:
        for _ in range(50):
            loop.inference.Predict(shifted, timeout=5)
        alerts = loop.telemetry.ListAlerts(
            telemetry_pb2.ListAlertsRequest(endpoint="fraud", window_seconds=60)
        ).alerts
        drift = [a for a in alerts if a.kind == "drift"]
        if drift:
            break
        assert time.monotonic() < deadline, "shifted inputs never raised a drift alert"
    assert (drift[0].model, drift[0].version) == ("m", 1)
    assert drift[0].observed > 0.25 and "PSI" in drift[0].message


def test_cli_commands_against_the_control_plane(
    loop: Loop, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from modelplane.cli import main

    flags = ["--control", loop.control.address, "--inference", loop.control.address]
    deadline = time.monotonic() + 10
    while not loop.telemetry.GetStats(telemetry_pb2.GetStatsRequest(endpoint="fraud")).stats:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    png = tmp_path / "latency.png"
    assert main(["latency", "fraud", "--over", "600", "--png", str(png), *flags]) == 0
    out = capsys.readouterr().out
    assert "m:1  last 60s:" in out and "p99.9" in out and "p99 " in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["alerts", "fraud", *flags]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # Steady traffic on one version: nothing to report, or (noisy machine) p99 alerts.
    assert lines == ["no alerts"] or all(
        line.startswith(("[", "    slowest traces:")) for line in lines
    )
    assert main(["rollout", "start", "fraud", "--to", "m:3", "--steps", "50,100",
                 "--interval", "1h", *flags]) == 0
    assert "running  canary 50%" in capsys.readouterr().out
    assert main(["rollout", "status", "fraud", *flags]) == 0
    assert "started" in capsys.readouterr().out
    assert main(["rollout", "abort", "fraud", *flags]) == 0
    assert "aborted" in capsys.readouterr().out
    assert main(["rollout", "promote", "fraud", *flags]) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
    assert main(["feedback", "0" * 32, "1", *flags]) == 1
    assert "NOT_FOUND: prediction_id" in capsys.readouterr().err
