"""Learning-rate schedulers: exact sequences against torch, resumption, config errors.

tests/fixtures/lr_schedules_torch.json comes from tools/make_schedule_fixtures.py (torch's
LinearLR, CosineAnnealingLR, StepLR, SequentialLR, ChainedScheduler on one Adam group). The
schedulers use torch's recursive formulas, so the sequences agree float for float.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from nequip_np.train.optim import Adam
from nequip_np.train.schedule import build_lr_scheduler, check_lr_scheduler_spec

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "lr_schedules_torch.json").read_text())
CASES = sorted(FIXTURE["cases"])


def _run(spec, n, lr0=FIXTURE["lr0"]):
    opt = SimpleNamespace(lr=lr0)
    sched = build_lr_scheduler(check_lr_scheduler_spec(spec), opt)
    lrs = [opt.lr]
    for _ in range(n):
        sched.step()
        lrs.append(opt.lr)
    return lrs


@pytest.mark.parametrize("case", CASES)
def test_lr_sequence_equals_torch(case):
    c = FIXTURE["cases"][case]
    assert _run(c["spec"], FIXTURE["n_steps"]) == c["lrs"]  # exact float equality


@pytest.mark.parametrize("case", ["warmup_step_cosine", "chained_warmup_step", "cosine"])
def test_resumed_schedule_is_bit_identical(case):
    import numpy as np

    spec = FIXTURE["cases"][case]["spec"]
    full = _run(spec, 30)
    opt = Adam({"w": np.zeros(1)}, lr=FIXTURE["lr0"])
    sched = build_lr_scheduler(spec, opt)
    for _ in range(11):
        sched.step()
    saved_sched = json.loads(json.dumps(sched.state_dict()))  # as a checkpoint stores it
    saved_opt = opt.state_dict()
    opt2 = Adam({"w": np.zeros(1)}, lr=FIXTURE["lr0"])
    sched2 = build_lr_scheduler(spec, opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    rest = [opt2.lr]
    for _ in range(19):
        sched2.step()
        rest.append(opt2.lr)
    assert rest == full[11:]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "cosin", "T_max": 3}, "did you mean 'cosine'"),
        ({"name": "cosine"}, "needs 'T_max'"),
        ({"name": "step", "step_size": 2, "gama": 0.5}, "unknown key"),
        ({"name": "linear", "start_factor": 0.0}, "start_factor must be in"),
        ({"name": "sequential", "milestones": [2, 4], "schedulers": [{"name": "step", "step_size": 1}]}, "milestones"),
    ],
)
def test_bad_scheduler_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        check_lr_scheduler_spec(spec)
