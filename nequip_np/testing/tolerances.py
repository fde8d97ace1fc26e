r"""The one tolerance table of the harness, keyed by dtype, and the floors its relative errors use.

Every check reports one number, ``error``, and passes when ``error <= tolerance``. What the number
means (and its unit) is listed per check below and in ``docs/harness.md``; why each value was chosen
is said next to it. Callers override single entries with ``tolerances={"name": value}``.

Relative errors are ``max|got - want| / max(max|want|, floor)``: the floor keeps a quantity that is
legitimately ~0 (forces of a relaxed structure, stress at zero pressure) from turning round-off into
a huge relative error. Floors are in the quantity's own unit.
"""

from __future__ import annotations

#: check name -> tolerance, per dtype of the model under test.
TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {
        # relative; float64 round-off of E, F, sigma is ~1e-14 relative, 1e-8 leaves room for
        # accumulation over deep networks while any real symmetry break (>= 1e-6) still fails.
        "rotation_invariance": 1e-8,
        "inversion": 1e-8,
        "translation": 1e-8,
        "permutation": 1e-8,
        # relative, best over the step sweep; central differences reach ~1e-9 on smooth models,
        # a missing or scaled gradient term is >= 1e-2.
        "forces_gradient": 1e-5,
        # max|H - H^T| / max|H|, best over the step sweep: O(h^2) truncation of both entries ~1e-7.
        "curl_free": 1e-5,
        # |sum F| / sum |F_i|: round-off of the pair antisymmetry only.
        "net_force": 1e-8,
        # relative, best over the strain-step sweep, like forces_gradient.
        "stress_strain": 1e-5,
        # relative per-atom energy and forces: a far copy must not interact at all.
        "additivity": 1e-8,
        # spike of one step over its neighbours, relative to the largest step (dimensionless);
        # smooth scans give (dr/L)^2 ~ 1e-5, a jump gives ~1.
        "cutoff_smoothness": 1e-2,
        # eV/atom/ps: energy change extrapolated to dt -> 0 from runs at dt and dt/2 (Verlet error
        # ~dt^2 cancels). Measured on correct toys and EMT: 1e-11..4e-3; on non-conservative toys
        # and the truncated LJ: 6e-2..40. A coarse alarm, not a production drift measurement.
        "nve_drift": 1e-2,
    },
    "float32": {
        "rotation_invariance": 1e-4,
        "inversion": 1e-4,
        "translation": 1e-4,
        "permutation": 1e-4,
        # float32 energies make central differences noisy: eps*|E|/h ~ 1e-4 at h = 1e-2
        "forces_gradient": 1e-2,
        "curl_free": 1e-2,
        "net_force": 1e-4,
        "stress_strain": 1e-2,
        "additivity": 1e-4,
        "cutoff_smoothness": 1e-1,
        "nve_drift": 5e-2,
    },
}

#: floor of the denominator of relative errors, per dtype (units: eV/atom, eV/Å, eV/Å^3, eV/Å^2).
FLOORS: dict[str, dict[str, float]] = {
    "float64": {"energy": 1e-3, "forces": 1e-3, "stress": 1e-5, "hessian": 1e-2, "scan": 1e-10},
    "float32": {"energy": 1e-3, "forces": 1e-2, "stress": 1e-4, "hessian": 1e-1, "scan": 1e-5},
}


def tolerances_for(dtype: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The tolerance of every check for ``dtype``, with ``overrides`` applied.

    Raises:
        ValueError: unknown dtype or unknown check name in ``overrides``.
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(TOLERANCES)}")
    table = dict(TOLERANCES[dtype])
    for name, value in (overrides or {}).items():
        if name not in table:
            raise ValueError(f"unknown check {name!r} in tolerances; valid: {', '.join(table)}")
        table[name] = float(value)
    return table


#: A profile is what the harness assumes about the calculator: which tolerance table, which
#: finite-difference steps and whether additivity is judged strictly (``"local"``) or as a decay
#: of the interaction energy with distance (``"long-range"``). ``profile=None`` picks one from the
#: measured noise (:meth:`~nequip_np.testing.noise.NoiseEstimate.suggested_profile`).
PROFILES: dict[str, dict] = {
    # a deterministic float64 model: round-off tolerances, the default steps
    "float64": {"tolerances": "float64", "locality": "local", "options": {}},
    # a float32 model: the float32 table
    "float32": {"tolerances": "float32", "locality": "local", "options": {}},
    # self-consistent electronic structure (DFT, tight binding): results converge only to the SCF
    # threshold and depend on the previous wavefunction, so every comparison is noisy; the noise
    # floor sets what can be resolved. The sweeps reach larger steps, where noise/h is small (the
    # truncation error ~h^2 is ~1e-4 at 1e-2 Å), and still small ones for a tightly converged SCF;
    # each check reports the step that resolves best. Electrostatics and dispersion are
    # long ranged: two molecules 100 Å apart still interact, so additivity measures the decay.
    "scf": {
        "tolerances": "float64",
        "locality": "long-range",
        "options": {
            "fd_steps": (1e-2, 3e-3, 1e-3, 3e-4, 1e-4),
            "curl_steps": (1e-2, 3e-3, 1e-3, 3e-4),
            "strain_steps": (1e-2, 3e-3, 1e-3, 3e-4),
        },
    },
}

#: ``locality="long-range"``: additivity measures |dE(R)| R at its largest resolved separation over
#: the same at its smallest. A 1/R (Coulomb, charged fragments) interaction gives ~1, dipolar 1/R^3
#: and dispersion 1/R^6 far less, an interaction that does not decay ~ R_max / R_min ~ 10.
DECAY_TOLERANCE = 2.0

#: ``quick=True``: fewer samples of every check (about a third of the evaluations): these, and the
#: finite-difference sweeps keep two steps (the middle two; curl the first two). Explicit options win.
QUICK_OPTIONS: dict = {
    "n_rotations": 1,
    "fd_samples": 6,
    "curl_atoms": 2,
    "cutoff_points": 41,
    "md_steps": 16,
}


def profile_tolerances(profile: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Tolerance table of a profile (see :data:`PROFILES`) with ``overrides`` applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)} (or None: automatic)")
    return tolerances_for(PROFILES[profile]["tolerances"], overrides)
