"""``braid train`` end to end on real shards: it learns, resumes exactly, runs on two gloo ranks, and turns bad
input into clear messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from mot_helpers import write_shards

from pipelines.commands.cli import main

CONFIG = """preset: tiny
train: {eval_every: %d, eval_batches: 2, log_every: 1, ckpt_every: 1000, warmup: 5}
data: {max_tokens: 512}
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    return [str(p) for p in write_shards(d, 24, 8)]  # three shards; the last is held out


def _config(tmp_path, eval_every=1000):
    p = tmp_path / "cfg.yaml"
    p.write_text(CONFIG % eval_every)
    return str(p)


def _rows(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.timeout(300)
def test_train_learns_and_writes_a_self_describing_run(tmp_path, shards):
    run = tmp_path / "run"
    assert main(["train", *shards, "--out", str(run), "--config", _config(tmp_path, 30), "--steps", "60"]) == 0
    for name in ("config.json", "model.safetensors", "autoencoder.json", "tokenizer/tokenizer.json", "loss.png",
                 "checkpoint/optimizer.safetensors", "checkpoint/trainer_state.json", "skips.jsonl"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["eval_shards"] == shards[-1:] and cfg["model"]["vocab_size"] % 64 == 0
    evals = [r["eval_loss"] for r in _rows(run) if "eval_loss" in r]
    assert len(evals) == 3  # steps 0, 30, 60
    assert evals[-1] < 0.8 * evals[0], evals
    from safetensors.torch import load_file

    weights = load_file(str(run / "model.safetensors"))
    assert "language_model.model.layers.0.mlp_moe_gen.up_proj.weight" in weights


@pytest.mark.timeout(300)
def test_resume_continues_exactly(tmp_path, shards):
    cfg = _config(tmp_path)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *shards, "--out", str(straight), "--config", cfg, "--steps", "6"]) == 0
    assert main(["train", *shards, "--out", str(split), "--config", cfg, "--steps", "3"]) == 0
    assert main(["train", *shards, "--out", str(split), "--steps", "6", "--resume"]) == 0
    a = {r["step"]: r["loss"] for r in _rows(straight) if "loss" in r}
    b = {r["step"]: r["loss"] for r in _rows(split) if "loss" in r}
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert a[step] == pytest.approx(b[step], rel=1e-6, abs=1e-7), (step, a[step], b[step])


@pytest.mark.timeout(300)
def test_packing_in_worker_processes_gives_the_same_run(tmp_path, shards):
    inline, workers = tmp_path / "inline", tmp_path / "workers"
    cfg = tmp_path / "workers.yaml"
    cfg.write_text(CONFIG.replace("warmup: 5}", "warmup: 5, loader_workers: 2, peak_tflops: 0.001}") % 1000)
    assert main(["train", *shards, "--out", str(inline), "--config", _config(tmp_path), "--steps", "5"]) == 0
    assert main(["train", *shards, "--out", str(workers), "--config", str(cfg), "--steps", "5"]) == 0
    a = [(r["step"], r["loss"]) for r in _rows(inline) if "loss" in r]
    assert a == [(r["step"], r["loss"]) for r in _rows(workers) if "loss" in r] and len(a) == 5
    state = json.loads((workers / "checkpoint" / "trainer_state.json").read_text())
    assert state["position"] == json.loads((inline / "checkpoint" / "trainer_state.json").read_text())["position"]
    assert all(r["mfu"] > 0 for r in _rows(workers) if "loss" in r)  # logged against the configured peak


def test_loss_weights_come_from_the_train_config_and_old_run_folders_still_load(tmp_path, shards):
    from model.run_folder import load_run

    cfg = tmp_path / "w.yaml"
    cfg.write_text(CONFIG.replace("warmup: 5}", "warmup: 5, ce_weight: 0.5, mse_weight: 2.0}") % 1000)
    run = tmp_path / "run"
    assert main(["train", *shards, "--out", str(run), "--config", str(cfg), "--steps", "1"]) == 0
    row = next(r for r in _rows(run) if "loss" in r)
    assert row["loss"] == pytest.approx(0.5 * row["ce"] + 2.0 * row["mse"], rel=1e-5)
    doc = json.loads((run / "config.json").read_text())
    assert "ce_weight" not in doc["model"] and load_run(run, device="cpu").loss_weights == (0.5, 2.0)
    for k in ("ce_weight", "mse_weight"):  # a run folder from when the weights sat in the model section
        doc["model"][k] = doc["train"].pop(k)
    (run / "config.json").write_text(json.dumps(doc))
    assert load_run(run, device="cpu").loss_weights == (0.5, 2.0)
    assert main(["train", *shards, "--out", str(run), "--steps", "2", "--resume"]) == 0


