"""Dynamic batching against onnxruntime run alone: every caller gets exactly its rows."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
import pytest

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import DataType, ModelVersion, Signature, TensorSpec, VersionStatus
from modelplane.sample_models import linear_model, mlp_model
from modelplane.serving.batcher import VersionRunner
from modelplane.serving.sessions import LoadedModel


def _loaded(data: bytes, n_in: int, n_out: int) -> LoadedModel:
    signature = Signature(
        (TensorSpec("x", DataType.FLOAT32, (-1, n_in)),),
        (TensorSpec("y", DataType.FLOAT32, (-1, n_out)),),
    )
    version = ModelVersion("m", 1, "0" * 64, len(data), signature, VersionStatus.READY, "", 0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return LoadedModel(version, ort.InferenceSession(data, options))


@pytest.fixture(scope="module")
def linear() -> tuple[LoadedModel, ort.InferenceSession]:
    data = linear_model(seed=3)
    return _loaded(data, 16, 4), ort.InferenceSession(data)


def test_concurrent_distinct_requests_each_get_their_own_rows(
    linear: tuple[LoadedModel, ort.InferenceSession],
) -> None:
    model, alone = linear
    runner = VersionRunner(model, max_batch_size=64, max_wait_us=500, inline=False)
    rng = np.random.default_rng(1)
    # Different row counts too, so a split by a wrong offset cannot pass.
    inputs = [rng.standard_normal((1 + i % 3, 16)).astype(np.float32) for i in range(200)]

    async def main() -> list[dict[str, np.ndarray]]:
        return await asyncio.gather(*(runner.run({"x": x}) for x in inputs))

    answers = asyncio.run(main())
    for x, answer in zip(inputs, answers, strict=True):
        (expected,) = alone.run(["y"], {"x": x})
        assert answer["y"].shape == expected.shape
        np.testing.assert_allclose(answer["y"], expected, rtol=1e-6, atol=1e-6)
    stats = runner.stats
    assert stats.requests == 200
    assert stats.runs < 100, "requests were not stacked"
    assert stats.largest_batch > 1


def test_a_request_with_disagreeing_rows_fails_alone(
    linear: tuple[LoadedModel, ort.InferenceSession],
) -> None:
    model, alone = linear
    # A two-input model would be needed for rows to disagree between inputs;
    # here the bad caller sends the wrong width, which the signature refuses.
    runner = VersionRunner(model, max_batch_size=64, inline=False)
    good = [np.full((2, 16), i, dtype=np.float32) for i in range(20)]
    bad = np.zeros((2, 15), dtype=np.float32)

    async def main() -> list[object]:
        calls = [runner.run({"x": x}) for x in good]
        calls.insert(7, runner.run({"x": bad}))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    error = results.pop(7)
    assert isinstance(error, InvalidArgument)
    assert error.message == "input 'x': expected float32 [-1, 16], got float32 [2, 15]"
    for x, answer in zip(good, results, strict=True):
        assert isinstance(answer, dict)
        np.testing.assert_allclose(answer["y"], alone.run(["y"], {"x": x})[0], rtol=1e-6)


def test_inputs_with_different_row_counts_are_invalid_argument() -> None:
    from modelplane.serving.batcher import _rows

    with pytest.raises(InvalidArgument) as info:
        _rows({"a": np.zeros((3, 2)), "b": np.zeros((2, 2))})
    assert info.value.message == (
        "input 'b': has 2 rows but input 'a' has 3; every input of a request must have the "
        "same first dimension"
    )


def test_a_lone_request_runs_at_once_unbatched(
    linear: tuple[LoadedModel, ort.InferenceSession],
) -> None:
    model, _ = linear
    # A long max wait must not apply to a request that finds the queue empty.
    runner = VersionRunner(model, max_batch_size=64, max_wait_us=2_000_000, inline=False)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await runner.run({"x": np.zeros((1, 16), dtype=np.float32)})
        return loop.time() - start

    assert asyncio.run(main()) < 0.5
    assert runner.stats.largest_batch == 1


def test_small_models_run_inline_and_heavy_ones_batched() -> None:
    tiny = VersionRunner(_loaded(linear_model(), 16, 4), inline_threshold_us=300)
    heavy = VersionRunner(
        _loaded(mlp_model(n_in=256, hidden=1024, layers=4), 256, 1024), inline_threshold_us=300
    )
    assert tiny.mode == "inline"
    assert heavy.mode == "batched"


def _one_row_only() -> bytes:
    """Declares a dynamic first dimension, but only ever works on one row."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["y"]),
        ],
        "one_row",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[
            numpy_helper.from_array(np.array([1, 16], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.ones((16, 4), dtype=np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_model_that_cannot_stack_rows_still_answers_each_caller() -> None:
    runner = VersionRunner(_loaded(_one_row_only(), 16, 4), max_batch_size=64, inline=False)
    singles = [np.full((1, 16), i, dtype=np.float32) for i in range(30)]

    async def main() -> list[object]:
        calls = [runner.run({"x": x}) for x in singles]
        calls.append(runner.run({"x": np.zeros((2, 16), dtype=np.float32)}))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert not isinstance(results.pop(), dict)  # two rows: this model's own failure
    for x, answer in zip(singles, results, strict=True):
        assert isinstance(answer, dict)
        np.testing.assert_allclose(answer["y"], np.full((1, 4), 16.0 * x[0, 0]), rtol=1e-6)
    assert runner.stats.largest_batch > 1
