# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Kernels and backends: reference, Numba, CUDA (optional: engineering)
#
# **What this covers.** The three implementations of every operation behind
# `NequIPModel(backend=...)`: `"numpy"` (the reference: `kernels/<op>/reference.py`, the
# specification), `"numba"` (`cpu.py`, parallel CPU kernels) and `"cuda"` (`cuda.py`, run here in
# Numba's CUDA *simulator* unless a GPU is present). We check that they agree (maximum
# differences of energies and forces), time one energy + forces call per backend on growing
# systems, count the model's flops from its plan to turn times into GFLOP/s, compare that with the
# practical peak of this machine (a large NumPy matrix product), and verify that results are
# bitwise identical from run to run and for 1 or 2 threads.
#
# **What it does not cover.** The kernel designs (`docs/kernels.md`, `docs/cuda.md`), official
# nequip timings and memory (`docs/benchmarks.md`, `benchmarks/bench_cpu.py`), GPU performance
# (the simulator runs each GPU thread as a Python thread: it checks correctness, never speed),
# the training pass (complex step: notebook 05), and float32.

# %% [markdown]
# **Running this outside a clone of the repository** (a fresh Jupyter, or a hosted notebook
# service): the next cell installs the package if it is missing. Everything this notebook needs
# ships with the package.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("nequip_np") is None:  # a fresh environment: install the package first
    subprocess.run([sys.executable, "-m", "pip", "install", "nequip-np[notebooks]"], check=True)

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

# %matplotlib inline
plt.rcParams["figure.dpi"] = 72  # modest resolution keeps the committed notebooks small
np.set_printoptions(precision=4, suppress=True, linewidth=110)

SMOKE = os.environ.get("NEQUIP_NP_NOTEBOOK_SMOKE") == "1"  # CI runs every notebook with tiny sizes

# the OpenMP threading layer degrades badly on a loaded machine (docs/kernels.md); must be set
# before the first parallel Numba kernel runs
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
CELLS = [1, 2] if SMOKE else [1, 2, 3, 4, 5]   # fcc Cu cubic cells per side: 4 · n³ atoms
REPEATS = 2 if SMOKE else 5                     # timed calls per backend and size (median)
MATMUL_N = 256 if SMOKE else 2048                # matrix size of the BLAS peak measurement
DETERMINISM_RUNS = 2 if SMOKE else 5
SIM_FULL = not SMOKE                             # CUDA simulator: small model on ethanol (~30 s) or tiny on H2O

# %% [markdown]
# ## 1. What is available here
#
# The registry maps a backend to one module file per operation. An unavailable backend raises
# with a hint; there is never a silent fallback.

# %%
import time

import numba

from nequip_np.kernels._cuda_util import cuda_unavailable_reason, simulator_enabled
from nequip_np.kernels.registry import BACKEND_FILES, OPERATIONS, REFERENCE_ONLY

print("operations:", ", ".join(OPERATIONS), f"(reference only: {', '.join(sorted(REFERENCE_ONLY))})")
print("backend -> file:", BACKEND_FILES)
print(f"numba {numba.__version__}, {numba.get_num_threads()} threads")
GPU = not simulator_enabled() and cuda_unavailable_reason() is None
print("CUDA in this kernel:", "simulator (NUMBA_ENABLE_CUDASIM=1)" if simulator_enabled()
      else "a GPU" if GPU else f"no ({cuda_unavailable_reason()})")

# %% [markdown]
# ## 2. Agreement
#
# One model ($l_{\max} = 2$, parity, 3 layers, 16 channels) and one structure, evaluated by each
# backend. The kernels change loop order and reductions, not the maths, so differences are
# round-off: a few ulps of the largest value.

# %%
from ase.build import bulk, molecule

from nequip_np import NequIPModel
from nequip_np.data.graph import graph_from_atoms


def cu_model(backend):
    return NequIPModel(type_names=["Cu"], r_max=4.0, num_layers=3, l_max=2, parity=True, num_features=16,
                       radial_mlp_depth=1, radial_mlp_width=32, num_bessels=8, avg_num_neighbors=18.0,
                       per_type_energy_shifts={"Cu": -3.5}, seed=0, backend=backend)

def cu_cell(n):
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
    a.rattle(0.05, seed=1)
    return a

models = {b: cu_model(b) for b in ("numpy", "numba") + (("cuda",) if GPU else ())}
graph = graph_from_atoms(cu_cell(2), ["Cu"], 4.0)
start = time.perf_counter()
outs = {b: m.compute(graph) for b, m in models.items()}
print(f"{graph.n_atoms} atoms, {graph.n_edges} edges (the first calls include Numba's compilation or "
      f"cache load: {time.perf_counter() - start:.1f} s)")
