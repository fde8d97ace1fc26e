r"""Exponential moving average of the parameters, with nequip's warm-up.

nequip's ``EMALightningModule`` keeps a shadow copy :math:`\theta^{\mathrm{EMA}}` and after each
optimizer step applies

.. math::

    d_n = \min\!\Big(d,\ \frac{1+n}{10+n}\Big), \qquad
    \theta^{\mathrm{EMA}} \leftarrow \theta^{\mathrm{EMA}} + (1-d_n)\,(\theta - \theta^{\mathrm{EMA}}),

(computed with torch's ``lerp`` formula, as nequip does), where :math:`n` is the number of previous updates *including the initial copy made at
construction*. The first update after construction therefore uses :math:`n=1`,
:math:`d_1 = 2/11`, then :math:`3/12, 4/13, \dots` until :math:`d` caps it. Validation, testing
and inference use the EMA weights.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, MutableMapping

import numpy as np

from .optim import _lerp_

__all__ = ["EMA"]


class EMA:
    r"""Shadow parameters :math:`\theta^{\mathrm{EMA}}` (see the module docstring).

    Args:
        params: the live parameters; copied at construction (that copy counts as update 0).
        decay: the cap :math:`d \in [0, 1]` on the warm-up decay.

    Example:
        >>> import numpy as np
        >>> ema = EMA({"w": np.zeros(1)}, decay=0.999)
        >>> ema.update({"w": np.ones(1)})  # d = 2/11: moves 9/11 of the way
        >>> float(ema.params["w"][0]) == 1 - 2 / 11
        True
    """

    def __init__(self, params: Mapping[str, np.ndarray], decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1], got {decay!r}")
        self.decay = float(decay)
        self.params = {k: np.array(v, copy=True) for k, v in params.items()}
        self.num_updates = 1  # the initial copy counts

    def current_decay(self) -> float:
        """Decay the *next* :meth:`update` will use."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def update(self, params: Mapping[str, np.ndarray]) -> None:
        """Fold in the current parameters (call once after every optimizer step)."""
        if set(params) != set(self.params):
            raise KeyError(f"EMA.update: parameter names differ: got {sorted(params)}, have {sorted(self.params)}")
        weight = 1.0 - self.current_decay()
        for k, shadow in self.params.items():
            # nequip calls torch's lerp_; use the same two-branch formula (weight >= 0.5 early on)
            _lerp_(shadow, params[k], weight)
        self.num_updates += 1

    def copy_to(self, params: MutableMapping[str, np.ndarray]) -> None:
        """Overwrite ``params`` (in place, array by array) with the EMA values."""
        for k, shadow in self.params.items():
            params[k][...] = shadow

    @contextlib.contextmanager
    def swap_into(self, params: MutableMapping[str, np.ndarray]) -> Iterator[None]:
        """Temporarily put the EMA weights into ``params`` (e.g. for validation); the live
        weights are restored on exit, also after an exception.

        Example:
            >>> import numpy as np
            >>> live = {"w": np.array([5.0])}
            >>> ema = EMA(live); ema.params["w"][0] = 1.0
            >>> with ema.swap_into(live):
            ...     float(live["w"][0])
            1.0
            >>> float(live["w"][0])
            5.0
        """
        saved = {k: np.array(params[k], copy=True) for k in self.params}
        self.copy_to(params)
        try:
            yield
        finally:
            for k, v in saved.items():
                params[k][...] = v

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "params": {k: v.copy() for k, v in self.params.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        if set(state["params"]) != set(self.params):
            raise KeyError(
                f"EMA.load_state_dict: parameter names differ: got {sorted(state['params'])}, "
                f"have {sorted(self.params)}"
            )
        if float(state["decay"]) != self.decay:
            # as nequip on restart: the decay given now wins over the one in the checkpoint
            warnings.warn(
                f"EMA decay in the checkpoint ({state['decay']}) differs from the configured "
                f"decay ({self.decay}); using {self.decay}.",
                stacklevel=2,
            )
        self.num_updates = int(state["num_updates"])
        self.params = {k: np.array(state["params"][k], dtype=self.params[k].dtype, copy=True) for k in self.params}
