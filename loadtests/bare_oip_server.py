"""The Open Inference Protocol baseline: a bare ``grpc.aio`` server answering ModelInfer.

One ONNX session, no registry, routing, batching, statistics or telemetry: what
the gRPC stack, the protocol's raw tensor encoding and onnxruntime cost on
their own. Answers every model name with the one model. Prints ``PORT <n>``
once it listens; stops on SIGTERM/SIGINT or after ``--max-seconds``.

    python -m loadtests.bare_oip_server --model model.onnx [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from loadtests.event_loops import LOOPS, run_on
from loadtests.ort import session
from modelplane.oip import grpc_service_pb2 as pb

_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


class BareOip:
    """Raw contents in, raw contents out; the model runs inline on the event loop."""

    def __init__(self, sess: ort.InferenceSession) -> None:
        self._session = sess
        self._outputs = [o.name for o in sess.get_outputs()]

    def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        if len(request.raw_input_contents) != len(request.inputs):
            raise ValueError("raw_input_contents: one entry per input expected")
        feeds = {
            tensor.name: np.frombuffer(raw, dtype=_DTYPES[tensor.datatype]).reshape(
                tuple(tensor.shape)
            )
            for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        wanted = [o.name for o in request.outputs] or self._outputs
        results = self._session.run(wanted, feeds)
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version="1", id=request.id
        )
        for name, array in zip(wanted, results, strict=True):
            response.outputs.add(name=name, datatype=_NAMES[array.dtype], shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        try:
            return self.infer(request)
        except (ValueError, KeyError) as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def _handler(servicer: BareOip) -> grpc.GenericRpcHandler:
    # Only ModelInfer: a generic handler avoids stubbing the protocol's other RPCs.
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
    return grpc.method_handlers_generic_handler(
        service,
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                servicer.ModelInfer,
                request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelInferResponse.SerializeToString,
            )
        },
    )


async def serve(model: Path, host: str, port: int, max_seconds: float) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(BareOip(session(model))),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Bounded even if nobody stops it: a forgotten benchmark server must not live on.
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except asyncio.TimeoutError:
        print("max-seconds reached, stopping", file=sys.stderr, flush=True)
    await server.stop(grace=1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, required=True, help="ONNX file to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="the event loop")
    args = parser.parse_args(argv)
    run_on(args.loop, serve(args.model, args.host, args.port, args.max_seconds))


if __name__ == "__main__":
    main()
