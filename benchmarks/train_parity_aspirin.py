#!/usr/bin/env python
"""Accuracy parity with official nequip 0.19.1 on aspirin (xTB, 500 K): same data, same initial
weights, same batches, same optimiser/EMA/scheduler settings; test MAEs of both implementations.

The nequip_np side runs in the project environment; the official side needs ``torch`` + ``nequip``
(plus numpy, ase, numba for this repository's data code) and runs in a separate environment. The two
sides only exchange files, so they can run side by side::

    # 1. initial weights (official model built with a seed, state_dict exported), per training size
    REF/python benchmarks/train_parity_aspirin.py init  --n-train 250
    # 2. train both (any order, in parallel)
    REF/python benchmarks/train_parity_aspirin.py train --impl torch --n-train 250 --epochs 100
    python     benchmarks/train_parity_aspirin.py train --impl np    --n-train 250 --epochs 100
    # 3. merge the per-run records into benchmarks/results/*.json and draw docs/figures/learning_curve.png
    python     benchmarks/train_parity_aspirin.py collect

``train --max-steps 20`` times 20 optimiser steps and exits (used to size the runs). Runs recorded in
docs/accuracy.md: ``--n-train 250 --epochs 100 --tag _e100`` (parity), ``--n-train 250 --epochs 40
--snapshot-at 20`` (first parity run; its epoch-20 test evaluation is the N = 250 learning-curve point)
and ``--n-train N --epochs E --tag _curve`` for (N, E) = (50, 100), (100, 50), (500, 10), (900, 6),
i.e. ~1000 optimiser steps each. Per-run records go to ``runs/train_parity_aspirin/`` (or
``$TRAIN_PARITY_WORK``); ``collect`` reads them from there.

Protocol (docs/accuracy.md):

* frames: ``split_indices(2000, 250, 100, None, seed=SPLIT_SEED)`` → train (250), val (100) and the
  remaining 1650 frames, of which the first 1000 are the test set. Larger/smaller training sets for the
  learning curve are prefixes of the pool ``train ++ remaining[1000:]`` (900 frames), so they are nested,
  the 250-frame set is the parity run's, and no training set touches val or test.
* statistics from the training set (nequip_np.data.stats): ``avg_num_neighbors`` = edges/atom,
  shifts = per-atom energy mean (one value for every type, nequip's tutorial choice), scales =
  per-type force RMS.
* model: r_max 4, 3 layers, l_max 1, parity, 16 features, radial MLP 1×64, 8 Bessels, p = 6, float64.
* training: batch 5, Adam(lr 0.01), EMA 0.999 with nequip's warm-up, ReduceLROnPlateau(factor 0.6,
  patience 5, threshold 0.2 rel, min_lr 1e-6) stepped once per epoch on the validation loss (EMA weights),
  loss 0.5·per-atom-energy MSE + 0.5·force MSE; epoch e shuffles with
  ``np.random.default_rng([SHUFFLE_SEED, e]).permutation`` (identical on both sides).
* test metrics with the final EMA weights.
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
sys.path.insert(0, str(ROOT))
DATA = Path(
    os.environ.get("ASPIRIN_XTB", Path(__file__).resolve().parents[2] / "shared" / "data" / "aspirin_xtb_500K.extxyz")
)
WORK = Path(os.environ.get("TRAIN_PARITY_WORK", ROOT / "runs" / "train_parity_aspirin"))
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"

SPLIT_SEED = 2024
SHUFFLE_SEED = 7
MODEL_SEED = 123
N_VAL, N_TEST = 100, 1000
TYPE_NAMES = ["H", "C", "O"]
ARCH = dict(
    model_dtype="float64",
    type_names=TYPE_NAMES,
    r_max=4.0,
    num_layers=3,
    l_max=1,
    parity=True,
    num_features=16,
    radial_mlp_depth=1,
    radial_mlp_width=64,
    num_bessels=8,
    polynomial_cutoff_p=6,
)
TRAIN = dict(
    batch_size=5,
    lr=0.01,
    ema_decay=0.999,
    factor=0.6,
    patience=5,
    threshold=0.2,
    threshold_mode="rel",
    min_lr=1e-6,
    eval_batch_size=50,
)


# ------------------------------------------------------------------------------------------------ data
def read_all():
    from nequip_np.data.dataset import read_frames

    return read_frames(DATA, require=("energy", "forces"))


def split(n_frames: int, n_train: int):
    """(train, val, test) frame indices; see the module docstring."""
    from nequip_np.data.dataset import split_indices

    tr, va, rest = split_indices(n_frames, 250, N_VAL, None, seed=SPLIT_SEED)
    test = rest[:N_TEST]
    pool = np.concatenate([tr, rest[N_TEST:]])
    if n_train > len(pool):
        raise ValueError(f"at most {len(pool)} training frames are disjoint from val and test")
    return pool[:n_train], va, test


def labels(frames, idx):
    e = np.array([frames[i].get_potential_energy() for i in idx])
    f = [np.asarray(frames[i].get_forces(), np.float64) for i in idx]
    n = np.array([len(frames[i]) for i in idx], np.float64)
    return e, f, n


def shuffle_order(epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([SHUFFLE_SEED, epoch]).permutation(n)


def metrics(de, df, n_atoms) -> dict:
    """Errors with nequip's meanings: energy per frame (eV), force per Cartesian component (eV/Å)."""
    de, df = np.asarray(de), np.concatenate([d.ravel() for d in df])
    dea = de / n_atoms
    return {
        "energy_mae": float(np.mean(np.abs(de))),
        "energy_rmse": float(np.sqrt(np.mean(de**2))),
        "per_atom_energy_mae": float(np.mean(np.abs(dea))),
        "forces_mae": float(np.mean(np.abs(df))),
        "forces_rmse": float(np.sqrt(np.mean(df**2))),
        "loss": float(0.5 * np.mean(dea**2) + 0.5 * np.mean(df**2)),
    }


