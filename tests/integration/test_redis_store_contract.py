"""The RegistryStore contract, run against the Redis implementation on a real Redis.

``RegistryStoreContract`` holds the behaviour every store must have; a subclass
supplies the ``store`` fixture. Redis-specific checks (audit stream, pub/sub,
key layout, an unreachable server) follow in ``TestRedisRegistryStore``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modelplane.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from modelplane.domain.models import (
    DataType,
    RouteTarget,
    Signature,
    TensorSpec,
    VersionKey,
    VersionStatus,
)
from modelplane.registry.embedded_redis import EmbeddedRedis
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.store import RegistryStore

pytestmark = pytest.mark.integration

SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)
SHA = "a" * 64
NOW = 1_700_000_000_000


def _add(store: RegistryStore, model: str = "fraud", sha: str = SHA) -> int:
    return store.add_version(model, sha, 100, SIG, "desc", NOW).version


class RegistryStoreContract:
    """Behaviour every RegistryStore implementation must show."""

    # -------------------------------------------------------------- models

    def test_create_get_and_list_models(self, store: RegistryStore) -> None:
        created = store.create_model("fraud", "card fraud", NOW)
        assert (created.name, created.description, created.created_at_ms) == (
            "fraud",
            "card fraud",
            NOW,
        )
        store.create_model("churn", "", NOW + 1)
        fetched = store.get_model("fraud")
        assert fetched == created
        assert [m.name for m in store.list_models()] == ["churn", "fraud"]

    def test_duplicate_model_is_already_exists(self, store: RegistryStore) -> None:
        store.create_model("fraud", "first", NOW)
        with pytest.raises(AlreadyExists, match="model 'fraud' already exists"):
            store.create_model("fraud", "second", NOW)
        assert store.get_model("fraud").description == "first"

    def test_unknown_model_is_not_found_by_name(self, store: RegistryStore) -> None:
        with pytest.raises(NotFound, match=r"^model 'ghost' not found$"):
            store.get_model("ghost")
        with pytest.raises(NotFound, match=r"^model 'ghost' not found$"):
            store.list_versions("ghost")
        with pytest.raises(NotFound, match=r"^model 'ghost' not found$"):
            store.add_version("ghost", SHA, 1, SIG, "", NOW)

    @pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "a:b", "../etc", "é"])
    def test_bad_model_names_are_invalid_argument(self, store: RegistryStore, bad: str) -> None:
        with pytest.raises(InvalidArgument, match=r"^name: expected 1-128 characters"):
            store.create_model(bad, "", NOW)
        with pytest.raises(InvalidArgument, match=r"^model: expected 1-128 characters"):
            store.get_version(bad, 1)

    # ------------------------------------------------------------ versions

    def test_versions_are_numbered_from_one(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        first = store.add_version("fraud", SHA, 100, SIG, "v1", NOW)
        second = store.add_version("fraud", "b" * 64, 200, SIG, "v2", NOW + 5)
        assert (first.version, second.version) == (1, 2)
        assert first.status is VersionStatus.READY
        assert store.get_version("fraud", 2) == second
        assert store.list_versions("fraud") == [first, second]
        assert store.get_model("fraud").latest_version == 2

    def test_unknown_version_is_not_found_by_number_and_model(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        with pytest.raises(NotFound, match=r"^version 7 of model 'fraud' not found$"):
            store.get_version("fraud", 7)

    def test_concurrent_registrations_get_distinct_gapless_numbers(
        self, store: RegistryStore
    ) -> None:
        store.create_model("fraud", "", NOW)
        numbers: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(20)

        def register() -> None:
            start.wait()
            number = _add(store)
            with lock:
                numbers.append(number)

        threads = [threading.Thread(target=register) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(numbers) == list(range(1, 21))
        assert [v.version for v in store.list_versions("fraud")] == list(range(1, 21))

    # ------------------------------------------------------------- aliases

    def test_alias_set_get_move_delete(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        _add(store)
        assert store.set_alias("fraud", "prod", 1).version == 1
        assert store.set_alias("fraud", "prod", 2).version == 2
        assert store.get_alias("fraud", "prod").version == 2
        assert store.get_model("fraud").aliases == {"prod": 2}
        store.delete_alias("fraud", "prod")
        with pytest.raises(NotFound, match=r"^alias 'prod' of model 'fraud' not found$"):
            store.get_alias("fraud", "prod")
        with pytest.raises(NotFound, match=r"^alias 'prod' of model 'fraud' not found$"):
            store.delete_alias("fraud", "prod")

    def test_alias_must_point_at_an_existing_version(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        with pytest.raises(NotFound, match=r"^version 3 of model 'fraud' not found$"):
            store.set_alias("fraud", "prod", 3)
        with pytest.raises(NotFound, match=r"^model 'ghost' not found$"):
            store.set_alias("ghost", "prod", 1)

    def test_all_digit_alias_is_invalid(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        with pytest.raises(InvalidArgument, match=r"^alias: an alias must not be all digits"):
            store.set_alias("fraud", "123", 1)

    def test_alias_used_by_a_route_cannot_be_deleted(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        store.set_alias("fraud", "prod", 1)
        store.set_route("score", (RouteTarget("fraud", 1, alias="prod"),), 0, NOW)
        with pytest.raises(
            FailedPrecondition,
            match="alias 'prod' of model 'fraud' is still routed to by endpoint 'score'",
        ):
            store.delete_alias("fraud", "prod")
        assert store.get_alias("fraud", "prod").version == 1

    # -------------------------------------------------------------- routes

    def test_route_compare_and_set(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        _add(store)
        targets = (RouteTarget("fraud", 90, version=1), RouteTarget("fraud", 10, version=2))
        created = store.set_route("score", targets, 0, NOW)
        assert (created.revision, created.targets, created.updated_at_ms) == (1, targets, NOW)
        assert store.get_route("score") == created

        moved = store.set_route("score", (RouteTarget("fraud", 1, version=2),), 1, NOW + 1)
        assert moved.revision == 2
        assert store.get_route("score") == moved
        assert store.list_routes() == [moved]

    def test_stale_revision_is_aborted_and_changes_nothing(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        _add(store)
        current = store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW)
        with pytest.raises(
            Aborted, match="endpoint 'score': expected revision 0, current revision is 1"
        ):
            store.set_route("score", (RouteTarget("fraud", 1, version=2),), 0, NOW + 1)
        with pytest.raises(
            Aborted, match="endpoint 'score': expected revision 5, current revision is 1"
        ):
            store.set_route("score", (RouteTarget("fraud", 1, version=2),), 5, NOW + 1)
        assert store.get_route("score") == current

    def test_route_to_missing_things_is_not_found(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        with pytest.raises(NotFound, match=r"targets\[1\]\.version: version 9 of model 'fraud'"):
            store.set_route(
                "score",
                (RouteTarget("fraud", 1, version=1), RouteTarget("fraud", 1, version=9)),
                0,
                NOW,
            )
        with pytest.raises(NotFound, match=r"targets\[0\]\.alias: alias 'prod' of model 'fraud'"):
            store.set_route("score", (RouteTarget("fraud", 1, alias="prod"),), 0, NOW)
        with pytest.raises(NotFound, match=r"targets\[0\]\.model: model 'ghost' not found"):
            store.set_route("score", (RouteTarget("ghost", 1, version=1),), 0, NOW)
        with pytest.raises(NotFound, match=r"^endpoint 'score' not found$"):
            store.get_route("score")

    def test_delete_route(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW)
        with pytest.raises(Aborted, match="expected revision 4, current revision is 1"):
            store.delete_route("score", 4)
        store.delete_route("score", 1)
        with pytest.raises(NotFound, match=r"^endpoint 'score' not found$"):
            store.get_route("score")
        with pytest.raises(NotFound, match=r"^endpoint 'score' not found$"):
            store.delete_route("score", 0)
        assert store.list_routes() == []
        # The name is free again: a new route starts at revision 1.
        assert store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW).revision == 1

    # ------------------------------------------------------------ snapshot

    def test_snapshot_holds_everything_with_its_generation(self, store: RegistryStore) -> None:
        assert store.current_generation() == 0
        store.create_model("fraud", "", NOW)
        _add(store)
        _add(store)
        store.set_alias("fraud", "prod", 2)
        route = store.set_route("score", (RouteTarget("fraud", 1, alias="prod"),), 0, NOW)
        snap = store.snapshot()
        assert snap.generation == store.current_generation() == 5
        assert snap.routes == {"score": route}
        assert set(snap.versions) == {VersionKey("fraud", 1), VersionKey("fraud", 2)}
        assert snap.versions[VersionKey("fraud", 2)] == store.get_version("fraud", 2)
        assert snap.aliases == {("fraud", "prod"): 2}

    def test_snapshot_is_consistent_under_concurrent_writes(self, store: RegistryStore) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        base = store.current_generation()
        stop = threading.Event()

        def writer() -> None:
            revision = 0
            while not stop.is_set() and revision < 400:
                store.set_route("score", (RouteTarget("fraud", 1, version=1),), revision, NOW)
                revision += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            seen = 0
            deadline = time.monotonic() + 10
            while thread.is_alive() and time.monotonic() < deadline:
                snap = store.snapshot()
                revision = snap.routes["score"].revision if "score" in snap.routes else 0
                # Only route writes happen: every generation step is one revision.
                assert snap.generation - base == revision
                seen += 1
        finally:
            stop.set()
            thread.join(timeout=30)
        assert seen > 0


class TestRedisRegistryStore(RegistryStoreContract):
    @pytest.fixture()
    def client(self, redis_url: str) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        yield client
        client.close()

    @pytest.fixture()
    def store(self, client: redis.Redis, key_prefix: str) -> RedisRegistryStore:
        return RedisRegistryStore(client, key_prefix)

    def test_audit_stream_has_one_event_per_mutation(
        self, store: RedisRegistryStore, client: redis.Redis, key_prefix: str
    ) -> None:
        store.create_model("fraud", "card fraud", NOW)
        _add(store)
        store.set_alias("fraud", "prod", 1)
        store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW)
        # Failed mutations leave no trace.
        with pytest.raises(AlreadyExists):
            store.create_model("fraud", "", NOW)
        with pytest.raises(Aborted):
            store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW)
        store.delete_route("score", 1)
        store.delete_alias("fraud", "prod")

        events: list[tuple[str, dict[str, str]]] = client.xrange(f"{key_prefix}:audit")  # type: ignore[assignment]
        assert store.audit_stream == f"{key_prefix}:audit"
        fields = [event for _, event in events]
        assert [(e["action"], e["subject"]) for e in fields] == [
            ("create_model", "model/fraud"),
            ("register_version", "model/fraud/version/1"),
            ("set_alias", "model/fraud/alias/prod"),
            ("set_route", "endpoint/score"),
            ("delete_route", "endpoint/score"),
            ("delete_alias", "model/fraud/alias/prod"),
        ]
        assert [int(e["generation"]) for e in fields] == [1, 2, 3, 4, 5, 6]
        assert json.loads(fields[0]["detail"]) == {"description": "card fraud"}
        assert json.loads(fields[1]["detail"]) == {"sha256": SHA, "size_bytes": 100, "version": 1}
        assert json.loads(fields[3]["detail"])["revision"] == 1
        assert int(fields[0]["ts_ms"]) == NOW

    def test_route_change_is_published(
        self, store: RedisRegistryStore, client: redis.Redis
    ) -> None:
        store.create_model("fraud", "", NOW)
        _add(store)
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(store.changes_channel)
        try:
            # Wait for the subscription to be registered before publishing.
            deadline = time.monotonic() + 5
            while client.pubsub_numsub(store.changes_channel)[0][1] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW)
            message = pubsub.get_message(timeout=5)
            while message is None and time.monotonic() < deadline:
                message = pubsub.get_message(timeout=1)
        finally:
            pubsub.close()
        assert message is not None
        assert message["channel"] == store.changes_channel
        assert json.loads(message["data"]) == {
            "kind": "route",
            "name": "score",
            "generation": store.current_generation(),
        }

    def test_every_key_lives_under_the_prefix(
        self, store: RedisRegistryStore, client: redis.Redis, key_prefix: str
    ) -> None:
        before: set[str] = set(client.keys("*"))  # type: ignore[arg-type]
        store.create_model("fraud", "", NOW)
        _add(store)
        store.set_alias("fraud", "prod", 1)
        store.set_route("score", (RouteTarget("fraud", 1, version=1),), 0, NOW)
        created = {str(key) for key in client.keys("*")} - before
        assert created
        assert all(key.startswith(f"{key_prefix}:") for key in created)

    def test_works_with_a_client_that_does_not_decode(
        self, redis_url: str, key_prefix: str, store: RedisRegistryStore
    ) -> None:
        raw = redis.Redis.from_url(redis_url)
        try:
            bytes_store = RedisRegistryStore(raw, key_prefix)
            bytes_store.create_model("fraud", "d", NOW)
            _add(bytes_store)
            bytes_store.set_alias("fraud", "prod", 1)
            route = bytes_store.set_route("score", (RouteTarget("fraud", 1, alias="prod"),), 0, NOW)
            assert bytes_store.get_model("fraud") == store.get_model("fraud")
            assert bytes_store.get_route("score") == route
            assert bytes_store.snapshot() == store.snapshot()
            assert bytes_store.list_models() == store.list_models()
            assert bytes_store.current_generation() == 4
        finally:
            raw.close()

    def test_unreachable_redis_is_unavailable(self, tmp_path: Path, key_prefix: str) -> None:
        server = EmbeddedRedis(tmp_path / "redis").start()
        try:
            store = RedisRegistryStore.from_url(server.url, key_prefix)
            store.create_model("fraud", "", NOW)
        finally:
            server.stop()
        with pytest.raises(Unavailable, match=r"^registry store unreachable: "):
            store.create_model("churn", "", NOW)
        with pytest.raises(Unavailable, match=r"^registry store unreachable: "):
            store.get_model("fraud")
        with pytest.raises(Unavailable, match=r"^registry store unreachable: "):
            store.snapshot()
