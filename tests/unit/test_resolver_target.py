"""The client-side resolver names every replica address in one gRPC target."""

from __future__ import annotations

import pytest

from modelplane.registry.redis_connect import failover_retry
from modelplane.resolver import channel_target


def test_ipv4_addresses_become_one_static_list() -> None:
    assert channel_target(["10.0.0.1:50051", "10.0.0.2:50051"]) == (
        "ipv4:10.0.0.1:50051,10.0.0.2:50051"
    )


def test_ipv6_addresses_keep_their_brackets() -> None:
    assert channel_target(["[fd00::1]:50051", "[fd00::2]:50051"]) == (
        "ipv6:[fd00::1]:50051,[fd00::2]:50051"
    )


def test_one_host_name_is_resolved_by_dns() -> None:
    assert channel_target(["replicas.ml.svc:50051"]) == "dns:///replicas.ml.svc:50051"


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        ([], "no replica address"),
        (["a.example:1", "b.example:1"], "host names cannot be listed"),
        (["10.0.0.1:1", "[fd00::1]:1"], "mix of IPv4 and IPv6"),
    ],
)
def test_unusable_address_sets_are_refused(addresses: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        channel_target(addresses)


def test_failover_retries_are_bounded_and_jittered() -> None:
    retry = failover_retry(retries=4, base_s=0.1, cap_s=0.4)
    assert retry.get_retries() == 4
    backoff = retry._backoff  # the policy object redis-py consults between attempts
    waits = [backoff.compute(failures) for failures in range(1, 8) for _ in range(20)]
    assert max(waits) <= 0.4
    assert min(waits) >= 0.1  # equal jitter: never less than half the step
    assert len({round(w, 6) for w in waits}) > 10  # jittered, not a fixed ladder
