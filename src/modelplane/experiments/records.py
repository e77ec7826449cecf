"""JSON records of experiments, runs, environments and promotions as stored in Redis."""

from __future__ import annotations

import json
from typing import Any

from modelplane.domain.experiments import (
    Environment,
    Experiment,
    GateResult,
    Promotion,
    Run,
    RunArtifact,
    RunStatus,
)
from modelplane.domain.models import Route, RouteTarget


def _dump(fields: dict[str, Any]) -> str:
    # repr-precision floats (json's default) keep metric values exact.
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def experiment_record(description: str, created_at_ms: int) -> str:
    return _dump({"description": description, "created_at_ms": created_at_ms})


def experiment_from_record(name: str, text: str) -> Experiment:
    fields = json.loads(text)
    return Experiment(
        name=name, description=fields["description"], created_at_ms=fields["created_at_ms"]
    )


def run_record(run: Run) -> str:
    return _dump(
        {
            "name": run.name,
            "status": run.status.value,
            "start_ms": run.start_ms,
            "end_ms": run.end_ms,
            "code_commit": run.code_commit,
            "dataset_uri": run.dataset_uri,
            "dataset_hash": run.dataset_hash,
            "params": run.params,
            "tags": run.tags,
            "metrics": run.metrics,
            "artifacts": [[a.path, a.sha256, a.size_bytes] for a in run.artifacts],
        }
    )


def run_from_record(run_id: str, experiment: str, text: str) -> Run:
    fields = json.loads(text)
    return Run(
        run_id=run_id,
        experiment=experiment,
        name=fields["name"],
        status=RunStatus(fields["status"]),
        start_ms=fields["start_ms"],
        end_ms=fields["end_ms"],
        code_commit=fields["code_commit"],
        dataset_uri=fields["dataset_uri"],
        dataset_hash=fields["dataset_hash"],
        params=fields["params"],
        tags=fields["tags"],
        metrics=fields["metrics"],
        artifacts=tuple(RunArtifact(p, s, n) for p, s, n in fields["artifacts"]),
    )


def environment_record(environment: Environment) -> str:
    return _dump(
        {
            "description": environment.description,
            "endpoints": environment.endpoints,
            "serving_group": environment.serving_group,
            "updated_at_ms": environment.updated_at_ms,
        }
    )


def environment_from_record(name: str, text: str) -> Environment:
    fields = json.loads(text)
    return Environment(
        name=name,
        description=fields["description"],
        endpoints=fields["endpoints"],
        serving_group=fields["serving_group"],
        updated_at_ms=fields["updated_at_ms"],
    )


def _route_fields(route: Route | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {
        "endpoint": route.endpoint,
        "revision": route.revision,
        "updated_at_ms": route.updated_at_ms,
        "targets": [
            {"model": t.model, "weight": t.weight, "version": t.version, "alias": t.alias}
            for t in route.targets
        ],
    }


def promotion_record(promotion: Promotion) -> str:
    return _dump(
        {
            "model": promotion.model,
            "version": promotion.version,
            "from_environment": promotion.from_environment,
            "to_environment": promotion.to_environment,
            "endpoint": promotion.endpoint,
            "from_endpoint": promotion.from_endpoint,
            "to_endpoint": promotion.to_endpoint,
            "gates": [[g.gate, g.passed, g.detail] for g in promotion.gates],
            "actor": promotion.actor,
            "reason": promotion.reason,
            "promoted_at_ms": promotion.promoted_at_ms,
            "route": _route_fields(promotion.route),
            "dry_run": promotion.dry_run,
        }
    )


def promotion_from_record(text: str) -> Promotion:
    fields = json.loads(text)
    route_fields = fields["route"]
    route = None
    if route_fields is not None:
        route = Route(
            endpoint=route_fields["endpoint"],
            revision=route_fields["revision"],
            updated_at_ms=route_fields["updated_at_ms"],
            targets=tuple(RouteTarget(**t) for t in route_fields["targets"]),
        )
    return Promotion(
        model=fields["model"],
        version=fields["version"],
        from_environment=fields["from_environment"],
        to_environment=fields["to_environment"],
        endpoint=fields["endpoint"],
        from_endpoint=fields["from_endpoint"],
        to_endpoint=fields["to_endpoint"],
        gates=tuple(GateResult(g, bool(p), d) for g, p, d in fields["gates"]),
        actor=fields["actor"],
        reason=fields["reason"],
        promoted_at_ms=fields["promoted_at_ms"],
        route=route,
        dry_run=fields["dry_run"],
    )
