#!/usr/bin/env python
"""Generate ``tests/fixtures/nequip/training.npz``: loss, parameter gradients and a
short Adam + EMA trajectory computed with official nequip/torch.

Requires ``torch`` and ``nequip`` (see ``docs/interop.md``); run from the repo root::

    python tools/make_training_fixtures.py [--out tests/fixtures/nequip/training.npz]

Contents (see docs/interop.md for the full naming scheme):

Part A (gradient check, 2-species float64 model, one batch of 3 frames):
  export format of the model (``state/``, ``metadata``, ``trainable_keys``, ...),
  ``input/fK/...`` frames incl. labels ``energy``, ``forces``, ``stress``
  (stress NaN for the molecule), ``batch_frames`` (order of frames in the batch),
  ``loss`` / ``grad/<key>`` for  L = 1/3 per-atom-energy MSE + 1/3 force MSE
  + 1/3 stress MSE (periodic frames only), ``loss_ef`` / ``grad_ef/<key>`` for
  L = 1/2 per-atom-energy MSE + 1/2 force MSE, and predictions ``pred/fK/...``.

Part B (training trajectory, 3-species float64 model on aspirin frames):
  ``traj/state/<key>``, ``traj/metadata``, ``traj/trainable_keys`` (initial weights),
  ``traj/pool/pK/...`` the frame pool, ``traj/batches`` (20, 2) pool indices per step,
  ``traj/loss`` (20,) loss of each step's batch before that step's update,
  ``traj/params_after/<key>`` (20, *shape) parameters after each optimizer step,
  ``traj/ema_after/<key>`` (20, *shape) EMA weights after each step's EMA update.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from export_nequip import build_model, export_arrays, trainable_keys  # noqa: E402
from make_nequip_fixtures import (  # noqa: E402
    _random_positions,
    make_data,
    randomise_weights,
    structure_arrays,
)

SEED = 777
ASPIRIN = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "aspirin_xtb_500K.extxyz"
)

GRAD_KWARGS = dict(
    seed=4242,
    model_dtype="float64",
    type_names=["H", "O"],
    r_max=4.0,
    num_layers=2,
    l_max=2,
    parity=True,
    num_features=6,
    radial_mlp_depth=1,
    radial_mlp_width=8,
    num_bessels=8,
    polynomial_cutoff_p=6,
    avg_num_neighbors=20.0,
    per_type_energy_scales={"H": 0.8, "O": 1.3},
    per_type_energy_shifts={"H": -0.5, "O": 0.7},
)


def batch_of(datas):
    from nequip.data import AtomicDataDict

    b = AtomicDataDict.batched_from_list(
        [{k: v.clone() for k, v in d.items() if not k.startswith("ref_")} for d in datas]
    )
    b["ref_total_energy"] = torch.cat([d["ref_total_energy"] for d in datas])
    b["ref_forces"] = torch.cat([d["ref_forces"] for d in datas])
    b["ref_stress"] = torch.cat([d["ref_stress"] for d in datas])
    return b


def _model_input(batch):
    return {k: v for k, v in batch.items() if not k.startswith("ref_")}


def loss_fn(out, batch, c_e, c_f, c_s):
    """Explicit loss (normalised coefficients):  c_e*mean_frames((E-E*)/N)^2
    + c_f*mean(F-F*)^2 + c_s*mean over non-NaN stress labels (σ-σ*)^2."""
    tot = c_e + c_f + c_s
    c_e, c_f, c_s = c_e / tot, c_f / tot, c_s / tot
    n = batch["num_atoms"].to(torch.float64).view(-1)
    e = out["total_energy"].view(-1)
    e_ref = batch["ref_total_energy"].view(-1)
    l_e = (((e - e_ref) / n) ** 2).mean()
    l_f = ((out["forces"] - batch["ref_forces"]) ** 2).mean()
    loss = c_e * l_e + c_f * l_f
    if c_s:
        s_ref = batch["ref_stress"]
        mask = ~torch.isnan(s_ref)
        l_s = ((torch.masked_select(out["stress"], mask) - torch.masked_select(s_ref, mask)) ** 2).mean()
        loss = loss + c_s * l_s
    return loss


def nequip_loss(out, batch, with_stress):
    """Same loss via nequip's own loss MetricsManager (cross-check)."""
    from nequip.train import EnergyForceLoss, EnergyForceStressLoss

    if with_stress:
        lm = EnergyForceStressLoss(ignore_nan={"stress": True})
    else:
        lm = EnergyForceLoss()
    target = {
        "total_energy": batch["ref_total_energy"].view(-1, 1),
        "forces": batch["ref_forces"],
        "num_atoms": batch["num_atoms"],
    }
    if with_stress:
        target["stress"] = batch["ref_stress"]
    preds = {k: out[k] for k in ("total_energy", "forces", "stress", "num_atoms")}
    return lm(preds, target)["weighted_sum"]


