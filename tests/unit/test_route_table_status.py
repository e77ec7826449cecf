"""Only READY versions serve: PENDING, FAILED and ARCHIVED ones are never picked."""

from __future__ import annotations

import pytest

from modelplane.domain.errors import FailedPrecondition, NotFound
from modelplane.domain.models import (
    DataType,
    ModelVersion,
    ServingSnapshot,
    Signature,
    TensorSpec,
    VersionKey,
    VersionStatus,
)
from modelplane.routing.table import RouteTable

SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)


def _table(statuses: dict[int, VersionStatus]) -> RouteTable:
    versions = {
        VersionKey("m", n): ModelVersion("m", n, "0" * 64, 10, SIG, status, "", 0)
        for n, status in statuses.items()
    }
    return RouteTable.from_snapshot(ServingSnapshot({}, versions, {}, generation=1))


def test_latest_means_the_newest_ready_version() -> None:
    table = _table({1: VersionStatus.READY, 2: VersionStatus.READY, 3: VersionStatus.PENDING})
    assert table.resolve_model("m", None, None) == VersionKey("m", 2)


@pytest.mark.parametrize(
    "status", [VersionStatus.PENDING, VersionStatus.FAILED, VersionStatus.ARCHIVED]
)
def test_a_pinned_version_that_is_not_ready_is_refused_with_its_status(
    status: VersionStatus,
) -> None:
    table = _table({1: VersionStatus.READY, 2: status})
    with pytest.raises(FailedPrecondition, match=f"version 2 of model 'm' is {status.value}"):
        table.resolve_model("m", 2, None)


def test_a_model_with_no_ready_version_is_a_precondition_not_a_missing_model() -> None:
    table = _table({1: VersionStatus.FAILED})
    with pytest.raises(FailedPrecondition, match="model 'm' has no READY version"):
        table.resolve_model("m", None, None)
    with pytest.raises(NotFound, match="model 'other' not found"):
        table.resolve_model("other", None, None)