def init_path(n_train: int) -> Path:
    return WORK / f"init_n{n_train}.npz"


def record_path(impl: str, n_train: int, tag: str = "") -> Path:
    return WORK / f"run_{impl}_n{n_train}{tag}.json"


# ------------------------------------------------------------------------------------------------ init
def cmd_init(a):
    """Statistics of the training set, official model built with MODEL_SEED, state_dict exported."""
    from nequip_np.data.dataset import GraphDataset
    from nequip_np.data.stats import compute_statistics

    sys.path.insert(0, str(ROOT / "tools"))
    from export_nequip import build_model, export_arrays

    frames = read_all()
    tr, va, te = split(len(frames), a.n_train)
    stats = compute_statistics(GraphDataset([frames[i] for i in tr], TYPE_NAMES, ARCH["r_max"]).graphs, TYPE_NAMES)
    kwargs = dict(
        ARCH,
        seed=MODEL_SEED,
        avg_num_neighbors=float(stats["num_neighbors_mean"]),
        per_type_energy_shifts={t: float(stats["per_atom_energy_mean"]) for t in TYPE_NAMES},
        per_type_energy_scales={t: float(stats["per_type_forces_rms"][t]) for t in TYPE_NAMES},
    )
    model = build_model(dict(kwargs))
    arrays = export_arrays(model, kwargs)
    arrays.update(train_idx=tr, val_idx=va, test_idx=te, stats=np.array(json.dumps(stats)))
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(init_path(a.n_train), **arrays)
    print(
        f"wrote {init_path(a.n_train)}: avg_num_neighbors {kwargs['avg_num_neighbors']:.4f}, "
        f"shift {stats['per_atom_energy_mean']:.6f} eV/atom, scales {kwargs['per_type_energy_scales']}"
    )


def load_init(n_train: int):
    with np.load(init_path(n_train)) as d:
        kwargs = json.loads(str(d["metadata"]))
        state = {k[6:]: d[k] for k in d.files if k.startswith("state/")}
        idx = {k: d[k].astype(np.int64) for k in ("train_idx", "val_idx", "test_idx")}
    return kwargs, state, idx


