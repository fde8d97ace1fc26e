"""``nequip-np train`` and ``nequip-np evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML configuration",
        description="Train a NequIP model; writes model, checkpoints and metrics.",
    )
    p.add_argument("config", help="YAML configuration file (see docs/training.md)")
    p.add_argument("--output", help="output folder (default: training.output_dir or runs/<run_name>)")
    p.add_argument("--resume", action="store_true", help="continue from <output>/last.ckpt.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from nequip_np.train.trainer import Trainer

    trainer = Trainer(args.config, output_dir=args.output, progress=not args.no_progress)
    last = trainer.out / "last.ckpt.npz"
    if args.resume:
        trainer.load_checkpoint(last)
        print(f"resuming from {last} at epoch {trainer.epoch}")
    elif last.exists():
        raise ValueError(
            f"{trainer.out} already holds a run (last.ckpt.npz); pass --resume to continue it "
            "or choose another --output, so that nothing written is overwritten"
        )
    result = trainer.train()
    print(f"trained {result['epochs']} epochs; best validation loss {result['best_val_loss']:.6g}")
    print(f"model: {trainer.out / 'model.npz'}")
    if "test" in result:
        _print_metrics("test", result["test"])
    return 0


def _print_metrics(title, m):
    print(f"{title} errors:")
    for key, unit in (("energy", "meV"), ("per_atom_energy", "meV/atom"), ("forces", "meV/Å"), ("stress", "meV/Å³")):
        if f"{key}_mae" in m:
            print(
                f"  {key:16s} MAE {1000 * m[key + '_mae']:10.3f} {unit:9s} RMSE {1000 * m[key + '_rmse']:10.3f} {unit}"
            )
        if key == "forces":  # per element, nequip's forces_mae_<type>
            for k in [k for k in m if k.startswith("forces_mae_")]:
                name = k[len("forces_mae_") :]
                print(
                    f"    {name:14s} MAE {1000 * m[k]:10.3f} {unit:9s} RMSE {1000 * m['forces_rmse_' + name]:10.3f} {unit}"
                )


def add_evaluate_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate",
        help="errors of a model on a labelled dataset",
        description="Evaluate a model on labelled frames; prints and writes JSON metrics.",
    )
    p.add_argument("model", help="model file: nequip-np .npz, official nequip .ckpt or .nequip.zip, or an export .npz")
    p.add_argument("data", help="labelled frames in any ASE format, MD17-style .npz, or a frame store")
    p.add_argument("--units", default="eV", help="label units of the data (eV or kcal/mol)")
    p.add_argument("--index", default=":", help="frames to use (ASE index syntax)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output", default="metrics.json", help="JSON metrics file")
    p.add_argument("--predictions", help="write predictions as extxyz")
    p.add_argument("--parity-plot", help="write a parity plot PNG (needs matplotlib)")
    p.add_argument("--parity-per-element", help="write a per-element force parity plot PNG (needs matplotlib)")
    p.add_argument("--key-mapping", default="", help="label keys in the file, e.g. REF_energy=energy,dft_forces=forces")
    return p


def run_evaluate(args) -> int:
    from nequip_np.data.cli import parse_key_mapping
    from nequip_np.data.dataset import GraphDataset, iterate_batches, read_frames
    from nequip_np.data.store import StreamedDataset, is_store
    from nequip_np.interop import load_any_model
    from nequip_np.train.metrics import MetricAccumulator

    model = load_any_model(args.model)
    c = model.config
    if is_store(args.data):  # a frame store from prepare-data: streamed, all frames
        if args.predictions:
            raise ValueError("--predictions needs a frame file, not a frame store")
        data = StreamedDataset(args.data, c.type_names, c.r_max, c.per_edge_type_cutoff)
        frames = range(len(data))
    else:
        frames = read_frames(
            args.data,
            index=args.index,
            units=args.units,
            key_mapping=parse_key_mapping(getattr(args, "key_mapping", "")),
        )
        data = GraphDataset(frames, c.type_names, c.r_max, c.per_edge_type_cutoff)
    acc, preds = MetricAccumulator(type_names=c.type_names), []
    for batch in iterate_batches(data, args.batch_size):
        out = model.compute(batch, stress=bool(np.all(batch.pbc)))
        acc.add(batch, out)
        preds.append((batch, out))
    metrics = acc.result()
    metrics["n_frames"] = len(frames)
    Path(args.output).write_text(json.dumps(metrics, indent=2))
    _print_metrics(f"{args.data} ({len(frames)} frames)", metrics)
    print(f"metrics written to {args.output}")
    if args.predictions:
        _write_predictions(frames, preds, args.predictions)
    if args.parity_plot:
        _parity_plot(preds, args.parity_plot)
    if getattr(args, "parity_per_element", None):
        from nequip_np.train.plot import parity_data, plot_parity_per_element

        plot_parity_per_element(*parity_data(model, data, args.batch_size), args.parity_per_element)
        print(f"per-element parity plot written to {args.parity_per_element}")
    return 0


def _parity_plot(preds, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # optional extra
        raise ValueError("--parity-plot needs matplotlib: pip install 'nequip-np[plot]'") from exc
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, key, label in ((axes[0], "energy", "energy per atom (eV)"), (axes[1], "forces", "force component (eV/Å)")):
        if key == "energy":
            ref = np.concatenate([b.energy / b.num_atoms for b, _ in preds if b.energy is not None] or [np.zeros(0)])
            pred = np.concatenate(
                [p["total_energy"] / b.num_atoms for b, p in preds if b.energy is not None] or [np.zeros(0)]
            )
        else:
            ref = np.concatenate([b.forces.ravel() for b, _ in preds if b.forces is not None] or [np.zeros(0)])
            pred = np.concatenate([p["forces"].ravel() for b, p in preds if b.forces is not None] or [np.zeros(0)])
        ax.scatter(ref, pred, s=3, alpha=0.5)
        if ref.size:
            lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_predictions(frames, preds, path):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    out, k = [], 0
    for batch, pred in preds:
        start = 0
        for f, n in enumerate(batch.num_atoms):
            atoms = frames[k].copy()
            atoms.calc = SinglePointCalculator(
                atoms, energy=float(pred["total_energy"][f]), forces=pred["forces"][start : start + n]
            )
            out.append(atoms)
            start += n
            k += 1
    write(path, out, format="extxyz")


class _Evaluate:
    add_parser = staticmethod(add_evaluate_parser)
    run = staticmethod(run_evaluate)


evaluate = _Evaluate()
