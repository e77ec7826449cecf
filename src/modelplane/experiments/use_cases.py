"""Experiment tracking use cases: what the gRPC servicer and the CLI both call."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from modelplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from modelplane.domain.experiments import Experiment, MetricSeries, Run, RunArtifact, RunStatus
from modelplane.domain.models import Lineage, ModelVersion
from modelplane.experiments import series
from modelplane.experiments.query import order_runs, parse_order, parse_where
from modelplane.experiments.redis_store import RedisExperimentStore
from modelplane.experiments.validation import (
    validate_artifact_path,
    validate_key,
    validate_mapping,
    validate_run_id,
    validate_series,
    validate_text,
)
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.names import validate_name
from modelplane.registry.use_cases import Registry

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_ARTIFACT_BYTES = 2 * 1024**3
_READ_CHUNK = 1 << 20


class Experiments:
    def __init__(
        self,
        store: RedisExperimentStore,
        artifacts: ArtifactStore,
        registry: Registry,
        clock: Callable[[], float] = time.time,
        max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.registry = registry
        self._clock = clock
        self.max_artifact_bytes = max_artifact_bytes

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------- experiments

    def create_experiment(self, name: str, description: str = "") -> Experiment:
        validate_name("name", name)
        validate_text("description", description)
        return self.store.create_experiment(name, description, self._now_ms())

    def list_experiments(self) -> list[Experiment]:
        return self.store.list_experiments()

    # -------------------------------------------------------------------- runs

    def start_run(
        self,
        experiment: str,
        name: str = "",
        *,
        code_commit: str = "",
        dataset_uri: str = "",
        dataset_hash: str = "",
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Run:
        """A new RUNNING run; the experiment is created on first use."""
        validate_name("experiment", experiment)
        for field, value in (
            ("name", name),
            ("code_commit", code_commit),
            ("dataset_uri", dataset_uri),
            ("dataset_hash", dataset_hash),
        ):
            validate_text(field, value)
        validate_mapping("params", params or {})
        validate_mapping("tags", tags or {})
        run_id = uuid.uuid4().hex
        run = Run(
            run_id=run_id,
            experiment=experiment,
            name=name or run_id[:8],
            status=RunStatus.RUNNING,
            start_ms=self._now_ms(),
            code_commit=code_commit,
            dataset_uri=dataset_uri,
            dataset_hash=dataset_hash,
            params=dict(params or {}),
            tags=dict(tags or {}),
        )
        return self.store.start_run(run)

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(validate_run_id(run_id))

    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[series.SeriesLike] = (),
    ) -> int:
        """Records params, tags and metric points at once; returns the number of points.

        A param, once logged, keeps its value: logging a different one is refused,
        since runs are compared by their params. ``metrics`` may be the request's
        messages as they are: their points are read as numpy columns.
        """
        validate_run_id(run_id)
        params = dict(params or {})
        tags = dict(tags or {})
        validate_mapping("params", params)
        validate_mapping("tags", tags)
        columns = [series.columns_of(s) for s in metrics]
        points = validate_series(columns)
        logged = [c for c in columns if len(c.values)]
        packed = [(c.key, series.pack_columns(c)) for c in logged]
        latest: dict[str, float] = {c.key: float(c.values[-1]) for c in logged}

        def change(run: Run) -> tuple[Run, Sequence[tuple[str, bytes]]]:
            _require_running(run)
            for key, value in params.items():
                old = run.params.get(key)
                if old is not None and old != value:
                    raise InvalidArgument(
                        f"params[{key}]: already logged as {old!r:.80}; a run's params "
                        f"do not change (got {value!r:.80})"
                    )
            merged_params = {**run.params, **params}
            merged_tags = {**run.tags, **tags}
            if len(merged_params) > 256 or len(merged_tags) > 256:
                raise InvalidArgument("params/tags: expected at most 256 entries per run")
            updated = dataclasses.replace(
                run,
                params=merged_params,
                tags=merged_tags,
                metrics={**run.metrics, **latest},
            )
            return updated, packed

        self.store.update_run(run_id, change)
        return points

    def end_run(self, run_id: str, status: RunStatus = RunStatus.FINISHED) -> Run:
        validate_run_id(run_id)
        if status is RunStatus.RUNNING:
            raise InvalidArgument("status: expected FINISHED, FAILED or KILLED to end a run")
        now = self._now_ms()

        def change(run: Run) -> tuple[Run, Sequence[tuple[str, bytes]]]:
            _require_running(run)
            return dataclasses.replace(run, status=status, end_ms=max(now, run.start_ms)), ()

        return self.store.update_run(run_id, change, action="end_run")

    def search_runs(
        self,
        experiments: Sequence[str] = (),
        where: str = "",
        order_by: str = "",
        limit: int = 0,
    ) -> list[Run]:
        for i, name in enumerate(experiments):
            validate_name(f"experiments[{i}]", name)
            if not self.store.experiment_exists(name):
                raise NotFound(f"experiments[{i}]: experiment '{name}' not found")
        if limit < 0:
            raise InvalidArgument(f"limit: expected >= 0, got {limit}")
        matcher = parse_where(where)
        keys = parse_order(order_by)
        runs = self.store.runs(experiments)
        if matcher is not None:
            runs = matcher.select(runs)
        return order_runs(runs, keys)[: min(limit or DEFAULT_LIMIT, MAX_LIMIT)]

    def metric_history(self, run_id: str, key: str) -> MetricSeries:
        validate_run_id(run_id)
        validate_key("key", key)
        run = self.store.get_run(run_id)
        if key not in run.metrics:
            raise NotFound(f"metric '{key}' of run '{run_id}' not found")
        return self.store.metric_history(run_id, key)

    # --------------------------------------------------------------- artifacts

    def upload_artifact(self, run_id: str, path: str, chunks: Iterable[bytes]) -> RunArtifact:
        """Streams a file into the content-addressed store and records it on the run."""
        validate_run_id(run_id)
        validate_artifact_path(path)
        _require_running(self.store.get_run(run_id))
        staged = self.artifacts.write_stream(chunks, self.max_artifact_bytes)
        try:
            if staged.size_bytes == 0:
                raise InvalidArgument(f"chunk: artifact '{path}' is empty")
            # Committing before the record: a file without a record is harmless
            # (content-addressed), a record without its file is not.
            self.artifacts.commit(staged)
        finally:
            self.artifacts.discard(staged)
        artifact = RunArtifact(path=path, sha256=staged.sha256, size_bytes=staged.size_bytes)

        def change(run: Run) -> tuple[Run, Sequence[tuple[str, bytes]]]:
            _require_running(run)
            kept = tuple(a for a in run.artifacts if a.path != path)
            return dataclasses.replace(run, artifacts=(*kept, artifact)), ()

        detail = json.dumps({"path": path, "sha256": staged.sha256})
        self.store.update_run(run_id, change, action="log_artifact", detail=detail)
        return artifact

    def register_from_run(
        self,
        run_id: str,
        model: str,
        artifact_path: str = "",
        description: str = "",
        create_model: bool = True,
    ) -> ModelVersion:
        """Registers the run's ONNX artifact as a version whose lineage is the run."""
        run = self.get_run(run_id)
        artifact = _model_artifact(run, artifact_path)
        path = self.artifacts.path_for(artifact.sha256)
        lineage = lineage_of(run)
        return self.registry.register_version(
            model,
            description or f"from run {run.name} ({run.run_id}) of experiment {run.experiment}",
            create_model,
            _read_chunks(path),
            lineage=lineage,
        )


