"""The demo flow: two small models, an endpoint, a switch from v1 to v2, the stats.

Runs against any running modelplane through the public client, exactly as a user
would, and checks each answer against numpy so a wrong answer cannot pass quietly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from modelplane.client import ModelplaneClient, outputs_of
from modelplane.sample_models import linear_model, reference_linear
from modelplane.v1 import telemetry_pb2

DEMO_MODEL = "demo-linear"
DEMO_ENDPOINT = "demo"


@dataclass
class DemoResult:
    first_version: int
    second_version: int
    # The version that answered each prediction, in order.
    answered_by: list[int]
    stats: list[telemetry_pb2.VersionStats]


def run_demo(
    client: ModelplaneClient,
    say: Callable[[str], None] = print,
    predictions_per_version: int = 20,
    stats_timeout_s: float = 15.0,
) -> DemoResult:
    v1 = client.register(DEMO_MODEL, linear_model(seed=1), description="demo: linear 16->4, seed 1")
    say(f"registered {DEMO_MODEL} v{v1.version}  sha256 {v1.sha256[:12]}…  {v1.size_bytes} bytes")
    v2 = client.register(DEMO_MODEL, linear_model(seed=2), description="demo: linear 16->4, seed 2")
    say(f"registered {DEMO_MODEL} v{v2.version}  sha256 {v2.sha256[:12]}…  {v2.size_bytes} bytes")

    route = client.set_route(DEMO_ENDPOINT, [(DEMO_MODEL, v1.version, 100)])
    say(f"route {DEMO_ENDPOINT} -> {DEMO_MODEL}:{v1.version} (revision {route.revision})")
    rng = np.random.default_rng(0)
    answered = _predict_and_check(client, rng, seed=1, count=predictions_per_version, say=say)

    route = client.set_route(
        DEMO_ENDPOINT, [(DEMO_MODEL, v2.version, 100)], expected_revision=route.revision
    )
    say(f"route {DEMO_ENDPOINT} -> {DEMO_MODEL}:{v2.version} (revision {route.revision})")
    answered += _predict_and_check(client, rng, seed=2, count=predictions_per_version, say=say)

    stats = _wait_for_stats(client, Counter(answered), stats_timeout_s)
    return DemoResult(v1.version, v2.version, answered, stats)


def _predict_and_check(
    client: ModelplaneClient,
    rng: np.random.Generator,
    seed: int,
    count: int,
    say: Callable[[str], None],
) -> list[int]:
    answered = []
    for i in range(count):
        x = rng.standard_normal((2, 16)).astype(np.float32)
        response = client.predict(DEMO_ENDPOINT, {"x": x})
        y = outputs_of(response)["y"]
        if not np.allclose(y, reference_linear(x, seed=seed), atol=1e-4):
            raise RuntimeError(
                f"version {response.version} answered {y}, expected the seed-{seed} model"
            )
        answered.append(response.version)
        if i == 0:
            say(
                f"predict {DEMO_ENDPOINT}: answered by {response.model}:{response.version} "
                f"(prediction {response.prediction_id}) y[0]={np.round(y[0], 3).tolist()}"
            )
    return answered


def _wait_for_stats(
    client: ModelplaneClient, answered: Mapping[int, int], timeout_s: float
) -> list[telemetry_pb2.VersionStats]:
    """Telemetry arrives on the replicas' export interval, a version's requests possibly
    split over two exports: wait until every version shows all the requests it answered."""
    deadline = time.monotonic() + timeout_s
    stats: list[telemetry_pb2.VersionStats] = []
    while time.monotonic() < deadline:
        stats = client.stats(DEMO_ENDPOINT)
        counted = {s.version: s.request_count for s in stats}
        if all(counted.get(version, 0) >= count for version, count in answered.items()):
            break
        time.sleep(0.25)
    return stats
