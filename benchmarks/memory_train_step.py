"""Peak memory of one force-trained optimisation step on a ~4000-atom periodic frame.

Rattled fcc Cu, 10×10×10 cubic cells (4000 atoms), r_max 5.0, l_max 2, 32 features, nequip defaults
otherwise (4 layers, radial MLP 1×128), float64, random energy/force labels; one ``loss_and_grad`` +
Adam step. Each implementation runs in its own fresh process, so ``ru_maxrss`` is the step's peak.
Official nequip (optional, ``--nequip-python``) runs the same step with its double backward
(``create_graph=True``) under an address-space cap (``--cap-gb``) so that an out-of-memory ends that
process instead of the machine.

    python benchmarks/memory_train_step.py --nequip-python /path/to/torch-env/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KW = dict(
    type_names=["Cu"],
    r_max=5.0,
    l_max=2,
    num_layers=4,
    num_features=32,
    radial_mlp_depth=1,
    radial_mlp_width=128,
    num_bessels=8,
    avg_num_neighbors=43.0,
    model_dtype="float64",
    seed=1,
)


def structure(rep):
    import numpy as np
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((rep, rep, rep))
    atoms.rattle(0.05, seed=1)
    rng = np.random.default_rng(0)
    return atoms, rng.normal(-3.5 * len(atoms), 1.0), rng.standard_normal((len(atoms), 3))


def ours(rep, backend):
    import numpy as np

    sys.path.insert(0, ROOT)
    from nequip_np import NequIPModel
    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.train.loss import LossCoefficients, loss_and_grad
    from nequip_np.train.optim import Adam

    atoms, energy, forces = structure(rep)
    model = NequIPModel(backend=backend, **KW)
    g = graph_from_atoms(atoms, ["Cu"], 5.0)
    g.energy, g.forces = np.array([energy]), forces
    opt = Adam(model.params, lr=1e-3)
    t = time.perf_counter()
    loss, _, grads, _ = loss_and_grad(model, g, LossCoefficients(1.0, 1.0, 0.0))
    opt.step(grads)
    return dict(
        impl=f"nequip_np ({backend})",
        n_atoms=g.n_atoms,
        n_edges=g.n_edges,
        seconds=time.perf_counter() - t,
        loss=loss,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def official(rep, cap_gb):
    resource.setrlimit(resource.RLIMIT_AS, (int(cap_gb * 2**30),) * 2)
    import numpy as np
    import torch
    from nequip.data import from_dict
    from nequip.data.transforms import NeighborListTransform
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    atoms, energy, forces = structure(rep)
    kw = {k: v for k, v in KW.items() if k != "seed"}
    model = NequIPGNNModel(seed=1, **kw)
    data = from_dict(
        {
            "pos": atoms.positions.astype(np.float64),
            "atom_types": np.zeros(len(atoms), np.int64),
            "cell": np.asarray(atoms.cell.array, dtype=np.float64),
            "pbc": np.ones(3, dtype=bool),
        }
    )
    data = NeighborListTransform(r_max=5.0, type_names=["Cu"])(data)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = time.perf_counter()
    try:
        out = model(data)
        f_ref = torch.as_tensor(forces)
        e = out["total_energy"].sum()
        loss = 0.5 * ((e - energy) / len(atoms)) ** 2 + 0.5 * ((out["forces"] - f_ref) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        status = "ok"
    except (MemoryError, RuntimeError) as exc:
        status = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        loss = float("nan")
    return dict(
        impl="official nequip 0.19.1",
        n_atoms=len(atoms),
        n_edges=int(data["edge_index"].shape[1]),
        seconds=time.perf_counter() - t,
        loss=float(loss),
        status=status,
        cap_gb=cap_gb,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rep", type=int, default=10, help="cubic fcc cells per direction (4·rep³ atoms)")
    p.add_argument("--backend", default="numba")
    p.add_argument("--nequip-python", default=None)
    p.add_argument("--cap-gb", type=float, default=16.0)
    p.add_argument("--child", choices=["ours", "official"], default=None)
    p.add_argument("--out", default=os.path.join(HERE, "results", "memory_train_step.json"))
    a = p.parse_args()
    if a.child == "ours":
        return print("RESULT " + json.dumps(ours(a.rep, a.backend)), flush=True)
    if a.child == "official":
        return print("RESULT " + json.dumps(official(a.rep, a.cap_gb)), flush=True)
    rows = []
    jobs = [(sys.executable, "ours")] + ([(a.nequip_python, "official")] if a.nequip_python else [])
    for python, which in jobs:
        cmd = [
            python,
            os.path.abspath(__file__),
            "--child",
            which,
            "--rep",
            str(a.rep),
            "--backend",
            a.backend,
            "--cap-gb",
            str(a.cap_gb),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        rows.append(
            json.loads(line[0][7:])
            if line
            else dict(impl=which, status=f"process failed (code {proc.returncode})", stderr=proc.stderr[-1500:])
        )
        print(rows[-1], flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(dict(threads=os.environ.get("OMP_NUM_THREADS", "default"), rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
