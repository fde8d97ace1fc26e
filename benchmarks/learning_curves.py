#!/usr/bin/env python
r"""Learning curves on the shipped aspirin data: test error against training-set size for l_max 0, 1, 2.

NequIP's headline result is data efficiency: with equivariant features (l_max >= 1) the test error
falls faster with the number of training frames than with invariant ones (l_max = 0). This script
measures that on the 300 GFN2-xTB aspirin frames shipped with the package, trains every run until
the validation error stops improving (not for a fixed number of steps), repeats each point with
several seeds, and writes one JSON file that notebook 06 and docs/accuracy.md plot::

    python benchmarks/learning_curves.py time             # seconds per optimiser step, per l_max
    nice -n 19 python benchmarks/learning_curves.py run   # the sweep (resumable; appends to runs.jsonl)
    python benchmarks/learning_curves.py run --schedule loose   # convergence check (loose.jsonl)
    python benchmarks/learning_curves.py collect          # runs.jsonl -> results JSON + figure

Protocol:

* frames: ``np.random.default_rng(2024).permutation(300)`` -> 100 test, 20 validation, 180 pool.
  Seed ``s`` orders the pool with ``default_rng([1, s])``; the training set of size N is the first N
  frames of that order (nested sets within a seed). Test and validation frames are the same for
  every run.
* model: r_max 4 Å, 2 layers, 8 features, radial MLP 1 x 16, 8 Bessels, p = 6, parity on, float64;
  only ``l_max`` changes. Statistics (avg. neighbours, per-type force RMS scales, per-atom energy
  mean shift) from each training set. Weights initialised with ``seed = s``.
* training: batches of 5 frames, Adam(lr 0.02), EMA 0.999 (nequip's warm-up), loss
  0.5 MSE(E/N) + 0.5 MSE(F). Every 25 optimiser steps the EMA weights are scored on the
  validation frames; ReduceLROnPlateau(factor 0.5, patience 8 checks, 0.125 % relative threshold)
  on that score. A run stops when the learning rate has been halved five times (the schedule has
  run out of improvements), when the validation loss has not improved for 32 checks (early
  stopping), or at an 80 000-step safety cap (recorded as not converged). The EMA weights of the
  best validation check are scored on the test frames (``SCHEDULE``).
* convergence check (``run --schedule loose``): the same points with a 4x coarser threshold and
  half the patience (``LOOSE``, which stops 2-4x sooner); ``collect`` reports, per point, the
  ratio of the two test errors.

Because small and large training sets get the same rule, the number of steps adapts to the data:
the comparison is at convergence, not at equal cost.
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
RESULTS = ROOT / "benchmarks" / "results" / "learning_curves.json"
SHIPPED = ROOT / "nequip_np" / "data" / "examples" / "learning_curves.json"
FIGURE = ROOT / "docs" / "figures" / "learning_curves.png"
WORK = Path(os.environ.get("LEARNING_CURVES_WORK", ROOT / "runs" / "learning_curves"))

SIZES = [10, 20, 40, 80, 160]
L_MAX = [0, 1, 2]
SEEDS = [0, 1, 2]
N_TEST, N_VAL = 100, 20
SPLIT_SEED = 2024
MODEL = dict(
    type_names=["H", "C", "O"],
    r_max=4.0,
    num_layers=2,
    parity=True,
    num_features=8,
    radial_mlp_depth=1,
    radial_mlp_width=16,
    num_bessels=8,
    polynomial_cutoff_p=6,
    avg_num_neighbors="auto",
    per_type_energy_scales="auto",
    per_type_energy_shifts="auto",
)
BATCH, LR, EMA_DECAY = 5, 0.02, 0.999
#: the stopping rule of every run: every ``eval_every`` optimiser steps the EMA weights are scored on
#: the validation frames; the plateau schedule halves the rate when the best validation loss has not
#: improved by ``threshold`` (relative) for more than ``sched_patience`` checks; a run ends when the
#: rate has been halved five times (``stop_lr``), after ``patience`` checks without any improvement,
#: or at ``max_steps`` (a safety cap, recorded as not converged)
SCHEDULE = dict(
    eval_every=25, factor=0.5, sched_patience=8, threshold=0.00125, patience=32, stop_lr=LR / 32, max_steps=80000
)
#: the convergence check (``run --schedule loose``): the same runs with a 4x coarser threshold and half
#: the patience. Where the two rules give the same test error, the error no longer depends on when
#: training stops; ``collect`` reports the ratio per point
LOOSE = dict(SCHEDULE, threshold=SCHEDULE["threshold"] * 4, sched_patience=4, patience=16, max_steps=40000)
SCHEDULES = {"protocol": SCHEDULE, "loose": LOOSE}
BACKEND = "numba"


def split():
    """(test, val, pool) frame indices into the shipped file."""
    order = np.random.default_rng(SPLIT_SEED).permutation(300)
    return order[:N_TEST], order[N_TEST : N_TEST + N_VAL], order[N_TEST + N_VAL :]


def training_indices(pool, n: int, seed: int) -> np.ndarray:
    if n > len(pool):
        raise ValueError(f"training-set size {n} exceeds the pool of {len(pool)} frames")
    return pool[np.random.default_rng([1, seed]).permutation(len(pool))[:n]]


def load():
    from nequip_np.data.dataset import GraphDataset, read_frames
    from nequip_np.data.examples import aspirin_path

    frames = read_frames(aspirin_path())
    if len(frames) != 300:
        raise ValueError(f"expected the 300-frame shipped aspirin file, got {len(frames)} frames")
    return GraphDataset(frames, MODEL["type_names"], MODEL["r_max"])


def build_model(train_set, l_max: int, seed: int):
    from nequip_np.data.stats import compute_statistics
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.train.config import config_to_dict, resolve_defaults

    stats = compute_statistics(train_set.graphs, MODEL["type_names"])
    cfg = resolve_defaults({"model": dict(MODEL, l_max=l_max, seed=seed), "data": {"path": "unused"}}, stats)
    kwargs = config_to_dict(cfg)["model"]
    kwargs.pop("initial_model", None)  # a training option (fine-tuning), not an architecture option
    return NequIPModel(backend=BACKEND, **kwargs)


def score(model, dataset, params) -> dict:
    """Loss and MAEs (eV, eV/Å) of ``dataset`` with ``params``."""
    from nequip_np.data.dataset import iterate_batches
    from nequip_np.train.loss import LossCoefficients
    from nequip_np.train.metrics import MetricAccumulator

    acc = MetricAccumulator()
    for batch in iterate_batches(dataset, 20):
        acc.add(batch, model.compute(batch, params=params, stress=False), LossCoefficients(1.0, 1.0, 0.0))
    return acc.result()


def train_one(data, n: int, l_max: int, seed: int, schedule: dict = SCHEDULE) -> dict:
    """One point of the curve: train with early stopping, score the best-validation EMA weights."""
    from nequip_np.data.dataset import iterate_batches
    from nequip_np.train.ema import EMA
    from nequip_np.train.loss import LossCoefficients, loss_and_grad
    from nequip_np.train.optim import Adam
    from nequip_np.train.schedule import EarlyStopping, ReduceLROnPlateau

    test_idx, val_idx, pool = split()
    train_set = data.subset(training_indices(pool, n, seed))
    val_set, test_set = data.subset(val_idx), data.subset(test_idx)
    model = build_model(train_set, l_max, seed)
    opt = Adam(model.params, lr=LR)
    ema = EMA(model.params, decay=EMA_DECAY)
    c = schedule
    sched = ReduceLROnPlateau(
        opt,
        factor=c["factor"],
        patience=c["sched_patience"],
        threshold=c["threshold"],
        threshold_mode="rel",
        min_lr=c["stop_lr"] / 2,
    )
    early = EarlyStopping(patience=c["patience"], min_delta=0.0)
    coeffs = LossCoefficients(1.0, 1.0, 0.0)
    rng = np.random.default_rng([2, seed])
    best, best_params, history = np.inf, None, []
    step, reason, start = 0, "max_steps", time.perf_counter()
    while step < c["max_steps"] and reason == "max_steps":
        for batch in iterate_batches(train_set, BATCH, shuffle=True, rng=rng):
            loss, _, grads, _ = loss_and_grad(model, batch, coeffs)
            if not np.isfinite(loss):
                raise FloatingPointError(f"N={n} l_max={l_max} seed={seed}: loss {loss} at step {step}")
            opt.step(grads)
            ema.update(model.params)
            step += 1
            if step % c["eval_every"]:
                continue
            val = score(model, val_set, ema.params)["loss"]
            history.append([step, opt.lr, val])
            if val < best:
                best, best_params = val, {k: v.copy() for k, v in ema.params.items()}
            sched.step(val)
            if early.step(val):
                reason = "early_stopping"
            elif opt.lr < c["stop_lr"]:
                reason = "lr_below_stop"
            if reason != "max_steps" or step >= c["max_steps"]:
                break
    test = score(model, test_set, best_params)
    n_atoms = float(train_set.graphs[0].num_atoms.sum())
    return {
        "n_train": n,
        "l_max": l_max,
        "seed": seed,
        "steps": step,
        "stop": reason,
        "converged": reason != "max_steps",
        "train_wall_s": round(time.perf_counter() - start, 1),
        "best_val_loss": best,
        "test_energy_mae_meV": 1e3 * test["energy_mae"],
        "test_per_atom_energy_mae_meV": 1e3 * test["energy_mae"] / n_atoms,
        "test_forces_mae_meV_A": 1e3 * test["forces_mae"],
        "test_energy_rmse_meV": 1e3 * test["energy_rmse"],
        "test_forces_rmse_meV_A": 1e3 * test["forces_rmse"],
        "num_params": int(sum(p.size for p in model.params.values())),
        "val_history": history,
    }


def _done(path: Path) -> set:
    if not path.exists():
        return set()
    return {(r["n_train"], r["l_max"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())}


def cmd_run(a) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / ("runs.jsonl" if a.schedule == "protocol" else f"{a.schedule}.jsonl")
    done = _done(path)
    data = load()
    todo = [(n, l, s) for s in a.seeds for n in a.sizes for l in a.l_max if (n, l, s) not in done]
    print(f"{len(done)} runs already in {path}; {len(todo)} to do", flush=True)
    for n, l_max, seed in todo:
        rec = train_one(data, n, l_max, seed, SCHEDULES[a.schedule])
        with open(path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(
            f"N={n:4d} l_max={l_max} seed={seed}: {rec['steps']:5d} steps ({rec['stop']}), "
            f"{rec['train_wall_s']:6.1f} s, test F MAE {rec['test_forces_mae_meV_A']:6.1f} meV/Å, "
            f"E MAE {rec['test_energy_mae_meV']:6.1f} meV",
            flush=True,
        )


def cmd_time(a) -> None:
    """Seconds per optimiser step and per validation check, per l_max (after compilation)."""
    from nequip_np.data.dataset import iterate_batches
    from nequip_np.train.loss import LossCoefficients, loss_and_grad

    data = load()
    _, val_idx, pool = split()
    for l_max in a.l_max:
        train_set = data.subset(training_indices(pool, 40, 0))
        model = build_model(train_set, l_max, 0)
        batches = list(iterate_batches(train_set, BATCH))
        loss_and_grad(model, batches[0], LossCoefficients(1.0, 1.0, 0.0))  # compile
        t = time.perf_counter()
        for b in batches:
            loss_and_grad(model, b, LossCoefficients(1.0, 1.0, 0.0))
        per_step = (time.perf_counter() - t) / len(batches)
        t = time.perf_counter()
        score(model, data.subset(val_idx), model.params)
        per_val = time.perf_counter() - t
        print(f"l_max {l_max}: {per_step * 1e3:.0f} ms per step, {per_val * 1e3:.0f} ms per validation check")


def _best_ratio(history, window: int) -> float:
    """Best validation loss at the end over the best one ``window`` steps before the end."""
    steps = np.array([h[0] for h in history])
    vals = np.array([h[2] for h in history])
    before = vals[steps <= steps[-1] - window]
    return float(vals.min() / before.min()) if before.size else float("nan")


def summarize(runs: list) -> dict:
    from nequip_np.course import fit_loglog_slope

    out = {}
    for l_max in sorted({r["l_max"] for r in runs}):
        rs = [r for r in runs if r["l_max"] == l_max]
        sizes = sorted({r["n_train"] for r in rs})
        entry = {"sizes": sizes}
        for key, name in (("test_forces_mae_meV_A", "forces"), ("test_energy_mae_meV", "energy")):
            per = [[r[key] for r in rs if r["n_train"] == n] for n in sizes]
            entry[f"{name}_mean"] = [float(np.mean(p)) for p in per]
            entry[f"{name}_std"] = [float(np.std(p, ddof=1)) if len(p) > 1 else 0.0 for p in per]
            entry[f"{name}_n_seeds"] = [len(p) for p in per]
            slope, err = (
                fit_loglog_slope([r["n_train"] for r in rs], [r[key] for r in rs]) if len(sizes) > 1 else (None, None)
            )
            entry[f"{name}_slope"], entry[f"{name}_slope_stderr"] = slope, err
        entry["converged_runs"] = sum(r["converged"] for r in rs)
        # progress at the end of each run: best validation loss at the stop relative to the best one
        # 1000 steps earlier (1.0 = no progress in the last 1000 steps)
        entry["best_val_ratio_last_1000_steps"] = [round(_best_ratio(r["val_history"], 1000), 4) for r in rs]
        entry["steps"] = [r["steps"] for r in rs]
        entry["runs"] = len(rs)
        out[str(l_max)] = entry
    return out


def markdown_table(doc: dict) -> str:
    """The results as a Markdown table (docs/accuracy.md): mean ± std over seeds per size and l_max."""
    summary = doc["summary"]
    ls = sorted(summary)
    head = (
        "| N_train | "
        + " | ".join(f"F MAE l_max={l} (meV/Å)" for l in ls)
        + " | "
        + " | ".join(f"E MAE l_max={l} (meV)" for l in ls)
        + " |"
    )
    rows = [head, "|" + "---|" * (1 + 2 * len(ls))]
    for k, n in enumerate(summary[ls[0]]["sizes"]):
        cells = [f"{summary[l]['forces_mean'][k]:.0f} ± {summary[l]['forces_std'][k]:.0f}" for l in ls]
        cells += [f"{summary[l]['energy_mean'][k]:.0f} ± {summary[l]['energy_std'][k]:.0f}" for l in ls]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    slopes = [f"{summary[l]['forces_slope']:+.2f} ± {summary[l]['forces_slope_stderr']:.2f}" for l in ls]
    slopes += [f"{summary[l]['energy_slope']:+.2f} ± {summary[l]['energy_slope_stderr']:.2f}" for l in ls]
    rows.append("| fitted slope | " + " | ".join(slopes) + " |")
    return "\n".join(rows)


def convergence_check(runs: list, loose: list) -> list:
    """Per point run with both rules: steps and test errors ``[loose, protocol]`` and their ratio."""
    by_key = {(r["n_train"], r["l_max"], r["seed"]): r for r in runs}
    rows = []
    for s in loose:
        r = by_key.get((s["n_train"], s["l_max"], s["seed"]))
        if r is None:
            continue
        rows.append(
            {
                "n_train": s["n_train"],
                "l_max": s["l_max"],
                "seed": s["seed"],
                "steps": [s["steps"], r["steps"]],
                "forces_mae_meV_A": [s["test_forces_mae_meV_A"], r["test_forces_mae_meV_A"]],
                "energy_mae_meV": [s["test_energy_mae_meV"], r["test_energy_mae_meV"]],
                "forces_ratio_protocol_over_loose": r["test_forces_mae_meV_A"] / s["test_forces_mae_meV_A"],
                "energy_ratio_protocol_over_loose": r["test_energy_mae_meV"] / s["test_energy_mae_meV"],
            }
        )
    return rows


def cmd_collect(a) -> None:
    runs = []
    for path in [WORK / "runs.jsonl"] + [Path(p) for p in a.extra]:  # --extra: runs done by a second process
        runs += [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(r["n_train"], r["l_max"], r["seed"]) for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("the same (n_train, l_max, seed) appears twice in the run records")
    runs.sort(key=lambda r: (r["l_max"], r["n_train"], r["seed"]))
    import numba

    doc = {
        "description": "learning curves on the shipped aspirin data (nequip_np/data/examples, 300 GFN2-xTB "
        "frames at 500 K); benchmarks/learning_curves.py",
        "protocol": {
            "sizes": SIZES,
            "l_max": L_MAX,
            "seeds": SEEDS,
            "n_test": N_TEST,
            "n_val": N_VAL,
            "split_seed": SPLIT_SEED,
            "model": MODEL,
            "batch_size": BATCH,
            "lr": LR,
            "ema_decay": EMA_DECAY,
            "schedule": SCHEDULE,
            "loose_schedule_of_the_convergence_check": LOOSE,
            "backend": BACKEND,
        },
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "note": a.note,
        },
        "total_train_wall_s": round(sum(r["train_wall_s"] for r in runs), 1),
        "summary": summarize(runs),
        "convergence_check": convergence_check(
            runs, [json.loads(x) for x in (WORK / "loose.jsonl").read_text().splitlines()]
        )
        if (WORK / "loose.jsonl").exists()
        else [],
        "runs": runs,
    }
    text = json.dumps(doc, indent=1) + "\n"
    RESULTS.write_text(text)
    SHIPPED.write_text(text)  # the copy notebook 06 reads outside a clone
    print(f"wrote {RESULTS} and {SHIPPED} ({len(runs)} runs, {doc['total_train_wall_s']:.0f} s of training)")
    import matplotlib

    from nequip_np.course import plot_learning_curves

    matplotlib.use("Agg")
    fig = plot_learning_curves(doc)
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE}")
    print(markdown_table(doc))
    for l_max, e in doc["summary"].items():
        print(
            f"l_max {l_max}: force slope {e['forces_slope']}, ± {e['forces_slope_stderr']}, "
            f"energy slope {e['energy_slope']} ± {e['energy_slope_stderr']}; "
            f"{e['converged_runs']}/{e['runs']} runs converged"
        )
    for c in doc["convergence_check"]:
        print(
            f"check N={c['n_train']} l_max={c['l_max']} seed={c['seed']}: steps loose/protocol {c['steps']}, "
            f"F MAE {c['forces_mae_meV_A'][0]:.1f} -> {c['forces_mae_meV_A'][1]:.1f} meV/Å "
            f"({c['forces_ratio_protocol_over_loose']:.3f}), E MAE ratio {c['energy_ratio_protocol_over_loose']:.3f}"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "time", "collect"):
        p = sub.add_parser(name)
        p.add_argument("--sizes", type=int, nargs="+", default=SIZES)
        p.add_argument("--l-max", type=int, nargs="+", default=L_MAX)
        p.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
        p.add_argument("--note", default="")
        p.add_argument("--extra", nargs="*", default=[], help="collect: more runs.jsonl files to merge")
        p.add_argument("--schedule", choices=sorted(SCHEDULES), default="protocol", help="run: the stopping rule")
    a = ap.parse_args(argv)
    os.environ.setdefault("NEQUIP_NP_NO_PROGRESS", "1")
    {"run": cmd_run, "time": cmd_time, "collect": cmd_collect}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
