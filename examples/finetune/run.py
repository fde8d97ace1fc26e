"""Fine-tuning walk-through (docs/training.md): a pretrained model adapted to few frames with another energy zero.

    python examples/finetune/run.py [--workdir runs/finetune_example]

1. *Pretrain* a small model on 100 frames of the shipped aspirin set (30 epochs).
2. *New data*: 10 other frames whose energies carry a different per-element reference
   (E' = E + Σ_i δ[t_i], δ = +0.35 / -1.10 / +0.70 eV for H / C / O) — what a different DFT setup or
   code does to a dataset. Forces are unchanged.
3. Train on the 10 frames three ways, 20 epochs each, same seed: from scratch; fine-tuned keeping the
   pretrained shifts; fine-tuned with shifts re-fitted by least squares (``modify_PerTypeScaleShift``'s
   role in official nequip). Test on 50 held-out frames of the new data, before the first step and
   after the last.

About a minute of CPU (numpy backend).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"
DELTA = {"H": 0.35, "C": -1.10, "O": 0.70}
MODEL = {
    "type_names": ["H", "C", "O"],
    "r_max": 4.0,
    "num_layers": 2,
    "l_max": 1,
    "num_features": 8,
    "radial_mlp_width": 16,
    "per_type_energy_shifts": "least_squares",
    "seed": 0,
}


def write_frames(path, frames, delta=None):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    out = []
    for a in frames:
        e, f = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        if delta:
            e += sum(delta[s] for s in a.get_chemical_symbols())
        b.calc = SinglePointCalculator(b, energy=e, forces=f)
        out.append(b)
    write(path, out, format="extxyz")


def train(cfg, out):
    from nequip_np.train.trainer import Trainer

    t0 = time.time()
    tr = Trainer(cfg, output_dir=out, progress=False)
    before = tr.evaluate(tr.test_set) if len(tr.test_set) else None  # the starting model, no step taken
    res = tr.train()
    return before, res.get("test"), time.time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/finetune_example")
    ap.add_argument("--pretrain-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args(argv)
    from ase.io import read

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    frames = read(DATA, ":")
    write_frames(work / "pretrain.extxyz", frames[:100])
    write_frames(work / "new.extxyz", frames[200:260], DELTA)  # 10 train + 50 test, other energy zero
    base = {
        "training": {
            "batch_size": 4,
            "learning_rate": 0.01,
            "ema_decay": 0.99,
            "early_stopping": None,
            "loss_coeffs": {"per_atom_energy": 1.0, "forces": 1.0},
            "seed": 0,
        }
    }
    pre = {
        "run_name": "pretrain",
        "model": MODEL,
        "data": {"path": str(work / "pretrain.extxyz"), "train": 100, "val": 0, "test": 0},
        "training": {**base["training"], "max_epochs": args.pretrain_epochs},
    }
    _, _, t_pre = train(pre, work / "pretrain")
    new_data = {"path": str(work / "new.extxyz"), "train": 10, "val": 0, "test": 50, "split_seed": 1}
    small = {**base["training"], "max_epochs": args.epochs}
    runs = {
        "from scratch (lr 1e-2)": {"model": MODEL, "training": small},
        "fine-tuned, shifts kept (lr 2e-3)": {
            "model": {"initial_model": str(work / "pretrain" / "model.npz")},
            "training": {**small, "learning_rate": 0.002},
        },
        "fine-tuned, shifts re-fitted (lr 2e-3)": {
            "model": {"initial_model": str(work / "pretrain" / "model.npz"), "per_type_energy_shifts": "least_squares"},
            "training": {**small, "learning_rate": 0.002},
        },
    }
    rows = {"pretrain_seconds": round(t_pre, 1)}
    for i, (name, cfg) in enumerate(runs.items()):
        before, test, secs = train({"run_name": f"run{i}", "data": new_data, **cfg}, work / f"run{i}")
        rows[name] = {
            "start_E_MAE_meV_per_atom": 1e3 * before["per_atom_energy_mae"],
            "start_F_MAE_meV_per_A": 1e3 * before["forces_mae"],
            "E_MAE_meV_per_atom": 1e3 * test["per_atom_energy_mae"],
            "F_MAE_meV_per_A": 1e3 * test["forces_mae"],
            "seconds": round(secs, 1),
        }
        r = rows[name]
        print(
            f"{name:<40} E MAE {r['start_E_MAE_meV_per_atom']:8.1f} -> {r['E_MAE_meV_per_atom']:6.1f} meV/atom"
            f"   F MAE {r['start_F_MAE_meV_per_A']:6.0f} -> {r['F_MAE_meV_per_A']:5.0f} meV/Å   {secs:5.1f} s",
            flush=True,
        )
    (work / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