# ------------------------------------------------------------------------------------------------ sides
class NpSide:
    """nequip_np: loss_and_grad + Adam + EMA + ReduceLROnPlateau."""

    def __init__(self, kwargs, state, frames, idx, backend, threads):
        from nequip_np.data.dataset import GraphDataset
        from nequip_np.interop import model_from_state
        from nequip_np.train.ema import EMA
        from nequip_np.train.loss import LossCoefficients
        from nequip_np.train.optim import Adam
        from nequip_np.train.schedule import ReduceLROnPlateau

        if backend == "numba":
            from nequip_np.kernels._numba_util import set_num_threads

            set_num_threads(threads)
        self.model = model_from_state(kwargs, state, backend=backend)
        ds = GraphDataset(frames, TYPE_NAMES, kwargs["r_max"])
        self.sets = {k: ds.subset(v) for k, v in idx.items()}
        self.opt = Adam(self.model.params, lr=TRAIN["lr"])
        self.ema = EMA(self.model.params, decay=TRAIN["ema_decay"])
        self.sched = ReduceLROnPlateau(
            self.opt,
            factor=TRAIN["factor"],
            patience=TRAIN["patience"],
            threshold=TRAIN["threshold"],
            threshold_mode=TRAIN["threshold_mode"],
            min_lr=TRAIN["min_lr"],
        )
        self.coeffs = LossCoefficients(1.0, 1.0, 0.0)

    def step(self, positions):
        from nequip_np.data.graph import batch_graphs
        from nequip_np.train.loss import loss_and_grad

        g = batch_graphs([self.sets["train_idx"][int(i)] for i in positions])
        loss, _, grads, _ = loss_and_grad(self.model, g, self.coeffs)
        self.opt.step(grads)
        self.ema.update(self.model.params)
        return float(loss)

    def evaluate(self, name):
        from nequip_np.data.graph import batch_graphs

        graphs = self.sets[name].graphs
        de, df, n = [], [], []
        for s in range(0, len(graphs), TRAIN["eval_batch_size"]):
            g = batch_graphs(graphs[s : s + TRAIN["eval_batch_size"]])
            out = self.model.compute(g, forces=True, stress=False, params=self.ema.params)
            de.append(out["total_energy"] - g.energy)
            df.append(out["forces"] - g.forces)
            n.append(g.num_atoms.astype(np.float64))
        return metrics(np.concatenate(de), df, np.concatenate(n))

    def lr(self):
        return self.opt.lr

    def sched_step(self, val_loss):
        self.sched.step(val_loss)


class TorchSide:
    """Official NequIPGNNModel in a plain torch loop: torch.optim.Adam, torch ReduceLROnPlateau,
    nequip's EMAWeights updated after every step (initial copy counts, as EMALightningModule does)."""

    def __init__(self, kwargs, state, frames, idx, threads):
        import torch

        sys.path.insert(0, str(ROOT / "tools"))
        from export_nequip import build_model
        from make_nequip_fixtures import make_data
        from nequip.train.ema import EMAWeights

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = build_model(dict(kwargs, seed=MODEL_SEED))
        sd = self.model.state_dict()
        for k, v in sd.items():  # the exported weights (they are the same: same seed), verified
            assert np.array_equal(v.numpy(), state[k]), k
        sym = {s: i for i, s in enumerate(TYPE_NAMES)}
        self.sets = {}
        for name, ids in idx.items():
            items = []
            for i in ids:
                at = frames[int(i)]
                d = make_data(
                    dict(
                        pos=at.get_positions(),
                        atom_types=np.array([sym[s] for s in at.get_chemical_symbols()]),
                        cell=np.zeros((3, 3)),
                        pbc=np.zeros(3, bool),
                    ),
                    kwargs,
                )
                items.append((d, float(at.get_potential_energy()), np.asarray(at.get_forces(), np.float64)))
            self.sets[name] = items
        self.opt = torch.optim.Adam(self.model.parameters(), lr=TRAIN["lr"])
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt,
            mode="min",
            factor=TRAIN["factor"],
            patience=TRAIN["patience"],
            threshold=TRAIN["threshold"],
            threshold_mode=TRAIN["threshold_mode"],
            min_lr=TRAIN["min_lr"],
        )
        self.ema = EMAWeights(self.model, decay=TRAIN["ema_decay"])
        self.ema.update_parameters(self.model)  # the initial copy (n -> 1), as EMALightningModule.__init__

    def _batch(self, items):
        from nequip.data import AtomicDataDict

        torch = self.torch
        b = AtomicDataDict.batched_from_list([{k: v.clone() for k, v in d.items()} for d, _, _ in items])
        e = torch.tensor([e for _, e, _ in items], dtype=torch.float64)
        f = torch.as_tensor(np.concatenate([f for _, _, f in items]), dtype=torch.float64)
        return b, e, f

    def step(self, positions):
        torch = self.torch
        self.model.train()
        b, e_ref, f_ref = self._batch([self.sets["train_idx"][int(i)] for i in positions])
        self.opt.zero_grad()
        out = self.model(b)
        n = b["num_atoms"].to(torch.float64).view(-1)
        loss = (
            0.5 * (((out["total_energy"].view(-1) - e_ref) / n) ** 2).mean()
            + 0.5 * ((out["forces"] - f_ref) ** 2).mean()
        )
        loss.backward()
        self.opt.step()
        self.ema.update_parameters(self.model)
        return float(loss.detach())

    def evaluate(self, name):
        self.model.eval()
        self.ema.swap_parameters(self.model)  # EMA weights in, as EMALightningModule does for val/test
        try:
            items = self.sets[name]
            de, df, n = [], [], []
            for s in range(0, len(items), TRAIN["eval_batch_size"]):
                b, e_ref, f_ref = self._batch(items[s : s + TRAIN["eval_batch_size"]])
                out = self.model(b)
                de.append((out["total_energy"].view(-1) - e_ref).detach().numpy())
                df.append((out["forces"] - f_ref).detach().numpy())
                n.append(b["num_atoms"].numpy().astype(np.float64))
        finally:
            self.ema.swap_parameters(self.model)
        return metrics(np.concatenate(de), df, np.concatenate(n))

    def lr(self):
        return float(self.opt.param_groups[0]["lr"])

    def sched_step(self, val_loss):
        self.sched.step(val_loss)


