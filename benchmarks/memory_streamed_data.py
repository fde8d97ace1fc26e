"""Training from a memory-mapped frame store: peak memory and throughput against the in-memory path.

Synthetic dataset: each frame is 1–4 aspirin molecules (21–84 atoms) drawn from the shipped xTB
example (examples/aspirin/aspirin_xtb_300.extxyz), each randomly rotated, rattled by 0.01 Å and
placed 12 Å apart (beyond r_max, so they do not interact); labels are the summed energies and the
rotated forces (slightly inconsistent with the rattled positions; this is a throughput benchmark).
The frames are generated and written one at a time (``write_store``), never held together.

Phases, each in a fresh process so that ``ru_maxrss`` is that phase's peak:

* ``make``      write the store of ``--frames`` frames (optionally caching neighbour lists);
* ``streamed``  the training path on the whole store: one streaming statistics pass over every
  frame, then ``--steps`` force-trained Adam steps on shuffled batches drawn from all frames
  (graphs built per batch from the memory map; neighbour lists cached or built per batch);
* ``memory``    the in-memory path (``GraphDataset``) on the first ``--memory-frames`` frames, same
  model and steps; its RSS per frame extrapolates what holding every frame would take.

Throughput is steps per second after ``--warmup`` steps; the ratio streamed / in-memory is the
acceptance number (≥ 0.9), peak RSS of ``streamed`` the other (≤ 2 GB).

    nice -n 19 python benchmarks/memory_streamed_data.py --frames 100000 --workdir /tmp/streamed

``--tile K`` generates ``frames / K`` distinct frames and repeats them K times in the store (for a
machine too loaded to generate and neighbour-list every frame in reasonable time); training still
reads shuffled batches from all ``frames`` positions of the store.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOURCE = os.path.join(ROOT, "examples", "aspirin", "aspirin_xtb_300.extxyz")
TYPES = ["H", "C", "O"]
MODEL = dict(
    type_names=TYPES,
    r_max=4.0,
    num_layers=3,
    l_max=1,
    num_features=16,
    radial_mlp_width=32,
    avg_num_neighbors=10.0,
    per_type_energy_shifts={"H": -13.0, "C": -100.0, "O": -60.0},
    seed=1,
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def random_rotation(rng):
    """Uniform random rotation matrix (from a normalised Gaussian quaternion)."""
    import numpy as np

    w, x, y, z = rng.standard_normal(4)
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def synthetic_frames(n, seed=0):
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    pool = read(SOURCE, ":")
    mols = [
        (a.numbers.copy(), a.positions - a.positions.mean(0), a.get_potential_energy(), a.get_forces()) for a in pool
    ]
    rng = np.random.default_rng(seed)
    for _ in range(n):
        numbers, pos, forces, energy = [], [], [], 0.0
        for m in range(int(rng.integers(1, 5))):
            z, p, e, f = mols[int(rng.integers(len(mols)))]
            rot = random_rotation(rng)
            numbers.append(z)
            pos.append(p @ rot.T + rng.normal(0, 0.01, p.shape) + [12.0 * m, 0.0, 0.0])
            forces.append(f @ rot.T)
            energy += e
        atoms = Atoms(numbers=np.concatenate(numbers), positions=np.concatenate(pos))
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.concatenate(forces))
        yield atoms


def tile_store(path, k) -> None:
    """Repeat a store's frames k times by concatenating its arrays (offsets shifted)."""
    import numpy as np

    meta_path = os.path.join(path, "meta.json")
    with open(meta_path) as fh:
        meta = json.load(fh)
    for name, (dtype, shape) in meta["arrays"].items():
        data = np.fromfile(os.path.join(path, name), dtype=dtype).reshape(shape)
        if name in ("offsets", "edge_offsets"):
            step = data[-1]
            data = np.concatenate([data[:-1] + i * step for i in range(k)] + [data[-1:] * k])
        else:
            data = np.concatenate([data] * k)
        data.tofile(os.path.join(path, name))
        meta["arrays"][name][1][0] = int(data.shape[0])
    meta["n_frames"] *= k
    meta["n_atoms"] *= k
    if meta["edges"]:
        meta["edges"]["n_edges"] *= k
    meta["provenance"] = {"benchmark": f"synthetic frames tiled {k} times"}
    with open(meta_path, "w") as fh:
        json.dump(meta, fh)


