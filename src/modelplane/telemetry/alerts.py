"""Which alerts hold now: latency and error regressions, drift, accuracy.

One place computes them, so ``ListAlerts`` (asked on demand) and the control
plane's alert watcher (which audits each alert as it starts, so webhooks hear
of it) never disagree on what is an alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelplane.domain.stats import Alert
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.drift import DriftTracker
from modelplane.telemetry.feedback import FeedbackJoiner
from modelplane.telemetry.regressions import RegressionPolicy, latency_alerts

DRIFT = "drift"
ACCURACY = "accuracy"
# PSI above 0.25 is the usual line for "the population has shifted".
DRIFT_PSI_ALERT = 0.25


@dataclass(frozen=True)
class AccuracyPolicy:
    max_drop: float = 0.05
    min_feedback: int = 20


def drift_alerts(drift: DriftTracker, endpoint: str | None = None) -> list[Alert]:
    """Versions whose worst feature's PSI is above the line."""
    alerts = []
    for (name, model, version), score in sorted(drift.scores().items()):
        if endpoint and name != endpoint:
            continue
        if score.psi > DRIFT_PSI_ALERT:
            alerts.append(
                Alert(
                    kind=DRIFT,
                    endpoint=name,
                    model=model,
                    version=version,
                    message=(
                        f"{score.feature}: PSI {score.psi:.3f}, KS {score.ks:.3f} "
                        f"over {score.recent_count} recent values vs a baseline of "
                        f"{score.baseline_count}"
                    ),
                    observed=score.psi,
                    threshold=DRIFT_PSI_ALERT,
                )
            )
    return alerts


def accuracy_alerts(
    quality: dict[tuple[str, str, int], tuple[int, float | None, float | None]],
    policy: AccuracyPolicy,
    endpoint: str | None = None,
) -> list[Alert]:
    """Versions well below their endpoint's most-labelled version (the stable one)."""
    by_endpoint: dict[str, list[tuple[str, int, int, float]]] = {}
    for (name, model, version), (count, accuracy, _mae) in quality.items():
        if endpoint and name != endpoint:
            continue
        if accuracy is not None and count >= policy.min_feedback:
            by_endpoint.setdefault(name, []).append((model, version, count, accuracy))
    alerts = []
    for name, rows in sorted(by_endpoint.items()):
        stable = max(rows, key=lambda row: (row[2], -row[1]))
        for model, version, count, accuracy in sorted(rows):
            drop = stable[3] - accuracy
            if (model, version) == stable[:2] or drop <= policy.max_drop:
                continue
            alerts.append(
                Alert(
                    kind=ACCURACY,
                    endpoint=name,
                    model=model,
                    version=version,
                    message=(
                        f"accuracy {accuracy:.3f} over {count} labels is {drop:.3f} below "
                        f"{stable[0]}:{stable[1]} ({stable[3]:.3f} over {stable[2]} labels)"
                    ),
                    observed=accuracy,
                    threshold=stable[3] - policy.max_drop,
                )
            )
    return alerts


def current_alerts(
    aggregator: StatsAggregator,
    policy: RegressionPolicy,
    clock: Callable[[], float],
    *,
    drift: DriftTracker | None = None,
    feedback: FeedbackJoiner | None = None,
    accuracy: AccuracyPolicy | None = None,
    endpoint: str | None = None,
) -> list[Alert]:
    """Every alert active now over ``policy.recent_s``, optionally for one endpoint."""
    alerts = latency_alerts(aggregator, endpoint, policy, clock)
    if drift is not None:
        alerts.extend(drift_alerts(drift, endpoint))
    if feedback is not None:
        now = clock()
        quality = feedback.quality(now - policy.recent_s, now)
        alerts.extend(accuracy_alerts(quality, accuracy or AccuracyPolicy(), endpoint))
    return alerts