for b in list(models)[1:]:
    for key in ("total_energy", "forces", "stress"):
        ref, got = outs["numpy"][key], outs[b][key]
        print(f"  {key:<12} max |{b} − numpy| = {np.abs(got - ref).max():.2e}  (max |value| {np.abs(ref).max():.3g})")

# %% [markdown]
# **The CUDA kernels.** Numba decides at `import numba.cuda` whether to use a GPU or its
# simulator (`NUMBA_ENABLE_CUDASIM=1`), so the simulator cannot be switched on in a process that
# has already imported it — this one has. We save the model, run the CUDA backend in a fresh
# Python process with the variable set (on a GPU machine: in this process), and compare with the
# reference here. The simulator is slow (every GPU thread is a Python thread), hence a smaller
# model and molecule.

# %%
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from ase.io import write

small = NequIPModel(type_names=["H", "C", "O"], r_max=3.5, num_layers=2 if SIM_FULL else 1,
                    l_max=2 if SIM_FULL else 1, num_features=[4, 3, 2] if SIM_FULL else [2, 2],
                    radial_mlp_width=8, num_bessels=6, avg_num_neighbors=5.0, seed=0)
mol = molecule("CH3CH2OH" if SIM_FULL else "H2O")
tmp = Path(tempfile.mkdtemp(prefix="nequip_np_08_"))
small.save(tmp / "small.npz"); write(tmp / "mol.xyz", mol)
CUDA_SCRIPT = f"""
import json, sys, time
from ase.io import read
from nequip_np import load_model
from nequip_np.data.graph import graph_from_atoms
t = time.perf_counter()
model = load_model({str(tmp / 'small.npz')!r}, backend="cuda")
g = graph_from_atoms(read({str(tmp / 'mol.xyz')!r}), model.config.type_names, model.config.r_max)
out = model.compute(g, stress=False)
print(json.dumps(dict(energy=float(out["total_energy"][0]), forces=out["forces"].tolist(),
                      seconds=time.perf_counter() - t)))
"""

def run_cuda():
    if simulator_enabled() or GPU:     # this process can run the CUDA backend itself
        t = time.perf_counter()
        out = NequIPModel(backend="cuda", **small.config.to_dict())
        out.load_params(small.params)
        res = out.compute(graph_from_atoms(mol, small.config.type_names, small.config.r_max), stress=False)
        return dict(energy=float(res["total_energy"][0]), forces=res["forces"], seconds=time.perf_counter() - t)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CUDA_SCRIPT)], env=env,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        print("CUDA simulator: no result within 300 s; skipped"); return None
    if proc.returncode != 0:
        print("CUDA simulator could not run; skipped. Last lines:\n" + proc.stderr.strip()[-600:]); return None
    return json.loads(proc.stdout.strip().splitlines()[-1])

cuda_out = run_cuda()
ref_small = small.compute(graph_from_atoms(mol, small.config.type_names, small.config.r_max), stress=False)
if cuda_out is not None:
    print(f"CUDA backend ({'GPU' if GPU else 'simulator'}, {len(mol)} atoms, {cuda_out['seconds']:.1f} s):")
    print(f"  energy  |cuda − numpy| = {abs(cuda_out['energy'] - ref_small['total_energy'][0]):.2e}")
    print(f"  forces  max |cuda − numpy| = {np.abs(np.array(cuda_out['forces']) - ref_small['forces']).max():.2e}"
          f"  (max |F| {np.abs(ref_small['forces']).max():.3g})")

# %% [markdown]
# ## 3. Timing on growing systems
#
# Rattled fcc copper, $4n^3$ atoms, about 18 neighbours per atom within 4 Å. One call is a forward
# pass plus the reverse pass for forces and stress. Each point is the median of `REPEATS` calls,
# after one untimed warm-up call. The machine is shared, so read ratios and slopes, not
# milliseconds.

# %%
import statistics

sizes, times = [], {b: [] for b in models}
graphs = {}
for n in CELLS:
    g = graph_from_atoms(cu_cell(n), ["Cu"], 4.0)
    graphs[n] = g
    sizes.append((g.n_atoms, g.n_edges))
    for b, m in models.items():
        m.compute(g)   # warm-up
        ts = []
        for _ in range(REPEATS):
            t = time.perf_counter(); m.compute(g); ts.append(time.perf_counter() - t)
        times[b].append(statistics.median(ts))
    print(f"{g.n_atoms:5d} atoms {g.n_edges:6d} edges: " +
          "  ".join(f"{b} {1e3 * times[b][-1]:8.1f} ms" for b in models) +
          f"  speed-up {times['numpy'][-1] / times['numba'][-1]:.1f}×")

