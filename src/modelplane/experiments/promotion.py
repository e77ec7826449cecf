"""Environments and promotion: a version moves from staging to production only through gates.

An environment maps logical endpoint names to the concrete endpoints that serve
them there (``fraud`` -> ``staging-fraud`` in staging, ``fraud`` in production).
Promoting copies the version's route from the source environment's endpoint to
the destination's, pinned to the version at full weight (an alias could move
under production without a promotion), once these gates hold:

- ``ready``: the version is READY;
- ``staged``: the source endpoint serves it now;
- ``contract``: it accepts what callers of the destination endpoint send today
  (contract.py against the version the destination serves with most weight);
- ``metric:<name>``: its lineage shows at least the required value;
- ``soak``: the source endpoint already served it ``min_soak_seconds`` ago.

Every decision, passed or refused, is appended to the promotions list and the
audit stream with who asked; the route change itself is audited by the registry.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

from modelplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from modelplane.domain.experiments import Environment, GateResult, Promotion
from modelplane.domain.models import ModelVersion, Route, RouteTarget, VersionStatus
from modelplane.experiments import records
from modelplane.experiments.contract import contract_differences
from modelplane.experiments.redis_store import RedisExperimentStore
from modelplane.experiments.validation import validate_key, validate_mapping, validate_text
from modelplane.registry import audit_context
from modelplane.registry.names import validate_name, validate_version_number
from modelplane.registry.use_cases import Registry

MAX_SOAK_SECONDS = 90 * 24 * 3600


class Environments:
    def __init__(
        self,
        store: RedisExperimentStore,
        registry: Registry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def set_environment(
        self,
        name: str,
        endpoints: Mapping[str, str],
        serving_group: str = "",
        description: str = "",
    ) -> Environment:
        validate_name("name", name)
        validate_text("description", description)
        if serving_group:
            validate_name("serving_group", serving_group)
        validate_mapping("endpoints", endpoints)
        for logical, concrete in endpoints.items():
            validate_name(f"endpoints[{logical}]", logical)
            validate_name(f"endpoints[{logical}]", concrete)
        environment = Environment(
            name=name,
            description=description,
            endpoints=dict(endpoints),
            serving_group=serving_group,
            updated_at_ms=self._now_ms(),
        )
        return self.store.set_environment(environment)

    def get_environment(self, name: str) -> Environment:
        validate_name("name", name)
        return self.store.get_environment(name)

    def list_environments(self) -> list[Environment]:
        return self.store.list_environments()

    def list_promotions(self, model: str = "", limit: int = 0) -> list[Promotion]:
        if model:
            validate_name("model", model)
        found = [records.promotion_from_record(text) for text in self.store.promotion_records()]
        found = [p for p in found if not model or p.model == model]
        return found[-limit:] if limit > 0 else found

    # --------------------------------------------------------------- promotion

    def promote(
        self,
        model: str,
        version: int,
        from_environment: str,
        to_environment: str,
        endpoint: str = "",
        min_metrics: Mapping[str, float] | None = None,
        min_soak_seconds: int = 0,
        dry_run: bool = False,
    ) -> Promotion:
        validate_name("model", model)
        validate_version_number("version", version)
        validate_name("from_environment", from_environment)
        validate_name("to_environment", to_environment)
        if from_environment == to_environment:
            raise InvalidArgument(
                f"to_environment: expected an environment other than '{from_environment}'"
            )
        min_metrics = dict(min_metrics or {})
        for key in min_metrics:
            validate_key("min_metrics", key)
        if not 0 <= min_soak_seconds <= MAX_SOAK_SECONDS:
            raise InvalidArgument(
                f"min_soak_seconds: expected 0-{MAX_SOAK_SECONDS}, got {min_soak_seconds}"
            )
        source = self.store.get_environment(from_environment)
        target = self.store.get_environment(to_environment)
        candidate = self.registry.get_version(model, version)
        logical = endpoint or self._find_endpoint(source, target, candidate)
        if endpoint:
            validate_name("endpoint", endpoint)
        for env in (source, target):
            if logical not in env.endpoints:
                raise NotFound(
                    f"endpoint: environment '{env.name}' has no endpoint '{logical}'"
                )
        from_endpoint = source.endpoints[logical]
        to_endpoint = target.endpoints[logical]
        current = self._route_or_none(to_endpoint)
        gates = (
            self._ready_gate(candidate),
            self._staged_gate(candidate, from_endpoint),
            self._contract_gate(candidate, to_endpoint, current),
            *self._metric_gates(candidate, min_metrics),
            *self._soak_gate(candidate, from_endpoint, min_soak_seconds),
        )
        audit = audit_context.current()
        promotion = Promotion(
            model=model,
            version=version,
            from_environment=from_environment,
            to_environment=to_environment,
            endpoint=logical,
            from_endpoint=from_endpoint,
            to_endpoint=to_endpoint,
            gates=gates,
            actor=audit.actor,
            reason=audit.reason,
            promoted_at_ms=self._now_ms(),
            dry_run=dry_run,
        )
        failed = [g for g in gates if not g.passed]
        if dry_run:
            return promotion
        if failed:
            self.store.record_promotion(
                records.promotion_record(promotion), model, to_endpoint, promotion.promoted_at_ms,
                refused=True,
            )
            raise FailedPrecondition(
                f"promotion of {model}:{version} from {from_environment} to {to_environment} "
                "refused: " + "; ".join(f"{g.gate}: {g.detail}" for g in failed)
            )
        route = self.registry.reweight_route(
            to_endpoint,
            (RouteTarget(model=model, weight=100, version=version),),
            current.revision if current is not None else 0,
        )
        done = dataclasses.replace(promotion, route=route)
        self.store.record_promotion(
            records.promotion_record(done), model, to_endpoint, done.promoted_at_ms
        )
        return done

    def _route_or_none(self, endpoint: str) -> Route | None:
        try:
            return self.registry.get_route(endpoint)
        except NotFound:
            return None

    def _serves(self, endpoint: str, candidate: ModelVersion) -> bool:
        served = self.registry.served_at(endpoint, self._now_ms())
        return any(
            t.model == candidate.model and t.version == candidate.version and t.weight > 0
            for t in served.targets
        )

    def _find_endpoint(
        self, source: Environment, target: Environment, candidate: ModelVersion
    ) -> str:
        shared = sorted(source.endpoints.keys() & target.endpoints.keys())
        serving = [name for name in shared if self._serves(source.endpoints[name], candidate)]
        if len(serving) == 1:
            return serving[0]
        if not serving:
            raise FailedPrecondition(
                f"{candidate.model}:{candidate.version} is not served by any endpoint that "
                f"environments '{source.name}' and '{target.name}' both map "
                f"({', '.join(shared) or 'none'}); route it in '{source.name}' first"
            )
        raise InvalidArgument(
            f"endpoint: {candidate.model}:{candidate.version} is served by several endpoints "
            f"({', '.join(serving)}); name one"
        )

    @staticmethod
    def _ready_gate(candidate: ModelVersion) -> GateResult:
        ready = candidate.status is VersionStatus.READY
        detail = "READY" if ready else f"version is {candidate.status.value}, not READY"
        return GateResult("ready", ready, detail)

    def _staged_gate(self, candidate: ModelVersion, from_endpoint: str) -> GateResult:
        if self._serves(from_endpoint, candidate):
            return GateResult("staged", True, f"served by '{from_endpoint}'")
        return GateResult(
            "staged", False, f"not served by '{from_endpoint}'; route it there first"
        )

    def _contract_gate(
        self, candidate: ModelVersion, to_endpoint: str, current: Route | None
    ) -> GateResult:
        if current is None:
            return GateResult(
                "contract", True, f"'{to_endpoint}' has no route yet; no callers to break"
            )
        served = self.registry.served_at(to_endpoint, self._now_ms())
        if not served.targets:
            return GateResult("contract", True, f"'{to_endpoint}' serves nothing yet")
        main = max(served.targets, key=lambda t: t.weight)
        incumbent = self.registry.get_version(main.model, main.version)
        differences = contract_differences(incumbent.signature, candidate.signature)
        if differences:
            return GateResult(
                "contract",
                False,
                f"incompatible with {incumbent.model}:{incumbent.version} on "
                f"'{to_endpoint}': " + ", ".join(differences),
            )
        return GateResult(
            "contract",
            True,
            f"compatible with {incumbent.model}:{incumbent.version} on '{to_endpoint}'",
        )

    @staticmethod
    def _metric_gates(
        candidate: ModelVersion, min_metrics: Mapping[str, float]
    ) -> list[GateResult]:
        gates = []
        for key, minimum in sorted(min_metrics.items()):
            value = candidate.lineage.metrics.get(key)
            if value is None:
                gates.append(GateResult(f"metric:{key}", False, "not in the version's lineage"))
            else:
                passed = value >= minimum
                word = ">=" if passed else "<"
                gates.append(GateResult(f"metric:{key}", passed, f"{value:g} {word} {minimum:g}"))
        return gates

    def _soak_gate(
        self, candidate: ModelVersion, from_endpoint: str, seconds: int
    ) -> list[GateResult]:
        if seconds <= 0:
            return []
        then = self.registry.served_at(from_endpoint, self._now_ms() - seconds * 1000)
        served = any(
            t.model == candidate.model and t.version == candidate.version and t.weight > 0
            for t in then.targets
        )
        detail = (
            f"served by '{from_endpoint}' {seconds} s ago"
            if served
            else f"not yet served by '{from_endpoint}' {seconds} s ago"
        )
        return [GateResult("soak", served, detail)]
