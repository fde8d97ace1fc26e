"""Training on real datasets: separate files, several validation sets, key_mapping, virial → stress,
bad-input errors before training, the memory-mapped frame store (streamed run bit-identical to the
in-memory one), lr schedules in the trainer (bit-for-bit resume), per-element metrics, plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from nequip_np.cli import main
from nequip_np.data.dataset import read_frames
from nequip_np.data.store import FrameStore, prepare_store
from nequip_np.train.trainer import Trainer

DATA = Path(__file__).resolve().parents[1] / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"


def _renamed(tmp_path, n=8, start=0, name="ref.extxyz"):
    """Aspirin frames with labels under DFT-workflow names (REF_energy in info, dft_forces in arrays)."""
    frames = read(DATA, f"{start}:{start + n}")
    for a in frames:
        a.info["REF_energy"] = a.get_potential_energy()
        a.arrays["dft_forces"] = a.get_forces()
        a.calc = None
    path = tmp_path / name
    write(path, frames, format="extxyz")
    return path


def _config(tmp_path, data, **training):
    return {
        "run_name": "t",
        "model": {
            "type_names": ["H", "C", "O"],
            "r_max": 3.0,
            "num_layers": 1,
            "l_max": 1,
            "num_features": 4,
            "radial_mlp_width": 8,
            "per_type_energy_shifts": "least_squares",
        },
        "data": data,
        "training": {
            "batch_size": 3,
            "max_epochs": 2,
            "learning_rate": 0.01,
            "early_stopping": None,
            "output_dir": str(tmp_path / "run"),
            **training,
        },
    }


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


KM = {"REF_energy": "energy", "dft_forces": "forces"}


def test_key_mapping_reads_renamed_labels(tmp_path):
    path = _renamed(tmp_path, n=3)
    ref = read(DATA, ":3")
    frames = read_frames(path, key_mapping=KM, require=("energy", "forces"))
    for a, r in zip(frames, ref):
        assert a.get_potential_energy() == r.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), r.get_forces())
    with pytest.raises(ValueError, match="no 'energy' label"):
        read_frames(path, require=("energy",))  # without the mapping the label is not found


def test_virial_becomes_stress_with_nequips_sign(tmp_path):
    a = bulk("Si", "diamond", a=5.43)
    a.rattle(0.02, seed=1)
    virial = np.array([[0.3, 0.01, 0.0], [0.01, -0.2, 0.02], [0.0, 0.02, 0.1]])
    a.info["REF_virial"] = virial.ravel()
    a.info["REF_energy"] = -10.0
    a.arrays["f"] = np.zeros((len(a), 3))
    write(tmp_path / "s.extxyz", [a])
    (f,) = read_frames(
        tmp_path / "s.extxyz", key_mapping={"REF_virial": "virial", "REF_energy": "energy", "f": "forces"}
    )
    stress = np.asarray(f.calc.results["stress"]).reshape(3, 3)
    np.testing.assert_allclose(stress, -virial / a.get_volume(), rtol=1e-14)  # virial = -stress * volume


def test_several_validation_sets_are_reported_separately_with_per_element_columns(tmp_path):
    data = {
        "train": [str(_renamed(tmp_path, 4, 0, "a.xyz")), str(_renamed(tmp_path, 3, 4, "b.xyz"))],
        "val": [str(_renamed(tmp_path, 3, 20, "v0.xyz")), str(_renamed(tmp_path, 2, 40, "v1.xyz"))],
        "test": str(_renamed(tmp_path, 2, 60, "t.xyz")),
        "key_mapping": KM,
    }
    t = Trainer(_config(tmp_path, data, max_epochs=1), progress=False)
    assert len(t.train_set) == 7 and [(n, len(d)) for n, d in t.val_sets] == [("val", 3), ("val1", 2)]
    result = t.train()
    (row,) = _rows(t.out / "metrics.csv")
    for p in ("val", "val1"):
        for col in ("loss", "forces_mae", "energy_mae", "forces_mae_H", "forces_rmse_C", "forces_mae_O"):
            assert float(row[f"{p}_{col}"]) > 0, f"{p}_{col}"
    assert row["val_loss"] != row["val1_loss"]
    assert "forces_mae_H" in result["test"]


def _write_subset(tmp_path, n=10):
    path = tmp_path / "small.extxyz"
    write(path, read(DATA, f":{n}"), format="extxyz")
    return path


@pytest.mark.parametrize("cache_edges", [False, True], ids=["nl_per_batch", "nl_cached"])
def test_streamed_run_is_bit_identical_to_in_memory_run(tmp_path, cache_edges):
    src = _write_subset(tmp_path)
    store = prepare_store([src], tmp_path / "small.frames", r_max=3.0 if cache_edges else None)
    assert store.edges_cached_for(3.0, None) is cache_edges
    split = {"train": 6, "val": 2, "test": 2, "split_seed": 3}
    runs = {}
    for name, path in (("memory", src), ("streamed", store.path)):
        t = Trainer(_config(tmp_path / name, {"path": str(path), **split}), progress=False)
        t.train()
        runs[name] = t
    a, b = runs["memory"], runs["streamed"]
    assert type(b.train_set).__name__ == "StreamedDataset"
    assert a.stats == b.stats
    for k, v in a.model.params.items():
        np.testing.assert_array_equal(b.model.params[k], v, err_msg=k)
    assert (a.out / "metrics.csv").read_text() == (b.out / "metrics.csv").read_text()


def test_frame_store_round_trip_and_no_silent_overwrite(tmp_path):
    src = _write_subset(tmp_path, 4)
    out = tmp_path / "s.frames"
    assert main(["prepare-data", str(src), "-o", str(out), "--r-max", "3.0"]) == 0
    store = FrameStore(out)
    frames = read(src, ":")
    assert len(store) == 4 and store.n_atoms == sum(len(a) for a in frames)
    g = store.graph(3, ["H", "C", "O"], 3.0)
    np.testing.assert_array_equal(g.pos, frames[3].positions)
    np.testing.assert_array_equal(g.forces, frames[3].get_forces())
    o = store.array("offsets")  # positioned reads equal the memory-mapped arrays
    np.testing.assert_array_equal(store.array("positions")[o[3] : o[4]], g.pos)
    np.testing.assert_array_equal(
        store.array("edge_index")[store.array("edge_offsets")[3] :].T[:, : g.n_edges], g.edge_index
    )
    assert main(["prepare-data", str(src), "-o", str(out)]) == 2  # exists: refused, store intact
    assert len(FrameStore(out)) == 4


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_key", "has no key 'REF_energyy'"),
        ("label_shape", r"forces label has shape \(3,\); expected \(21, 3\)"),
        ("empty_file", "is empty"),
        ("unknown_species", r"species \['N'\] are not in model.type_names"),
        ("per_type_coeffs_missing_type", r"per_type_forces_coeffs .* missing \['O'\]"),
    ],
)
def test_bad_inputs_fail_before_training(tmp_path, case, message):
    data = {"train": str(_renamed(tmp_path, 3)), "key_mapping": dict(KM)}
    training = {}
    if case == "missing_key":
        data["key_mapping"] = {"REF_energyy": "energy", "dft_forces": "forces"}
    elif case == "label_shape":
        frames = read(data["train"], ":")
        for a in frames:
            a.info["bad_forces"] = np.ones(3)  # a per-frame vector where per-atom forces belong
        write(tmp_path / "bad.xyz", frames)
        data = {"train": str(tmp_path / "bad.xyz"), "key_mapping": {"REF_energy": "energy", "bad_forces": "forces"}}
    elif case == "empty_file":
        (tmp_path / "empty.xyz").write_text("")
        data["val"] = str(tmp_path / "empty.xyz")
    elif case == "unknown_species":
        frames = read(data["train"], ":")
        frames[2].numbers[0] = 7
        write(tmp_path / "n.xyz", frames)
        data["val"] = str(tmp_path / "n.xyz")
    elif case == "per_type_coeffs_missing_type":
        training = {"per_type_forces_coeffs": {"H": 2.0, "C": 1.0}}
    with pytest.raises(ValueError, match=message):
        Trainer(_config(tmp_path, data, **training), progress=False)
    assert not (tmp_path / "run").exists()  # nothing was started


def test_lr_schedule_in_training_resumes_bit_for_bit(tmp_path):
    src = _write_subset(tmp_path)
    sched = {
        "name": "sequential",
        "milestones": [2],
        "schedulers": [{"name": "linear", "start_factor": 0.2, "total_iters": 2}, {"name": "cosine", "T_max": 4}],
    }
    kw = dict(lr_scheduler=sched, lr_scheduler_interval="step", max_epochs=3, loss="huber", huber_delta=0.5)
    data = {"path": str(src), "train": 6, "val": 2, "test": 2}
    ref = Trainer(_config(tmp_path / "a", data, **kw), progress=False)
    ref.train()
    part = Trainer(_config(tmp_path / "b", data, **{**kw, "max_epochs": 2}), progress=False)
    part.train()
    resumed = Trainer(_config(tmp_path / "b", data, **kw), progress=False)
    resumed.load_checkpoint(resumed.out / "last.ckpt.npz")
    resumed.train()
    for k, v in ref.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], v, err_msg=k)
    lrs = [float(r["lr"]) for r in _rows(ref.out / "metrics.csv")]
    assert lrs == [float(r["lr"]) for r in _rows(resumed.out / "metrics.csv")]
    assert lrs[0] == pytest.approx(0.002) and lrs[1] == pytest.approx(0.01)  # warm-up: 2 steps per epoch


def test_plot_and_per_element_evaluate(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    src = _write_subset(tmp_path, 6)
    t = Trainer(_config(tmp_path, {"path": str(src), "train": 4, "val": 2, "test": 0}), progress=False)
    t.train()
    assert main(["plot", str(t.out), "--data", str(src)]) == 0
    for png in ("metrics.png", "parity_per_element.png"):
        assert (t.out / png).stat().st_size > 5000, png
    assert main(["evaluate", str(t.out / "model.npz"), str(src), "--output", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert " H " in out and " O " in out  # per-element force rows
    import json

    m = json.loads((tmp_path / "m.json").read_text())
    assert m["forces_mae_H"] > 0 and m["forces_rmse_O"] > 0
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