def _attach_labels(d, energy, forces, stress):
    d = dict(d)
    d["ref_total_energy"] = torch.tensor([energy], dtype=torch.float64)
    d["ref_forces"] = torch.as_tensor(forces, dtype=torch.float64)
    d["ref_stress"] = torch.as_tensor(stress, dtype=torch.float64).view(1, 3, 3)
    return d


def part_a(rng):
    model = randomise_weights(build_model(copy.deepcopy(GRAD_KWARGS)), rng)
    arrays = export_arrays(model, GRAD_KWARGS)
    tkeys = trainable_keys(model)
    params = dict(model.named_parameters())

    # frames: periodic triclinic (stress label), molecule, small periodic cell
    structs = []
    cell = np.diag([4.6, 4.9, 5.1]) + np.array([[0, 0.4, -0.3], [0, 0, 0.5], [0, 0, 0]])
    n = 9
    structs.append(
        dict(
            pos=_random_positions(rng, n, 0, 0, 1.0, cell=cell),
            atom_types=rng.integers(0, 2, n),
            cell=cell,
            pbc=np.array([True] * 3),
        )
    )
    n = 7
    structs.append(
        dict(
            pos=_random_positions(rng, n, 0, 3.0, 0.95),
            atom_types=rng.integers(0, 2, n),
            cell=np.zeros((3, 3)),
            pbc=np.array([False] * 3),
        )
    )
    cell = np.array([[3.1, 0.0, 0.0], [0.5, 2.9, 0.0], [-0.3, 0.4, 3.3]])
    n = 3
    structs.append(
        dict(
            pos=_random_positions(rng, n, 0, 0, 1.0, cell=cell),
            atom_types=np.array([0, 1, 1]),
            cell=cell,
            pbc=np.array([True] * 3),
        )
    )

    datas = []
    for k, st in enumerate(structs):
        d = make_data(st, GRAD_KWARGS)
        n = len(st["pos"])
        energy = float(rng.normal(0, 2.0))
        forces = rng.normal(0, 0.5, (n, 3))
        if st["pbc"].any():
            s = rng.normal(0, 0.05, (3, 3))
            stress = 0.5 * (s + s.T)
        else:
            stress = np.full((3, 3), np.nan)
        d = _attach_labels(d, energy, forces, stress)
        datas.append(d)
        arrays.update(structure_arrays(f"f{k}", d))
        arrays[f"input/f{k}/energy"] = np.array(energy)
        arrays[f"input/f{k}/forces"] = forces
        arrays[f"input/f{k}/stress"] = stress
    arrays["batch_frames"] = np.arange(len(datas), dtype=np.int64)

    model.train()  # create_graph=True inside ForceStressOutput
    batch = batch_of(datas)
    for name, cs, cmp_stress in (("", 1.0, True), ("_ef", 0.0, False)):
        out = model(_model_input(batch))
        loss = loss_fn(out, batch, 1.0, 1.0, cs)
        ref = nequip_loss(out, batch, cmp_stress)
        assert abs(float(loss) - float(ref)) < 1e-12 * max(1, abs(float(ref))), (float(loss), float(ref))
        grads = torch.autograd.grad(loss, [params[k] for k in tkeys], allow_unused=False)
        arrays["loss" + name] = np.array(float(loss.detach()))
        for k, g in zip(tkeys, grads):
            arrays[f"grad{name}/{k}"] = g.detach().numpy().copy()
        print(f"part A loss{name or '_efs'} = {float(loss):.10f} (nequip loss module: {float(ref):.10f})")
        if name == "":
            ptr = np.concatenate([[0], np.cumsum([len(s["pos"]) for s in structs])])
            for k in range(len(datas)):
                arrays[f"pred/f{k}/total_energy"] = out["total_energy"][k].detach().numpy().reshape(())
                arrays[f"pred/f{k}/atomic_energy"] = (
                    out["atomic_energy"][ptr[k] : ptr[k + 1]].detach().numpy().reshape(-1)
                )
                arrays[f"pred/f{k}/forces"] = out["forces"][ptr[k] : ptr[k + 1]].detach().numpy()
                arrays[f"pred/f{k}/stress"] = out["stress"][k].detach().numpy().reshape(3, 3)
            # finite-difference check of a few gradient entries
            eval_model = model
            for k in tkeys[:3] + tkeys[-2:]:
                p = params[k]
                idx = tuple(int(i) for i in np.unravel_index(int(rng.integers(p.numel())), p.shape))
                h = 1e-6
                with torch.no_grad():
                    p[idx] += h
                lp = float(loss_fn(eval_model(_model_input(batch)), batch, 1, 1, 1).detach())
                with torch.no_grad():
                    p[idx] -= 2 * h
                lm = float(loss_fn(eval_model(_model_input(batch)), batch, 1, 1, 1).detach())
                with torch.no_grad():
                    p[idx] += h
                fd = (lp - lm) / (2 * h)
                an = arrays[f"grad/{k}"][idx]
                assert abs(fd - an) < 1e-6 * max(1.0, abs(an)), (k, idx, fd, an)
            print("part A gradient FD spot-check OK")
    return arrays