def phase_make(a) -> dict:
    from nequip_np.data.store import FrameStore, write_store

    t0 = time.perf_counter()
    store = write_store(
        synthetic_frames(a.frames // a.tile),
        a.store,
        r_max=MODEL["r_max"] if a.cache_edges else None,
        overwrite=True,
        progress=False,
    )
    if a.tile > 1:
        tile_store(a.store, a.tile)
        store = FrameStore(a.store)
    size = sum(os.path.getsize(os.path.join(a.store, f)) for f in os.listdir(a.store))
    return {
        "phase": "make",
        "frames": len(store),
        "distinct_frames": a.frames // a.tile,
        "atoms": store.n_atoms,
        "seconds": time.perf_counter() - t0,
        "store_mb": size / 2**20,
        "atoms_per_frame": store.meta["atoms_per_frame"],
        "cached_edges": store.meta["edges"],
        "peak_rss_mb": peak_rss_mb(),
    }


def _train_steps(dataset, a) -> dict:
    import numpy as np

    from nequip_np.data.dataset import iterate_batches
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.train.loss import LossCoefficients, loss_and_grad
    from nequip_np.train.optim import Adam

    model = NequIPModel(backend=a.backend, **MODEL)
    opt = Adam(model.params, lr=1e-3)
    coeffs = LossCoefficients(1.0, 1.0, 0.0)
    batches = iterate_batches(dataset, a.batch_size, shuffle=True, rng=np.random.default_rng(5))
    times, data_times, atoms = [], [], []
    for _step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        _, _, grads, _ = loss_and_grad(model, batch, coeffs)
        opt.step(grads)
        times.append(time.perf_counter() - t0)
        data_times.append(t1 - t0)
        atoms.append(batch.n_atoms)
    run, n, dt = times[a.warmup :], atoms[a.warmup :], data_times[a.warmup :]
    # batches hold 21-420 atoms: atoms per second compares the paths fairly, steps per second does not;
    # data_fraction (batch assembly / step) is the part of the step the data path is responsible for,
    # and is far less sensitive to other jobs on the machine than the step time itself
    return {
        "steps": a.steps,
        "seconds": float(np.sum(run)),
        "steps_per_s": a.steps / float(np.sum(run)),
        "atoms_per_s": float(np.sum(n)) / float(np.sum(run)),
        "median_step_s": float(np.median(run)),
        "data_seconds_per_atom": float(np.sum(dt)) / float(np.sum(n)),
        "data_fraction": float(np.sum(dt)) / float(np.sum(run)),
    }


def phase_streamed(a) -> dict:
    from nequip_np.data.stats import streaming_statistics
    from nequip_np.data.store import StreamedDataset

    data = StreamedDataset(a.store, TYPES, MODEL["r_max"])
    t0 = time.perf_counter()
    stats = streaming_statistics(data, TYPES)
    t_stats = time.perf_counter() - t0
    out = {
        "phase": "streamed",
        "frames": len(data),
        "cached_edges": data.store.edges_cached_for(MODEL["r_max"], None),
        "stats_seconds": t_stats,
        "num_neighbors_mean": stats["num_neighbors_mean"],
    }
    out.update(_train_steps(data, a))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def phase_memory(a) -> dict:
    import gc

    from nequip_np.data.dataset import GraphDataset

    next(synthetic_frames(1))  # imports and the molecule pool, before the baseline
    gc.collect()
    base = current_rss_mb()
    t0 = time.perf_counter()
    data = GraphDataset(list(synthetic_frames(a.memory_frames)), TYPES, MODEL["r_max"])
    t_build = time.perf_counter() - t0
    gc.collect()
    held = current_rss_mb() - base  # the frames (ase.Atoms) and their graphs, as the trainer holds them
    out = {
        "phase": "memory",
        "frames": len(data),
        "build_seconds": t_build,
        "dataset_rss_mb": held,
        "rss_mb_per_1e5_frames_extrapolated": held / len(data) * 1e5,
    }
    out.update(_train_steps(data, a))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def child(a) -> None:
    result = {"make": phase_make, "streamed": phase_streamed, "memory": phase_memory}[a.phase](a)
    print("RESULT " + json.dumps(result), flush=True)


def run_phase(phase, a) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase] + [
        x for k, v in vars(a).items() if k not in ("phase", "output", "repeats") for x in _flag(k, v)
    ]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"phase {phase} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    r = json.loads(lines[-1][7:])
    print(json.dumps(r), flush=True)
    return r


