"""ExperimentService and EnvironmentService over gRPC: decode, call the use case, encode."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import redis

from modelplane.codec.experiments import (
    artifact_to_proto,
    environment_from_proto,
    environment_to_proto,
    experiment_to_proto,
    promotion_to_proto,
    run_status_from_proto,
    run_to_proto,
    series_to_proto,
)
from modelplane.codec.registry import version_to_proto
from modelplane.control.caller import caller
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.experiments import RunStatus
from modelplane.experiments.promotion import Environments
from modelplane.experiments.redis_store import RedisExperimentStore
from modelplane.experiments.use_cases import Experiments
from modelplane.registry.use_cases import Registry
from modelplane.v1 import experiments_pb2, experiments_pb2_grpc, registry_pb2


def _chunks(requests: Iterator[experiments_pb2.UploadArtifactRequest]) -> Iterator[bytes]:
    for index, request in enumerate(requests, start=2):
        if request.WhichOneof("part") != "chunk":
            raise InvalidArgument(
                f"header: only the first message may carry the header; message {index} "
                "must carry a chunk"
            )
        yield request.chunk


class ExperimentServicer(experiments_pb2_grpc.ExperimentServiceServicer):
    def __init__(self, experiments: Experiments) -> None:
        self._experiments = experiments

    def CreateExperiment(
        self, request: experiments_pb2.CreateExperimentRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Experiment:
        with caller(context):
            experiment = self._experiments.create_experiment(request.name, request.description)
        return experiment_to_proto(experiment)

    def ListExperiments(
        self, request: experiments_pb2.ListExperimentsRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.ListExperimentsResponse:
        found = self._experiments.list_experiments()
        return experiments_pb2.ListExperimentsResponse(
            experiments=[experiment_to_proto(e) for e in found]
        )

    def StartRun(
        self, request: experiments_pb2.StartRunRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Run:
        with caller(context):
            run = self._experiments.start_run(
                request.experiment,
                request.name,
                code_commit=request.code_commit,
                dataset_uri=request.dataset_uri,
                dataset_hash=request.dataset_hash,
                params=dict(request.params),
                tags=dict(request.tags),
            )
        return run_to_proto(run)

    def LogBatch(
        self, request: experiments_pb2.LogBatchRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.LogBatchResponse:
        # The series go as they are: the use case reads their repeated fields as numpy
        # columns (one copy in C each) instead of a Python object per point.
        points = self._experiments.log_batch(
            request.run_id, dict(request.params), dict(request.tags), request.metrics
        )
        return experiments_pb2.LogBatchResponse(points=points)

    def EndRun(
        self, request: experiments_pb2.EndRunRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Run:
        status = (
            RunStatus.FINISHED
            if request.status == experiments_pb2.RUN_STATUS_UNSPECIFIED
            else run_status_from_proto(request.status)
        )
        with caller(context):
            run = self._experiments.end_run(request.run_id, status)
        return run_to_proto(run)

    def GetRun(
        self, request: experiments_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Run:
        return run_to_proto(self._experiments.get_run(request.run_id))

    def SearchRuns(
        self, request: experiments_pb2.SearchRunsRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.SearchRunsResponse:
        runs = self._experiments.search_runs(
            list(request.experiments), request.where, request.order_by, request.limit
        )
        return experiments_pb2.SearchRunsResponse(runs=[run_to_proto(r) for r in runs])

    def GetMetricHistory(
        self, request: experiments_pb2.GetMetricHistoryRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.MetricSeries:
        return series_to_proto(self._experiments.metric_history(request.run_id, request.key))

    def UploadArtifact(
        self,
        request_iterator: Iterator[experiments_pb2.UploadArtifactRequest],
        context: grpc.ServicerContext,
    ) -> experiments_pb2.RunArtifact:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header: the first message must carry the header")
        with caller(context):
            artifact = self._experiments.upload_artifact(
                first.header.run_id, first.header.path, _chunks(request_iterator)
            )
        return artifact_to_proto(artifact)

    def RegisterFromRun(
        self, request: experiments_pb2.RegisterFromRunRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelVersion:
        with caller(context):
            version = self._experiments.register_from_run(
                request.run_id,
                request.model,
                request.artifact_path,
                request.description,
                request.create_model,
            )
        return version_to_proto(version)


class EnvironmentServicer(experiments_pb2_grpc.EnvironmentServiceServicer):
    def __init__(self, environments: Environments) -> None:
        self._environments = environments

    def SetEnvironment(
        self, request: experiments_pb2.SetEnvironmentRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Environment:
        wanted = environment_from_proto(request.environment)
        with caller(context):
            environment = self._environments.set_environment(
                wanted.name, wanted.endpoints, wanted.serving_group, wanted.description
            )
        return environment_to_proto(environment)

    def GetEnvironment(
        self, request: experiments_pb2.GetEnvironmentRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Environment:
        return environment_to_proto(self._environments.get_environment(request.name))

    def ListEnvironments(
        self, request: experiments_pb2.ListEnvironmentsRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.ListEnvironmentsResponse:
        found = self._environments.list_environments()
        return experiments_pb2.ListEnvironmentsResponse(
            environments=[environment_to_proto(e) for e in found]
        )

    def Promote(
        self, request: experiments_pb2.PromoteRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.Promotion:
        with caller(context):
            promotion = self._environments.promote(
                request.model,
                request.version,
                request.from_environment,
                request.to_environment,
                endpoint=request.endpoint,
                min_metrics=dict(request.min_metrics),
                min_soak_seconds=request.min_soak_seconds,
                dry_run=request.dry_run,
            )
        return promotion_to_proto(promotion)

    def ListPromotions(
        self, request: experiments_pb2.ListPromotionsRequest, context: grpc.ServicerContext
    ) -> experiments_pb2.ListPromotionsResponse:
        found = self._environments.list_promotions(request.model, request.limit)
        return experiments_pb2.ListPromotionsResponse(
            promotions=[promotion_to_proto(p) for p in found]
        )


EXPERIMENT_SERVICE_NAMES = (
    experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"].full_name,
    experiments_pb2.DESCRIPTOR.services_by_name["EnvironmentService"].full_name,
)


def add_experiment_services(
    server: grpc.Server, registry: Registry, client: redis.Redis, prefix: str
) -> tuple[Experiments, Environments]:
    """Builds the experiment and environment use cases on the registry's Redis and prefix.

    ``client`` must not decode responses (metric points are stored packed).
    """
    store = RedisExperimentStore(client, prefix)
    experiments = Experiments(store, registry.artifacts, registry)
    environments = Environments(store, registry)
    experiments_pb2_grpc.add_ExperimentServiceServicer_to_server(
        ExperimentServicer(experiments), server
    )
    experiments_pb2_grpc.add_EnvironmentServiceServicer_to_server(
        EnvironmentServicer(environments), server
    )
    return experiments, environments
