"""Acceptance: the official Triton and KServe clients, unchanged, against a real replica.

They run in their own virtualenv (.venv-oip, created by ``make oip-venv``,
which ``make test`` depends on) because they pin protobuf < 7. Every answer is
compared with what onnxruntime computes on the same inputs, and the clients'
own compiled protos are compared field by field with ours.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelplane.oip import grpc_service_pb2 as pb
from modelplane.sample_models import linear_model
from tests.integration.oip_models import int64_model, run_onnx, string_model
from tests.integration.oip_stack import SEEDS, oip_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OIP_PYTHON = ROOT / ".venv-oip" / "bin" / "python"
SCRIPT = Path(__file__).with_name("oip_official_clients.py")

X = np.random.default_rng(9).standard_normal((3, 16)).astype(np.float32)
A = np.array([[7, 8, 9], [-1, 0, 1]], dtype=np.int64)
TEXT = np.array(["dog", "héron", "owl"], dtype=object)


@pytest.fixture(scope="module")
def oip_python() -> Path:
    if not OIP_PYTHON.exists():
        made = subprocess.run(
            ["make", "-C", str(ROOT), "oip-venv"], capture_output=True, text=True, timeout=900
        )
        if made.returncode != 0 or not OIP_PYTHON.exists():
            pytest.skip(
                "the official clients' virtualenv (.venv-oip) could not be created by "
                f"`make oip-venv`: {(made.stderr or made.stdout)[-500:]}"
            )
    return OIP_PYTHON


def _our_table(names: list[str]) -> dict[str, list[list[Any]]]:
    table: dict[str, list[list[Any]]] = {}

    def walk(descriptor: Any) -> None:
        table[descriptor.full_name] = [
            [f.name, f.number, f.type, f.is_repeated] for f in descriptor.fields
        ]
        for nested in descriptor.nested_types:
            walk(nested)

    for name in names:
        walk(pb.DESCRIPTOR.message_types_by_name[name])
    return table


def _index(entries: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(e["name"], e.get("version", "")) for e in entries}


def test_official_clients_against_a_replica(
    oip_python: Path, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    inputs_path = tmp_path / "inputs.npz"
    np.savez(inputs_path, x=X, a=A, text=TEXT)
    with oip_stack(redis_url, key_prefix, tmp_path / "stack") as stack:
        for client in ("triton", "kserve"):
            ran = subprocess.run(
                [
                    str(oip_python),
                    str(SCRIPT),
                    client,
                    stack.runtime.address,
                    str(inputs_path),
                    str(tmp_path),
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert ran.returncode == 0, f"{client}: {ran.stderr[-3000:]}"
        audit = stack.registry.query_audit(endpoint="ints")
    report: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for client in ("triton", "kserve"):
        report[client] = json.loads((tmp_path / f"report-{client}.json").read_text())
        with np.load(tmp_path / f"outputs-{client}.npz", allow_pickle=True) as data:
            out.update({name: data[name] for name in data.files})

    y = run_onnx(linear_model(seed=SEEDS[1]), {"x": X})["y"]
    ints = run_onnx(int64_model(), {"a": A})
    words = run_onnx(string_model(), {"text": TEXT})
    tagged = np.array([t.encode() for t in words["tagged"]], dtype=object)

    triton = report["triton"]
    assert triton["live"] is True and triton["ready"] is True
    assert triton["model_ready"] == [True, True, False]
    assert triton["server_metadata"]["name"] == "modelplane"
    meta = triton["model_metadata"]
    assert meta["name"] == "m" and meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "16"]}]
    assert triton["fp32"] == {"model_name": "fraud", "model_version": "1", "id": "fp32-1"}
    np.testing.assert_allclose(out["triton_fp32_y"], y, rtol=1e-6, atol=1e-6)
    assert triton["int64_outputs"] == ["total"]
    np.testing.assert_array_equal(out["triton_int64_total"], ints["total"])
    np.testing.assert_array_equal(out["triton_bytes_tagged"], tagged)
    np.testing.assert_array_equal(out["triton_bytes_label"], words["label"])
    status, message = triton["unknown_model_error"]
    assert status == "StatusCode.NOT_FOUND" and message == "model 'ghost' not found"

    # The stream answered all three, the bad one with its error, and stayed open.
    stream = triton["stream"]
    assert [s.get("id") for s in stream] == ["s1", None, "s3"]
    assert "input 'x': expected float32 [-1, 16], got float64 [1, 16]" in stream[1]["error"]
    np.testing.assert_allclose(out["triton_stream_y"], y, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["triton_stream_scaled"], ints["scaled"])

    (stats,) = triton["statistics"]["model_stats"]
    assert (stats["name"], stats["version"]) == ("m", "1")
    infer_stats = stats["inference_stats"]
    # fp32-1 and s1 succeeded on m:1; s2 failed there.
    assert infer_stats["success"]["count"] == "2"
    assert infer_stats["fail"]["count"] == "1"
    assert int(infer_stats["compute_infer"]["ns"]) > 0

    assert ("fraud", "") in _index(triton["index_before"]["models"])
    assert ("ints", "") not in _index(triton["index_before"]["models"])
    assert ("ints", "") in _index(triton["index_loaded"]["models"])
    assert triton["ints_ready_after_load"] is True
    assert ("ints", "") not in _index(triton["index_unloaded"]["models"])
    assert [(e.action, e.actor) for e in audit] == [
        ("set_route", "triton-client"),
        ("delete_route", "triton-client"),
    ]

    # The clients' compiled protos agree with ours on every field number and type.
    ours = {
        m.name: [
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
        ]
        for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    }
    # Every RPC we declare exists in both clients' service with the same messages.
    assert ours.items() <= triton["triton_service"].items()
    kserve_rpcs = report["kserve"]["kserve_service"]
    assert {k: ours[k] for k in kserve_rpcs if k in ours} == {
        k: v for k, v in kserve_rpcs.items() if k in ours
    }
    assert {"ModelInfer", "ModelMetadata", "ServerLive"} <= kserve_rpcs.keys()
    assert len(triton["triton_descriptors"]) >= 11
    for name, fields in triton["triton_descriptors"].items():
        short = name.removeprefix("inference.").split(".")[0]
        assert _our_table([short])[name] == fields, name

    kserve = report["kserve"]
    assert "skipped" not in kserve, kserve.get("skipped")
    assert (kserve["live"], kserve["ready"], kserve["model_ready"]) == (True, True, True)
    assert kserve["fp32"] == ["fraud", "1", "k1"]
    np.testing.assert_allclose(out["kserve_fp32_y"], y, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["kserve_int64_scaled"], ints["scaled"])
    np.testing.assert_array_equal(out["kserve_int64_total"], ints["total"])
    np.testing.assert_array_equal(out["kserve_bytes_label"], words["label"])
    np.testing.assert_array_equal(
        [t.decode() if isinstance(t, bytes) else t for t in out["kserve_bytes_tagged"]],
        words["tagged"],
    )
    assert len(kserve["kserve_descriptors"]) >= 3
    for name, fields in kserve["kserve_descriptors"].items():
        short = name.removeprefix("inference.").split(".")[0]
        assert _our_table([short])[name] == fields, name
