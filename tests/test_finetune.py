"""Fine-tuning (``model.initial_model``): initial weights equal the file's; shifts kept or re-fitted as configured."""

from pathlib import Path

import numpy as np
import pytest

from nequip_np.data.stats import type_counts
from nequip_np.interop.model_file import load_any_model
from nequip_np.model.nequip import NequIPModel
from nequip_np.train.trainer import Trainer

DATA = Path(__file__).resolve().parents[1] / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"
OFFICIAL = Path(__file__).parent / "fixtures" / "official"


def _initial(tmp_path, type_names=("H", "C", "O"), **kw):
    model = NequIPModel(
        type_names=list(type_names),
        r_max=3.0,
        num_layers=2,
        l_max=1,
        num_features=4,
        radial_mlp_width=8,
        avg_num_neighbors=7.5,
        seed=11,
        per_type_energy_shifts={t: -10.0 - i for i, t in enumerate(type_names)},
        per_type_energy_scales=0.7,
        **kw,
    )
    path = tmp_path / "initial.npz"
    model.save(path)
    return path, model


def _config(tmp_path, model_block, **training):
    from ase.io import read, write

    data = tmp_path / "small.extxyz"
    if not data.exists():
        write(data, read(DATA, ":8"), format="extxyz")
    return {
        "run_name": "ft",
        "model": model_block,
        "data": {"path": str(data), "train": 6, "val": 2, "test": 0, "split_seed": 3},
        "training": {
            "batch_size": 3,
            "max_epochs": 1,
            "learning_rate": 0.001,
            "early_stopping": None,
            "output_dir": str(tmp_path / "run"),
            **training,
        },
    }


def _energies_and_counts(trainer, n_types):
    from nequip_np.data.graph import batch_graphs

    g = batch_graphs(list(trainer.train_set.graphs))
    return np.asarray(g.energy), type_counts(g, n_types)


def test_initial_weights_are_the_files_and_shifts_kept_when_not_configured(tmp_path):
    path, ref = _initial(tmp_path)
    t = Trainer(_config(tmp_path, {"initial_model": str(path)}), progress=False)
    assert set(t.model.params) == set(ref.params)
    for name, value in ref.params.items():
        np.testing.assert_array_equal(t.model.params[name], value, err_msg=name)
    np.testing.assert_array_equal(t.model.buffers["per_type_energy_shifts"], [-10.0, -11.0, -12.0])
    np.testing.assert_array_equal(t.model.buffers["per_type_energy_scales"], [0.7])
    assert t.model.config.avg_num_neighbors == 7.5 and t.model.config.r_max == 3.0


def test_shifts_refitted_by_least_squares_and_scales_from_the_new_data(tmp_path):
    path, ref = _initial(tmp_path)
    block = {"initial_model": str(path), "per_type_energy_shifts": "least_squares", "per_type_energy_scales": 2.5}
    t = Trainer(_config(tmp_path, block), progress=False)
    energy, counts = _energies_and_counts(t, 3)
    expected, *_ = np.linalg.lstsq(counts, energy, rcond=None)
    np.testing.assert_allclose(t.model.buffers["per_type_energy_shifts"], expected, rtol=1e-12)
    np.testing.assert_array_equal(t.model.buffers["per_type_energy_scales"], [2.5])
    for name, value in ref.params.items():  # weights still the file's
        np.testing.assert_array_equal(t.model.params[name], value, err_msg=name)


def test_new_species_gets_a_fresh_row_and_a_residual_shift(tmp_path):
    path, ref = _initial(tmp_path, type_names=("H", "C"))
    t = Trainer(_config(tmp_path, {"initial_model": str(path), "type_names": ["H", "C", "O"]}), progress=False)
    emb = t.model.params["type_embed"]
    np.testing.assert_array_equal(emb[:2], ref.params["type_embed"])
    assert emb.shape == (3, ref.params["type_embed"].shape[1]) and np.all(np.isfinite(emb[2]))
    assert not np.allclose(emb[2], emb[0]) and not np.allclose(emb[2], emb[1])
    shifts = t.model.buffers["per_type_energy_shifts"]
    np.testing.assert_array_equal(shifts[:2], [-10.0, -11.0])  # kept
    energy, counts = _energies_and_counts(t, 3)
    residual = energy - counts[:, :2] @ shifts[:2]
    best, *_ = np.linalg.lstsq(counts[:, 2:], residual, rcond=None)
    np.testing.assert_allclose(shifts[2], best[0], rtol=1e-12)


def test_architecture_conflict_is_a_clear_error(tmp_path):
    path, _ = _initial(tmp_path)
    with pytest.raises(ValueError, match=r"model.num_layers = 3 differs from the initial model's 2"):
        Trainer(_config(tmp_path, {"initial_model": str(path), "num_layers": 3}), progress=False)


def test_finetune_trains_and_the_saved_model_keeps_the_configured_shifts(tmp_path):
    path, _ = _initial(tmp_path)
    t = Trainer(
        _config(tmp_path, {"initial_model": str(path), "per_type_energy_shifts": "least_squares"}), progress=False
    )
    before = {k: v.copy() for k, v in t.model.params.items()}
    t.train()
    saved = load_any_model(t.out / "model.npz")
    np.testing.assert_array_equal(saved.buffers["per_type_energy_shifts"], t.model.buffers["per_type_energy_shifts"])
    assert any(not np.array_equal(saved.params[k], before[k]) for k in before)


@pytest.mark.skipif(not (OFFICIAL / "perl.ckpt").exists(), reason="official fixtures not generated")
def test_finetune_from_an_official_checkpoint_starts_from_its_ema_weights(tmp_path):
    ref = load_any_model(OFFICIAL / "perl.ckpt")
    t = Trainer(_config(tmp_path, {"initial_model": str(OFFICIAL / "perl.ckpt")}), progress=False)
    for name, value in ref.params.items():
        np.testing.assert_array_equal(t.model.params[name], value, err_msg=name)
    assert t.model.config.num_features == [6, 4, 2] and t.model.config.l_max == 2


def test_yaml_config_with_initial_model_relative_to_the_config_file(tmp_path, monkeypatch):
    import yaml

    path, ref = _initial(tmp_path)
    cfg = _config(tmp_path, {"initial_model": path.name})
    cfg["training"]["learning_rate"] = "LR"
    text = yaml.safe_dump(cfg).replace("LR", "2e-3")  # YAML 1.1 would read 2e-3 as a string
    (tmp_path / "ft.yaml").write_text(text)
    monkeypatch.chdir(tmp_path.parent)
    t = Trainer(tmp_path / "ft.yaml", progress=False)
    assert t.config.training.learning_rate == 2e-3
    assert Path(t.config.model.initial_model) == path
    np.testing.assert_array_equal(t.model.params["type_embed"], ref.params["type_embed"])
