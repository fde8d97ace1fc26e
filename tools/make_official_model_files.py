#!/usr/bin/env python
"""Official nequip model files (``.ckpt`` and ``.nequip.zip``) for the torch-free reader's tests.

Needs torch and nequip 0.19.1 (see ``docs/interop.md``); run from the repository root::

    python tools/make_official_model_files.py [--out tests/fixtures/official]

Each architecture is trained by ``nequip-train`` itself for one epoch (2 steps) on 4 aspirin frames of
``../shared/data/aspirin_xtb_500K.extxyz``, so the checkpoint is exactly what a user's run writes
(EMA weights included); ``nequip-package build`` then makes the package. Per architecture ``NAME``:

* ``NAME.ckpt`` — ``last.ckpt`` of the run, unchanged.
* ``NAME.nequip.zip`` — the package. ``perl`` is kept as written (stored entries); the others are
  re-zipped with deflate (same entries, same bytes inside) to keep the repository small — official
  nequip reads them (checked below), and the reader is tested on both layouts.
* ``NAME_ref.npz`` — ``input/sK/…`` (structure and nequip's own neighbour list) and
  ``ckpt/sK/{atomic_energy,total_energy,forces,virial,stress}`` from ``ModelFromCheckpoint`` (EMA
  weights), ``package/sK/…`` from ``ModelFromPackage``, ``live/sK/…`` from the live (non-EMA) weights
  where they differ, and ``kwargs`` (JSON of the NequIPGNNModel options).

``finetuned`` starts from ``perl.ckpt`` (``ModelFromCheckpoint``) with ``modify_PerTypeScaleShift``
(new trainable per-type shifts) and trains on other frames — the fine-tuning route of the nequip docs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_nequip_fixtures import make_data, make_structures, run_model, structure_arrays  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "aspirin_xtb_500K.extxyz"
HCO = ["H", "C", "O"]
BIN = Path(sys.executable).parent

ARCHS = {
    "perl": dict(num_layers=2, l_max=2, parity=True, num_features=[6, 4, 2], radial_mlp_width=8),
    "edgecut": dict(
        num_layers=2,
        l_max=1,
        parity=False,
        num_features=4,
        radial_mlp_width=8,
        per_edge_type_cutoff={"H": 2.6, "C": {"H": 3.0, "C": 3.6, "O": 3.2}, "O": 3.3},
    ),
    "zbl": dict(
        num_layers=2,
        l_max=1,
        num_features=4,
        radial_mlp_width=8,
        polynomial_cutoff_p=5,
        pair_potential={"_target_": "nequip.nn.pair_potential.ZBL", "units": "metal", "chemical_species": HCO},
    ),
    "f32": dict(num_layers=2, l_max=1, num_features=4, radial_mlp_width=8, model_dtype="float32"),
    "trainable": dict(
        num_layers=2,
        l_max=1,
        num_features=4,
        radial_mlp_width=8,
        type_embed_num_features=3,
        num_bessels=6,
        bessel_trainable=True,
        readout_mlp_hidden_layers_depth=1,
        readout_mlp_hidden_layers_width=4,
        per_type_energy_scales={"H": 0.9, "C": 1.3, "O": 1.1},
        per_type_energy_shifts={"H": -10.0, "C": -48.0, "O": -70.0},
        per_type_energy_scales_trainable=True,
        per_type_energy_shifts_trainable=True,
    ),
}
PLAIN_MODULE = {"f32"}  # NequIPLightningModule (no EMA); all others EMALightningModule


def base_config(data_file, run_dir, model, ema=True, lr=0.01):
    tm = (
        {"_target_": "nequip.train.EMALightningModule", "ema_decay": 0.9}
        if ema
        else {"_target_": "nequip.train.NequIPLightningModule"}
    )
    tm.update(
        {
            "loss": {
                "_target_": "nequip.train.EnergyForceLoss",
                "per_atom_energy": True,
                "coeffs": {"total_energy": 1.0, "forces": 1.0},
            },
            "val_metrics": {"_target_": "nequip.train.EnergyForceMetrics"},
            "optimizer": {"_target_": "torch.optim.Adam", "lr": lr},
            "model": model,
        }
    )
    return {
        "run": ["train"],
        "data": {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 1,
            "train_file_path": str(data_file),
            "val_file_path": str(data_file),
            "transforms": [
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": 4.0},
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": HCO,
                    "chemical_species_to_atom_type_map": {t: t for t in HCO},
                },
            ],
            "train_dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": 2},
            "val_dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": 4},
            "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": HCO},
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "max_epochs": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "logger": False,
            "callbacks": [
                {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "dirpath": str(run_dir), "save_last": True}
            ],
        },
        "training_module": tm,
        "global_options": {"allow_tf32": False},
    }


def nequip_model(name, **extra):
    kw = {
        "_target_": "nequip.model.NequIPGNNModel",
        "seed": 100 + len(name),
        "model_dtype": "float64",
        "type_names": HCO,
        "r_max": 4.0,
        "avg_num_neighbors": 10.5,
        "per_type_energy_shifts": -51.3,
        "per_type_energy_scales": 1.3,
    }
    kw.update(extra)
    return kw


def train(cfg, work: Path, tag: str) -> Path:
    run_dir = work / f"run_{tag}"
    cfg["trainer"]["callbacks"][0]["dirpath"] = str(run_dir)
    (work / f"{tag}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run(
        [str(BIN / "nequip-train"), "-cp", str(work), "-cn", f"{tag}.yaml", f"hydra.run.dir={run_dir}"],
        check=True,
        capture_output=True,
    )
    return run_dir / "last.ckpt"


def package(ckpt: Path, out: Path, deflate: bool) -> None:
    tmp = out.with_name("tmp_" + out.name)  # nequip-package wants the .nequip.zip ending
    subprocess.run([str(BIN / "nequip-package"), "build", str(ckpt), str(tmp)], check=True, capture_output=True)
    if not deflate:
        shutil.move(tmp, out)
        return
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    tmp.unlink()


def frames(path: Path, idx) -> None:
    import ase.io

    ase.io.write(path, [ase.io.read(DATA, index=i) for i in idx])


def sole(model):
    return model["sole_model"] if isinstance(model, torch.nn.ModuleDict) else model


def outputs(model, structs, kwargs, prefix):
    model = sole(model)
    out = {}
    for k, st in enumerate(structs):
        data = make_data(st, kwargs)
        res, _ = run_model(model, data, want_debug=False)
        out.update({f"{prefix}/s{k}/{n}": v for n, v in res.items()})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "official"))
    ap.add_argument("--retrain", action="store_true", help="train again even where OUT/NAME.ckpt exists")
    args = ap.parse_args(argv)
    from nequip.model import ModelFromCheckpoint, ModelFromPackage
    from nequip.utils.global_state import set_global_state

    set_global_state()
    torch.set_default_dtype(torch.float64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="official_models_"))
    frames(work / "train.extxyz", [0, 40, 80, 120])
    frames(work / "finetune.extxyz", [500, 700, 900, 1100])
    rng = np.random.default_rng(20261129)
    structs = make_structures(rng, 3)
    jobs = [
        (name, base_config(work / "train.extxyz", None, nequip_model(name, **kw), ema=name not in PLAIN_MODULE))
        for name, kw in ARCHS.items()
    ]
    for name, cfg in jobs + [("finetuned", None)]:
        if name == "finetuned":  # fine-tuning route of the nequip docs, from the committed perl.ckpt
            shutil.copy(out / "perl.ckpt", work / "perl.ckpt")
            model = {
                "_target_": "nequip.model.modify",
                "modifiers": [
                    {
                        "modifier": "modify_PerTypeScaleShift",
                        "shifts": {"H": -11.0, "C": -47.5, "O": -69.0},
                        "shifts_trainable": True,
                    }
                ],
                "model": {"_target_": "nequip.model.ModelFromCheckpoint", "checkpoint_path": str(work / "perl.ckpt")},
            }
            cfg = base_config(work / "finetune.extxyz", None, model, lr=0.002)
        if args.retrain or not (out / f"{name}.ckpt").exists():
            print(f"{name}: training", flush=True)
            shutil.copy(train(cfg, work, name), out / f"{name}.ckpt")
            (out / f"{name}.nequip.zip").unlink(missing_ok=True)
        if not (out / f"{name}.nequip.zip").exists():
            package(out / f"{name}.ckpt", out / f"{name}.nequip.zip", deflate=name != "perl")
        kwargs = dict(ARCHS.get(name, ARCHS["perl"]), type_names=HCO, r_max=4.0)
        ref = {"kwargs": np.array(json.dumps(kwargs))}
        for k, st in enumerate(structs):
            ref.update(structure_arrays(f"s{k}", make_data(st, kwargs)))
        ref.update(outputs(ModelFromCheckpoint(str(out / f"{name}.ckpt")), structs, kwargs, "ckpt"))
        ref.update(outputs(ModelFromPackage(str(out / f"{name}.nequip.zip")), structs, kwargs, "package"))
        ck = torch.load(out / f"{name}.ckpt", weights_only=False)
        if any(k.startswith("ema.") for k in ck["state_dict"]):  # live weights: the model without the EMA swap
            from nequip.train.lightning import NequIPLightningModule  # noqa: F401

            live = sole(ModelFromCheckpoint(str(out / f"{name}.ckpt")))
            sd = {
                k[len("model.sole_model.") :]: v
                for k, v in ck["state_dict"].items()
                if k.startswith("model.sole_model.")
            }
            live.load_state_dict(sd)
            ref.update(outputs(live, structs, kwargs, "live"))
        for k in range(len(structs)):
            d = np.max(np.abs(ref[f"ckpt/s{k}/forces"] - ref[f"package/s{k}/forces"]))
            assert d == 0.0 or name == "f32" and d < 1e-5, (name, d)
        np.savez_compressed(out / f"{name}_ref.npz", **ref)
        print(f"{name}: {', '.join(f'{p.name} {p.stat().st_size // 1024} KiB' for p in sorted(out.glob(name + '*')))}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