# %%
n_atoms = np.array([s[0] for s in sizes])
fig, ax = plt.subplots(figsize=(5.2, 3.8))
for b, ts in times.items():
    ax.loglog(n_atoms, 1e3 * np.array(ts), "o-", label=b)
ax.loglog(n_atoms, 1e3 * times["numba"][-1] * n_atoms / n_atoms[-1], "k:", lw=0.8, label=r"$\propto N$")
ax.set_xlabel("atoms"); ax.set_ylabel("ms per energy + forces call"); ax.legend(); ax.grid(alpha=0.3, which="both")
ax.set_title(f"Cu, l_max 2, 16 channels, {numba.get_num_threads()} threads", fontsize=10)
fig.tight_layout()

# %% [markdown]
# Small systems are dominated by per-call overhead (Python, NumPy dispatch, kernel launches), so
# both curves flatten to the left; at large sizes the cost is linear in the number of edges.
#
# ## 4. Flops from the plan, and GFLOP/s
#
# The plan (`model.plan`) lists every layer's radial MLP widths, tensor-product paths and linear
# paths, so the multiply-adds of a forward pass follow from the sizes alone (the model of
# `benchmarks/bench_cpu.py`):
#
# $$\mathrm{MAC} = \sum_{\rm layers}\Big[E\sum_k r_k r_{k+1}
#     + E\sum_{p\in\rm TP}\big(\mathrm{nnz}(C_p) + \mathrm{mul}_p d_{1p} d_{3p} + \mathrm{mul}_p d_{3p}\big)
#     + N\!\!\sum_{p\in\rm lin, sc}\!\!\mathrm{mul}_{\rm in}\mathrm{mul}_{\rm out} d_p\Big]
#     + N\sum_k o_k o_{k+1},$$
#
# ($r$: radial MLP widths, $o$: readout widths) and an energy + forces call is counted as
# $3 \times$ the forward pass (the reverse pass costs about two forwards), 2 flops per MAC.

# %%
from nequip_np.model.plan import blocks


def flop_count(model, n_atoms, n_edges):
    macs = dict(radial_mlp=0, tensor_product=0, linear=0, self_connection=0, readout=0)
    for layer in model.plan.layers:
        macs["radial_mlp"] += n_edges * sum(a * b for a, b in zip(layer.radial_dims[:-1], layer.radial_dims[1:]))
        conv = layer.conv
        b_in, b_mid = blocks(conv.irreps_in), blocks(conv.irreps_mid)
        for p in conv.paths:
            mul, d1, d3 = b_in[p.i_in].mul, b_in[p.i_in].dim, b_mid[p.i_mid].dim
            macs["tensor_product"] += n_edges * (np.count_nonzero(p.cg) + mul * d1 * d3 + mul * d3)
        for lin in (layer.linear_1, layer.linear_2):
            macs["linear"] += n_atoms * sum(lin.bin[i].mul * lin.bout[o].mul * lin.bin[i].dim for i, o, _ in lin.paths)
        if layer.self_connection is not None:
            sc = layer.self_connection
            bi, bo = blocks(sc.irreps_in), blocks(sc.irreps_out)
            macs["self_connection"] += n_atoms * sum(bi[i].mul * bo[o].mul * bi[i].dim for i, o, _ in sc.paths)
    d = model.plan.readout_dims
    macs["readout"] = n_atoms * sum(a * b for a, b in zip(d[:-1], d[1:]))
    return macs, 6 * sum(macs.values())

macs, flops = flop_count(models["numpy"], *sizes[-1])
print(f"largest system ({sizes[-1][0]} atoms, {sizes[-1][1]} edges): {flops / 1e9:.2f} GFLOP per call")
for k, v in macs.items():
    print(f"  {k:<16} {100 * v / sum(macs.values()):5.1f} % of the MACs")

# %% [markdown]
# **A practical peak.** The theoretical peak needs the clock, vector width and FMA units of the
# CPU; a large matrix product through NumPy's BLAS on all threads is what this machine really
# delivers for dense float64 work, and a fair ceiling for any kernel here.

# %%
A, B = np.random.default_rng(0).standard_normal((2, MATMUL_N, MATMUL_N))
A @ B
mm = []
for _ in range(3):
    t = time.perf_counter(); A @ B; mm.append(time.perf_counter() - t)
