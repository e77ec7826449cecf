"""Drives a modelplane replica with the official Open Inference Protocol clients.

Runs in its own virtualenv (``make oip-venv``: tritonclient[grpc] and kserve,
which pin protobuf < 7), never imports modelplane, and writes what the server
answered to an .npz plus a JSON report; the test compares those with
onnxruntime in the project's own environment.

Usage: python oip_official_clients.py triton|kserve ADDRESS INPUTS.npz OUT_DIR

One client per process: both compile the protocol's proto into the default
descriptor pool under the same names, so they cannot share an interpreter.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _descriptor_table(module: Any, names: list[str]) -> dict[str, list[list[Any]]]:
    """name -> [[field, number, type, repeated]] for each message, to compare protos."""
    table: dict[str, list[list[Any]]] = {}

    def walk(descriptor: Any) -> None:
        table[descriptor.full_name] = [
            [f.name, f.number, f.type, f.is_repeated if hasattr(f, "is_repeated") else None]
            for f in descriptor.fields
        ]
        for nested in descriptor.nested_types:
            walk(nested)

    for name in names:
        walk(module.DESCRIPTOR.message_types_by_name[name])
    return table


def _service_table(module: Any) -> dict[str, list[Any]]:
    """method -> [input, output, client streaming, server streaming]."""
    service = module.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    return {
        m.name: [
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
        ]
        for m in service.methods
    }


def _triton(address: str, inputs: dict[str, np.ndarray], out: dict[str, Any]) -> dict[str, Any]:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    report: dict[str, Any] = {}
    client = triton.InferenceServerClient(url=address)
    actor = {"x-modelplane-actor": "triton-client"}
    report["live"] = client.is_server_live()
    report["ready"] = client.is_server_ready()
    report["model_ready"] = [
        client.is_model_ready("fraud"),
        client.is_model_ready("m", "2"),
        client.is_model_ready("ghost"),
    ]
    report["server_metadata"] = client.get_server_metadata(as_json=True)
    report["model_metadata"] = client.get_model_metadata("m", as_json=True)

    x = triton.InferInput("x", list(inputs["x"].shape), "FP32")
    x.set_data_from_numpy(inputs["x"])
    result = client.infer("fraud", [x], request_id="fp32-1")
    response = result.get_response(as_json=True)
    report["fp32"] = {k: response.get(k) for k in ("model_name", "model_version", "id")}
    out["triton_fp32_y"] = result.as_numpy("y")

    a = triton.InferInput("a", list(inputs["a"].shape), "INT64")
    a.set_data_from_numpy(inputs["a"])
    result = client.infer("ints", [a], outputs=[triton.InferRequestedOutput("total")])
    report["int64_outputs"] = [o["name"] for o in result.get_response(as_json=True)["outputs"]]
    out["triton_int64_total"] = result.as_numpy("total")

    text = triton.InferInput("text", list(inputs["text"].shape), "BYTES")
    text.set_data_from_numpy(inputs["text"])
    result = client.infer("words", [text])
    out["triton_bytes_tagged"] = result.as_numpy("tagged")
    out["triton_bytes_label"] = result.as_numpy("label")

    try:
        bad = triton.InferInput("x", [2, 16], "FP32")
        bad.set_data_from_numpy(inputs["x"][:1].repeat(2, axis=0).astype(np.float32))
        client.infer("ghost", [bad])
        report["unknown_model_error"] = None
    except InferenceServerException as error:
        report["unknown_model_error"] = [error.status(), error.message()]

    # Streaming: a good request, a bad one, a good one; the stream survives the bad one.
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("fraud", [x], request_id="s1")
    wrong = triton.InferInput("x", [1, 16], "FP64")
    wrong.set_data_from_numpy(inputs["x"][:1].astype(np.float64))
    client.async_stream_infer("fraud", [wrong], request_id="s2")
    client.async_stream_infer("ints", [a], request_id="s3")
    stream: list[Any] = []
    for _ in range(3):
        result, error = answers.get(timeout=10)
        if error is not None:
            stream.append({"error": str(error)})
        else:
            stream.append({"id": result.get_response().id})
            if result.get_response().id == "s1":
                out["triton_stream_y"] = result.as_numpy("y")
            else:
                out["triton_stream_scaled"] = result.as_numpy("scaled")
    client.stop_stream()
    report["stream"] = stream

    report["statistics"] = client.get_inference_statistics("m", as_json=True)
    report["index_before"] = client.get_model_repository_index(as_json=True)
    client.load_model("ints", headers=actor)
    report["index_loaded"] = client.get_model_repository_index(as_json=True)
    report["ints_ready_after_load"] = client.is_model_ready("ints")
    client.unload_model("ints", headers=actor)
    report["index_unloaded"] = client.get_model_repository_index(as_json=True)
    client.close()

    from tritonclient.grpc import service_pb2

    report["triton_service"] = _service_table(service_pb2)
    report["triton_descriptors"] = _descriptor_table(
        service_pb2,
        [
            "ModelInferRequest",
            "ModelInferResponse",
            "ModelStreamInferResponse",
            "ModelMetadataResponse",
            "ModelStatisticsResponse",
            "ModelStatistics",
            "InferStatistics",
            "RepositoryIndexResponse",
            "RepositoryModelLoadRequest",
            "InferParameter",
            "InferTensorContents",
        ],
    )
    return report


async def _kserve(address: str, inputs: dict[str, np.ndarray], out: dict[str, Any]) -> Any:
    try:
        from kserve import InferenceGRPCClient, InferInput, InferRequest
    except ImportError as error:
        return {"skipped": f"kserve is not installed in this environment: {error}"}
    report: dict[str, Any] = {}
    client = InferenceGRPCClient(address, timeout=10, retries=0)
    report["live"] = await client.is_server_live()
    report["ready"] = await client.is_server_ready()
    report["model_ready"] = await client.is_model_ready("fraud")

    x = InferInput("x", list(inputs["x"].shape), "FP32")
    x.set_data_from_numpy(inputs["x"], binary_data=True)
    response = await client.infer(InferRequest("fraud", [x], request_id="k1"))
    report["fp32"] = [response.model_name, response.model_version, response.id]
    out["kserve_fp32_y"] = response.outputs[0].as_numpy()

    a = InferInput("a", list(inputs["a"].shape), "INT64")
    a.set_data_from_numpy(inputs["a"], binary_data=True)
    response = await client.infer(InferRequest("ints", [a]))
    for output in response.outputs:
        out[f"kserve_int64_{output.name}"] = output.as_numpy()

    text = InferInput("text", list(inputs["text"].shape), "BYTES")
    text.set_data_from_numpy(inputs["text"], binary_data=True)
    response = await client.infer(InferRequest("words", [text]))
    for output in response.outputs:
        out[f"kserve_bytes_{output.name}"] = output.as_numpy()
    await client.close()

    from kserve.protocol.grpc import grpc_predict_v2_pb2

    report["kserve_service"] = _service_table(grpc_predict_v2_pb2)
    report["kserve_descriptors"] = _descriptor_table(
        grpc_predict_v2_pb2, ["ModelInferRequest", "ModelInferResponse", "ModelMetadataResponse"]
    )
    return report


def main() -> None:
    client, address = sys.argv[1], sys.argv[2]
    inputs_path, out_dir = Path(sys.argv[3]), Path(sys.argv[4])
    with np.load(inputs_path, allow_pickle=True) as data:
        inputs = {name: data[name] for name in data.files}
    out: dict[str, Any] = {}
    if client == "triton":
        report = _triton(address, inputs, out)
    else:
        report = asyncio.run(_kserve(address, inputs, out))
    np.savez(out_dir / f"outputs-{client}.npz", **out)
    (out_dir / f"report-{client}.json").write_text(json.dumps(report, default=str, indent=1))


if __name__ == "__main__":
    main()
