"""Figures for docs/benchmarks.md from benchmarks/results/*.json (matplotlib).

python benchmarks/plot_results.py
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
FIGS = os.path.join(os.path.dirname(HERE), "docs", "figures")


def _rows(name):
    with open(os.path.join(RESULTS, name)) as fh:
        return json.load(fh)["rows"]


def ratio_figure():
    rows = [r for r in _rows("cpu_v2.json") + _rows("cpu_4000_v2.json") if r.get("ratio_vs_nequip", {}).get("numba")]
    labels = [f"{r['system']} l{r['l_max']} {r['dtype'][5:]} {r['threads']}t" for r in rows]
    ratios = [r["ratio_vs_nequip"]["numba"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(range(len(rows)), ratios, color=["tab:green" if x < 1 else "tab:red" for x in ratios])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlabel("time numba / time official nequip (eager, CPU)  — < 1 is faster")
    ax.set_title("energy + forces, same weights, same machine")
    fig.tight_layout()
    fig.savefig(os.path.join(FIGS, "bench_ratio.png"), dpi=110)


def scaling_figure():
    rows = _rows("cpu_scaling_v2.json")
    n = [r["n_atoms"] for r in rows]
    per_atom = [r["median_ms"]["numba"] / r["n_atoms"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(n, per_atom, "o-")
    ax.set_ylim(0.5, 10)
    ax.set_xlabel("atoms (rattled fcc Cu, r_max 5 Å)")
    ax.set_ylabel("ms per atom (energy + forces)")
    ax.set_title("numba, l_max 1, float64, 2 threads")
    fig.tight_layout()
    fig.savefig(os.path.join(FIGS, "bench_scaling.png"), dpi=110)


if __name__ == "__main__":
    os.makedirs(FIGS, exist_ok=True)
    ratio_figure()
    scaling_figure()
    print("wrote docs/figures/bench_ratio.png, docs/figures/bench_scaling.png")
