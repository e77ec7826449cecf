"""Import an MLflow model registry: models, versions with their ONNX files, aliases, runs.

Reads through the ``mlflow`` package (the ``[mlflow]`` extra: ``mlflow-skinny``,
plus ``sqlalchemy`` and ``alembic`` for a ``sqlite:///`` store), so every
backend MLflow reads is accepted: a SQLite or other database store, or a local
``./mlruns`` file store (MLflow asks for ``MLFLOW_ALLOW_FILE_STORE=true`` for
those now). It runs where the MLflow store is and talks to modelplane over gRPC.

For each MLflow version with a run, the run comes over first (experiment, name,
params, tags, full metric histories, the code commit, the ONNX file as an
artifact), then the version is registered from that run, so its lineage is the
run's. A version without a run is uploaded with lineage tags naming its origin.
Aliases follow, onto the new version numbers. Importing twice adds nothing:
a version whose run (``tags.mlflow.run_id``) and file are already there is skipped.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from modelplane.client import ModelplaneClient
from modelplane.v1 import experiments_pb2, registry_pb2

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_STATUS = {"FINISHED": "FINISHED", "FAILED": "FAILED", "KILLED": "KILLED"}
CHUNK = 1 << 20
POINTS_PER_CALL = 100_000


@dataclass
class ImportReport:
    models: list[str] = field(default_factory=list)
    # (mlflow model, mlflow version, modelplane model, modelplane version, status)
    versions: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    aliases: list[tuple[str, str, int]] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)
    # Non-finite metric points MLflow kept and modelplane refuses.
    dropped_points: int = 0
    problems: list[str] = field(default_factory=list)


def safe_name(name: str) -> str:
    """An MLflow name (spaces allowed) as a modelplane name ([A-Za-z0-9._-], 128 max)."""
    cleaned = _SAFE.sub("-", name).strip("-")[:128]
    return cleaned or "imported"


def _onnx_file(directory: Path) -> Path | None:
    """The ONNX file of a downloaded model directory (a bare file, or an MLmodel's)."""
    if directory.is_file():
        return directory if directory.suffix == ".onnx" else None
    found = sorted(directory.rglob("*.onnx"))
    return found[0] if len(found) == 1 else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _text_map(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v)[:2048] for k, v in values.items() if _KEY.fullmatch(k)}


