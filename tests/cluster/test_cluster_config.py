"""ray_cluster.yaml: valid for Ray's own cluster launcher, and shaped the way README.md ("Running on a Ray cluster") says."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "ray_cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.mark.timeout(60)
def test_ray_up_would_accept_the_config(config):
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    # the same two steps `ray up` runs before it talks to the cloud provider
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"


@pytest.mark.timeout(60)
def test_a_broken_config_is_rejected(config):
    pytest.importorskip("jsonschema")
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(config)
    bad["available_node_types"]["gpu_worker"]["resources"]["GPU"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))


def test_node_groups_match_the_docs(config):
    types = config["available_node_types"]
    assert types["head"]["resources"] == {"CPU": 0}
    cpu, gpu = types["cpu_worker"], types["gpu_worker"]
    assert 1 <= cpu["min_workers"] < cpu["max_workers"] and 0 == gpu["min_workers"] < gpu["max_workers"]
    assert gpu["resources"]["GPU"] >= 1 and "GPU" not in cpu["resources"]
    assert cpu["max_workers"] + gpu["max_workers"] <= config["max_workers"]
    gpu_setup = " ".join(gpu["worker_setup_commands"])
    assert "braid[vllm]" in gpu_setup and "ray[default,data]==" in gpu_setup
    assert any("$HOME/braid" in c for c in config["setup_commands"])
    assert config["file_mounts"] == {"~/braid": "."}
