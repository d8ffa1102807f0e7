"""``braid train --config FILE`` goes through the one config mapper and the one configuration error type."""

from __future__ import annotations

from pathlib import Path

from braid_cli import braid

from model.train import load_configs


def test_train_config_file_is_coerced_and_bad_settings_name_the_field(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("preset: tiny\ntrain:\n  lr: '3e-4'\n  steps: 7\n")
    cfgs = load_configs(str(good))
    assert cfgs["train"].lr == 3e-4 and cfgs["train"].steps == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 0.1\n")
    golden = str(Path(__file__).parents[1] / "data" / "golden-000000.tar")
    code, _, err = braid("train", golden, "--out", str(tmp_path / "run"), "--config", str(bad))
    assert code == 2 and "error" in err and "train.learning_rate" in err and "Traceback" not in err