class MlflowImporter:
    def __init__(
        self,
        client: ModelplaneClient,
        tracking_uri: str,
        registry_uri: str = "",
        actor: str = "mlflow-import",
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        # Imported here: mlflow is an optional extra and slow to import.
        import mlflow
        from mlflow import MlflowClient

        self._mlflow = mlflow
        # Both URIs explicit: left unset, MLflow falls back to its process-wide
        # default (a sqlite:///mlflow.db in the working directory) and creates it.
        self._source = MlflowClient(
            tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri
        )
        self._client = client
        self._metadata = (("x-modelplane-actor", actor), ("x-modelplane-reason", "mlflow import"))
        self._tracking_uri = tracking_uri
        self._log = log
        self.report = ImportReport()
        self._open_runs: dict[str, str] = {}

    def run(self, models: Sequence[str] = ()) -> ImportReport:
        try:
            for registered in self._source.search_registered_models():
                if models and registered.name not in models:
                    continue
                self._import_model(registered)
        finally:
            # Runs stay open while their versions come over (one run may have
            # produced several), and end with MLflow's status once all are in.
            for run_id, status in self._open_runs.items():
                self._client.experiments.EndRun(
                    experiments_pb2.EndRunRequest(
                        run_id=run_id,
                        status=experiments_pb2.RunStatus.Value(f"RUN_STATUS_{status}"),
                    ),
                    metadata=self._metadata,
                )
            self._open_runs.clear()
        return self.report

    # ------------------------------------------------------------------ models

    def _import_model(self, registered: Any) -> None:
        target = safe_name(registered.name)
        self.report.models.append(target)
        numbers: dict[str, int] = {}
        versions = self._source.search_model_versions(f"name='{registered.name}'")
        for version in sorted(versions, key=lambda v: int(v.version)):
            imported = self._import_version(registered.name, target, version)
            if imported:
                numbers[str(version.version)] = imported
        for alias, mlflow_version in sorted((registered.aliases or {}).items()):
            number = numbers.get(str(mlflow_version))
            if number is None:
                self.report.problems.append(
                    f"alias {registered.name}@{alias}: version {mlflow_version} was not imported"
                )
                continue
            try:
                self._client.registry.SetAlias(
                    registry_pb2.SetAliasRequest(model=target, alias=alias, version=number),
                    metadata=self._metadata,
                )
                self.report.aliases.append((target, alias, number))
            except grpc.RpcError as error:
                self.report.problems.append(f"alias {target}@{alias}: {error.details()}")

    def _existing(self, model: str, run_id: str, sha256: str) -> int:
        try:
            versions = self._client.list_versions(model)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise
        for version in versions:
            if version.sha256 == sha256 and version.lineage.tags.get("mlflow.run_id") == run_id:
                return int(version.version)
        return 0

    def _import_version(self, name: str, target: str, version: Any) -> int:
        label = f"{name} v{version.version}"
        local = Path(
            self._mlflow.artifacts.download_artifacts(
                artifact_uri=version.source, tracking_uri=self._tracking_uri
            )
        )
        onnx = _onnx_file(local)
        if onnx is None:
            self.report.skipped.append(f"{label}: no single .onnx file under {version.source}")
            return 0
        sha256 = _sha256(onnx)
        run_id = version.run_id or ""
        existing = self._existing(target, run_id or f"none:{name}:{version.version}", sha256)
        if existing:
            self.report.skipped.append(f"{label}: already imported as {target}:{existing}")
            return existing
        if run_id:
            modelplane_run = self._import_run(run_id)
            path = f"mlflow/{target}/{version.version}/{safe_name(onnx.name)}"
            self._upload(modelplane_run, path, onnx)
            registered = self._client.experiments.RegisterFromRun(
                experiments_pb2.RegisterFromRunRequest(
                    run_id=modelplane_run,
                    model=target,
                    artifact_path=path,
                    description=version.description or f"imported from MLflow {label}",
                    create_model=True,
                ),
                metadata=self._metadata,
            )
        else:
            origin = {
                "mlflow.model": name[:2048],
                "mlflow.version": str(version.version),
                "mlflow.run_id": f"none:{name}:{version.version}"[:2048],
            }
            registered = self._client.register_version(
                target,
                onnx,
                description=version.description or f"imported from MLflow {label}",
                lineage=registry_pb2.Lineage(tags=origin),
                actor=self._metadata[0][1],
                reason="mlflow import",
            )
        status = registry_pb2.VersionStatus.Name(registered.status)
        self.report.versions.append(
            (name, str(version.version), target, int(registered.version), status)
        )
        self._log(f"{label} -> {target}:{registered.version} ({status})")
        ready = registered.status == registry_pb2.VERSION_STATUS_READY
        return int(registered.version) if ready else 0

    # -------------------------------------------------------------------- runs

    def _import_run(self, mlflow_run_id: str) -> str:
        known = self.report.runs.get(mlflow_run_id)
        if known:
            return known
        source = self._source.get_run(mlflow_run_id)
        experiment = self._source.get_experiment(source.info.experiment_id)
        tags = dict(source.data.tags)
        own_tags = _text_map({k: v for k, v in tags.items() if not k.startswith("mlflow.")})
        own_tags["mlflow.run_id"] = mlflow_run_id
        own_tags["mlflow.experiment"] = experiment.name[:2048]
        started = self._client.experiments.StartRun(
            experiments_pb2.StartRunRequest(
                experiment=safe_name(experiment.name),
                name=(source.info.run_name or tags.get("mlflow.runName", ""))[:2048],
                code_commit=tags.get("mlflow.source.git.commit", ""),
                params=_text_map(dict(source.data.params)),
                tags=own_tags,
            ),
            metadata=self._metadata,
        )
        run_id = started.run_id
        self.report.runs[mlflow_run_id] = run_id
        for key in sorted(source.data.metrics):
            if _KEY.fullmatch(key):
                self._copy_history(mlflow_run_id, run_id, key)
        self._open_runs[run_id] = _STATUS.get(source.info.status, "FINISHED")
        return run_id

    def _copy_history(self, mlflow_run_id: str, run_id: str, key: str) -> None:
        points = list(self._source.get_metric_history(mlflow_run_id, key))
        finite = [m for m in points if math.isfinite(m.value)]
        self.report.dropped_points += len(points) - len(finite)
        # MLflow's "latest" is by step then time: keep that order so the last point
        # modelplane stores is the value MLflow shows.
        finite.sort(key=lambda m: (m.step, m.timestamp))
        for start in range(0, len(finite), POINTS_PER_CALL):
            part = finite[start : start + POINTS_PER_CALL]
            self._client.experiments.LogBatch(
                experiments_pb2.LogBatchRequest(
                    run_id=run_id,
                    metrics=[
                        experiments_pb2.MetricSeries(
                            key=key,
                            steps=[m.step for m in part],
                            values=[m.value for m in part],
                            timestamps_ms=[m.timestamp for m in part],
                        )
                    ],
                )
            )

    def _upload(self, run_id: str, path: str, onnx: Path) -> None:
        def stream() -> Iterator[experiments_pb2.UploadArtifactRequest]:
            yield experiments_pb2.UploadArtifactRequest(
                header=experiments_pb2.UploadArtifactHeader(run_id=run_id, path=path)
            )
            with open(onnx, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield experiments_pb2.UploadArtifactRequest(chunk=chunk)

        self._client.experiments.UploadArtifact(stream(), metadata=self._metadata)
