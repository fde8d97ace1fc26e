"""YAML configuration: defaults, validation messages, resolution, round trip."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from nequip_np.train.config import (
    Config,
    ConfigError,
    config_to_dict,
    dump_config,
    load_config,
    resolve_defaults,
)

MINIMAL = {"model": {"type_names": ["H", "O"], "r_max": 4.0}, "data": {"path": "water.xyz"}}


def _with(section, **kv):
    raw = {k: dict(v) for k, v in MINIMAL.items()}
    raw.setdefault(section, {}).update(kv)
    return raw


def test_defaults():
    cfg = load_config(MINIMAL)
    assert isinstance(cfg, Config)
    m, t = cfg.model, cfg.training
    # nequip NequIPGNNModel defaults
    assert (m.num_layers, m.l_max, m.parity, m.num_features) == (4, 1, True, 32)
    assert (m.radial_mlp_depth, m.radial_mlp_width, m.num_bessels, m.polynomial_cutoff_p) == (1, 128, 8, 6)
    assert (m.readout_mlp_hidden_layers_depth, m.readout_mlp_nonlinearity) == (0, "silu")
    assert m.bessel_trainable is False and m.model_dtype == "float64"
    assert m.avg_num_neighbors == m.per_type_energy_scales == m.per_type_energy_shifts == "auto"
    # training defaults (nequip tutorial)
    assert (t.learning_rate, t.amsgrad, t.weight_decay, t.batch_size, t.ema_decay) == (0.01, False, 0.0, 5, 0.999)
    assert (t.scheduler.factor, t.scheduler.patience, t.scheduler.threshold, t.scheduler.min_lr) == (0.6, 5, 0.2, 1e-6)
    assert (t.early_stopping.patience, t.early_stopping.min_delta) == (20, 1e-3)
    assert t.loss_coeffs == {"per_atom_energy": 1.0, "forces": 1.0, "stress": 0.0}
    assert t.backend == "numba" and t.dtype == "float64" and t.grad_clip is None
    # attribute and item access agree
    assert cfg["training"]["scheduler"]["factor"] == 0.6 == cfg.training.scheduler.factor
    # defaults are per instance (no shared mutable default)
    cfg.training.loss_coeffs["forces"] = 5.0
    assert load_config(MINIMAL).training.loss_coeffs["forces"] == 1.0


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError) as e:
        load_config(_with("training", learing_rate=0.1))
    assert str(e.value) == ("unknown key 'learing_rate' in section 'training'; did you mean 'learning_rate'?")
    with pytest.raises(ConfigError, match=r"'num_layer' in section 'model'; did you mean 'num_layers'"):
        load_config(_with("model", num_layer=3))
    with pytest.raises(ConfigError, match=r"section 'training.scheduler'; did you mean 'patience'"):
        load_config(_with("training", scheduler={"patiense": 3}))
    with pytest.raises(ConfigError, match=r"'trainig' in section 'top level'; did you mean 'training'"):
        load_config({**MINIMAL, "trainig": {}})


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        ("model", "r_max", -1.0, "model.r_max must be a positive number"),
        ("model", "r_max", "5", "model.r_max must be a positive number"),
        ("model", "num_layers", 2.5, "model.num_layers must be a positive integer"),
        ("model", "parity", 1, "model.parity must be true or false"),
        ("model", "model_dtype", "float16", r"model.model_dtype must be one of \['float64', 'float32'\]"),
        ("model", "avg_num_neighbors", None, "model.avg_num_neighbors must be"),
        ("model", "per_type_energy_scales", {"H": -1.0}, "model.per_type_energy_scales must be"),
        ("model", "pair_potential", {"type": "LJ"}, "type must be 'ZBL'"),
        ("model", "num_features", [32, 16, 8], "num_features has 3 entries; it needs l_max \\+ 1 = 2"),
        ("model", "per_edge_type_cutoff", {"H": 5.0}, "exceeds model.r_max"),
        ("training", "batch_size", 0, "training.batch_size must be a positive integer"),
        ("training", "ema_decay", 1.5, r"training.ema_decay must be a number in \[0, 1\]"),
        ("training", "backend", "cdua", "did you mean 'cuda'"),
        ("training", "loss_coeffs", {"force": 1.0}, "did you mean 'forces'"),
        ("training", "loss_coeffs", {"forces": 0.0}, "at least one positive"),
        ("data", "train", 1.5, "data.train must be a count"),
        ("data", "units", "ev", "data.units must be one of"),
    ],
)
def test_wrong_type_or_value(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_with(section, **{key: value}))


@pytest.mark.parametrize(
    "drop, match",
    [
        (("model", "r_max"), "missing required key 'r_max' in section 'model'"),
        (("model", "type_names"), "missing required key 'type_names' in section 'model'"),
        (("data", "path"), "data needs either 'path'"),
        (("data", None), "missing required section 'data'"),
    ],
)
def test_missing_required(drop, match):
    raw = {k: dict(v) for k, v in MINIMAL.items()}
    section, key = drop
    if key is None:
        del raw[section]
    else:
        del raw[section][key]
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_type_names_auto_resolved_from_stats():
    cfg = load_config(_with("model", type_names="auto"))
    stats = {
        "type_names": ["C", "H"],
        "num_neighbors_mean": 12.5,
        "per_type_forces_rms": {"C": 1.5, "H": 0.5},
        "per_atom_energy_mean": -3.25,
    }
    r = resolve_defaults(cfg, stats)
    assert r.model.type_names == ["C", "H"]
    assert r.model.avg_num_neighbors == 12.5
    assert r.model.per_type_energy_scales == {"C": 1.5, "H": 0.5}
    assert r.model.per_type_energy_shifts == -3.25
    assert cfg.model.type_names == "auto"  # the input is not modified


def test_resolve_defaults_derived_values():
    raw = _with("model", num_features=[16, 8], per_type_energy_shifts="isolated_atom_energies")
    raw["data"]["isolated_atom_energies"] = {"H": -13.6, "O": -432.0}
    raw["run_name"] = "w"
    r = resolve_defaults(load_config(raw))
    assert r.data.r_max == 4.0
    assert r.model.type_embed_num_features == 16 == r.model.readout_mlp_hidden_layers_width
    assert r.training.val_batch_size == 5 and r.training.output_dir.endswith("w")
    assert r.model.avg_num_neighbors == "num_neighbors_mean"
    assert r.model.per_type_energy_scales == "per_type_forces_rms"
    assert r.model.per_type_energy_shifts == {"H": -13.6, "O": -432.0}


def test_disable_optional_blocks():
    cfg = load_config(_with("training", scheduler=None, early_stopping=None, ema_decay=None))
    assert cfg.training.scheduler is None and cfg.training.early_stopping is None
    assert cfg.training.ema_decay is None


def test_yaml_round_trip(tmp_path):
    text = textwrap.dedent("""\
        run_name: aspirin
        model:
          type_names: [C, H, O]
          r_max: 5.0
          l_max: 2
          num_features: [32, 16, 8]
          avg_num_neighbors: {C: 10.0, H: 8.5, O: 9}
          per_type_energy_shifts: least_squares
          pair_potential: {type: ZBL, units: metal}
        data:
          path: aspirin.xyz
          train: 950
          val: 50
          test: 0
        training:
          learning_rate: 5e-3        # YAML 1.1 would read this as a string; we read a float
          amsgrad: true
          scheduler: {factor: 0.8, patience: 50}
          early_stopping: null
          loss_coeffs: {total_energy: 1, forces: 1000}
        """)
    path = tmp_path / "in.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.training.learning_rate == 5e-3
    assert cfg.training.scheduler.threshold == 0.2  # unspecified nested keys keep defaults
    assert cfg.training.loss_coeffs == {"total_energy": 1.0, "forces": 1000.0}  # replaced, not merged
    resolved = resolve_defaults(cfg)
    out = tmp_path / "resolved.yaml"
    dump_config(resolved, out)
    again = load_config(out)
    assert config_to_dict(again) == config_to_dict(resolved)
    assert yaml.safe_load(out.read_text())["model"]["avg_num_neighbors"] == {"C": 10.0, "H": 8.5, "O": 9.0}


def test_docs_example_config_loads(tmp_path):
    """The annotated example in docs/training.md is a valid config with the default values."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    block = re.search(r"```yaml\n(run_name:.*?)```", text, re.S).group(1)  # the full annotated config
    path = tmp_path / "example.yaml"
    path.write_text(block)
    cfg = load_config(path)
    defaults = load_config(
        {"run_name": "water", "model": {"type_names": ["H", "O"], "r_max": 4.5}, "data": {"path": "water.extxyz"}}
    )
    assert config_to_dict(cfg) == config_to_dict(defaults)


