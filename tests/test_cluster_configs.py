"""cluster/: the launcher configs validate against Ray's own schema; the KubeRay manifests have the expected
shape; and nothing exposes the dashboard, the GCS or the client port to the internet."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema", reason="ray[default] brings jsonschema")
ray = pytest.importorskip("ray")

CLUSTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cluster")
LAUNCHER = ["aws.yaml", "gcp.yaml"]
KUBERAY = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"]
RAY_PORTS = {6379, 8265, 10001}  # GCS, dashboard, client
OPEN_TO_ALL = ("0.0.0.0/0", "::/0")


def load(name):
    with open(os.path.join(CLUSTER, name)) as f:
        return yaml.safe_load(f)


def strings(node):
    """Every string in a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def launcher_exposures(config):
    """Ways a launcher config opens Ray's ports to the internet."""
    problems = []
    rules = (config["provider"].get("security_group") or {}).get("IpPermissions", [])
    for rule in rules:
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])
        ]
        low, high = rule.get("FromPort", 0), rule.get("ToPort", 65535)
        if rule.get("IpProtocol") == "-1":
            low, high = 0, 65535
        if any(r in OPEN_TO_ALL for r in ranges) and any(low <= port <= high for port in RAY_PORTS):
            problems.append(f"security group opens ports {low}-{high} to {ranges}")
    for command in config.get("head_start_ray_commands", []):
        if re.search(r"--dashboard-host[= ]+0\.0\.0\.0", command):
            problems.append("the dashboard listens on every interface (--dashboard-host=0.0.0.0)")
    for text in strings({k: v for k, v in config.items() if k != "provider"}):
        if any(r in text for r in OPEN_TO_ALL):
            problems.append(f"open to all: {text!r}")
    return problems


def kubernetes_exposures(manifest):
    """Ways a KubeRay manifest makes Ray's ports reachable from outside the Kubernetes cluster."""
    problems = []
    spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
    if spec["headGroupSpec"].get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(f"head service type {spec['headGroupSpec']['serviceType']}")
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        if pod.get("hostNetwork"):
            problems.append("hostNetwork: true")
        for container in pod["containers"]:
            problems += [f"hostPort {p['hostPort']}" for p in container.get("ports", []) if "hostPort" in p]
    if manifest["kind"] in ("Service", "Ingress") or "LoadBalancer" in strings(manifest):
        problems.append("a Service of type LoadBalancer or an Ingress")
    if "NodePort" in strings(manifest):
        problems.append("a NodePort")
    return problems


@pytest.fixture(scope="module")
def ray_schema():
    path = os.path.join(os.path.dirname(ray.__file__), "autoscaler", "ray-schema.json")
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_config_validates_against_rays_schema(ray_schema, name):
    config = load(name)
    jsonschema.validate(config, ray_schema)
    types = config["available_node_types"]
    head, workers = types[config["head_node_type"]], [t for k, t in types.items() if k != config["head_node_type"]]
    assert workers and all(w["min_workers"] == 0 and w["max_workers"] >= 1 for w in workers)
    node = json.dumps(head["node_config"]).lower()
    assert "gpu" not in node and "accelerator" not in node  # a CPU head
    gpu_markers = ("g5.", "p4d", "p5.", "guestaccelerators", "g2-standard", "a2-")
    assert all(any(m in json.dumps(w["node_config"]).lower() for m in gpu_markers) for w in workers)
    assert "2.60.0" in config["docker"]["image"] and config["docker"]["image"].endswith("-gpu")
    assert launcher_exposures(config) == []


def test_schema_and_exposure_checks_catch_mistakes(ray_schema):
    config = load("aws.yaml")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "max_workers": "four"}, ray_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "head_nodes_type": "head"}, ray_schema)  # a typo of a key
    opened = {
        **config,
        "provider": {
            **config["provider"],
            "security_group": {
                "IpPermissions": [
                    {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
                ]
            },
        },
    }
    jsonschema.validate(opened, ray_schema)  # valid for Ray, and yet:
    assert launcher_exposures(opened) == ["security group opens ports 8265-8265 to ['0.0.0.0/0']"]
    public_dashboard = {**config, "head_start_ray_commands": ["ray start --head --dashboard-host=0.0.0.0"]}
    assert launcher_exposures(public_dashboard)


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_manifests(name):
    manifest = load(name)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == {"kuberay/raycluster.yaml": "RayCluster", "kuberay/rayjob.yaml": "RayJob"}[name]
    assert manifest["metadata"]["name"]
    spec = manifest["spec"]
    if manifest["kind"] == "RayJob":
        assert spec["entrypoint"].startswith("lightray fit ")
        assert "--trainer.storage_path s3://" in spec["entrypoint"] and "--trainer.name " in spec["entrypoint"]
        assert "lightray" in yaml.safe_load(spec["runtimeEnvYAML"])["pip"]
        spec = spec["rayClusterSpec"]
    assert spec["rayVersion"] == "2.60.0"
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert head["image"].startswith("rayproject/ray:2.60.0") and not head["image"].endswith("-gpu")
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (worker,) = group["template"]["spec"]["containers"]
        assert worker["image"].startswith("rayproject/ray:2.60.0") and worker["image"].endswith("-gpu")
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"]
    assert kubernetes_exposures(manifest) == []


def test_kubernetes_exposure_check_catches_mistakes():
    manifest = load("kuberay/raycluster.yaml")
    head = manifest["spec"]["headGroupSpec"]
    head["serviceType"] = "LoadBalancer"
    head["template"]["spec"]["containers"][0]["ports"][1]["hostPort"] = 8265
    assert kubernetes_exposures(manifest) == [
        "head service type LoadBalancer",
        "hostPort 8265",
        "a Service of type LoadBalancer or an Ingress",
    ]
    head["serviceType"] = "NodePort"
    assert "a NodePort" in kubernetes_exposures(manifest)


def test_runtime_env_example_keeps_heavy_folders_out():
    env = load("runtime_env.yaml")
    assert env["working_dir"] == "."
    for pattern in (".git", "/.venv", "/checkpoints", "*.ckpt", "/data"):
        assert pattern in env["excludes"]
    from lightray import jobs

    assert set(jobs.DEFAULT_EXCLUDES) >= set(env["excludes"])  # lightray submit leaves out at least these
