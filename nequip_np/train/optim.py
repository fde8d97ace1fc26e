r"""Adam / AMSGrad with L2 weight decay, and gradient-norm clipping, in plain NumPy.

The update is ``torch.optim.Adam`` (``foreach=False``, ``maximize=False``,
``decoupled_weight_decay=False``) written out with the same floating-point
operations in the same order, so the two agree to the last few ulps (see
docs/training.md, "Optimiser", for why "the last few ulps" and not "bitwise").

Notation (all per parameter array, element-wise; :math:`t` counts this parameter's steps):

=====================  ==================  =======================================
symbol                 name                meaning
=====================  ==================  =======================================
:math:`\theta`         ``params[k]``       parameter (mutated in place)
:math:`g`              ``grads[k]``        gradient of the loss (never mutated)
:math:`m`              ``exp_avg[k]``      first-moment running average
:math:`v`              ``exp_avg_sq[k]``   second-moment running average
:math:`\hat v`         ``max_exp_avg_sq``  running max of :math:`v` (AMSGrad only)
:math:`\eta`           ``lr``              learning rate (schedulers change it)
:math:`\lambda`        ``weight_decay``    L2 coefficient (added to the gradient)
=====================  ==================  =======================================

.. math::

    g' &= g + \lambda\,\theta \\
    m &\leftarrow m + (1-\beta_1)(g' - m) \qquad\text{(torch's lerp)} \\
    v &\leftarrow \beta_2 v + \big((1-\beta_2) g'\big) g' \\
    \hat v &\leftarrow \max(\hat v, v) \quad\text{(AMSGrad; otherwise } \hat v \equiv v) \\
    \theta &\leftarrow \theta + \frac{-\eta/(1-\beta_1^t)\; m}
        {\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["Adam", "clip_grad_norm"]


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start.lerp_(end, weight)`` with torch's two-branch formula (in place)."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        # end - (end - start) * (1 - weight), computed without temporaries' reordering
        diff = end - start
        diff *= 1.0 - weight
        np.subtract(end, diff, out=start)


class Adam:
    r"""Adam (Kingma & Ba 2015) with optional AMSGrad (Reddi et al. 2018) and L2 weight decay.

    Args:
        params: ``{name: float64 array}``; updated in place by :meth:`step`.
        lr: learning rate :math:`\eta \ge 0`; the attribute ``.lr`` may be reassigned at any time.
        betas: :math:`(\beta_1, \beta_2)`, each in :math:`[0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to the bias-corrected root second moment.
        weight_decay: L2 coefficient :math:`\lambda \ge 0` (torch semantics: added to the
            gradient, *not* AdamW's decoupled decay).
        amsgrad: use the running maximum of the second moment in the denominator.

    Example:
        >>> import numpy as np
        >>> p = {"w": np.array([1.0, -2.0])}
        >>> opt = Adam(p, lr=0.1)
        >>> opt.step({"w": np.array([0.5, -0.5])})
        >>> np.round(p["w"], 6)  # the first step moves each element by ~lr against sign(g)
        array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        self.params = params
        self.lr = lr
        beta1, beta2 = betas
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"Adam: betas[0] must be in [0, 1), got {beta1!r}")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"Adam: betas[1] must be in [0, 1), got {beta2!r}")
        if not eps >= 0.0:
            raise ValueError(f"Adam: eps must be >= 0, got {eps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Adam: weight_decay must be >= 0, got {weight_decay!r}")
        self.betas = (float(beta1), float(beta2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = bool(amsgrad)
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"Adam: parameter {k!r} must be a floating-point ndarray")
        self.steps = {k: 0 for k in params}
        self.exp_avg = {k: np.zeros_like(p) for k, p in params.items()}
        self.exp_avg_sq = {k: np.zeros_like(p) for k, p in params.items()}
        self.max_exp_avg_sq = {k: np.zeros_like(p) for k, p in params.items()} if self.amsgrad else {}

    # -- learning rate ---------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        value = float(value)
        if not value >= 0.0:
            raise ValueError(f"Adam: lr must be >= 0, got {value!r}")
        self._lr = value

    def __repr__(self) -> str:
        return (
            f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
            f"weight_decay={self.weight_decay}, amsgrad={self.amsgrad}, n_params={len(self.params)})"
        )

    # -- update ----------------------------------------------------------------------------------
    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update. Parameters whose name is absent from ``grads`` are skipped
        (their moments and step counter are untouched, as torch does for ``grad is None``)."""
        unknown = [k for k in grads if k not in self.params]
        if unknown:
            raise KeyError(f"Adam.step: gradient for unknown parameter(s) {unknown}")
        for k, g in grads.items():
            if g.shape != self.params[k].shape:
                raise ValueError(f"Adam.step: gradient {k!r} has shape {g.shape}, parameter has {self.params[k].shape}")
        for k, g in grads.items():
            self._step_one(k, g)

    def _step_one(self, k: str, grad: np.ndarray) -> None:
        param, exp_avg, exp_avg_sq = self.params[k], self.exp_avg[k], self.exp_avg_sq[k]
        beta1, beta2 = self.betas
        lr = self.lr
        self.steps[k] += 1
        step = float(self.steps[k])

        if self.weight_decay != 0.0:
            grad = grad + self.weight_decay * param  # new array: the caller's grads stay intact

        _lerp_(exp_avg, grad, 1.0 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += ((1.0 - beta2) * grad) * grad  # torch addcmul: self + (value * t1) * t2

        # scalar bias corrections in Python floats, exactly as torch's non-capturable path
        bias_correction1 = 1.0 - beta1**step
        bias_correction2 = 1.0 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5

        if self.amsgrad:
            np.maximum(self.max_exp_avg_sq[k], exp_avg_sq, out=self.max_exp_avg_sq[k])
            denom = np.sqrt(self.max_exp_avg_sq[k])
        else:
            denom = np.sqrt(exp_avg_sq)
        denom /= bias_correction2_sqrt
        denom += self.eps
        # torch addcdiv: param + (value * exp_avg) / denom
        update = -step_size * exp_avg
        update /= denom
        param += update

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain dict of Python scalars and (copied) arrays, keyed by parameter name."""
        return {
            "lr": self.lr,
            "betas": tuple(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
            "steps": dict(self.steps),
            "exp_avg": {k: v.copy() for k, v in self.exp_avg.items()},
            "exp_avg_sq": {k: v.copy() for k, v in self.exp_avg_sq.items()},
            "max_exp_avg_sq": {k: v.copy() for k, v in self.max_exp_avg_sq.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict`; parameter names and shapes must match."""
        names = set(self.params)
        for key in ("exp_avg", "exp_avg_sq", "steps"):
            if set(state[key]) != names:
                raise KeyError(
                    f"Adam.load_state_dict: '{key}' has parameters {sorted(state[key])}, optimizer has {sorted(names)}"
                )
        self.lr = state["lr"]
        self.betas = tuple(float(b) for b in state["betas"])
        self.eps = float(state["eps"])
        self.weight_decay = float(state["weight_decay"])
        self.amsgrad = bool(state["amsgrad"])
        self.steps = {k: int(state["steps"][k]) for k in self.params}

        def _copy(src: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = {}
            for k, p in self.params.items():
                a = np.asarray(src[k])
                if a.shape != p.shape:
                    raise ValueError(
                        f"Adam.load_state_dict: state for {k!r} has shape {a.shape}, parameter has {p.shape}"
                    )
                out[k] = a.astype(p.dtype, copy=True)
            return out

        self.exp_avg = _copy(state["exp_avg"])
        self.exp_avg_sq = _copy(state["exp_avg_sq"])
        if self.amsgrad:
            mx = state.get("max_exp_avg_sq") or {}
            self.max_exp_avg_sq = _copy(mx) if mx else {k: np.zeros_like(p) for k, p in self.params.items()}
        else:
            self.max_exp_avg_sq = {}


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    r"""Scale all gradients in place so their joint 2-norm is at most ``max_norm``.

    Like ``torch.nn.utils.clip_grad_norm_`` (norm_type 2): the total norm is
    :math:`\|(\|g_1\|_2, \dots, \|g_n\|_2)\|_2`, and every gradient is multiplied by
    :math:`\min(1, \text{max\_norm} / (\text{total} + 10^{-6}))`.

    Returns:
        The total norm *before* clipping (a Python float; ``nan``/``inf`` propagate).

    Example:
        >>> import numpy as np
        >>> g = {"a": np.array([3.0, 4.0])}
        >>> clip_grad_norm(g, 1.0)
        5.0
        >>> np.round(g["a"], 6)
        array([0.6, 0.8])
    """
    if not max_norm > 0.0:
        raise ValueError(f"clip_grad_norm: max_norm must be > 0, got {max_norm!r}")
    if not grads:
        return 0.0
    norms = np.array([np.linalg.norm(g.ravel()) for g in grads.values()])
    total = float(np.linalg.norm(norms))
    # torch clamps the coefficient at 1 and always multiplies; min() keeps a nan coefficient
    # (nan/inf total) so non-finite gradients propagate exactly as in torch.
    clip_coef = min(max_norm / (total + 1e-6), 1.0)
    if clip_coef != 1.0:
        for g in grads.values():
            g *= clip_coef
    return total
