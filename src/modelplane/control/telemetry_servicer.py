"""TelemetryService: the per-version latency and error figures the receiver gathered."""

from __future__ import annotations

import grpc

from modelplane.codec.telemetry import stats_response_to_proto
from modelplane.domain.errors import InvalidArgument
from modelplane.telemetry.aggregator import HORIZON_SECONDS, StatsAggregator
from modelplane.telemetry.receiver import add_otlp_receivers
from modelplane.v1 import telemetry_pb2, telemetry_pb2_grpc

DEFAULT_WINDOW_SECONDS = 60


def window_seconds(requested: int) -> int:
    """The window a request asks for: 0 means the default; past the horizon is refused."""
    if requested == 0:
        return DEFAULT_WINDOW_SECONDS
    if requested > HORIZON_SECONDS:
        raise InvalidArgument(
            f"window_seconds must be between 1 and {HORIZON_SECONDS} "
            f"(0 for {DEFAULT_WINDOW_SECONDS}), got {requested}"
        )
    return requested


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, aggregator: StatsAggregator) -> None:
        self._aggregator = aggregator

    def GetStats(
        self, request: telemetry_pb2.GetStatsRequest, context: grpc.ServicerContext
    ) -> telemetry_pb2.GetStatsResponse:
        window = window_seconds(request.window_seconds)
        records = self._aggregator.query(request.endpoint or None, window)
        return stats_response_to_proto(records)


def add_telemetry_services(server: grpc.Server, aggregator: StatsAggregator) -> None:
    """GetStats plus the OTLP receivers feeding it, on one server."""
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(TelemetryServicer(aggregator), server)
    add_otlp_receivers(server, aggregator)
