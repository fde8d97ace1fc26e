r"""Learning-rate schedule and stopping criteria.

* :class:`ReduceLROnPlateau` — ``torch.optim.lr_scheduler.ReduceLROnPlateau`` line for line
  (single parameter group); nequip's tutorial config uses it on the validation metric.
* :class:`EarlyStopping` — Lightning's ``EarlyStopping`` callback reduced to its decision rule.
* :func:`lr_below` — the paper-era "stop once the learning rate fell below ``min_lr``" rule.
* :class:`LinearLR`, :class:`CosineAnnealingLR`, :class:`StepLR`, :class:`SequentialLR`,
  :class:`ChainedScheduler` — torch's schedulers of those names, with torch's *recursive* update
  formulas (each step multiplies the current rate), so the learning-rate sequence equals torch's
  float for float; :func:`build_lr_scheduler` builds one (or a nested chain) from a config mapping.

torch semantics kept: constructing a scheduler performs its "initial step" (``LinearLR`` starts at
``start_factor·lr`` right away); every scheduler in a chain shares the *initial* learning rate as
its ``base_lr``; inside :class:`SequentialLR` the scheduler that takes over at a milestone restarts
from its closed form at step 0 (e.g. a cosine after a warm-up restarts from ``base_lr``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ReduceLROnPlateau",
    "EarlyStopping",
    "lr_below",
    "LinearLR",
    "CosineAnnealingLR",
    "StepLR",
    "SequentialLR",
    "ChainedScheduler",
    "build_lr_scheduler",
]


def _is_better(a: float, best: float, mode: str, threshold: float, threshold_mode: str) -> bool:
    """torch's comparison; the float expressions are kept verbatim (``best * (1 - thr)``)."""
    if mode == "min" and threshold_mode == "rel":
        return a < best * (1.0 - threshold)
    if mode == "min":
        return a < best - threshold
    if threshold_mode == "rel":
        return a > best * (threshold + 1.0)
    return a > best + threshold


class ReduceLROnPlateau:
    r"""Multiply ``optimizer.lr`` by ``factor`` when the metric stops improving.

    Per :meth:`step` (one call per validation):

    1. *improved* if ``metric < best·(1 − threshold)`` (mode ``min``, ``rel``; the other three
       modes analogously); then ``best ← metric`` and the bad-epoch counter resets, otherwise it
       increments. A ``nan`` metric is never an improvement.
    2. during cooldown, the counter decrements the cooldown and bad epochs are ignored.
    3. if bad epochs ``> patience``: ``lr ← max(lr·factor, min_lr)`` — applied only if it changes
       ``lr`` by more than ``eps`` — then cooldown restarts and the counter resets.

    Example:
        >>> import numpy as np
        >>> from nequip_np.train.optim import Adam
        >>> opt = Adam({"w": np.zeros(1)}, lr=1.0)
        >>> sched = ReduceLROnPlateau(opt, factor=0.5, patience=1)
        >>> for metric in [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]:
        ...     sched.step(metric)
        >>> opt.lr
        0.25
    """

    def __init__(
        self,
        optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ):
        if not factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if int(patience) != patience or patience < 0:
            raise ValueError(f"ReduceLROnPlateau: patience must be an int >= 0, got {patience!r}")
        self.optimizer = optimizer
        self.mode = mode
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.eps = float(eps)
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metric: float) -> None:
        current = float(metric)
        self.last_epoch += 1
        if _is_better(current, self.best, self.mode, self.threshold, self.threshold_mode):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old_lr = float(self.optimizer.lr)
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    _STATE = (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lr",
        "eps",
        "last_epoch",
        "best",
        "cooldown_counter",
        "num_bad_epochs",
    )

    def state_dict(self) -> dict[str, Any]:
        """Everything except the optimizer (whose ``lr`` lives in its own state dict)."""
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [k for k in self._STATE if k not in state]
        if missing:
            raise KeyError(f"ReduceLROnPlateau.load_state_dict: missing {missing}")
        for k in self._STATE:
            setattr(self, k, state[k])


