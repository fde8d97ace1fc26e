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

import dataclasses
import time
import traceback
from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from nequip_np.testing.adapter import Evaluator
from nequip_np.testing.checks import CHECKS, Context, Measured, Skip
from nequip_np.testing.noise import NoiseEstimate, estimate_noise
from nequip_np.testing.report import CheckResult, Report
from nequip_np.testing.tolerances import FLOORS, PROFILES, QUICK_OPTIONS, profile_tolerances


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
        "decay_gaps": (5.0, 10.0, 20.0, 40.0, 80.0),  # Å, additivity with locality="long-range"
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


def _options(md_steps, quick: bool, profile_opts: dict, opts: dict) -> dict:
    table = default_options()
    unknown = [k for k in opts if k not in table]
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; valid: md_steps, {', '.join(table)}")
    table.update(profile_opts)
    table["md_steps"] = 40
    if quick:
        table.update(QUICK_OPTIONS)
        for key in ("fd_steps", "strain_steps"):  # the two middle steps of each sweep
            steps = tuple(table[key])
            table[key] = steps[max(0, (len(steps) - 2) // 2) :][:2]
        table["curl_steps"] = tuple(table["curl_steps"])[:2]
    table.update(opts)  # the caller's explicit options win over profile and quick mode
    if md_steps is not None:
        table["md_steps"] = int(md_steps)
    return table


def _run_one(name: str, ctx: Context, tolerance: float, explicit: bool) -> CheckResult:
    ctx.tolerance, ctx.explicit = tolerance, explicit
    calls, md_calls, start = ctx.ev.calls, ctx.md_evaluations, time.perf_counter()

    def cost() -> dict:
        return {
            "evaluations": ctx.ev.calls - calls + ctx.md_evaluations - md_calls,
            "seconds": round(time.perf_counter() - start, 4),
        }

    try:
        out = CHECKS[name](ctx)
    except Skip as skip:
        return CheckResult(name, None, tolerance, None, f"skipped: {skip}", **cost())
    except Exception as exc:  # noqa: BLE001 -- a crashing model is a finding, reported as ERROR
        where = traceback.extract_tb(exc.__traceback__)[-1]
        msg = f"raised {type(exc).__name__}: {exc} ({where.filename.split('/')[-1]}:{where.lineno})"
        return CheckResult(name, None, tolerance, False, msg, status="ERROR", **cost())
    m = out if isinstance(out, Measured) else Measured(*out)
    tol = tolerance if (explicit or m.tolerance is None) else m.tolerance
    allowed = ctx.allowed(m.floor, tol)
    passed = bool(np.isfinite(m.error) and m.error <= allowed)
    return CheckResult(name, float(m.error), tol, passed, m.detail, floor=float(m.floor), allowed=allowed, **cost())


def _check(
    ev: Evaluator, atoms: Atoms, checks, tolerances, rng, cutoff, md_steps, profile, quick, noise, locality, opts
) -> Report:
    start = time.perf_counter()
    names = _select(checks)
    profile_tolerances(profile or "float64", tolerances)  # unknown profile or tolerance: fail before evaluating
    if locality not in (None, "local", "long-range"):
        raise ValueError(f"locality must be 'local', 'long-range' or None (from the profile), got {locality!r}")
    _options(md_steps, quick, {}, opts)  # unknown option: fail before any evaluation
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    atoms = atoms.copy()
    estimate, noise_note = NoiseEstimate.zero(), "not estimated (noise=False): tolerances alone decide"
    try:
        reference = ev(atoms)
        if noise:
            # own fixed seed: switching the probes off does not change the samples the checks draw
            estimate = estimate_noise(ev, atoms, reference, np.random.default_rng(0))
            noise_note = str(estimate)
    except Exception as exc:  # noqa: BLE001 -- the checks report the crash as ERROR
        reference, noise_note = None, f"not estimated: the model raised {type(exc).__name__}: {exc}"
    chosen = profile or estimate.suggested_profile()
    spec = PROFILES[chosen]
    tol = profile_tolerances(chosen, tolerances)
    options = _options(md_steps, quick, spec["options"], opts)
    ctx = Context(
        ev=ev,
        atoms=atoms,
        rng=rng,
        floors=FLOORS[spec["tolerances"]],
        cutoff=cutoff,
        opts=options,
        noise=estimate,
        locality=locality or spec["locality"],
        _reference=reference,
    )
    explicit = set(tolerances or {})
    results = [_run_one(name, ctx, tol[name], name in explicit) for name in names]
    meta = {
        "model": ev.label,
        "system": ctx.atoms.get_chemical_formula(),
        "pbc": "".join("T" if p else "F" for p in ctx.atoms.pbc),
        "profile": chosen if profile else f"{chosen} (auto)",
        "locality": ctx.locality,
        "quick": bool(quick),
        "evaluations": ev.calls,
        "md_evaluations": ctx.md_evaluations,
        "wall_s": round(time.perf_counter() - start, 3),
        "noise": noise_note,
        "noise_floor": dataclasses.asdict(estimate),  # eV, eV/Å, eV/Å^3 and the relative spreads
    }
    return Report(results, meta)


def _profile(profile: str | None, dtype: str | None) -> str | None:
    if profile is not None and dtype is not None and profile != dtype:
        raise ValueError(f"profile={profile!r} and dtype={dtype!r} disagree; pass profile only")
    return profile if profile is not None else dtype


def check_calculator(
    calc: Calculator,
    atoms: Atoms,
    *,
    checks=None,
    tolerances: dict[str, float] | None = None,
    rng=None,
    cutoff: float | None = None,
    md_steps: int | None = None,
    profile: str | None = None,
    dtype: str | None = None,
    quick: bool = False,
    noise: bool = True,
    locality: str | None = None,
    **opts,
) -> Report:
    """Run the equivariance / conservativity checks on an ASE calculator.

    Args:
        calc: any ASE calculator providing energy and forces (stress is used if it has it).
        atoms: the structure; copied, never modified, its own calculator is ignored.
        checks: names (list or comma-separated string) to run; None runs all of
            :data:`~nequip_np.testing.checks.CHECKS`.
        tolerances: per-check overrides; an explicit tolerance wins over the profile's table and
            over the noise floor (the verdict is then ``error <= tolerance``).
        rng: ``np.random.Generator`` or seed (default seed 0: reports are reproducible).
        cutoff: the model's cutoff radius in Å; enables ``cutoff_smoothness``.
        md_steps: Velocity Verlet steps of ``nve_drift`` (default 40, 16 with ``quick``).
        profile: ``"float64"``, ``"float32"`` or ``"scf"`` (see
            :data:`~nequip_np.testing.tolerances.PROFILES`); None chooses from the measured noise.
        dtype: the former name of ``profile`` (``"float64"`` or ``"float32"``), kept for callers.
        quick: fewer samples per check (:data:`~nequip_np.testing.tolerances.QUICK_OPTIONS`),
            about a third of the evaluations; for CI on expensive calculators.
        noise: estimate the noise floor first (12 evaluations) and let every check allow
            ``NOISE_FACTOR`` x its floor; False assumes exact arithmetic (floors 0).
        locality: ``"local"`` (additivity exact) or ``"long-range"`` (additivity measures the decay
            of the interaction energy); None takes the profile's.
        **opts: check knobs, see :func:`default_options`; they win over the profile and ``quick``.

    Returns:
        A :class:`~nequip_np.testing.report.Report`; print it for a table.

    Raises:
        ValueError: unknown check name, tolerance name, option, profile or locality.
    """
    ev = Evaluator.from_calculator(calc)
    return _check(
        ev, atoms, checks, tolerances, rng, cutoff, md_steps, _profile(profile, dtype), quick, noise, locality, opts
    )


def check_function(
    fn: Callable,
    atoms: Atoms,
    *,
    checks=None,
    tolerances: dict[str, float] | None = None,
    rng=None,
    cutoff: float | None = None,
    md_steps: int | None = None,
    profile: str | None = None,
    dtype: str | None = None,
    quick: bool = False,
    noise: bool = True,
    locality: str | None = None,
    **opts,
) -> Report:
    """Like :func:`check_calculator` (same keyword arguments) for ``fn(atoms) -> (energy, forces)`` or
    ``(energy, forces, stress)``.

    ``stress`` is 3x3 or Voigt (xx, yy, zz, yz, xz, xy), ASE sign (positive = tensile), eV/Å^3.
    ``fn`` receives a copy of the atoms each call.
    """
    ev = Evaluator.from_function(fn)
    return _check(
        ev, atoms, checks, tolerances, rng, cutoff, md_steps, _profile(profile, dtype), quick, noise, locality, opts
    )


def assert_calculator(calc, atoms: Atoms, **kwargs) -> Report:
    """Run the harness and raise ``AssertionError`` carrying the whole report if any check fails.

    ``calc`` is an ASE calculator or ``fn(atoms) -> (energy, forces[, stress])``; keyword arguments as
    :func:`check_calculator`. Returns the report when everything applicable passed.

    Example:
        >>> from ase.build import molecule
        >>> from nequip_np.testing import assert_calculator
        >>> from nequip_np.testing.faults import make_scaled_forces
        >>> assert_calculator(make_scaled_forces(), molecule("CH4"), checks="forces_gradient")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: harness FAILED (forces_gradient)
        ...
    """
    if isinstance(calc, Calculator):
        report = check_calculator(calc, atoms, **kwargs)
    elif callable(calc):
        report = check_function(calc, atoms, **kwargs)
    else:
        raise TypeError(f"calc must be an ASE calculator or fn(atoms) -> (E, F[, stress]), got {type(calc).__name__}")
    if not report.passed:
        raise AssertionError(f"harness FAILED ({', '.join(report.failed) or 'nothing ran'})\n{report}")
    return report
