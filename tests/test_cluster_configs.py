"""The cluster files: launcher YAMLs against Ray's own autoscaler schema, KubeRay manifests and
the runtime environment checked for what a run needs."""

import json
import re
import shlex
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"


def _ray_version() -> str:
    import ray

    return ray.__version__


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_matches_ray_schema(name):
    schema = json.loads(files("ray.autoscaler").joinpath("ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, schema)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0  # no work on the head
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 for t in workers)  # GPU workers scale from 0
    image = config["docker"]["image"]
    assert image.startswith("rayproject/ray:") and "ray-ml" not in image and "gpu" in image
    assert image.split(":")[1].startswith(_ray_version())  # pinned to the project's Ray
    text = (CLUSTER / name).read_text()
    assert "MER_RAY_STORAGE=" in text and "pip install -e" in text


def _containers(pod_template):
    return pod_template["spec"]["containers"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob-loso.yaml"])
def test_kuberay_manifests(name):
    doc = yaml.safe_load((CLUSTER / "kuberay" / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == _ray_version()
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        for c in _containers(g["template"]):
            assert c["image"].split(":")[1].startswith(_ray_version())
            for kind in ("requests", "limits"):
                assert int(c["resources"][kind]["nvidia.com/gpu"]) >= 1
    if doc["kind"] == "RayJob":
        assert doc["spec"]["shutdownAfterJobFinishes"] is True
        words = shlex.split(doc["spec"]["entrypoint"])
        assert words[0] == "python" and (ROOT / words[1]).is_file()
        assert "--storage-path" in words and "--data-root" in words
        yaml.safe_load(doc["spec"]["runtimeEnvYAML"])


def test_runtime_env_and_submit_wrapper():
    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "."
    required = {re.split(r"[<>=\[]", d)[0] for d in env["pip"]["packages"]}
    assert {"torch", "timm", "peft", "dlib-bin", "optuna", "polars"} <= required
    # every library the package needs that a plain Ray image lacks (Ray's own come with it)
    deps = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(),
                     re.M | re.S).group(1)
    needed = {re.split(r"[<>=\[]", d)[0] for d in re.findall(r'"([^"]+)"', deps)}
    with_ray = {"ray", "pyarrow", "pandas", "numpy", "pyyaml"}
    assert needed - with_ray <= required, needed - with_ray - required
    wrapper = (CLUSTER / "submit.sh").read_text()
    assert "ray job submit" in wrapper and "--working-dir ." in wrapper
    ignore = (ROOT / ".rayignore").read_text().split()
    assert "/data/" in ignore and "/results/" in ignore