class EarlyStopping:
    r"""Stop when the monitored metric has not improved for ``patience`` checks.

    Lightning's rule: *improved* iff ``metric < best − min_delta`` (mode ``min``) or
    ``metric > best + min_delta`` (mode ``max``), strictly. On improvement ``best ← metric``
    and the wait counter resets; otherwise it increments and training stops once
    ``wait >= patience``. A non-finite metric stops immediately (Lightning's ``check_finite``).

    Example:
        >>> es = EarlyStopping(patience=2, min_delta=0.1)
        >>> [es.step(m) for m in [1.0, 0.95, 0.5, 0.45, 0.44]]
        [False, False, False, False, True]
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if int(patience) != patience or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if not min_delta >= 0.0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.stopped = False

    def step(self, metric: float) -> bool:
        """Record one validation value; return ``True`` if training should stop."""
        current = float(metric)
        if not math.isfinite(current):
            self.stopped = True
            return True
        if self.mode == "min":
            improved = current < self.best - self.min_delta
        else:
            improved = current > self.best + self.min_delta
        if improved:
            self.best = current
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped = True
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "best": self.best,
            "wait": self.wait,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in ("patience", "min_delta", "mode", "best", "wait", "stopped"):
            setattr(self, k, state[k])


def lr_below(optimizer, min_lr: float) -> bool:
    """True once ``optimizer.lr < min_lr`` (the NequIP paper's stopping rule, ``min_lr=1e-6``).

    Note that :class:`ReduceLROnPlateau` never goes *below* its own ``min_lr``, so pair it with a
    slightly larger threshold, or compare with ``<=`` yourself.
    """
    return float(optimizer.lr) < float(min_lr)


# -- torch's epoch/step schedulers -----------------------------------------------------------------
class _LRScheduler:
    """Shared machinery: ``last_epoch``, the initial step, state dicts (torch's ``LRScheduler``)."""

    _PARAMS: tuple[str, ...] = ()

    def __init__(self, optimizer, base_lr: float | None = None):
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr if base_lr is None else base_lr)
        self.last_epoch = -1
        self.step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def step(self) -> None:
        """Advance one epoch (or one optimiser step) and set ``optimizer.lr``."""
        self.step_count += 1
        self.last_epoch += 1
        self.optimizer.lr = self._recursive(float(self.optimizer.lr))

    def restart(self) -> None:
        """Jump to epoch 0 with the closed-form rate (torch's ``_update_lr(0)``, used by SequentialLR)."""
        self.last_epoch = 0
        self.optimizer.lr = self._closed_form()

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("base_lr", "last_epoch", "step_count") + self._PARAMS}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._PARAMS)
        return f"{type(self).__name__}({args}, last_epoch={self.last_epoch})"


