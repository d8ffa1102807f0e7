"""Hugging Face export: ``datasets`` reads it with images decoded and the card's features, files split by size,
the card carries licence, provenance, configuration and counts; ``braid push`` fails clearly without network."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml
from export_samples import all_samples, write_run

from pipelines.export.hf import HFExportConfig, export_hf

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    samples = all_samples()
    d = write_run(tmp_path_factory.mktemp("run"), samples)
    out = tmp_path_factory.mktemp("exp") / "hf"
    rep = export_hf([d], out, HFExportConfig.tiny())
    return {s.key: s for s in samples}, out, rep


def card(out):
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


def test_load_dataset_decodes_images_with_the_cards_features(run):
    import datasets
    from PIL import Image

    samples, out, _ = run
    header, _ = card(out)
    all_info = next(i for i in header["dataset_info"] if i["config_name"] == "all")
    card_features = datasets.Features._from_yaml_list(all_info["features"])
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features == card_features
    assert isinstance(ds.features["images"].feature, datasets.Image)
    assert len(ds) == len(samples) == all_info["splits"][0]["num_examples"]
    for row in ds:
        src = samples[row["key"]]  # every row maps back to its source sample
        assert len(row["texts"]) == len(row["images"]) == len(src.segments)
        imgs = [im for im in row["images"] if im is not None]
        assert all(isinstance(im, Image.Image) for im in imgs)
        assert [im.size for im in imgs] == [(s.width, s.height) for s in src.images]
        assert [t for t in row["texts"] if t is not None] == [t.text for t in src.texts]
        assert json.loads(row["sample_json"]) == src.to_json()
    raw = ds.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    for row in raw:
        assert [im["bytes"] for im in row["images"] if im] == [s.data for s in samples[row["key"]].images]
    # plain parquet loading decodes images too (features ride in the Parquet schema metadata)
    files = sorted(str(p) for p in out.glob("data/*/*.parquet"))
    pq_ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert pq_ds.features == card_features
    assert all(isinstance(im, Image.Image) for row in pq_ds for im in row["images"] if im is not None)
    # one config per kind
    video = datasets.load_dataset(str(out), "video", split="train")
    assert len(video) == sum(s.kind == "video" for s in samples.values()) and set(video["kind"]) == {"video"}


def test_files_split_by_size_and_named_for_the_hub(run):
    _, out, rep = run
    video = sorted(os.listdir(out / "data" / "video"))
    assert len(video) >= 2
    assert video == [f"train-{i:05d}-of-{len(video):05d}.parquet" for i in range(len(video))]
    assert sum(len(f) for f in rep["files"].values()) == len(list(out.glob("data/*/*.parquet")))


def test_card_has_licence_provenance_config_and_counts(run):
    samples, out, _ = run
    header, text = card(out)
    assert header["license"] == "other" and header["license_link"] == "LICENSES.md"
    assert "CC BY 4.0" in (out / "LICENSES.md").read_text()
    assert {c["config_name"] for c in header["configs"]} == {"all", *(s.kind for s in samples.values())}
    assert "| video | 4 |" in text and f"| total | {len(samples)} |" in text
    assert "| too_few_images | 1 |" in text and "| fetch_timeout | 1 |" in text  # from summary.json
    assert '"min_images": 3' in text  # pipeline configuration from runs.jsonl
    assert "shard-r00-000000.tar" in text


def test_single_licence_maps_to_hub_id(tmp_path):
    from export_samples import video_sample

    d = write_run(tmp_path / "run", [video_sample(0), video_sample(1)])
    export_hf([d], tmp_path / "out")
    header, _ = card(tmp_path / "out")
    assert header["license"] == "cc-by-4.0" and not (tmp_path / "out" / "LICENSES.md").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_push_without_network_is_one_clear_line(run, tmp_path):
    _, out, _ = run
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
           "HF_TOKEN": "hf_test", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    p = subprocess.run([sys.executable, "-m", "pipelines.commands.cli", "push", str(out), "--repo-id", "someone/braid-test"],
                       capture_output=True, text=True, env=env, timeout=100, cwd=tmp_path, check=False)
    assert p.returncode == 1
    assert "could not upload to the Hugging Face Hub" in p.stderr and "Traceback" not in p.stderr
    assert "Connection" in p.stderr or "connect" in p.stderr
    env["HF_HUB_OFFLINE"] = "1"
    p = subprocess.run([sys.executable, "-m", "pipelines.commands.cli", "push", str(out), "--repo-id", "someone/braid-test"],
                       capture_output=True, text=True, env=env, timeout=100, cwd=tmp_path, check=False)
    assert p.returncode == 1 and "HF_HUB_OFFLINE is set" in p.stderr and "Traceback" not in p.stderr


def test_push_refuses_what_is_not_an_hf_export(tmp_path, capsys):
    from pipelines.commands.cli import main

    (tmp_path / "x").mkdir()
    assert main(["push", str(tmp_path / "x"), "--repo-id", "a/b"]) == 2
    assert "not a Braid export" in capsys.readouterr().err
    (tmp_path / "x" / "export.json").write_text(json.dumps({"format": "bagel"}))
    assert main(["push", str(tmp_path / "x"), "--repo-id", "a/b"]) == 2
    assert "only 'braid export hf' output" in capsys.readouterr().err