def _flag(k, v):
    name = "--" + k.replace("_", "-")
    if isinstance(v, bool):
        return [name] if v else []
    return [] if v is None else [name, str(v)]


def summarize(rows) -> dict:
    """Throughput ratio streamed / in-memory, two ways, and the streamed peak RSS.

    ``throughput_ratio_streamed_over_memory``: best-of-repeats atoms/s of each path; on a shared
    machine the step time of one repeat can differ by 2x from the next, so this ratio is mostly noise.
    ``throughput_ratio_from_data_time``: both paths run the same model code on batches from the same
    distribution and differ only in batch assembly; with m the fastest model time per atom seen in any
    phase and d the batch-assembly time per atom of each path, (m + d_memory) / (m + d_streamed).
    """
    best = {
        ph: max((r for r in rows if r["phase"] == ph), key=lambda r: r["atoms_per_s"]) for ph in ("memory", "streamed")
    }
    out = {}
    timed = [r for r in rows if "data_seconds_per_atom" in r]
    if timed:
        d = {ph: min(r["data_seconds_per_atom"] for r in timed if r["phase"] == ph) for ph in ("memory", "streamed")}
        m = min(1.0 / r["atoms_per_s"] - r["data_seconds_per_atom"] for r in timed)
        out = {
            "throughput_ratio_from_data_time": (m + d["memory"]) / (m + d["streamed"]),
            "model_seconds_per_atom": m,
            "data_seconds_per_atom": d,
        }
    return {
        **out,
        "throughput_ratio_streamed_over_memory": best["streamed"]["atoms_per_s"] / best["memory"]["atoms_per_s"],
        "best_atoms_per_s": {ph: r["atoms_per_s"] for ph, r in best.items()},
        "streamed_peak_rss_mb": max(r["peak_rss_mb"] for r in rows if r["phase"] == "streamed"),
        "memory_rss_mb_per_1e5_frames_extrapolated": max(
            r["rss_mb_per_1e5_frames_extrapolated"] for r in rows if r["phase"] == "memory"
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--memory-frames", type=int, default=2000)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--backend", default="numba")
    p.add_argument("--repeats", type=int, default=2, help="alternate memory/streamed runs; best of each")
    p.add_argument("--workdir", default=os.path.join(ROOT, "benchmarks", "_streamed_work"))
    p.add_argument("--cache-edges", action="store_true", help="cache neighbour lists in the store")
    p.add_argument(
        "--tile",
        type=int,
        default=1,
        help="generate frames/tile distinct frames and repeat them tile times (a machine too "
        "loaded to generate every frame; the streamed reads still span the whole store)",
    )
    p.add_argument("--output", default=os.path.join(HERE, "results", "memory_streamed_data.json"))
    p.add_argument("--summarize", help="recompute the summary of an existing result JSON and exit")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.store is None:
        a.store = os.path.join(a.workdir, f"synthetic_{a.frames}.frames")
    if a.phase:
        return child(a)
    if a.summarize:
        with open(a.summarize) as fh:
            result = json.load(fh)
        result["summary"].update(summarize(result["rows"]))
        with open(a.summarize, "w") as fh:
            json.dump(result, fh, indent=1)
        return print(json.dumps(summarize(result["rows"]), indent=1))
    os.makedirs(a.workdir, exist_ok=True)
    rows = [run_phase("make", a)]
    for _ in range(a.repeats):
        rows.append(run_phase("memory", a))
        rows.append(run_phase("streamed", a))
    summary = summarize(rows)
    summary.update(
        {
            "frames": a.frames,
            "tile": a.tile,
            "cache_edges": a.cache_edges,
            "backend": a.backend,
            "batch_size": a.batch_size,
            "model": MODEL,
            "cpu_count": os.cpu_count(),
        }
    )
    print(json.dumps(summary, indent=1))
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    with open(a.output, "w") as fh:
        json.dump({"summary": summary, "rows": rows}, fh, indent=1)
    shutil.rmtree(a.store, ignore_errors=True)


if __name__ == "__main__":
    main()
