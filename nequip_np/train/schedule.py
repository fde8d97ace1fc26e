r"""Learning-rate schedule and stopping criteria.

* :class:`ReduceLROnPlateau` — ``torch.optim.lr_scheduler.ReduceLROnPlateau`` line for line
  (single parameter group); nequip's tutorial config uses it on the validation metric.
* :class:`EarlyStopping` — Lightning's ``EarlyStopping`` callback reduced to its decision rule.
* :func:`lr_below` — the paper-era "stop once the learning rate fell below ``min_lr``" rule.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["ReduceLROnPlateau", "EarlyStopping", "lr_below"]


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
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
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

    _STATE = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr",
              "eps", "last_epoch", "best", "cooldown_counter", "num_bad_epochs")

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
        return {"patience": self.patience, "min_delta": self.min_delta, "mode": self.mode,
                "best": self.best, "wait": self.wait, "stopped": self.stopped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in ("patience", "min_delta", "mode", "best", "wait", "stopped"):
            setattr(self, k, state[k])


def lr_below(optimizer, min_lr: float) -> bool:
    """True once ``optimizer.lr < min_lr`` (the NequIP paper's stopping rule, ``min_lr=1e-6``).

    Note that :class:`ReduceLROnPlateau` never goes *below* its own ``min_lr``, so pair it with a
    slightly larger threshold, or compare with ``<=`` yourself.
    """
    return float(optimizer.lr) < float(min_lr)
