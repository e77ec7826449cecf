"""Experiments, runs, environments and promotions <-> ``modelplane.v1`` experiment messages."""

from __future__ import annotations

from modelplane.codec.registry import timestamp_from_ms, timestamp_to_ms
from modelplane.codec.routing import route_from_proto, route_to_proto
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.experiments import (
    Environment,
    Experiment,
    GateResult,
    MetricSeries,
    Promotion,
    Run,
    RunArtifact,
    RunStatus,
)
from modelplane.v1 import experiments_pb2

_STATUS_PREFIX = "RUN_STATUS_"


def experiment_to_proto(experiment: Experiment) -> experiments_pb2.Experiment:
    return experiments_pb2.Experiment(
        name=experiment.name,
        description=experiment.description,
        created_at=timestamp_from_ms(experiment.created_at_ms),
    )


def experiment_from_proto(message: experiments_pb2.Experiment) -> Experiment:
    return Experiment(
        name=message.name,
        description=message.description,
        created_at_ms=timestamp_to_ms(message.created_at),
    )


def run_status_to_proto(status: RunStatus) -> experiments_pb2.RunStatus.ValueType:
    return experiments_pb2.RunStatus.Value(_STATUS_PREFIX + status.name)


def run_status_from_proto(value: int, field: str = "status") -> RunStatus:
    try:
        name = experiments_pb2.RunStatus.Name(experiments_pb2.RunStatus.ValueType(value))
    except ValueError:
        raise InvalidArgument(f"{field}: unknown run status {value}") from None
    short = name.removeprefix(_STATUS_PREFIX)
    if short not in RunStatus.__members__:
        raise InvalidArgument(f"{field}: a run status is required, got {name}")
    return RunStatus[short]


def run_to_proto(run: Run) -> experiments_pb2.Run:
    message = experiments_pb2.Run(
        run_id=run.run_id,
        experiment=run.experiment,
        name=run.name,
        status=run_status_to_proto(run.status),
        start_time=timestamp_from_ms(run.start_ms),
        code_commit=run.code_commit,
        dataset_uri=run.dataset_uri,
        dataset_hash=run.dataset_hash,
        params=run.params,
        tags=run.tags,
        metrics=run.metrics,
        artifacts=[artifact_to_proto(a) for a in run.artifacts],
    )
    if run.end_ms:
        message.end_time.CopyFrom(timestamp_from_ms(run.end_ms))
    return message


def run_from_proto(message: experiments_pb2.Run) -> Run:
    return Run(
        run_id=message.run_id,
        experiment=message.experiment,
        name=message.name,
        status=run_status_from_proto(message.status),
        start_ms=timestamp_to_ms(message.start_time),
        end_ms=timestamp_to_ms(message.end_time) if message.HasField("end_time") else 0,
        code_commit=message.code_commit,
        dataset_uri=message.dataset_uri,
        dataset_hash=message.dataset_hash,
        params=dict(message.params),
        tags=dict(message.tags),
        metrics=dict(message.metrics),
        artifacts=tuple(artifact_from_proto(a) for a in message.artifacts),
    )


def artifact_to_proto(artifact: RunArtifact) -> experiments_pb2.RunArtifact:
    return experiments_pb2.RunArtifact(
        path=artifact.path, sha256=artifact.sha256, size_bytes=artifact.size_bytes
    )


def artifact_from_proto(message: experiments_pb2.RunArtifact) -> RunArtifact:
    return RunArtifact(path=message.path, sha256=message.sha256, size_bytes=message.size_bytes)


def series_to_proto(series: MetricSeries) -> experiments_pb2.MetricSeries:
    return experiments_pb2.MetricSeries(
        key=series.key,
        steps=series.steps,
        values=series.values,
        timestamps_ms=series.timestamps_ms,
    )


def series_from_proto(message: experiments_pb2.MetricSeries) -> MetricSeries:
    # Repeated scalar fields convert to tuples in C, not element by element in Python.
    return MetricSeries(
        key=message.key,
        steps=tuple(message.steps),
        values=tuple(message.values),
        timestamps_ms=tuple(message.timestamps_ms),
    )


def environment_to_proto(environment: Environment) -> experiments_pb2.Environment:
    return experiments_pb2.Environment(
        name=environment.name,
        description=environment.description,
        endpoints=environment.endpoints,
        serving_group=environment.serving_group,
        updated_at=timestamp_from_ms(environment.updated_at_ms),
    )


def environment_from_proto(message: experiments_pb2.Environment) -> Environment:
    return Environment(
        name=message.name,
        description=message.description,
        endpoints=dict(message.endpoints),
        serving_group=message.serving_group,
        updated_at_ms=timestamp_to_ms(message.updated_at),
    )


def promotion_to_proto(promotion: Promotion) -> experiments_pb2.Promotion:
    message = experiments_pb2.Promotion(
        model=promotion.model,
        version=promotion.version,
        from_environment=promotion.from_environment,
        to_environment=promotion.to_environment,
        endpoint=promotion.endpoint,
        from_endpoint=promotion.from_endpoint,
        to_endpoint=promotion.to_endpoint,
        gates=[
            experiments_pb2.GateResult(gate=g.gate, passed=g.passed, detail=g.detail)
            for g in promotion.gates
        ],
        actor=promotion.actor,
        reason=promotion.reason,
        promoted_at=timestamp_from_ms(promotion.promoted_at_ms),
        dry_run=promotion.dry_run,
    )
    if promotion.route is not None:
        message.route.CopyFrom(route_to_proto(promotion.route))
    return message


def promotion_from_proto(message: experiments_pb2.Promotion) -> Promotion:
    return Promotion(
        model=message.model,
        version=message.version,
        from_environment=message.from_environment,
        to_environment=message.to_environment,
        endpoint=message.endpoint,
        from_endpoint=message.from_endpoint,
        to_endpoint=message.to_endpoint,
        gates=tuple(GateResult(g.gate, g.passed, g.detail) for g in message.gates),
        actor=message.actor,
        reason=message.reason,
        promoted_at_ms=timestamp_to_ms(message.promoted_at),
        route=route_from_proto(message.route) if message.HasField("route") else None,
        dry_run=message.dry_run,
    )
