r"""Harness checks for calculators that offer ``get_hessian(atoms)`` ((3N, 3N) eV/Å², row 3n + a).

Each check has the harness signature ``check(ctx) -> (error, detail)`` (:mod:`nequip_np.testing.checks`)
and raises :class:`~nequip_np.testing.checks.Skip` when the calculator has no Hessian. With
:math:`H` the calculator's Hessian, :math:`E` and :math:`F` its energy and forces:

* ``hessian_symmetry``: :math:`\max|H - H^\top| / \max|H|`.
* ``hessian_forces``: sampled columns of :math:`H` against central differences of the forces,
  :math:`H_{:,c} = -(F(x + h e_c) - F(x - h e_c))/2h` (best h of a sweep).
* ``hessian_sum_rule``: translation invariance, :math:`\sum_m H_{(na),(mb)} = 0` for every (n, a, b)
  (a uniform translation changes nothing, periodic or not): :math:`\max|\sum_m H| / \max|H|`.
* ``hessian_conservativity``: the curvature of the *energy alone* along random unit directions v,
  Richardson-extrapolated second differences :math:`(E(x+hv) + E(x-hv) - 2E(x))/h^2`, against
  :math:`v^\top H v`. Together with ``hessian_forces`` this says that the force Jacobian is the
  symmetric second derivative of the energy — forces that are the gradient of the energy at second
  order, without molecular dynamics (``nve_drift``) and for the whole structure at once (``curl_free``
  builds a finite-difference block of a few atoms).

The harness can wire these in through :data:`HESSIAN_CHECKS` and :data:`HESSIAN_TOLERANCES`;
:func:`check_hessian` runs them on their own. Prose: ``docs/vibrations.md``.

Example:
    >>> from ase.build import molecule
    >>> from nequip_np import NequIPModel
    >>> from nequip_np.calculator import NequIPCalculator
    >>> from nequip_np.testing.hessian_checks import check_hessian
    >>> model = NequIPModel(type_names=["H", "C", "O"], r_max=3.0, num_layers=1, l_max=1,
    ...                     num_features=4, avg_num_neighbors=3.0)
    >>> check_hessian(NequIPCalculator(model), molecule("CH3OH")).passed
    True
"""

from __future__ import annotations

import itertools

import numpy as np

from nequip_np.testing.adapter import Evaluator
from nequip_np.testing.checks import Context, Skip, _displaced, _rel
from nequip_np.testing.report import CheckResult, Report
from nequip_np.testing.tolerances import FLOORS

#: options of the Hessian checks (defaults; the harness' ``opts`` may override them)
HESSIAN_OPTIONS = {
    "hessian_fd_columns": 6,  # columns of H compared with finite differences of the forces
    "hessian_fd_steps": (1e-3, 1e-4, 1e-5),  # Å
    "hessian_directions": 3,  # random directions of hessian_conservativity
    "hessian_energy_steps": (4e-2, 2e-2, 1e-2, 5e-3),  # Å, decreasing; consecutive pairs are Richardson-extrapolated
}

#: check name -> tolerance, per dtype (the same meaning as ``nequip_np.testing.tolerances.TOLERANCES``)
HESSIAN_TOLERANCES = {
    "float64": {
        # relative; an exact Hessian is symmetric to round-off (~1e-15)
        "hessian_symmetry": 1e-10,
        # relative, best of the sweep; central differences of forces reach ~1e-8
        "hessian_forces": 1e-5,
        # relative; round-off only for a translation-invariant model
        "hessian_sum_rule": 1e-10,
        # relative; Richardson-extrapolated energy second differences reach ~1e-9 (aspirin; E round-off / h^2)
        "hessian_conservativity": 1e-6,
    },
    "float32": {
        "hessian_symmetry": 1e-4,
        "hessian_forces": 1e-2,
        "hessian_sum_rule": 1e-4,
        "hessian_conservativity": 1e-1,
    },
}


def _opt(ctx: Context, name: str):
    return ctx.opts.get(name, HESSIAN_OPTIONS[name])


def _hessian(ctx: Context) -> np.ndarray:
    """The calculator's Hessian of ``ctx.atoms`` (cached on the context), or Skip."""
    cached = ctx.opts.get("_hessian")
    if cached is not None:
        return cached
    calc = getattr(ctx.ev, "_calculator", None)
    if calc is None or not callable(getattr(calc, "get_hessian", None)):
        raise Skip("the calculator offers no get_hessian(atoms)")
    n = len(ctx.atoms)
    hess = np.asarray(calc.get_hessian(ctx.atoms.copy()), dtype=np.float64)
    if hess.shape != (3 * n, 3 * n):
        raise ValueError(f"get_hessian returned shape {hess.shape}, expected ({3 * n}, {3 * n})")
    ctx.opts["_hessian"] = hess
    return hess


def hessian_symmetry(ctx: Context):
    """max|H - H^T| / max|H| of the calculator's full Hessian."""
    hess = _hessian(ctx)
    return _rel(hess, hess.T, ctx.floors["hessian"]), f"{hess.shape[0]}x{hess.shape[0]} Hessian"


