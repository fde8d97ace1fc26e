r"""Entry points of the harness: :func:`check_calculator` and :func:`check_function`.

Both wrap the model into one :class:`~nequip_np.testing.adapter.Evaluator` and run the same checks
(:mod:`nequip_np.testing.checks`) against the one tolerance table
(:mod:`nequip_np.testing.tolerances`). The caller's ``Atoms`` is copied on entry and never touched
again; nothing is restored implicitly because nothing of the caller's is changed.

Example:
    >>> from ase.build import molecule
    >>> from nequip_np.testing import check_calculator
    >>> from nequip_np.testing.faults import make_smooth_pair
    >>> report = check_calculator(make_smooth_pair(), molecule("CH4"),
    ...                           checks=["rotation_invariance", "forces_gradient"])
    >>> report.passed
    True
"""
from __future__ import annotations

import traceback
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from nequip_np.testing.adapter import Evaluator
from nequip_np.testing.checks import CHECKS, Context, Skip
from nequip_np.testing.report import CheckResult, Report
from nequip_np.testing.tolerances import FLOORS, tolerances_for


def default_options() -> dict:
    """Knobs of the checks (all overridable as keyword arguments); a fresh dict on every call."""
    return {
        "n_rotations": 3,  # random proper (and improper) rotations
        "fd_steps": (1e-2, 1e-3, 1e-4, 1e-5),  # Å, forces_gradient step sweep
        "fd_samples": 12,  # force components checked by forces_gradient
        "curl_atoms": 3,  # atoms whose 3n x 3n Hessian block curl_free builds
        "curl_steps": (1e-3, 1e-4),  # Å
        "strain_steps": (1e-3, 1e-4, 1e-5),
        "additivity_gap": None,  # Å between A and its copy; None: 3 r_cut + 10 Å, or 100 Å
        "cutoff_window": 0.02,  # Å either side of r_cut
        "cutoff_points": 81,
        "md_timestep_fs": 0.5,  # H vibrations: 1 fs doubles the Verlet noise of a 40-step run
        "md_temperature_K": 300.0,
    }


def _select(checks) -> list[str]:
    if checks is None:
        return list(CHECKS)
    if isinstance(checks, str):
        checks = [c.strip() for c in checks.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(map(repr, unknown))}; valid: {', '.join(CHECKS)}")
    return list(checks)


def _options(md_steps: int, opts: dict) -> dict:
    table = default_options()
    unknown = [k for k in opts if k not in table]
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; valid: md_steps, {', '.join(table)}")
    table.update(opts)
    table["md_steps"] = int(md_steps)
    return table


def _run_one(name: str, ctx: Context, tolerance: float) -> CheckResult:
    try:
        error, detail = CHECKS[name](ctx)
    except Skip as skip:
        return CheckResult(name, None, tolerance, None, f"skipped: {skip}")
    except Exception as exc:  # noqa: BLE001 -- a crashing model is a finding, reported as ERROR
        where = traceback.extract_tb(exc.__traceback__)[-1]
        msg = f"raised {type(exc).__name__}: {exc} ({where.filename.split('/')[-1]}:{where.lineno})"
        return CheckResult(name, None, tolerance, False, msg, status="ERROR")
    passed = bool(np.isfinite(error) and error <= tolerance)
    return CheckResult(name, float(error), tolerance, passed, detail)


def _check(ev: Evaluator, atoms: Atoms, checks, tolerances, rng, cutoff, md_steps, dtype, opts) -> Report:
    names = _select(checks)
    tol = tolerances_for(dtype, tolerances)
    options = _options(md_steps, opts)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    ctx = Context(ev=ev, atoms=atoms.copy(), rng=rng, floors=FLOORS[dtype], cutoff=cutoff, opts=options)
    results = [_run_one(name, ctx, tol[name]) for name in names]
    meta = {
        "model": ev.label,
        "system": ctx.atoms.get_chemical_formula(),
        "pbc": "".join("T" if p else "F" for p in ctx.atoms.pbc),
        "dtype": dtype,
        "evaluations": ev.calls,
    }
    return Report(results, meta)


def check_calculator(
    calc: Calculator,
    atoms: Atoms,
    *,
    checks=None,
    tolerances: dict[str, float] | None = None,
    rng=None,
    cutoff: float | None = None,
    md_steps: int = 40,
    dtype: str = "float64",
    **opts,
) -> Report:
    """Run the equivariance / conservativity checks on an ASE calculator.

    Args:
        calc: any ASE calculator providing energy and forces (stress is used if it has it).
        atoms: the structure; copied, never modified, its own calculator is ignored.
        checks: names (list or comma-separated string) to run; None runs all of
            :data:`~nequip_np.testing.checks.CHECKS`.
        tolerances: per-check overrides of the dtype's tolerance table.
        rng: ``np.random.Generator`` or seed (default seed 0: reports are reproducible).
        cutoff: the model's cutoff radius in Å; enables ``cutoff_smoothness``.
        md_steps: Velocity Verlet steps of ``nve_drift``.
        dtype: ``"float64"`` or ``"float32"``, selects the tolerance table.
        **opts: check knobs, see :func:`default_options`.

    Returns:
        A :class:`~nequip_np.testing.report.Report`; print it for a table.

    Raises:
        ValueError: unknown check name, tolerance name, option or dtype.
    """
    ev = Evaluator.from_calculator(calc)
    return _check(ev, atoms, checks, tolerances, rng, cutoff, md_steps, dtype, opts)


def check_function(
    fn: Callable,
    atoms: Atoms,
    *,
    checks=None,
    tolerances: dict[str, float] | None = None,
    rng=None,
    cutoff: float | None = None,
    md_steps: int = 40,
    dtype: str = "float64",
    **opts,
) -> Report:
    """Like :func:`check_calculator` for ``fn(atoms) -> (energy, forces)`` or ``(energy, forces, stress)``.

    ``stress`` is 3x3 or Voigt (xx, yy, zz, yz, xz, xy), ASE sign (positive = tensile), eV/Å^3.
    ``fn`` receives a copy of the atoms each call.
    """
    ev = Evaluator.from_function(fn)
    return _check(ev, atoms, checks, tolerances, rng, cutoff, md_steps, dtype, opts)