class LinearLR(_LRScheduler):
    r"""Multiply the rate by a factor going linearly from ``start_factor`` to ``end_factor``.

    .. math:: \eta_t = \eta_0\Big(s + (e - s)\,\frac{\min(t, T)}{T}\Big)

    computed as torch does, recursively: :math:`\eta_t = \eta_{t-1}\,\big(1 + \frac{e - s}{T s +
    (t-1)(e - s)}\big)` for :math:`1 \le t \le T`. ``start_factor < 1, end_factor = 1`` is a linear
    warm-up.

    Example:
        >>> from types import SimpleNamespace
        >>> opt = SimpleNamespace(lr=1.0)
        >>> s = LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=3)
        >>> lrs = [opt.lr] + [(s.step(), opt.lr)[1] for _ in range(4)]
        >>> [round(x, 12) for x in lrs]
        [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    _PARAMS = ("start_factor", "end_factor", "total_iters")

    def __init__(
        self,
        optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        base_lr: float | None = None,
    ):
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        if int(total_iters) != total_iters or total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be a positive integer, got {total_iters!r}")
        self.start_factor, self.end_factor, self.total_iters = float(start_factor), float(end_factor), int(total_iters)
        super().__init__(optimizer, base_lr)

    def _recursive(self, lr: float) -> float:
        if self.last_epoch == 0:
            return lr * self.start_factor
        if self._initial or self.last_epoch > self.total_iters:
            return lr
        s, e = self.start_factor, self.end_factor
        return lr * (1.0 + (e - s) / (self.total_iters * s + (self.last_epoch - 1) * (e - s)))

    def _closed_form(self) -> float:
        s, e = self.start_factor, self.end_factor
        return self.base_lr * (s + (e - s) * min(self.total_iters, self.last_epoch) / self.total_iters)


class CosineAnnealingLR(_LRScheduler):
    r"""Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` steps (then back up, periodically).

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})\big(1 + \cos(\pi t / T_{max})\big)

    computed with torch's recursive form (ratio of consecutive cosine factors), including its
    special case at the start of each rising half-period.
    """

    _PARAMS = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, base_lr: float | None = None):
        if int(T_max) != T_max or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive integer, got {T_max!r}")
        if not eta_min >= 0.0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be >= 0, got {eta_min!r}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, base_lr)

    def _recursive(self, lr: float) -> float:
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return lr
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lr - lo) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - lo) + lo

    def _closed_form(self) -> float:
        lo = self.eta_min
        return lo + (self.base_lr - lo) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2


class StepLR(_LRScheduler):
    r"""Multiply the rate by ``gamma`` every ``step_size`` steps: :math:`\eta_t = \eta_0\gamma^{\lfloor t/s\rfloor}`."""

    _PARAMS = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, base_lr: float | None = None):
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        if not gamma > 0.0:
            raise ValueError(f"StepLR: gamma must be > 0, got {gamma!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, base_lr)

    def _recursive(self, lr: float) -> float:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _closed_form(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class SequentialLR:
    """Run ``schedulers[k]`` between ``milestones[k-1]`` and ``milestones[k]`` (torch's SequentialLR)."""

    def __init__(self, optimizer, schedulers: list, milestones: list[int]):
        if not schedulers:
            raise ValueError("SequentialLR: needs at least one scheduler")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: needs len(schedulers) - 1 = {len(schedulers) - 1} milestones, got {len(milestones)}"
            )
        if list(milestones) != sorted(milestones) or any(int(m) != m or m < 1 for m in milestones):
            raise ValueError(f"SequentialLR: milestones must be increasing positive integers, got {milestones!r}")
        self.optimizer, self.schedulers, self.milestones = optimizer, list(schedulers), [int(m) for m in milestones]
        self.last_epoch = 0
        self.optimizer.lr = schedulers[0].base_lr
        for s in self.schedulers:
            _undo(s)
        first = self.schedulers[0]
        first.step_count, first._initial = 0, True
        first.step()
        first._initial = False

    def step(self) -> None:
        import bisect

        self.last_epoch += 1
        idx = bisect.bisect_right(self.milestones, self.last_epoch)
        if idx > 0 and self.milestones[idx - 1] == self.last_epoch:
            self.schedulers[idx].restart()
        else:
            self.schedulers[idx].step()

    def restart(self) -> None:
        raise ValueError("a SequentialLR cannot be nested inside another SequentialLR")

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_epoch = state["last_epoch"]
        for s, st in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(st)


def _undo(s) -> None:
    if hasattr(s, "schedulers"):
        for x in s.schedulers:
            _undo(x)
    else:
        s.last_epoch -= 1


class ChainedScheduler:
    """Step every scheduler in turn at each step; their factors compose (torch's ChainedScheduler)."""

    def __init__(self, optimizer, schedulers: list):
        if not schedulers:
            raise ValueError("ChainedScheduler: needs at least one scheduler")
        self.optimizer, self.schedulers = optimizer, list(schedulers)

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def restart(self) -> None:
        raise ValueError("a ChainedScheduler cannot follow a milestone of a SequentialLR")

    def state_dict(self) -> dict[str, Any]:
        return {"schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for s, st in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(st)


#: config name -> (class, {keyword: default or REQUIRED})
LR_SCHEDULERS = {
    "linear": (LinearLR, {"start_factor": 1.0 / 3, "end_factor": 1.0, "total_iters": 5}),
    "cosine": (CosineAnnealingLR, {"T_max": None, "eta_min": 0.0}),
    "step": (StepLR, {"step_size": None, "gamma": 0.1}),
    "sequential": (SequentialLR, {"schedulers": None, "milestones": None}),
    "chained": (ChainedScheduler, {"schedulers": None}),
}


def check_lr_scheduler_spec(spec: Any, where: str = "training.lr_scheduler") -> dict:
    """Validate a scheduler mapping (recursively); return it normalised or raise ``ValueError``."""
    import difflib

    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"{where} must be a mapping with a 'name' among {list(LR_SCHEDULERS)}, got {spec!r}")
    name = spec["name"]
    if name not in LR_SCHEDULERS:
        hint = difflib.get_close_matches(str(name), list(LR_SCHEDULERS), n=1)
        raise ValueError(
            f"{where}.name must be one of {list(LR_SCHEDULERS)}, got {name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    cls, params = LR_SCHEDULERS[name]
    unknown = [k for k in spec if k != "name" and k not in params]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {name!r}; valid keys: {sorted(params)}")
    out = {"name": name}
    for k, default in params.items():
        if k not in spec and default is None:
            raise ValueError(f"{where}: {name!r} needs {k!r}")
        out[k] = spec.get(k, default)
    if "schedulers" in out:
        subs = out["schedulers"]
        if not isinstance(subs, (list, tuple)) or not subs:
            raise ValueError(f"{where}.schedulers must be a non-empty list of scheduler mappings")
        out["schedulers"] = [check_lr_scheduler_spec(x, f"{where}.schedulers[{i}]") for i, x in enumerate(subs)]
    try:  # let the constructors check the numbers, on a throw-away optimiser
        build_lr_scheduler(out, _Dummy())
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None
    return out


class _Dummy:
    lr = 1.0


def build_lr_scheduler(spec: Mapping[str, Any], optimizer, base_lr: float | None = None):
    """Build a scheduler from ``{"name": ..., **keywords}`` (nested for "sequential"/"chained").

    Example:
        >>> from types import SimpleNamespace
        >>> opt = SimpleNamespace(lr=0.1)
        >>> s = build_lr_scheduler({"name": "sequential", "milestones": [2], "schedulers": [
        ...     {"name": "linear", "start_factor": 0.5, "total_iters": 2},
        ...     {"name": "step", "step_size": 1, "gamma": 0.5}]}, opt)
        >>> [round(opt.lr, 6)] + [round((s.step(), opt.lr)[1], 6) for _ in range(4)]
        [0.05, 0.075, 0.1, 0.05, 0.025]
    """
    base_lr = float(optimizer.lr) if base_lr is None else base_lr
    kw = {k: v for k, v in spec.items() if k != "name"}
    cls = LR_SCHEDULERS[spec["name"]][0]
    if "schedulers" in kw:
        kw["schedulers"] = [build_lr_scheduler(x, optimizer, base_lr) for x in kw["schedulers"]]
        return cls(optimizer, **kw)
    return cls(optimizer, base_lr=base_lr, **kw)
