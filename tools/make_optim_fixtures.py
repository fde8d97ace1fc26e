"""Generate tests/fixtures/optim_torch.npz: reference trajectories from torch (and nequip's EMA).

Needs torch (and nequip for the EMA trajectory); the package and the tests never import either.
Run from the repository root with an interpreter that has them:

    python tools/make_optim_fixtures.py

Contents (all float64):

* ``param_init/<name>``, ``grads/<name>``            initial parameters, gradients (30, *shape)
* ``adam/<case>/traj/<name>``                      parameters after each of 30 steps (30, *shape)
* ``adam/<case>/hparams``                          JSON of the Adam keyword arguments
* ``lr_schedule``                                  lr used at each step (changed at step 15)
* ``ema/decay``, ``ema/traj/<name>``               nequip ``EMAWeights`` after each update,
                                                   driven by the ``amsgrad`` case trajectory
* ``plateau/<case>/metrics``, ``/lrs``, ``/hparams``  ReduceLROnPlateau lr after each step(metric)
* ``meta``                                         JSON: torch version, CPU capability
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

N_STEPS = 30
SHAPES = {"a": (3,), "w.0": (4, 5), "b.long": (19,), "t": (2, 3, 4)}
ADAM_CASES = {
    "default": dict(lr=1e-2),
    "amsgrad": dict(lr=1e-2, amsgrad=True),
    "weight_decay": dict(lr=5e-3, weight_decay=0.1),
    "amsgrad_weight_decay": dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True),
    # 1 - beta1 >= 0.5 exercises the other branch of torch's lerp
    "small_beta1": dict(lr=1e-2, betas=(0.3, 0.6)),
}
PLATEAU_CASES = {
    "nequip_tutorial": dict(factor=0.6, patience=5, threshold=0.2, min_lr=1e-6),
    "torch_default": dict(),
    "abs_cooldown": dict(factor=0.5, patience=2, threshold=0.05, threshold_mode="abs", cooldown=3, min_lr=1e-3),
    "max_mode": dict(mode="max", factor=0.3, patience=3, threshold=0.01),
}


def lr_at(step: int, lr0: float) -> float:
    """lr used at (0-based) step: halved from step 15 on, to exercise a scheduler-set lr."""
    return lr0 if step < 15 else lr0 * 0.5


def main(out: str) -> None:
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(20240611)
    data: dict[str, np.ndarray] = {}
    init = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    # gradients over several orders of magnitude (some comparable to eps) and with sign flips
    grads = {
        k: rng.standard_normal((N_STEPS, *s)) * 10.0 ** rng.uniform(-7, 1, size=(1, *s)) for k, s in SHAPES.items()
    }
    for k in SHAPES:
        data[f"param_init/{k}"] = init[k]
        data[f"grads/{k}"] = grads[k]

    for case, hp in ADAM_CASES.items():
        params = [torch.nn.Parameter(torch.tensor(init[k])) for k in SHAPES]
        opt = torch.optim.Adam(params, foreach=False, **hp)
        traj = {k: [] for k in SHAPES}
        ema = None
        if case == "amsgrad":
            from nequip.train.ema import EMAWeights

            holder = torch.nn.ParameterList(params)
            ema = EMAWeights(holder, decay=0.9)
            ema.update_parameters(holder)  # the initial copy, as EMALightningModule does
            ema_traj = {k: [] for k in SHAPES}
        for step in range(N_STEPS):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, hp["lr"])
            for p, k in zip(params, SHAPES):
                p.grad = torch.tensor(grads[k][step])
            opt.step()
            for p, k in zip(params, SHAPES):
                traj[k].append(p.detach().numpy().copy())
            if ema is not None:
                ema.update_parameters(holder)
                for w, k in zip(ema.ema_weights, SHAPES):
                    ema_traj[k].append(w.numpy().copy())
        for k in SHAPES:
            data[f"adam/{case}/traj/{k}"] = np.stack(traj[k])
        data[f"adam/{case}/hparams"] = np.array(json.dumps(hp))
        if ema is not None:
            data["ema/decay"] = np.array(0.9)
            for k in SHAPES:
                data[f"ema/traj/{k}"] = np.stack(ema_traj[k])
    data["lr_factor_after_15"] = np.array(0.5)

    # a noisy decreasing validation curve with plateaus and a nan-free spike
    t = np.arange(120)
    metrics = np.exp(-t / 25.0) + 0.05 * np.sin(t / 3.0) ** 2 + 0.02 * rng.standard_normal(t.size)
    metrics[60:80] = metrics[59]  # flat plateau
    metrics[90] = 10.0  # spike
    for case, hp in PLATEAU_CASES.items():
        m = metrics if hp.get("mode", "min") == "min" else -metrics
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.01)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **hp)
        lrs = []
        for value in m:
            sched.step(float(value))
            lrs.append(opt.param_groups[0]["lr"])
        data[f"plateau/{case}/metrics"] = m
        data[f"plateau/{case}/lrs"] = np.array(lrs)
        data[f"plateau/{case}/hparams"] = np.array(json.dumps(hp))
    data["plateau/lr0"] = np.array(0.01)

    data["meta"] = np.array(
        json.dumps(
            {
                "torch": torch.__version__,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "n_steps": N_STEPS,
                "shapes": {k: list(s) for k, s in SHAPES.items()},
            }
        )
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez_compressed(out, **data)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(data)} arrays)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/optim_torch.npz")
