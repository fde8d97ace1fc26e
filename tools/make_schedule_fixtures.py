"""Generate tests/fixtures/lr_schedules_torch.json: learning-rate sequences of torch's schedulers.

Needs torch; the package and the tests never import it. Run from the repository root with an
interpreter that has torch:

    python tools/make_schedule_fixtures.py

Each case is built the way a nequip config builds it (a ``torch.optim.lr_scheduler`` object, nested
``SequentialLR`` / ``ChainedScheduler`` for chains) on one Adam parameter group with ``lr0``; the
fixture stores the learning rate before the first ``step()`` and after each of ``n_steps`` calls.
"""

from __future__ import annotations

import json
import sys

import torch
from torch.optim import lr_scheduler as S

LR0 = 0.01
N_STEPS = 40

# name -> (spec written in nequip-np's config syntax, builder of the torch scheduler)
CASES = {
    "linear_warmup": (
        {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 5},
        lambda o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
    ),
    "linear_decay": (
        {"name": "linear", "start_factor": 1.0, "end_factor": 0.05, "total_iters": 30},
        lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=30),
    ),
    "cosine": (
        {"name": "cosine", "T_max": 10, "eta_min": 1e-4},
        lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-4),
    ),
    "cosine_long": ({"name": "cosine", "T_max": 37, "eta_min": 0.0}, lambda o: S.CosineAnnealingLR(o, T_max=37)),
    "step": ({"name": "step", "step_size": 3, "gamma": 0.5}, lambda o: S.StepLR(o, step_size=3, gamma=0.5)),
    "warmup_then_cosine": (
        {
            "name": "sequential",
            "milestones": [4],
            "schedulers": [
                {"name": "linear", "start_factor": 0.01, "end_factor": 1.0, "total_iters": 4},
                {"name": "cosine", "T_max": 30, "eta_min": 1e-5},
            ],
        },
        lambda o: S.SequentialLR(
            o,
            [
                S.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=4),
                S.CosineAnnealingLR(o, T_max=30, eta_min=1e-5),
            ],
            milestones=[4],
        ),
    ),
    "warmup_step_cosine": (
        {
            "name": "sequential",
            "milestones": [3, 12],
            "schedulers": [
                {"name": "linear", "start_factor": 0.2, "end_factor": 1.0, "total_iters": 3},
                {"name": "step", "step_size": 4, "gamma": 0.7},
                {"name": "cosine", "T_max": 20, "eta_min": 1e-4},
            ],
        },
        lambda o: S.SequentialLR(
            o,
            [
                S.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=3),
                S.StepLR(o, step_size=4, gamma=0.7),
                S.CosineAnnealingLR(o, T_max=20, eta_min=1e-4),
            ],
            milestones=[3, 12],
        ),
    ),
    "chained_warmup_step": (
        {
            "name": "chained",
            "schedulers": [
                {"name": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 5},
                {"name": "step", "step_size": 4, "gamma": 0.7},
            ],
        },
        lambda o: S.ChainedScheduler(
            [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5), S.StepLR(o, step_size=4, gamma=0.7)],
            optimizer=o,
        ),
    ),
}


def main(path="tests/fixtures/lr_schedules_torch.json"):
    torch.set_default_dtype(torch.float64)
    out = {"lr0": LR0, "n_steps": N_STEPS, "torch": torch.__version__, "cases": {}}
    for name, (spec, build) in CASES.items():
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=LR0)
        sched = build(opt)
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(N_STEPS):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        out["cases"][name] = {"spec": spec, "lrs": lrs}
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
