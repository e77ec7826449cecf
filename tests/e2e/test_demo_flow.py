"""The demo flow through the real client against the whole running stack."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from modelplane.client import ModelplaneClient, outputs_of
from modelplane.demo import run_demo
from modelplane.sample_models import linear_model, reference_linear

pytestmark = pytest.mark.e2e


def test_demo_switches_versions_and_reports_stats(client: ModelplaneClient) -> None:
    result = run_demo(client, say=lambda _: None, predictions_per_version=10)

    assert result.second_version == result.first_version + 1
    # Every prediction after SetRoute returned was answered by the version routed.
    assert result.answered_by == [result.first_version] * 10 + [result.second_version] * 10
    by_version = {s.version: s for s in result.stats}
    assert by_version[result.first_version].request_count == 10
    assert by_version[result.second_version].request_count == 10
    for stats in by_version.values():
        assert stats.error_count == 0
        assert 0 < stats.p50_ms <= stats.p90_ms <= stats.p99_ms


def test_predict_by_model_and_version_bypasses_endpoints(client: ModelplaneClient) -> None:
    version = client.register("direct", linear_model(seed=7))
    x = np.ones((3, 16), np.float32)
    response = client.predict(model="direct", version=version.version, inputs={"x": x})
    assert (response.endpoint, response.model, response.version) == ("", "direct", version.version)
    np.testing.assert_allclose(outputs_of(response)["y"], reference_linear(x, seed=7), atol=1e-5)


def test_unknown_endpoint_is_not_found_and_names_it(client: ModelplaneClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.predict("no-such-endpoint", {"x": np.ones((1, 16), np.float32)})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-endpoint" in (err.value.details() or "")


def test_wrong_dtype_is_invalid_argument_naming_the_input(client: ModelplaneClient) -> None:
    version = client.register("typed", linear_model(seed=3))
    client.set_route("typed-endpoint", [("typed", version.version, 1)])
    with pytest.raises(grpc.RpcError) as err:
        client.predict("typed-endpoint", {"x": np.ones((1, 16), np.float64)})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'x'" in (err.value.details() or "") and "float32" in (err.value.details() or "")
    # The replica survived: the next good request is answered.
    ok = client.predict("typed-endpoint", {"x": np.ones((1, 16), np.float32)})
    assert ok.version == version.version
