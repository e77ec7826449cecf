"""The baseline: a bare ``grpc.aio`` server answering modelplane.v1 Predict for one ONNX file.

No registry, routing, batching or telemetry: what the gRPC stack plus onnxruntime cost on
their own. Prints ``PORT <n>`` on stdout once it listens, and stops on SIGTERM/SIGINT or
after ``--max-seconds``.

    python -m loadtests.bare_server --model model.onnx [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from loadtests.event_loops import LOOPS, run_on
from loadtests.ort import session
from loadtests.tensors import TensorError, to_array, to_tensor
from modelplane.v1 import inference_pb2, inference_pb2_grpc


class BarePredictor(inference_pb2_grpc.InferenceServiceServicer):
    """Decode, run, encode; the model runs inline on the event loop because for small
    models a thread hand-off costs more than the inference itself."""

    def __init__(self, sess: ort.InferenceSession, model_name: str) -> None:
        self._session = sess
        self._model_name = model_name
        self._input_names = {i.name for i in sess.get_inputs()}
        self._output_names = [o.name for o in sess.get_outputs()]

    def predict(self, request: inference_pb2.PredictRequest) -> inference_pb2.PredictResponse:
        feeds: dict[str, np.ndarray] = {}
        for tensor in request.inputs:
            if tensor.name not in self._input_names:
                raise TensorError(
                    f"inputs: unknown input {tensor.name!r}, expected one of "
                    f"{sorted(self._input_names)}"
                )
            feeds[tensor.name] = to_array(tensor)
        missing = self._input_names - feeds.keys()
        if missing:
            raise TensorError(f"inputs: missing {sorted(missing)}")
        wanted = list(request.output_names) or self._output_names
        results = self._session.run(wanted, feeds)
        return inference_pb2.PredictResponse(
            outputs=[to_tensor(name, value) for name, value in zip(wanted, results, strict=True)],
            endpoint=request.endpoint,
            model=self._model_name,
            version=1,
            prediction_id=uuid.uuid4().hex,
        )

    async def Predict(
        self,
        request: inference_pb2.PredictRequest,
        context: grpc.aio.ServicerContext[
            inference_pb2.PredictRequest, inference_pb2.PredictResponse
        ],
    ) -> inference_pb2.PredictResponse:
        try:
            return self.predict(request)
        except (TensorError, InvalidArgument) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this line only satisfies the type checker


async def serve(model: Path, host: str, port: int, name: str, max_seconds: float) -> None:
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(
        BarePredictor(session(model), name), server
    )
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
    parser.add_argument("--name", default="bare", help="model name reported in responses")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="the event loop")
    args = parser.parse_args(argv)
    run_on(args.loop, serve(args.model, args.host, args.port, args.name, args.max_seconds))


if __name__ == "__main__":
    main()