def part_b(rng, n_steps=20, batch_size=2):
    import ase.io

    frames_all = ase.io.read(ASPIRIN, index=":")
    pool_idx = [0, 83, 166, 249, 332, 415]
    pool = [frames_all[i] for i in pool_idx]
    type_names = ["H", "C", "O"]
    sym2type = {s: i for i, s in enumerate(type_names)}

    r_max = 4.0
    structs = []
    for at in pool:
        structs.append(
            dict(
                pos=at.get_positions(),
                atom_types=np.array([sym2type[s] for s in at.get_chemical_symbols()]),
                cell=np.zeros((3, 3)),
                pbc=np.array([False] * 3),
                energy=float(at.get_potential_energy()),
                forces=at.get_forces(),
            )
        )
    # dataset statistics (as nequip's defaults would derive them)
    e_per_atom = np.mean([s["energy"] / len(s["pos"]) for s in structs])
    f_rms = float(np.sqrt(np.mean(np.concatenate([s["forces"].ravel() for s in structs]) ** 2)))
    kw_nl = dict(r_max=r_max, type_names=type_names)
    datas = [make_data(s, kw_nl) for s in structs]
    ann = float(np.mean([d["edge_index"].shape[1] / len(s["pos"]) for d, s in zip(datas, structs)]))
    kwargs = dict(
        seed=31337,
        model_dtype="float64",
        type_names=type_names,
        r_max=r_max,
        num_layers=2,
        l_max=1,
        parity=True,
        num_features=6,
        radial_mlp_depth=1,
        radial_mlp_width=8,
        num_bessels=8,
        polynomial_cutoff_p=6,
        avg_num_neighbors=round(ann, 6),
        per_type_energy_scales=round(f_rms, 6),
        per_type_energy_shifts=round(float(e_per_atom), 6),
    )
    model = build_model(copy.deepcopy(kwargs))
    arrays = {"traj/" + k: v for k, v in export_arrays(model, kwargs).items()}
    for k, (d, s) in enumerate(zip(datas, structs)):
        d = _attach_labels(d, s["energy"], s["forces"], np.full((3, 3), np.nan))
        datas[k] = d
        for name, v in structure_arrays(f"p{k}", d).items():
            arrays["traj/pool/" + name[len("input/") :]] = v
        arrays[f"traj/pool/p{k}/energy"] = np.array(s["energy"])
        arrays[f"traj/pool/p{k}/forces"] = s["forces"].astype(np.float64)
    arrays["traj/pool_source_indices"] = np.array(pool_idx, dtype=np.int64)

    # batch sequence: successive random permutations of the pool ("epochs")
    seq = []
    while len(seq) < n_steps * batch_size:
        seq.extend(rng.permutation(len(pool)).tolist())
    batches = np.array(seq[: n_steps * batch_size], dtype=np.int64).reshape(n_steps, batch_size)
    arrays["traj/batches"] = batches

    from nequip.train.ema import EMAWeights

    model.train()
    tkeys = trainable_keys(model)
    named = dict(model.named_parameters())
    assert [k for k, _ in model.named_parameters()] == tkeys  # EMA uses model.parameters() order
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    ema = EMAWeights(model, decay=0.999)
    ema.update_parameters(model)  # initial copy, as EMALightningModule.__init__ does (n -> 1)
    losses = []
    p_after = {k: [] for k in tkeys}
    e_after = {k: [] for k in tkeys}
    for step in range(n_steps):
        batch = batch_of([datas[i] for i in batches[step]])
        opt.zero_grad()
        out = model(_model_input(batch))
        loss = loss_fn(out, batch, 1.0, 1.0, 0.0)
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        losses.append(float(loss.detach()))
        for k, w in zip(tkeys, ema.ema_weights):
            e_after[k].append(w.detach().numpy().copy())
            p_after[k].append(named[k].detach().numpy().copy())
        print(f"step {step:2d} batch {batches[step].tolist()} loss {losses[-1]:.8f}")
    arrays["traj/loss"] = np.array(losses)
    for k in tkeys:
        arrays[f"traj/params_after/{k}"] = np.stack(p_after[k])
        arrays[f"traj/ema_after/{k}"] = np.stack(e_after[k])
    arrays["traj/config"] = np.array(
        json.dumps(
            {
                "optimizer": "torch.optim.Adam",
                "lr": 0.01,
                "betas": [0.9, 0.999],
                "eps": 1e-8,
                "amsgrad": False,
                "weight_decay": 0.0,
                "ema_decay": 0.999,
                "ema_warmup": "d = min(decay, (1+n)/(10+n)), n = 1 at the first optimizer step",
                "loss": "0.5*mean_frames(((E-E*)/N)^2) + 0.5*mean((F-F*)^2)",
                "batch_size": batch_size,
                "n_steps": n_steps,
            }
        )
    )
    return arrays


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join("tests", "fixtures", "nequip", "training.npz"))
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    rng = np.random.default_rng(SEED)
    arrays = part_a(rng)
    arrays.update(part_b(rng))
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    np.savez_compressed(a.out, **arrays)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
