r"""``nequip-np plot RUN_DIR``: learning curves from ``metrics.csv`` and per-element parity plots.

* :func:`plot_metrics` — losses, MAEs and the learning rate against epoch (one PNG);
* :func:`plot_parity_per_element` — predicted vs reference force components, one panel per element
  (plus per-atom energy), for a labelled dataset.

matplotlib is optional (``pip install 'nequip-np[plot]'``); without it these raise a clear error.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # optional extra
        raise ValueError("plotting needs matplotlib: pip install 'nequip-np[plot]'") from exc
    return plt


def read_metrics(path) -> dict[str, np.ndarray]:
    """metrics.csv → {column: float array} (empty cells are NaN)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no metrics file at {path}; is this a training run folder?")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise ValueError(f"{path} has no epochs yet")
    head, body = rows[0], rows[1:]
    return {
        k: np.array([float(r[i]) if i < len(r) and r[i] not in ("", "None") else np.nan for r in body])
        for i, k in enumerate(head)
    }


def plot_metrics(metrics_csv, out_png) -> Path:
    """Three panels against epoch: losses (log), energy/force MAEs (log), learning rate (log)."""
    plt = _pyplot()
    m = read_metrics(metrics_csv)
    ep = m["epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k in [k for k in m if k == "train_loss" or k.endswith("_loss")]:
        if np.isfinite(m[k]).any():
            axes[0].plot(ep, m[k], label=k)
    for k in [k for k in m if k.endswith("_mae") and "forces_mae_" not in k]:
        if np.isfinite(m[k]).any():
            axes[1].plot(ep, m[k], label=k)
    axes[2].plot(ep, m["lr"], color="k")
    for ax, title in zip(axes, ("loss", "MAE (eV, eV/atom, eV/Å)", "learning rate")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines and all(np.nanmin(line.get_ydata()) > 0 for line in ax.lines):
            ax.set_yscale("log")
        if len(ax.lines) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def parity_data(model, dataset, batch_size=8):
    """(type_names, {element: (reference, predicted) force components}, (ref, pred) energy per atom)."""
    from nequip_np.data.dataset import iterate_batches

    names = list(model.config.type_names)
    forces = {n: ([], []) for n in names}
    e_ref, e_pred = [], []
    for batch in iterate_batches(dataset, batch_size):
        out = model.compute(batch)
        if batch.forces is not None:
            for t, n in enumerate(names):
                sel = batch.atom_types == t
                forces[n][0].append(batch.forces[sel].ravel())
                forces[n][1].append(out["forces"][sel].ravel())
        if batch.energy is not None:
            e_ref.append(batch.energy / batch.num_atoms)
            e_pred.append(out["total_energy"] / batch.num_atoms)

    def cat(x):
        return np.concatenate(x) if x else np.zeros(0)

    return names, {n: (cat(r), cat(p)) for n, (r, p) in forces.items()}, (cat(e_ref), cat(e_pred))


def plot_parity_per_element(names, forces, energy, out_png) -> Path:
    """One panel per element (force components, MAE in the title) and one for energy per atom."""
    plt = _pyplot()
    panels = [n for n in names if forces[n][0].size] + (["energy"] if energy[0].size else [])
    if not panels:
        raise ValueError("the dataset has no energy or force labels to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    for ax, name in zip(axes[0], panels):
        ref, pred = energy if name == "energy" else forces[name]
        ax.scatter(ref, pred, s=2, alpha=0.4)
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
        mae = float(np.mean(np.abs(pred - ref)))
        unit = "eV/atom" if name == "energy" else "eV/Å"
        ax.set_title(f"{name}: MAE {1000 * mae:.1f} m{unit}", fontsize=9)
        ax.set_xlabel(f"reference ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def add_parser(subparsers):
    p = subparsers.add_parser(
        "plot",
        help="plot a training run: losses, MAEs, lr; per-element parity",
        description="Draw metrics.csv of a run folder (losses, MAEs and learning rate "
        "against epoch) and, with --data, a per-element parity plot of the "
        "run's model.npz on that dataset.",
    )
    p.add_argument("run_dir", help="training output folder (holds metrics.csv)")
    p.add_argument("--data", help="labelled frames (file or frame store) for the per-element parity plot")
    p.add_argument("--model", help="model file for the parity plot (default: RUN_DIR/model.npz)")
    p.add_argument("--units", default="eV", help="label units of --data")
    p.add_argument("--index", default=":", help="frames of --data to use (ASE index syntax)")
    p.add_argument("--output", help="folder for the PNGs (default: RUN_DIR)")
    return p


def run(args) -> int:
    run_dir = Path(args.run_dir)
    out = Path(args.output) if args.output else run_dir
    out.mkdir(parents=True, exist_ok=True)
    _pyplot()  # fail early, before any work, if matplotlib is missing
    png = plot_metrics(run_dir / "metrics.csv", out / "metrics.png")
    print(f"wrote {png}")
    if args.data:
        from nequip_np.data.dataset import GraphDataset, read_frames
        from nequip_np.data.store import StreamedDataset, is_store
        from nequip_np.interop import load_any_model

        model_path = Path(args.model) if args.model else run_dir / "model.npz"
        if not model_path.exists():
            raise FileNotFoundError(f"no model at {model_path}; pass --model")
        model = load_any_model(model_path)
        c = model.config
        if is_store(args.data):
            data = StreamedDataset(args.data, c.type_names, c.r_max, c.per_edge_type_cutoff)
        else:
            frames = read_frames(args.data, index=args.index, units=args.units)
            data = GraphDataset(frames, c.type_names, c.r_max, c.per_edge_type_cutoff)
        png = plot_parity_per_element(*parity_data(model, data), out / "parity_per_element.png")
        print(f"wrote {png}")
    return 0
