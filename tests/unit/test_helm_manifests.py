"""Every manifest the chart renders is valid Kubernetes, for each values file in ci/.

Core objects are checked against the Kubernetes OpenAPI schemas by
``kubernetes-validate`` (strict: unknown fields fail). The RayService is a custom
resource those schemas do not know: its pod templates are checked as core
``PodTemplate`` objects and its Serve config is parsed. Values that break
``values.schema.json`` fail the render with the offending path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = Path(__file__).resolve().parents[2] / "helm" / "modelplane"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
# The chart's kubeVersion floor is 1.24 (gRPC probes); validate against a current release.
KUBERNETES = "1.30"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values, name="prod", namespace="ml")
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


def validate_core(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        raise AssertionError(
            f"{obj['kind']} {obj['metadata']['name']}: {path}: {error.message}"
        ) from error


def validate_ray_service(obj: dict[str, Any]) -> None:
    assert obj["apiVersion"] == "ray.io/v1"
    spec = obj["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    (app,) = serve_config["applications"]
    (deployment,) = app["deployments"]
    # Serve refuses both at once; the chart must emit exactly one.
    assert ("num_replicas" in deployment) != ("autoscaling_config" in deployment)
    cluster = spec["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for index, template in enumerate(templates):
        validate_core(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": f"{obj['metadata']['name']}-{index}"},
                "template": template,
            }
        )


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_every_manifest_is_valid_kubernetes(values_file: Path) -> None:
    objects = render(yaml.safe_load(values_file.read_text()) or {})
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "ConfigMap", "RayService"} <= kinds
    for obj in objects:
        if obj["kind"] == "RayService":
            validate_ray_service(obj)
        else:
            validate_core(obj)


def test_there_are_several_values_files() -> None:
    assert len(VALUES_FILES) >= 4


def test_a_broken_manifest_would_be_caught() -> None:
    # The validator is strict: a misspelt field in a Deployment fails.
    (deployment,) = [o for o in render({}) if o["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(AssertionError, match="imagePullPolicyy"):
        validate_core(deployment)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dataPlane": {"replicas": -1}}, r"at '/dataPlane/replicas': minimum: got -1, want 0"),
        (
            {"controlPlane": {"port": 70000}},
            r"at '/controlPlane/port': maximum: got 70,000, want 65,535",
        ),
        ({"redis": {"url": "http://redis:6379"}}, r"at '/redis/url'"),
        ({"replicas": 3}, r"additional properties 'replicas' not allowed"),
        ({"auth": {"tokens": [{"name": "x", "role": "root", "sha256": "ab"}]}}, r"/auth/tokens/0"),
        ({"extraEnv": {"PATH": "/bin"}}, r"'PATH' does not match pattern '\^MODELPLANE_"),
    ],
)
def test_values_against_the_schema_fail_with_the_path(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)


def test_autoscaling_range_upside_down_fails_with_the_field() -> None:
    with pytest.raises(helm_python.HelmError, match=r"minReplicas \(5\) must not exceed"):
        render(
            {"dataPlane": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}
        )


def test_auth_mounts_the_token_secret_and_turns_auth_on() -> None:
    values = yaml.safe_load((CHART / "ci" / "sentinel-auth-otel-values.yaml").read_text())
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(values)}
    secret = objects[("Secret", "prod-modelplane-auth")]
    assert '"role":"deployer"' in secret["stringData"]["tokens.json"]
    env = objects[("ConfigMap", "prod-modelplane-env")]["data"]
    assert env["MODELPLANE_AUTH_ENABLED"] == "true"
    assert env["MODELPLANE_AUTH_TOKENS_FILE"] == "/etc/modelplane/auth/tokens.json"
    assert env["MODELPLANE_OTLP_COLLECTOR_ENDPOINT"] == "prod-modelplane-otel:4317"
    pod = objects[("Deployment", "prod-modelplane-control")]["spec"]["template"]["spec"]
    assert {"name": "auth", "mountPath": "/etc/modelplane/auth", "readOnly": True} in pod[
        "containers"
    ][0]["volumeMounts"]
    assert pod["volumes"][-1]["secret"]["secretName"] == "prod-modelplane-auth"
    collector = objects[("ConfigMap", "prod-modelplane-otel")]["data"]["config.yaml"]
    assert yaml.safe_load(collector)["service"]["pipelines"]["traces"]["exporters"] == ["otlp"]


def test_auth_without_tokens_or_secret_fails_clearly() -> None:
    with pytest.raises(helm_python.HelmError, match=r"auth\.tokens: list at least one"):
        render({"auth": {"enabled": True}})