# -- one schema for the model options (model/config.py MODEL_OPTIONS) -------------------------------
@pytest.mark.parametrize(
    "key, value, match",
    [
        ("l_max", 9, "model.l_max must be an integer between 0 and 8"),
        ("polynomial_cutoff_p", 0.5, "model.polynomial_cutoff_p must be a number >= 2"),
        ("readout_mlp_nonlinearity", "relu", "model.readout_mlp_nonlinearity must be one of"),
        ("pair_potential", {"type": "ZBL", "polynomial_cutoff_p": 1}, "polynomial_cutoff_p must be a number >= 2"),
        ("per_type_energy_scales", {"H": 1.0}, "keys must be exactly the type names"),
    ],
)
def test_yaml_and_model_reject_the_same_values(key, value, match):
    from nequip_np.model.nequip import NequIPModel

    with pytest.raises(ConfigError, match=match):
        load_config(_with("model", **{key: value}))
    kw = dict(
        type_names=["H", "O"],
        r_max=4.0,
        avg_num_neighbors=3.0,
        num_layers=1,
        num_features=4,
        radial_mlp_width=4,
        **{key: value},
    )
    with pytest.raises(ValueError, match=match.replace("model.", "")):
        NequIPModel(**kw)


def test_model_section_is_the_model_schema():
    import dataclasses

    from nequip_np.model.config import MODEL_OPTIONS
    from nequip_np.train.config import ModelConfig

    # the model options, in their order, plus the one training-only key (fine-tuning's starting file)
    assert [f.name for f in dataclasses.fields(ModelConfig)] == [*MODEL_OPTIONS, "initial_model"]


