"""The Helm chart renders offline into the objects and ports the platform needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

helm_python = pytest.importorskip("helm_python")

CHART = Path(__file__).resolve().parents[2] / "helm" / "modelplane"
RELEASE = "prod"
FULLNAME = "prod-modelplane"


def render(values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Every rendered object, keyed by (kind, name)."""
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name=RELEASE, namespace="ml")
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for text in files.values():
        for doc in yaml.safe_load_all(text):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def env_of(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = objects[("ConfigMap", f"{FULLNAME}-env")]["data"]
    return data


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_default_render_has_every_component() -> None:
    assert set(render()) == {
        ("ConfigMap", f"{FULLNAME}-env"),
        ("Deployment", f"{FULLNAME}-control"),
        ("Service", f"{FULLNAME}-control"),
        ("RayService", f"{FULLNAME}-data"),
        ("Service", f"{FULLNAME}-inference"),
        ("PersistentVolumeClaim", f"{FULLNAME}-artifacts"),
        ("StatefulSet", f"{FULLNAME}-redis"),
        ("Service", f"{FULLNAME}-redis"),
    }


def test_control_plane_serves_grpc_on_its_port_with_grpc_probes() -> None:
    objects = render({"controlPlane": {"port": 6000, "replicas": 3}})
    deployment = objects[("Deployment", f"{FULLNAME}-control")]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["ports"] == [{"name": "grpc", "containerPort": 6000, "protocol": "TCP"}]
    assert container["readinessProbe"]["grpc"] == {"port": 6000}
    assert container["envFrom"] == [{"configMapRef": {"name": f"{FULLNAME}-env"}}]
    assert {"name": "artifacts", "mountPath": "/var/lib/modelplane/artifacts"} in container[
        "volumeMounts"
    ]
    service = objects[("Service", f"{FULLNAME}-control")]
    assert service["spec"]["ports"][0]["port"] == 6000
    assert service["spec"]["ports"][0]["targetPort"] == "grpc"
    assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
    assert env_of(objects)["MODELPLANE_CONTROL_PORT"] == "6000"
    assert env_of(objects)["MODELPLANE_OTLP_ENDPOINT"] == f"{FULLNAME}-control:6000"


def test_ray_service_runs_the_modelplane_serve_app() -> None:
    objects = render({"dataPlane": {"replicas": 5, "replicaNumCpus": 0.25}})
    spec = objects[("RayService", f"{FULLNAME}-data")]["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    assert serve_config["proxy_location"] == "Disabled"
    (app,) = serve_config["applications"]
    assert app["import_path"] == "modelplane.serving.app:app"
    (deployment,) = app["deployments"]
    assert deployment["num_replicas"] == 5
    assert deployment["ray_actor_options"]["num_cpus"] == 0.25
    assert spec["rayClusterConfig"]["rayVersion"] == "2.60.0"
    assert spec["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_inference_service_selects_the_workers_and_not_the_head() -> None:
    objects = render({"dataPlane": {"inferencePort": 7000}})
    cluster = objects[("RayService", f"{FULLNAME}-data")]["spec"]["rayClusterConfig"]
    (workers,) = cluster["workerGroupSpecs"]
    worker_pod = workers["template"]
    head_pod = cluster["headGroupSpec"]["template"]
    service = objects[("Service", f"{FULLNAME}-inference")]["spec"]
    assert matches(service["selector"], worker_pod["metadata"]["labels"])
    assert not matches(service["selector"], head_pod["metadata"]["labels"])
    assert service["ports"] == [
        {
            "name": "inference",
            "port": 7000,
            "targetPort": "inference",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }
    ]
    container = worker_pod["spec"]["containers"][0]
    assert {"name": "inference", "containerPort": 7000, "protocol": "TCP"} in container["ports"]
    assert container["readinessProbe"]["grpc"] == {"port": 7000}
    assert env_of(objects)["MODELPLANE_INFERENCE_PORT"] == "7000"
    assert env_of(objects)["MODELPLANE_HOST"] == "0.0.0.0"


def test_ray_pods_start_their_workers_at_normal_priority() -> None:
    objects = render()
    # Read by `ray start` in both Ray pods: replicas are workers, nice 15 otherwise.
    assert env_of(objects)["RAY_worker_niceness"] == "0"
    cluster = objects[("RayService", f"{FULLNAME}-data")]["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]]
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert {"configMapRef": {"name": f"{FULLNAME}-env"}} in container["envFrom"]


def test_workers_and_control_plane_share_the_artifact_claim() -> None:
    objects = render()
    claim = f"{FULLNAME}-artifacts"
    pvc = objects[("PersistentVolumeClaim", claim)]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    control = objects[("Deployment", f"{FULLNAME}-control")]["spec"]["template"]["spec"]
    cluster = objects[("RayService", f"{FULLNAME}-data")]["spec"]["rayClusterConfig"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    expected = [{"name": "artifacts", "persistentVolumeClaim": {"claimName": claim}}]
    assert control["volumes"] == expected
    assert worker["volumes"] == expected
    assert env_of(objects)["MODELPLANE_ARTIFACT_ROOT"] == "/var/lib/modelplane/artifacts"


def test_an_existing_claim_is_used_and_not_created() -> None:
    objects = render({"artifacts": {"persistence": {"existingClaim": "models-nfs"}}})
    assert not [key for key in objects if key[0] == "PersistentVolumeClaim"]
    control = objects[("Deployment", f"{FULLNAME}-control")]["spec"]["template"]["spec"]
    assert control["volumes"][0]["persistentVolumeClaim"] == {"claimName": "models-nfs"}


def test_embedded_redis_is_what_the_settings_point_at() -> None:
    objects = render()
    assert env_of(objects)["MODELPLANE_REDIS_URL"] == f"redis://{FULLNAME}-redis:6379/0"
    service = objects[("Service", f"{FULLNAME}-redis")]["spec"]
    assert service["ports"][0]["port"] == 6379
    statefulset = objects[("StatefulSet", f"{FULLNAME}-redis")]["spec"]
    assert "--appendonly" in statefulset["template"]["spec"]["containers"][0]["args"]


def test_an_external_redis_url_replaces_the_embedded_one() -> None:
    objects = render({"redis": {"url": "redis://cache.internal:6379/2"}})
    assert env_of(objects)["MODELPLANE_REDIS_URL"] == "redis://cache.internal:6379/2"
    assert ("StatefulSet", f"{FULLNAME}-redis") not in objects


def test_sentinel_hosts_become_a_sentinel_url() -> None:
    objects = render(
        {
            "redis": {
                "sentinel": {
                    "enabled": True,
                    "masterName": "primary",
                    "hosts": ["s-0:26379", "s-1:26379"],
                }
            }
        }
    )
    assert env_of(objects)["MODELPLANE_REDIS_URL"] == (
        "redis+sentinel://s-0:26379,s-1:26379/primary/0"
    )
    assert ("StatefulSet", f"{FULLNAME}-redis") not in objects


def test_sentinel_without_hosts_fails_with_the_field_name() -> None:
    with pytest.raises(helm_python.HelmError, match=r"redis\.sentinel\.hosts: list at least one"):
        render({"redis": {"sentinel": {"enabled": True}}})


def test_no_redis_at_all_fails_with_the_choices() -> None:
    with pytest.raises(
        helm_python.HelmError, match=r"redis: set redis\.url, enable redis\.sentinel"
    ):
        render({"redis": {"embedded": {"enabled": False}}})


def test_extra_env_reaches_the_config_map() -> None:
    objects = render({"extraEnv": {"MODELPLANE_MAX_UPLOAD_BYTES": "1073741824"}})
    assert env_of(objects)["MODELPLANE_MAX_UPLOAD_BYTES"] == "1073741824"


def test_chart_lints_clean() -> None:
    result = helm_python.lint(CHART, strict=True)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []
