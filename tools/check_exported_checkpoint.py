#!/usr/bin/env python
"""Check that checkpoints written by ``nequip-np export`` load in official nequip and give the same numbers.

Two steps, two environments (run from the repository root)::

    # 1. in the nequip-np environment (no torch): export every model of tests/fixtures/nequip/ and
    #    tests/fixtures/official/, evaluate it here, store graphs + our outputs
    python tools/check_exported_checkpoint.py export /tmp/exported
    # 2. in an environment with torch + nequip 0.19.1: ModelFromCheckpoint on each exported file,
    #    the same graphs, compare energies, atomic energies, forces and virials (stress = -virial/V)
    python tools/check_exported_checkpoint.py verify /tmp/exported

``verify`` prints one line per model with the largest relative differences and exits 1 if any
exceeds 1e-10 (float64 models) or 1e-5 (float32). Lightning loads the state_dict strictly, so a file
that loads has exactly the entries official nequip's model has. With ``--package [NAME…]`` it checks that
``nequip-package build`` accepts the exported file (for models with H, C and O, whose checkpoints
name the shipped aspirin frames as their example data).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ASPIRIN = REPO / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"


def export(out: Path) -> None:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from nequip_fixtures import graph_from_fixture, structures

    from nequip_np.interop.export_ckpt import export_checkpoint
    from nequip_np.interop.model_file import load_any_model

    out.mkdir(parents=True, exist_ok=True)
    sources = sorted((REPO / "tests/fixtures/nequip").glob("model_*.npz"))
    sources += sorted((REPO / "tests/fixtures/official").glob("*.ckpt"))
    for src in sources:
        model = load_any_model(src)
        name = src.stem
        data = ASPIRIN if {"H", "C", "O"} <= set(model.config.type_names) else None  # example structure
        export_checkpoint(model, out / f"{name}.ckpt", data_file=data)
        ref_src = src if src.suffix == ".npz" else src.with_name(f"{name}_ref.npz")
        arrays = {"dtype": np.array(model.config.model_dtype), "has_data": np.array(data is not None)}
        with np.load(ref_src) as data:
            for s in structures(data):
                g = graph_from_fixture(data, s)
                res = model.compute(g)
                arrays.update(
                    {
                        f"input/{s}/{k}": data[f"input/{s}/{k}"]
                        for k in ("pos", "atom_types", "cell", "pbc", "edge_index", "edge_cell_shift")
                    }
                )
                arrays[f"ours/{s}/total_energy"] = np.asarray(res["total_energy"]).reshape(())
                arrays[f"ours/{s}/forces"] = np.asarray(res["forces"])
                arrays[f"ours/{s}/virial"] = np.asarray(res["virial"][0])
                arrays[f"ours/{s}/atomic_energy"] = np.asarray(res["atomic_energy"])
        np.savez(out / f"{name}_ours.npz", **arrays)
        print(f"exported {name}")


def verify(out: Path, package) -> int:
    import torch
    from nequip.data import from_dict
    from nequip.model import ModelFromCheckpoint
    from nequip.utils.global_state import set_global_state

    set_global_state()
    torch.set_default_dtype(torch.float64)
    worst = 0
    rows = []
    for ck in sorted(out.glob("*.ckpt")):
        model = ModelFromCheckpoint(str(ck))
        model = model["sole_model"] if isinstance(model, torch.nn.ModuleDict) else model
        ours = np.load(ck.with_name(f"{ck.stem}_ours.npz"))
        tol = 1e-5 if str(ours["dtype"]) == "float32" else 1e-10
        errs = {"E": 0.0, "F": 0.0, "virial": 0.0, "atomic_E": 0.0}
        for s in sorted({k.split("/")[1] for k in ours.files if k.startswith("input/")}):
            g = {
                k: ours[f"input/{s}/{k}"] for k in ("pos", "atom_types", "cell", "pbc", "edge_index", "edge_cell_shift")
            }
            d = from_dict({**g, "cell": g["cell"].reshape(3, 3)})
            res = model(d)
            for key, name in (
                ("total_energy", "E"),
                ("forces", "F"),
                ("virial", "virial"),
                ("atomic_energy", "atomic_E"),
            ):
                ref = res[key].detach().double().numpy().reshape(ours[f"ours/{s}/{key}"].shape)
                scale = max(np.max(np.abs(ref)), 1e-300)
                errs[name] = max(errs[name], float(np.max(np.abs(ref - ours[f"ours/{s}/{key}"])) / scale))
        ok = max(errs.values()) <= tol
        worst |= not ok
        line = f"{ck.stem:<16} {ours['dtype']!s:<8} " + "  ".join(f"{k} {v:.1e}" for k, v in errs.items())
        if package is not None and (not package or ck.stem in package) and bool(ours["has_data"]):
            r = subprocess.run(
                ["nequip-package", "build", str(ck), str(out / f"{ck.stem}.nequip.zip")], capture_output=True, text=True
            )
            line += "  package " + ("ok" if r.returncode == 0 else "FAILED: " + r.stderr.strip()[-300:])
            worst |= r.returncode != 0
        rows.append(line + ("" if ok else "  EXCEEDS " + str(tol)))
        print(rows[-1], flush=True)
    (out / "verify.json").write_text(json.dumps(rows, indent=1))
    return int(worst)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["export", "verify"])
    ap.add_argument("out", type=Path)
    ap.add_argument(
        "--package",
        nargs="*",
        default=None,
        metavar="NAME",
        help="verify: also run nequip-package build (on the named models; all if none named)",
    )
    args = ap.parse_args(argv)
    if args.step == "export":
        export(args.out)
        return 0
    return verify(args.out, args.package)


if __name__ == "__main__":
    sys.exit(main())