def test_zbl_exponent_from_yaml_reaches_the_model():
    from nequip_np.model.nequip import NequIPModel

    cfg = resolve_defaults(
        _with(
            "model",
            pair_potential={"type": "ZBL", "units": "metal", "polynomial_cutoff_p": 8},
            avg_num_neighbors=3.0,
            per_type_energy_scales=None,
            per_type_energy_shifts=None,
            num_layers=1,
            num_features=4,
            radial_mlp_width=4,
        )
    )
    m = config_to_dict(cfg)["model"]
    assert m.pop("initial_model") is None  # a training key (fine-tuning), not a model option
    model = NequIPModel(**m)
    assert model.buffers["zbl_p"] == 8.0


def test_total_energy_and_per_atom_energy_are_distinct_loss_terms():
    cfg = load_config(_with("training", loss_coeffs={"total_energy": 1.0, "forces": 1.0}))
    assert cfg.training.loss_coeffs == {"total_energy": 1.0, "forces": 1.0}
    from nequip_np.train.trainer import _loss_coefficients

    c = _loss_coefficients(cfg.training, ["H", "O"])
    assert (c.total_energy, c.per_atom_energy) == (1.0, 0.0)


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        ("data", "key_mapping", {"REF_energy": "energie"}, "did you mean 'energy'"),
        ("training", "loss", "l2", "training.loss must be one of"),
        ("training", "per_type_forces_coeffs", {"H": 1.0}, "missing \\['O'\\]"),
        ("training", "per_type_forces_coeffs", {"H": 1.0, "O": 0.0}, "positive number"),
        ("training", "lr_scheduler", {"name": "cosine"}, "needs 'T_max'"),
        ("training", "huber_delta", -1.0, "positive number"),
    ],
)
def test_new_keys_are_checked(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_with(section, **{key: value}))


def test_separate_files_and_lr_scheduler():
    raw = {k: dict(v) for k, v in MINIMAL.items()}
    raw["data"] = {
        "train": ["a.xyz", "b.xyz"],
        "val": ["v1.xyz", "v2.xyz"],
        "test": None,
        "key_mapping": {"REF_energy": "total_energy", "dft_forces": "forces"},
    }
    raw["training"] = {"lr_scheduler": {"name": "cosine", "T_max": 10}}
    cfg = load_config(raw)
    assert cfg.data.val == ["v1.xyz", "v2.xyz"] and cfg.data.key_mapping["REF_energy"] == "energy"
    assert cfg.training.scheduler is None and cfg.training.lr_scheduler["T_max"] == 10
    with pytest.raises(ConfigError, match="data.val must be a file path"):
        load_config({**raw, "data": {"train": "a.xyz", "val": 0.1}})
    with pytest.raises(ConfigError, match="leave data.path out"):
        load_config({**raw, "data": {"path": "a.xyz", "val": "v.xyz"}})
    with pytest.raises(ConfigError, match="both set"):
        load_config({**raw, "training": {"lr_scheduler": {"name": "step", "step_size": 2}, "scheduler": {}}})


def test_docs_lr_scheduler_example_loads():
    """The warm-up + cosine example in docs/training.md is valid and gives a warm-up then a decay."""
    import re
    from pathlib import Path
    from types import SimpleNamespace

    from nequip_np.train.schedule import build_lr_scheduler

    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    block = re.search(r"```yaml\n(training:\n  learning_rate.*?)```", text, re.S).group(1)
    cfg = load_config({**MINIMAL, **yaml.safe_load(block)})
    opt = SimpleNamespace(lr=cfg.training.learning_rate)
    sched = build_lr_scheduler(cfg.training.lr_scheduler, opt)
    lrs = [opt.lr] + [(sched.step(), opt.lr)[1] for _ in range(10)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[5] == pytest.approx(0.01) and lrs[10] < lrs[5]