def lineage_of(run: Run) -> Lineage:
    """The version's lineage as the run recorded it; the experiment goes into the tags."""
    return Lineage(
        source_run_id=run.run_id,
        dataset_uri=run.dataset_uri,
        dataset_hash=run.dataset_hash,
        params=dict(run.params),
        metrics=dict(run.metrics),
        code_commit=run.code_commit,
        tags={**run.tags, "experiment": run.experiment},
    )


def _model_artifact(run: Run, path: str) -> RunArtifact:
    if path:
        validate_artifact_path(path)
        artifact = run.artifact(path)
        if artifact is None:
            raise NotFound(f"artifact_path: run '{run.run_id}' has no artifact '{path}'")
        return artifact
    onnx = [a for a in run.artifacts if a.path.endswith(".onnx")]
    if len(onnx) != 1:
        found = ", ".join(a.path for a in onnx) or "none"
        raise FailedPrecondition(
            f"run '{run.run_id}' has {len(onnx)} .onnx artifacts ({found}); expected exactly "
            "one, or name it with artifact_path"
        )
    return onnx[0]


def _read_chunks(path: object) -> Iterable[bytes]:
    try:
        with open(str(path), "rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                yield chunk
    except FileNotFoundError:
        raise NotFound(f"the run's artifact is missing from the artifact store ({path})") from None


def _require_running(run: Run) -> None:
    if run.status is not RunStatus.RUNNING:
        raise FailedPrecondition(
            f"run '{run.run_id}' is {run.status.value}; only a RUNNING run accepts logging"
        )
