"""NVE energy conservation of a trained aspirin model (C9H8O4, 21 atoms), float64.

Three stages, each skipped when its output exists (so a long run can be resumed stage by stage):

1. ``train``: a small NequIP model (``TRAIN_CONFIG`` below) trained with nequip_np's Trainer on the
   GFN2-xTB 500 K aspirin trajectory (``../shared/data/aspirin_xtb_500K.extxyz`` beside the repository, 2000 frames);
2. ``md``: Velocity Verlet, ``--timestep`` fs (0.25), ``--steps`` steps (40 000 = 10 ps), starting from
   frame ``--frame`` of the dataset with its stored momenta (a 500 K Langevin snapshot), with the
   project calculator (neighbour list reused with a 0.5 Å skin); total energy every ``--sample``
   steps to ``<out>/nve_aspirin_energies.npy`` (checkpointed as it goes);
3. ``analyse``: drift = slope of a linear fit of E_tot(t) (meV/atom/ps) and fluctuation = RMS of the
   residual about that fit (meV/atom); results JSON in ``benchmarks/results/`` and the plot
   ``docs/figures/nve_aspirin.png``.

Usage::

    python benchmarks/nve_aspirin.py                     # all stages, 10 ps
    python benchmarks/nve_aspirin.py --steps 8000        # 2 ps
    python benchmarks/nve_aspirin.py --stage train       # only train the model

Targets (docs/md.md): |drift| < 0.1 meV/atom/ps, fluctuation RMS < 1 meV/atom.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(
    os.environ.get("ASPIRIN_XTB", Path(__file__).resolve().parents[2] / "shared" / "data" / "aspirin_xtb_500K.extxyz")
)

#: the model: examples/aspirin/train.yaml with 500 training frames, 8 epochs and a shorter EMA (what fits a shared 2-core machine)
TRAIN_CONFIG = {
    "run_name": "nve_aspirin",
    "model": {
        "type_names": ["H", "C", "O"],
        "r_max": 4.0,
        "num_layers": 3,
        "l_max": 1,
        "parity": True,
        "num_features": 16,
        "radial_mlp_depth": 1,
        "radial_mlp_width": 32,
        "num_bessels": 8,
        "polynomial_cutoff_p": 6,
        "avg_num_neighbors": "auto",
        "per_type_energy_shifts": "least_squares",
        "per_type_energy_scales": "auto",
        "model_dtype": "float64",
        "seed": 0,
    },
    "data": {"path": str(DATA), "train": 500, "val": 50, "test": 100, "split_seed": 1},
    "training": {
        "learning_rate": 0.01,
        "batch_size": 5,
        "max_epochs": 8,
        "ema_decay": 0.99,
        "scheduler": {"factor": 0.6, "patience": 5, "threshold": 0.2, "min_lr": 1.0e-6},
        "early_stopping": None,
        "loss_coeffs": {"per_atom_energy": 1.0, "forces": 1.0},
        "seed": 0,
        "backend": "numpy",
    },
}


def pick_backend(model_path) -> str:
    """numba when it is available, agrees with numpy to 1e-10 and is faster on this molecule; else numpy."""
    from nequip_np.calculator import NequIPCalculator
    from nequip_np.kernels.registry import available_backends

    if "numba" not in available_backends():
        return "numpy"
    from ase.io import read

    atoms = read(DATA, 0)
    timing, energies = {}, {}
    for backend in ("numpy", "numba"):
        try:
            calc = NequIPCalculator(model_path, backend=backend, skin=0.0)
            atoms.calc = calc
            atoms.get_forces()  # compile / warm up
            t0 = time.perf_counter()
            for k in range(5):
                atoms.positions[0, 0] += 1e-4 * (-1) ** k
                energies[backend] = atoms.get_potential_energy()
                atoms.get_forces()
            timing[backend] = (time.perf_counter() - t0) / 5
        except Exception as exc:  # noqa: BLE001 - a broken backend is reported and skipped
            print(f"backend {backend} unusable: {exc}")
            timing[backend] = np.inf
    ok = np.isfinite(timing["numba"]) and abs(energies["numba"] - energies["numpy"]) < 1e-10 * len(atoms)
    choice = "numba" if ok and timing["numba"] < timing["numpy"] else "numpy"
    print(f"per-step time: {', '.join(f'{k} {1e3 * v:.1f} ms' for k, v in timing.items())} -> {choice}")
    return choice


def train(out: Path, epochs: int) -> Path:
    """Train (or resume from ``out/last.ckpt.npz``) up to ``epochs`` epochs; returns the model path."""
    from nequip_np.train.trainer import Trainer

    model = out / "model.npz"
    if model.exists():
        print(f"using the trained model {model}")
        return model
    cfg = json.loads(json.dumps(TRAIN_CONFIG))
    cfg["training"]["output_dir"] = str(out)
    cfg["training"]["max_epochs"] = epochs
    trainer = Trainer(cfg, progress=False)
    if (out / "last.ckpt.npz").exists():
        trainer.load_checkpoint(out / "last.ckpt.npz")
        print(f"resuming training at epoch {trainer.epoch}")
    result = trainer.train()
    (out / "train_summary.json").write_text(json.dumps(result, indent=2, default=float))
    print(f"trained {result['epochs']} epochs: {result.get('test', {})}")
    return model


def run_nve(model_path: Path, out: Path, steps: int, dt_fs: float, frame: int, sample: int, backend: str):
    """Velocity Verlet from a dataset frame with its momenta; saves (time fs, Epot, Ekin) every ``sample``.

    Rows go to ``out/nve_aspirin_energies.npy`` and the run's bookkeeping to ``out/nve_run.json``
    every 1600 steps, so a run stopped early can still be analysed (``--stage analyse``).
    """
    from ase import units
    from ase.io import read
    from ase.md.verlet import VelocityVerlet

    from nequip_np.calculator import NequIPCalculator

    atoms = read(DATA, frame)
    momenta = atoms.get_momenta()
    calc = NequIPCalculator(model_path, backend=backend, skin=0.5)
    atoms.calc = calc
    atoms.set_momenta(momenta)
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    rows = []
    info = {
        "backend": backend,
        "steps_requested": steps,
        "timestep_fs": dt_fs,
        "frame": frame,
        "sample_interval": sample,
    }
    t0 = time.perf_counter()

    def save():
        np.save(out / "nve_aspirin_energies.npy", np.array(rows))
        info.update(
            steps=dyn.nsteps,
            wall_seconds=time.perf_counter() - t0,
            neighbour_list_builds=calc.nl_builds,
            force_evaluations=calc.n_calculations,
        )
        (out / "nve_run.json").write_text(json.dumps(info, indent=2))

    def record():
        rows.append((dyn.nsteps * dt_fs, atoms.get_potential_energy(), atoms.get_kinetic_energy()))
        if len(rows) % (1600 // sample) == 1 and len(rows) > 1:
            save()
            print(
                f"step {dyn.nsteps:6d}  t={dyn.nsteps * dt_fs / 1000:.3f} ps  "
                f"Etot={rows[-1][1] + rows[-1][2]:.6f} eV  {time.perf_counter() - t0:.0f} s",
                flush=True,
            )

    dyn.attach(record, interval=sample)
    dyn.run(steps)
    save()
    return info


def analyse(rows: np.ndarray, n_atoms: int) -> dict:
    """Drift (meV/atom/ps) from a linear fit of E_tot; fluctuation = RMS residual (meV/atom)."""
    t_ps = rows[:, 0] / 1000.0
    e_tot = (rows[:, 1] + rows[:, 2]) / n_atoms * 1000.0  # meV/atom
    slope, intercept = np.polyfit(t_ps, e_tot, 1)
    resid = e_tot - (slope * t_ps + intercept)
    t_kin = 2 * rows[:, 2] / (3 * n_atoms * 8.617333262e-5)  # K (3N degrees of freedom)
    return {
        "drift_meV_per_atom_per_ps": float(slope),
        "fluctuation_rms_meV_per_atom": float(np.sqrt(np.mean(resid**2))),
        "max_abs_deviation_meV_per_atom": float(np.max(np.abs(e_tot - e_tot[0]))),
        "std_meV_per_atom": float(np.std(e_tot)),
        "mean_kinetic_temperature_K": float(np.mean(t_kin)),
        "simulated_ps": float(t_ps[-1]),
    }


def plot(rows: np.ndarray, n_atoms: int, stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_ps = rows[:, 0] / 1000.0
    e0 = rows[0, 1] + rows[0, 2]
    fig, ax = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    ax[0].plot(t_ps, (rows[:, 1] - e0) / n_atoms * 1e3, lw=0.4, color="C0", label="E_pot − E_tot(0)")
    ax[0].plot(t_ps, (rows[:, 1] + rows[:, 2] - e0) / n_atoms * 1e3, lw=0.8, color="k", label="E_tot − E_tot(0)")
    ax[0].set_ylabel("meV/atom")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[1].plot(t_ps, (rows[:, 1] + rows[:, 2] - e0) / n_atoms * 1e3, lw=0.6, color="k")
    ax[1].plot(
        t_ps,
        stats["drift_meV_per_atom_per_ps"] * t_ps
        + np.polyval(np.polyfit(t_ps, (rows[:, 1] + rows[:, 2] - e0) / n_atoms * 1e3, 1), 0.0),
        "r--",
        lw=1,
        label=f"fit: {stats['drift_meV_per_atom_per_ps']:+.4f} meV/atom/ps",
    )
    ax[1].set_ylabel("E_tot − E_tot(0) (meV/atom)")
    ax[1].set_xlabel("time (ps)")
    ax[1].legend(loc="upper right", fontsize=8)
    ax[0].set_title(
        f"aspirin NVE, {stats['timestep_fs']} fs, {stats['steps']} steps, float64: "
        f"RMS {stats['fluctuation_rms_meV_per_atom']:.3f} meV/atom",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=["all", "train", "md", "analyse"], default="all")
    p.add_argument("--out", default=str(ROOT / "runs" / "nve_aspirin"), help="model and trajectory folder")
    p.add_argument("--steps", type=int, default=40000)
    p.add_argument("--epochs", type=int, default=TRAIN_CONFIG["training"]["max_epochs"])
    p.add_argument("--timestep", type=float, default=0.25, help="fs")
    p.add_argument("--frame", type=int, default=1999, help="dataset frame to start from (with its momenta)")
    p.add_argument("--sample", type=int, default=4, help="record energies every this many steps")
    p.add_argument("--backend", default="auto", help="numpy, numba or auto")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "nve_aspirin.json"))
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "nve_aspirin.png"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = train(out, args.epochs)
    if args.stage == "train":
        return 0
    backend = args.backend
    if args.stage in ("all", "md") and backend == "auto":
        backend = pick_backend(model)
    if args.stage in ("all", "md"):
        run_nve(model, out, args.steps, args.timestep, args.frame, args.sample, backend)
    info = json.loads((out / "nve_run.json").read_text())
    rows = np.load(out / "nve_aspirin_energies.npy")
    stats = analyse(rows, 21)
    summary = json.loads((out / "train_summary.json").read_text()) if (out / "train_summary.json").exists() else {}
    result = {
        "benchmark": "nve_aspirin",
        "system": "aspirin C9H8O4 (21 atoms), GFN2-xTB 500 K data",
        "dtype": "float64",
        "integrator": "VelocityVerlet",
        "start": f"dataset frame {info['frame']} with its momenta",
        **{
            k: info[k]
            for k in (
                "steps",
                "steps_requested",
                "timestep_fs",
                "backend",
                "sample_interval",
                "wall_seconds",
                "neighbour_list_builds",
                "force_evaluations",
            )
        },
        **stats,
        "targets": {"drift_meV_per_atom_per_ps": 0.1, "fluctuation_rms_meV_per_atom": 1.0},
        "model": {
            "config": TRAIN_CONFIG["model"],
            "train_frames": TRAIN_CONFIG["data"]["train"],
            "training": TRAIN_CONFIG["training"],
            "epochs": summary.get("epochs"),
            "test": summary.get("test"),
        },
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }
    Path(args.results).write_text(json.dumps(result, indent=2, default=float))
    plot(rows, 21, result, Path(args.figure))
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("simulated_ps", "drift_meV_per_atom_per_ps", "fluctuation_rms_meV_per_atom", "wall_seconds")
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