# ------------------------------------------------------------------------------------------------ train
def cmd_train(a):
    kwargs, state, idx = load_init(a.n_train)
    frames = read_all()
    t0 = time.perf_counter()
    if a.impl == "torch":
        side = TorchSide(kwargs, state, frames, idx, a.threads)
        import torch

        versions = {"torch": torch.__version__, "nequip": __import__("nequip").__version__}
    else:
        from nequip_np.kernels.registry import available_backends

        backend = a.backend or ("numba" if "numba" in available_backends() else "numpy")
        side = NpSide(kwargs, state, frames, idx, backend, a.threads)
        versions = {"backend": backend}
    setup_s = time.perf_counter() - t0
    n_train = len(idx["train_idx"])
    bs = TRAIN["batch_size"]
    rec = dict(
        impl=a.impl,
        n_train=n_train,
        n_val=len(idx["val_idx"]),
        n_test=len(idx["test_idx"]),
        epochs_planned=a.epochs,
        threads=a.threads,
        versions=versions,
        host=platform.node(),
        setup_s=setup_s,
        arch=ARCH,
        train=TRAIN,
        split_seed=SPLIT_SEED,
        shuffle_seed=SHUFFLE_SEED,
        model_seed=MODEL_SEED,
        history=[],
    )
    out = Path(a.out) if a.out else record_path(a.impl, n_train, a.tag)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.max_steps:  # timing only
        steps, t0 = 0, time.perf_counter()
        order = shuffle_order(0, n_train)
        for s in range(0, n_train, bs):
            side.step(order[s : s + bs])
            steps += 1
            if steps == 1:
                t_first = time.perf_counter() - t0  # includes JIT compilation / first-call overheads
                t0 = time.perf_counter()
            if steps >= a.max_steps:
                break
        per_step = (time.perf_counter() - t0) / (steps - 1)
        t1 = time.perf_counter()
        side.evaluate("val_idx")
        val_s = time.perf_counter() - t1
        print(
            json.dumps(
                {
                    "impl": a.impl,
                    "threads": a.threads,
                    "first_step_s": t_first,
                    "step_s": per_step,
                    "val100_s": val_s,
                    "setup_s": setup_s,
                }
            )
        )
        return
    t_train = time.perf_counter()
    for epoch in range(a.epochs):
        te = time.perf_counter()
        order = shuffle_order(epoch, n_train)
        losses = [side.step(order[s : s + bs]) for s in range(0, n_train, bs)]
        val = side.evaluate("val_idx")
        lr_used = side.lr()
        side.sched_step(val["loss"])
        rec["history"].append(
            dict(
                epoch=epoch,
                lr=lr_used,
                train_loss=float(np.mean(losses)),
                val_loss=val["loss"],
                val_forces_mae=val["forces_mae"],
                val_energy_mae=val["energy_mae"],
                wall_s=time.perf_counter() - te,
            )
        )
        if a.verbose:
            print(
                f"[{a.impl} n={n_train}] epoch {epoch:3d} lr {lr_used:.2e} train {np.mean(losses):.4e} "
                f"val {val['loss']:.4e} F-MAE {1e3 * val['forces_mae']:.1f} meV/Å "
                f"({time.perf_counter() - te:.1f} s)",
                flush=True,
            )
        rec["epochs_run"] = epoch + 1
        _dump(rec, out)
        if epoch + 1 == a.snapshot_at and epoch + 1 < a.epochs:  # "as if the run ended here"
            snap = dict(
                rec,
                history=list(rec["history"]),
                epochs_planned=epoch + 1,
                train_wall_s=time.perf_counter() - t_train,
                test=side.evaluate("test_idx"),
                final_lr=side.lr(),
                snapshot_of=out.name,
            )
            _dump(snap, record_path(a.impl, n_train, a.snapshot_tag))
    rec["train_wall_s"] = time.perf_counter() - t_train
    t1 = time.perf_counter()
    rec["test"] = side.evaluate("test_idx")
    rec["test_eval_s"] = time.perf_counter() - t1
    rec["final_lr"] = side.lr()
    _dump(rec, out)
    print(json.dumps({k: rec[k] for k in ("impl", "n_train", "epochs_run", "train_wall_s", "test")}))


