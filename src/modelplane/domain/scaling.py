"""Serving groups and how they scale: what a Scale request asks for, checked.

A serving group is one separately scalable set of replicas answering on an
inference port of its own. Endpoints not assigned to a group are served by
``DEFAULT_GROUP``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelplane.domain.errors import InvalidArgument

DEFAULT_GROUP = "default"
DEFAULT_TARGET_ONGOING_REQUESTS = 2.0
_GROUP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float = DEFAULT_TARGET_ONGOING_REQUESTS

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise InvalidArgument(
                f"autoscaling.min_replicas: expected 0 or more, got {self.min_replicas}"
            )
        if self.max_replicas < 1:
            raise InvalidArgument(
                f"autoscaling.max_replicas: expected 1 or more, got {self.max_replicas}"
            )
        if self.min_replicas > self.max_replicas:
            raise InvalidArgument(
                f"autoscaling: min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )
        if self.target_ongoing_requests <= 0:
            raise InvalidArgument(
                "autoscaling.target_ongoing_requests: expected more than 0, "
                f"got {self.target_ongoing_requests}"
            )


@dataclass(frozen=True)
class ServingGroup:
    name: str
    inference_port: int
    replicas: int = 1
    # Set: Serve's autoscaler moves the count within the range; ``replicas`` is ignored.
    autoscaling: Autoscaling | None = None
    endpoints: tuple[str, ...] = field(default=())

    @property
    def min_replicas(self) -> int:
        """Replicas the group needs at the least: what a resource check must fit."""
        return self.autoscaling.min_replicas if self.autoscaling else self.replicas


def check_group_name(name: str) -> str:
    if not _GROUP_NAME.match(name):
        raise InvalidArgument(
            f"group: expected lowercase letters, digits and '-' (at most 40), got {name!r}"
        )
    return name


def check_replicas(replicas: int) -> int:
    if replicas < 0:
        raise InvalidArgument(f"replicas: expected 0 or more, got {replicas}")
    return replicas