def hessian_forces(ctx: Context):
    """Sampled columns of H against central differences of the forces; best h of the sweep."""
    hess = _hessian(ctx)
    m, k = hess.shape[0], _opt(ctx, "hessian_fd_columns")
    cols = np.arange(m) if m <= k else np.sort(ctx.rng.choice(m, size=k, replace=False))
    per_h = {}
    for h in _opt(ctx, "hessian_fd_steps"):
        fd = np.empty((m, len(cols)))
        for c, col in enumerate(cols):
            i, a = divmod(int(col), 3)
            fp = ctx.ev(_displaced(ctx.atoms, i, a, h)).forces.ravel()
            fm = ctx.ev(_displaced(ctx.atoms, i, a, -h)).forces.ravel()
            fd[:, c] = -(fp - fm) / (2 * h)
        per_h[h] = _rel(hess[:, cols], fd, ctx.floors["hessian"])
    best = min(per_h, key=per_h.get)
    sweep = ", ".join(f"{h:g}: {e:.1e}" for h, e in per_h.items())
    return per_h[best], f"{len(cols)} columns, best h={best:g} (sweep {sweep})"


def hessian_sum_rule(ctx: Context):
    """max over (n, a, b) of |sum_m H_(na),(mb)| / max|H| (uniform translation invariance)."""
    hess = _hessian(ctx)
    n = len(ctx.atoms)
    sums = hess.reshape(3 * n, n, 3).sum(axis=1)
    scale = max(float(np.abs(hess).max()), ctx.floors["hessian"])
    return float(np.abs(sums).max()) / scale, f"{3 * n} rows, summed over the {n} atoms per Cartesian direction"


def _displaced_along(atoms, v, h):
    a = atoms.copy()
    a.positions += h * v
    return a


def hessian_conservativity(ctx: Context):
    r"""v^T H v against the energy's own curvature along random unit v (Richardson over step pairs)."""
    hess = _hessian(ctx)
    n = len(ctx.atoms)
    e0 = ctx.ev.energy(ctx.atoms)
    steps = list(_opt(ctx, "hessian_energy_steps"))
    errs, details = [], []
    scale = max(float(np.abs(hess).max()), ctx.floors["hessian"])
    for _ in range(_opt(ctx, "hessian_directions")):
        v = ctx.rng.standard_normal((n, 3))
        v /= np.linalg.norm(v)
        want = float(v.ravel() @ hess @ v.ravel())
        curv = [
            (
                ctx.ev.energy(_displaced_along(ctx.atoms, v, h))
                + ctx.ev.energy(_displaced_along(ctx.atoms, v, -h))
                - 2 * e0
            )
            / h**2
            for h in steps
        ]
        rich = [
            ((h1 / h2) ** 2 * c2 - c1) / ((h1 / h2) ** 2 - 1)  # Richardson: the O(h^2) term cancels
            for (h1, c1), (h2, c2) in itertools.pairwise(zip(steps, curv))
        ]
        err = min(abs(r - want) for r in rich) / scale
        errs.append(err)
        details.append(f"{want:.4g}")
    return max(errs), (
        f"{len(errs)} random directions, v^T H v = {', '.join(details)} eV/Å², "
        f"energy second differences at h = {', '.join(f'{h:g}' for h in steps)} Å"
    )


#: name -> check, in report order (public names: never rename)
HESSIAN_CHECKS = {f.__name__: f for f in (hessian_symmetry, hessian_forces, hessian_sum_rule, hessian_conservativity)}


def run_check(name: str, ctx: Context, tolerance: float) -> CheckResult:
    """One Hessian check as a :class:`~nequip_np.testing.report.CheckResult` (SKIP, ERROR, PASS or FAIL)."""
    try:
        error, detail = HESSIAN_CHECKS[name](ctx)
    except Skip as skip:
        return CheckResult(name, None, tolerance, None, f"skipped: {skip}")
    except Exception as exc:  # noqa: BLE001 -- a crashing model is a finding, reported as ERROR
        return CheckResult(name, None, tolerance, False, f"raised {type(exc).__name__}: {exc}", status="ERROR")
    return CheckResult(name, float(error), tolerance, bool(np.isfinite(error) and error <= tolerance), detail)


def check_hessian(calc, atoms, *, checks=None, tolerances=None, rng=None, dtype: str = "float64", **opts) -> Report:
    """Run the Hessian checks on ``calc`` (which should offer ``get_hessian``) at ``atoms``.

    Args: as :func:`~nequip_np.testing.check_calculator`; ``opts`` override :data:`HESSIAN_OPTIONS`.

    Returns:
        A :class:`~nequip_np.testing.report.Report` (every check SKIPs for a calculator without a Hessian).

    Raises:
        ValueError: unknown check, tolerance, option or dtype.
    """
    names = list(HESSIAN_CHECKS) if checks is None else list(checks)
    for what, given in (("check", names), ("tolerance", tolerances or {}), ("option", opts)):
        valid = HESSIAN_OPTIONS if what == "option" else HESSIAN_CHECKS
        unknown = [c for c in given if c not in valid]
        if unknown:
            raise ValueError(f"unknown Hessian {what}(s) {unknown}; valid: {', '.join(valid)}")
    if dtype not in HESSIAN_TOLERANCES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(HESSIAN_TOLERANCES)}")
    tol = {**HESSIAN_TOLERANCES[dtype], **{k: float(v) for k, v in (tolerances or {}).items()}}
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    ev = Evaluator.from_calculator(calc)
    ctx = Context(ev=ev, atoms=atoms.copy(), rng=rng, floors=FLOORS[dtype], opts={**HESSIAN_OPTIONS, **opts})
    results = [run_check(name, ctx, tol[name]) for name in names]
    meta = {"model": ev.label, "system": ctx.atoms.get_chemical_formula(), "dtype": dtype, "evaluations": ev.calls}
    return Report(results, meta)