def _dump(rec, path):
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(rec, fh, indent=1)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ collect
def cmd_collect(a):
    runs = {}
    for p in sorted(WORK.glob("run_*.json")):
        r = json.loads(p.read_text())
        if "test" in r:
            runs[(r["impl"], r["n_train"], p.stem)] = r

    def summary(r):
        return dict(
            impl=r["impl"],
            n_train=r["n_train"],
            epochs=r["epochs_run"],
            threads=r["threads"],
            versions=r["versions"],
            train_wall_s=round(r["train_wall_s"], 1),
            test_energy_mae_meV=1e3 * r["test"]["energy_mae"],
            test_forces_mae_meV_A=1e3 * r["test"]["forces_mae"],
            test_energy_rmse_meV=1e3 * r["test"]["energy_rmse"],
            test_forces_rmse_meV_A=1e3 * r["test"]["forces_rmse"],
            final_lr=r["final_lr"],
            best_val_loss=min(h["val_loss"] for h in r["history"]),
        )

    def rel(x, y):
        return (x - y) / y

    # parity runs: n_train = 250; 100 epochs (tag _e100) and the earlier 40-epoch run (no tag)
    for tag, fname in (("_e100", "train_parity_aspirin.json"), ("", "train_parity_aspirin_40ep.json")):
        par = {r["impl"]: r for (impl, n, stem), r in runs.items() if n == 250 and stem.endswith("n250" + tag)}
        if not {"np", "torch"} <= set(par):
            continue
        s = {k: summary(v) for k, v in par.items()}
        doc = dict(
            description="aspirin xTB 500 K, 250/100/1000 split, same initial weights and batches; "
            "test metrics with EMA weights (benchmarks/train_parity_aspirin.py)",
            nequip_np=s["np"],
            nequip=s["torch"],
            rel_diff_energy_mae=rel(s["np"]["test_energy_mae_meV"], s["torch"]["test_energy_mae_meV"]),
            rel_diff_forces_mae=rel(s["np"]["test_forces_mae_meV_A"], s["torch"]["test_forces_mae_meV_A"]),
            val_loss_rel_diff_per_epoch=[
                (x["val_loss"] - y["val_loss"]) / y["val_loss"]
                for x, y in zip(par["np"]["history"], par["torch"]["history"])
            ],
            history={k: v["history"] for k, v in par.items()},
        )
        _dump(doc, RESULTS / fname)
        print(
            f"parity ({fname}):",
            json.dumps({k: v for k, v in doc.items() if k not in ("history", "val_loss_rel_diff_per_epoch")}),
        )
        print(
            "  max |rel. diff| of the validation loss over epochs:", max(map(abs, doc["val_loss_rel_diff_per_epoch"]))
        )
    curve = sorted(
        (summary(r) | {"run": stem} for (impl, n, stem), r in runs.items() if stem.endswith("_curve")),
        key=lambda s: (s["impl"], s["n_train"]),
    )
    if curve:
        _dump(
            {
                "description": "learning curve, aspirin xTB 500 K; fixed val (100) and test (1000) frames; "
                "nested training sets (benchmarks/train_parity_aspirin.py)",
                "runs": curve,
            },
            RESULTS / "learning_curve.json",
        )
        for s in curve:
            print(
                f"{s['impl']:6s} N={s['n_train']:4d} ep={s['epochs']:3d} E {s['test_energy_mae_meV']:8.2f} meV  "
                f"F {s['test_forces_mae_meV_A']:7.2f} meV/Å  wall {s['train_wall_s']:7.0f} s  ({s['run']})"
            )
        print(
            "\n| N_train | epochs | steps | nequip-np E MAE (meV) | nequip E MAE (meV) | nequip-np F MAE (meV/Å) "
            "| nequip F MAE (meV/Å) | rel. diff E / F | wall np / nequip (s) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        by = {(s["impl"], s["n_train"]): s for s in curve}
        for n in sorted({s["n_train"] for s in curve}):
            a, b = by.get(("np", n)), by.get(("torch", n))
            f = lambda s, k: f"{s[k]:.2f}" if s else "not run"  # noqa: E731
            w = lambda s: f"{s['train_wall_s']:.0f}" if s else "–"  # noqa: E731
            ref = a or b
            rd = (
                (
                    f"{a['test_energy_mae_meV'] / b['test_energy_mae_meV'] - 1:+.1e} / "
                    f"{a['test_forces_mae_meV_A'] / b['test_forces_mae_meV_A'] - 1:+.1e}"
                )
                if a and b
                else "–"
            )
            print(
                f"| {n} | {ref['epochs']} | {ref['epochs'] * -(-n // TRAIN['batch_size'])} | "
                f"{f(a, 'test_energy_mae_meV')} | {f(b, 'test_energy_mae_meV')} | {f(a, 'test_forces_mae_meV_A')} | "
                f"{f(b, 'test_forces_mae_meV_A')} | {rd} | {w(a)} / {w(b)} |"
            )
        plot(curve)


def plot(curve):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    style = {
        "np": dict(marker="o", ls="-", label="nequip-np"),
        "torch": dict(marker="s", ls="--", mfc="none", label="official nequip 0.19.1"),
    }
    for ax, key, ylabel in (
        (axes[0], "test_forces_mae_meV_A", "test force MAE (meV/Å)"),
        (axes[1], "test_energy_mae_meV", "test energy MAE (meV)"),
    ):
        for impl in ("np", "torch"):
            pts = sorted((s["n_train"], s[key]) for s in curve if s["impl"] == impl)
            if pts:
                ax.plot(*zip(*pts), **style[impl])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ns = sorted({s["n_train"] for s in curve})
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.0f"))
        ax.set_xlabel("training frames")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(
        "Aspirin (xTB, 500 K): test error vs training frames (1000 optimiser steps per run, "
        "same initial weights and batches)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(FIGURES / "learning_curve.png", dpi=120)
    print(f"wrote {FIGURES / 'learning_curve.png'}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("init")
    q.add_argument("--n-train", type=int, default=250)
    q = sub.add_parser("train")
    q.add_argument("--impl", choices=("np", "torch"), required=True)
    q.add_argument("--n-train", type=int, default=250)
    q.add_argument("--epochs", type=int, default=100)
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--backend", default=None, help="nequip_np backend (default: numba if available)")
    q.add_argument("--max-steps", type=int, default=0, help="time this many steps and exit")
    q.add_argument("--tag", default="", help="suffix of the run record name")
    q.add_argument("--out", default=None)
    q.add_argument(
        "--snapshot-at",
        type=int,
        default=0,
        help="also evaluate the test set after this many epochs, written as its own record",
    )
    q.add_argument("--snapshot-tag", default="_curve")
    q.add_argument("--verbose", action="store_true")
    sub.add_parser("collect")
    a = p.parse_args(argv)
    {"init": cmd_init, "train": cmd_train, "collect": cmd_collect}[a.cmd](a)


if __name__ == "__main__":
    main()