peak = 2 * MATMUL_N**3 / min(mm) / 1e9
print(f"{MATMUL_N}×{MATMUL_N} float64 matmul: {peak:.1f} GFLOP/s (best of 3) — the practical peak")

gflops = {b: [flop_count(models['numpy'], *s)[1] / t / 1e9 for s, t in zip(sizes, ts)] for b, ts in times.items()}
for b, g in gflops.items():
    print(f"{b:>6}: {g[-1]:6.2f} GFLOP/s on the largest system = {100 * g[-1] / peak:5.1f} % of the matmul peak")

fig, ax = plt.subplots(figsize=(5.2, 3.6))
for b, g in gflops.items():
    ax.semilogx(n_atoms, g, "o-", label=b)
ax.axhline(peak, color="k", ls="--", lw=1, label=f"BLAS matmul {peak:.0f} GFLOP/s")
ax.set_yscale("log"); ax.set_xlabel("atoms"); ax.set_ylabel("GFLOP/s (flop model)")
ax.legend(fontsize=8); ax.grid(alpha=0.3, which="both")
fig.tight_layout()

# %% [markdown]
# The model runs far below the matrix-product peak: its work is many small contractions
# ($d \le 5$, 16 channels) with gathers and scatters over edges, bound by memory traffic and loop
# overhead rather than arithmetic. Only the radial MLP and the linear layers are dense products
# (BLAS in both backends).
#
# ## 5. Determinism
#
# Every Numba kernel writes each output element from one thread, summing in a fixed edge order
# (no atomics, no race between threads), so repeated calls — and calls with a different number of
# threads — give the same bits. Bitwise determinism makes MD trajectories and training runs
# exactly reproducible and regressions visible to the last digit.

# %%
import hashlib


def fingerprint(out):
    h = hashlib.sha256()
    for key in ("total_energy", "forces", "stress"):
        h.update(np.ascontiguousarray(out[key]).tobytes())
    return h.hexdigest()[:16]

g = graphs[CELLS[-1]]
threads = numba.get_num_threads()
prints = {}
for b, m in models.items():
    prints[b] = [fingerprint(m.compute(g)) for _ in range(DETERMINISM_RUNS)]
numba.set_num_threads(1)
prints["numba, 1 thread"] = [fingerprint(models["numba"].compute(g)) for _ in range(2)]
numba.set_num_threads(threads)
for label, fps in prints.items():
    print(f"{label:<16} {len(fps)} runs, distinct results: {len(set(fps))}   {fps[0]}")
print("numba (any threads) identical:", len(set(prints["numba"] + prints["numba, 1 thread"])) == 1)
print("numba vs numpy bitwise equal:", prints["numba"][0] == prints["numpy"][0],
      "(nor should they be: different summation orders; equal to round-off, section 2)")

# %% [markdown]
# **Try it.** (1) Raise `CELLS` to 6 or 7 and see where the speed-up settles. (2) Time with
# `numba.set_num_threads(1)` and compare the two curves. (3) Print `models["numba"].plan.layers[1]`
# and find which paths dominate the tensor-product flops (notebook 02, section 5).
#
# <details><summary>Solutions</summary>
#
# (1) `CELLS = [1, 2, 3, 4, 5, 6, 7]`: the Numba/reference ratio keeps growing while the
# per-call overhead still matters and flattens once every call is dominated by arithmetic — read
# the ratio off the printed table.
# (2) `numba.set_num_threads(1)` before the timing cell: on a machine with more than one free
# core the large systems slow down by up to the core count; the small ones barely change.
# (3) `for p in models["numba"].plan.layers[1].conv.paths: print(p)` and the per-path flops of
# notebook 02, section 5: paths into $l = 2$ outputs from $l = 2$ inputs dominate.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Every backend shares the scalar functions. Write SiLU, $x\,\sigma(x)$, and its derivative
# $\sigma(x)\,(1 + x(1 - \sigma(x)))$, and compare with `nequip_np.kernels.common`. One solution is
# filled in.

# %%
from nequip_np.kernels.common import silu, silu_grad


def my_silu(x):
    return x / (1 + np.exp(-x))

def my_silu_grad(x):
    s = 1 / (1 + np.exp(-x))
    return s * (1 + x * (1 - s))

xs = np.linspace(-20, 20, 4001)
err_silu = max(np.abs(my_silu(xs) - silu(xs)).max(), np.abs(my_silu_grad(xs) - silu_grad(xs)).max())
print(f"max |mine − package| for SiLU and its derivative: {err_silu:.1e}")
assert err_silu < 1e-13