@pytest.mark.timeout(300)
def test_ema_is_the_decayed_average_of_the_weights_across_a_resume(tmp_path, shards):
    from safetensors.torch import load_file

    cfg = tmp_path / "ema.yaml"
    cfg.write_text(CONFIG.replace("warmup: 5}", "warmup: 5, ema: 0.75}") % 1000)
    run = tmp_path / "run"
    assert main(["train", *shards, "--out", str(run), "--config", str(cfg), "--steps", "1"]) == 0
    ema1 = load_file(str(run / "ema.safetensors"))
    w1 = load_file(str(run / "model.safetensors"))
    assert main(["train", *shards, "--out", str(run), "--steps", "2", "--resume"]) == 0
    ema2, w2 = load_file(str(run / "ema.safetensors")), load_file(str(run / "model.safetensors"))
    assert ema2.keys() == w2.keys() and len(w2) > 10
    moved = 0
    for k in w2:
        assert torch.allclose(ema2[k], 0.75 * ema1[k] + 0.25 * w2[k], atol=1e-6), k
        moved += not torch.equal(w2[k], w1[k])
    assert moved > len(w2) // 2  # the step changed most tensors, so the check above has something to see


@pytest.mark.timeout(300)
def test_two_gloo_ranks(tmp_path, shards):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipelines.commands.cli", "train", *shards, "--out", str(tmp_path / "ddp"), "--config", _config(tmp_path),
           "--steps", "4", "--device", "cpu"]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, (proc.stdout[-1500:], proc.stderr[-3000:])
    rows = [r for r in _rows(tmp_path / "ddp") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "ddp" / "checkpoint" / "trainer_state.json").is_file()
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "trainer_state.json").read_text())
    assert state["world"] == 2
    digests = state["rank_weights_sha256"]  # DistributedDataParallel kept both ranks' weights identical
    assert len(digests) == 2 and digests[0] == digests[1]
    from safetensors.torch import load_file

    from model.mot import MoT, MoTConfig

    cfg = json.loads((tmp_path / "ddp" / "config.json").read_text())["model"]
    torch.manual_seed(0)  # the trainer's initial weights (train seed 0)
    start = MoT(MoTConfig(**cfg)).state_dict()
    trained = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert sum(not torch.equal(trained[k], start[k]) for k in trained) > len(trained) // 2  # the steps moved them


def test_bad_input_gives_clear_messages(tmp_path, shards, capsys):
    def err(argv):
        rc = main(["train", *argv])
        return rc, capsys.readouterr().err

    rc, msg = err(["--out", str(tmp_path / "r0")])
    assert rc == 2 and "no shards given" in msg
    rc, msg = err([str(tmp_path / "missing.tar"), "--out", str(tmp_path / "r1")])
    assert rc == 2 and "does not exist" in msg
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(b"\x00garbage" * 100)
    rc, msg = err([str(corrupt), "--out", str(tmp_path / "r2"), "--steps", "2"])
    assert rc == 2 and "no usable samples" in msg and "not a readable tar" in msg
    small = tmp_path / "small.yaml"
    small.write_text("preset: tiny\ndata: {max_tokens: 50}\n")
    rc, msg = err([shards[0], "--out", str(tmp_path / "r3"), "--config", str(small), "--steps", "2"])
    assert rc == 2 and "longer than the budget 50" in msg
    rc, msg = err([shards[0], "--out", str(tmp_path / "r4"), "--resume"])
    assert rc == 2 and "holds no checkpoint" in msg
    rc, msg = err([shards[0], "--out", str(tmp_path / "r5"), "--config", "huge"])
    assert rc == 2 and "neither a preset" in msg
    typo = tmp_path / "typo.yaml"
    typo.write_text("preset: tiny\ntrain: {stpes: 3}\n")
    rc, msg = err([shards[0], "--out", str(tmp_path / "r6"), "--config", str(typo)])
    assert rc == 2 and "stpes" in msg
