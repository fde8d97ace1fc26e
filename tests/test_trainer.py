"""Trainer, checkpoints, resume, CLI and bad-input errors (tiny runs on the shipped aspirin example)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from nequip_np.cli import main
from nequip_np.train import trainer as trainer_mod
from nequip_np.train.trainer import Trainer

DATA = Path(__file__).resolve().parents[1] / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"


def _config(tmp_path, **training):
    cfg = {
        "run_name": "t",
        "model": {
            "type_names": ["H", "C", "O"],
            "r_max": 3.0,
            "num_layers": 2,
            "l_max": 1,
            "num_features": 4,
            "radial_mlp_width": 8,
            "per_type_energy_shifts": "least_squares",
        },
        "data": {"path": str(DATA), "train": 6, "val": 2, "test": 2, "split_seed": 3},
        "training": {
            "batch_size": 3,
            "max_epochs": 3,
            "learning_rate": 0.01,
            "early_stopping": None,
            "output_dir": str(tmp_path / "run"),
            **training,
        },
    }
    return cfg


def _data_subset(tmp_path, n=10):
    from ase.io import read, write

    path = tmp_path / "small.extxyz"
    write(path, read(DATA, f":{n}"), format="extxyz")
    return path


def test_training_reduces_the_loss_and_writes_outputs(tmp_path):
    t = Trainer(_config(tmp_path, max_epochs=4), progress=False)
    result = t.train()
    out = Path(t.out)
    for name in ("config.yaml", "metrics.csv", "last.ckpt.npz", "best.ckpt.npz", "model.npz", "test_metrics.json"):
        assert (out / name).exists(), name
    rows = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    assert rows["train_loss"][-1] < rows["train_loss"][0]
    assert "forces_mae" in result["test"]
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert isinstance(resolved["model"]["avg_num_neighbors"], float)  # "auto" was resolved


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    ref = Trainer(_config(tmp_path / "a", max_epochs=4), progress=False)
    ref.train()
    # crash in the middle of epoch 2 (after some optimizer steps)
    calls = {"n": 0}
    real = trainer_mod.loss_and_grad

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * 2 + 1:  # 2 batches per epoch: the first step of epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer_mod, "loss_and_grad", crashing)
    t = Trainer(_config(tmp_path / "b", max_epochs=4), progress=False)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    monkeypatch.setattr(trainer_mod, "loss_and_grad", real)
    resumed = Trainer(_config(tmp_path / "b", max_epochs=4), progress=False)
    resumed.load_checkpoint(resumed.out / "last.ckpt.npz")
    assert resumed.epoch == 2
    resumed.train()
    for k, v in ref.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], v, err_msg=k)
    rows_a = np.genfromtxt(ref.out / "metrics.csv", delimiter=",", names=True)
    rows_b = np.genfromtxt(resumed.out / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(rows_a["val_loss"], rows_b["val_loss"])


def test_cli_train_evaluate_and_refuse_to_overwrite(tmp_path, capsys):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp_path, max_epochs=1)))
    assert main(["train", str(cfg_path), "--no-progress"]) == 0
    assert "forces" in capsys.readouterr().out
    assert main(["train", str(cfg_path), "--no-progress"]) == 2  # existing run: nothing overwritten
    assert "--resume" in capsys.readouterr().err
    model = tmp_path / "run" / "model.npz"
    metrics = tmp_path / "m.json"
    code = main(
        [
            "evaluate",
            str(model),
            str(_data_subset(tmp_path)),
            "--output",
            str(metrics),
            "--predictions",
            str(tmp_path / "pred.extxyz"),
            "--parity-plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert code == 0 and metrics.exists() and (tmp_path / "p.png").stat().st_size > 1000
    import json

    m = json.loads(metrics.read_text())
    assert m["n_frames"] == 10 and m["forces_mae"] > 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("unparsable", "could not"),
        ("no_forces", "forces"),
        ("nan_label", "non-finite"),
        ("unknown_species", "not in model.type_names"),
        ("split_too_large", "needs 1004 frames but the data have 300"),
        ("unknown_key", "did you mean 'learning_rate'"),
    ],
)
def test_bad_input_is_rejected_before_training(tmp_path, case, message):
    from ase.io import read, write

    cfg = _config(tmp_path)
    if case == "unparsable":
        bad = tmp_path / "bad.extxyz"
        bad.write_text("this is not\nan xyz file\n")
        cfg["data"]["path"] = str(bad)
    elif case in ("no_forces", "nan_label", "unknown_species"):
        frames = read(DATA, ":10")
        for a in frames:
            if case == "no_forces":
                a.calc.results.pop("forces")
            elif case == "nan_label":
                a.calc.results["energy"] = float("nan")
        if case == "unknown_species":
            frames[0].numbers[0] = 7
        path = tmp_path / "d.extxyz"
        write(path, frames, format="extxyz")
        cfg["data"]["path"] = str(path)
    elif case == "split_too_large":
        cfg["data"]["train"] = 1000
    elif case == "unknown_key":
        cfg["training"]["learing_rate"] = 0.1
    with pytest.raises(ValueError, match=message):
        Trainer(cfg, progress=False)
