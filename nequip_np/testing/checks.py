r"""The checks. Each is ``check(ctx) -> (error, detail)`` and raises :class:`Skip` when not applicable.

Notation: positions :math:`x \in \mathbb{R}^{N\times 3}` (rows), energy :math:`E(x)`, forces
:math:`F = -\nabla_x E`, stress :math:`\sigma = \frac{1}{V}\partial E/\partial\varepsilon` (ASE sign),
cell vectors as rows. For an orthogonal :math:`Q` acting as :math:`x \mapsto x Q^\top` (and the cell
likewise) a model of an isolated or periodic system must satisfy

.. math::
    E(xQ^\top) = E(x), \quad F(xQ^\top) = F(x) Q^\top, \quad \sigma(xQ^\top) = Q\,\sigma(x)\,Q^\top.

Prose, units and tolerances: ``docs/harness.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units

from nequip_np.testing.adapter import Evaluation, Evaluator, random_rotation, transformed  # noqa: F401 - re-exported
from nequip_np.testing.noise import NOISE_FACTOR, NoiseEstimate
from nequip_np.testing.tolerances import DECAY_TOLERANCE


class Skip(Exception):
    """Raised by a check that does not apply to this system; the message is the reason."""


@dataclass
class Measured:
    """What a check may return instead of ``(error, detail)``.

    Attributes:
        error: the measured error, in the check's unit.
        detail: what was measured.
        floor: the part of ``error`` the calculator's noise alone can produce, same unit (0: exact).
        tolerance: the check's own tolerance when it differs from the profile's table (a check that
            switched mode, e.g. additivity measuring a decay); an explicit caller tolerance still wins.
    """

    error: float
    detail: str
    floor: float = 0.0
    tolerance: float | None = None


@dataclass
class Context:
    """What every check receives. ``atoms`` is the harness' private copy; never modify it.

    ``noise`` is the calculator's measured noise floor (:mod:`nequip_np.testing.noise`); ``tolerance``
    and ``explicit`` are set by the harness before each check (the check's tolerance, and whether the
    caller gave it); ``locality`` is ``"local"`` or ``"long-range"``.
    """

    ev: Evaluator
    atoms: Atoms
    rng: np.random.Generator
    floors: dict
    cutoff: float | None = None
    opts: dict = field(default_factory=dict)
    noise: NoiseEstimate = field(default_factory=NoiseEstimate.zero)
    locality: str = "local"
    tolerance: float = 0.0
    explicit: bool = False
    md_evaluations: int = 0
    _reference: Evaluation | None = None

    @property
    def reference(self) -> Evaluation:
        if self._reference is None:
            self._reference = self.ev(self.atoms)
        return self._reference

    def allowed(self, floor: float, tolerance: float | None = None) -> float:
        """What an error may reach and pass: the tolerance, or ``NOISE_FACTOR`` x floor if larger.

        An explicit caller tolerance wins over both the table and the floor.
        """
        tol = self.tolerance if (tolerance is None or self.explicit) else tolerance
        return tol if self.explicit else max(tol, NOISE_FACTOR * floor)


# ---------------------------------------------------------------------------------- helpers


def _rel(got, want, floor: float) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), floor))


def _denominator(want, floor: float) -> float:
    return max(float(np.max(np.abs(np.asarray(want, dtype=np.float64)))), floor)


def _compare(ctx: Context, got: Evaluation, energy, forces, stress, noise_terms: float = 2.0):
    """Relative errors of one evaluation against the expected E (per atom), F and sigma, and floors.

    ``noise_terms``: how many noisy evaluations the expected values combine (2: one reference vs one
    evaluation; the probes that measured the noise already compare two evaluations, hence /2).
    """
    n, k = len(got.forces), noise_terms / 2
    e_den = _denominator(energy / n, ctx.floors["energy"])
    f_den = _denominator(forces, ctx.floors["forces"])
    errs = {
        "E": _rel(got.energy / n, energy / n, ctx.floors["energy"]),
        "F": _rel(got.forces, forces, ctx.floors["forces"]),
    }
    floors = {"E": k * ctx.noise.energy / n / e_den, "F": k * ctx.noise.forces / f_den}
    if stress is not None and got.stress is not None:
        errs["sigma"] = _rel(got.stress, stress, ctx.floors["stress"])
        floors["sigma"] = k * (ctx.noise.stress or 0.0) / _denominator(stress, ctx.floors["stress"])
    return errs, floors


def _governing(ctx: Context, errs: dict[str, float], floors: dict[str, float]) -> str:
    """The component closest to (or furthest beyond) what it may reach: max error / allowed."""

    def ratio(k):
        allowed = ctx.allowed(floors[k])
        return errs[k] / allowed if allowed > 0 else (np.inf if errs[k] > 0 else 0.0)

    return max(errs, key=ratio)


def _worst(ctx: Context, results: list, what: str) -> Measured:
    """Worst of each component over several comparisons; judged on the governing component."""
    keys = results[0][0].keys()
    worst = {k: max(e[k] for e, _ in results) for k in keys}
    floors = {k: max(f[k] for _, f in results) for k in keys}
    key = _governing(ctx, worst, floors)
    detail = ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
    return Measured(worst[key], f"worst of {len(results)} {what}: {detail}", floors[key])


def _best_step(ctx: Context, per_h: dict, floor_h: dict):
    """The step of least error among those that resolve (nearly) best; returns it and the sweep text.

    Step h can certify errors down to ``score(h) = max(error(h), allowed(h))``: truncation raises the
    error of large steps, noise (floor ~ noise / h) the allowance of small ones. Among the steps
    within 2x of the best score, the one of least error is reported. Without noise every allowance is
    the tolerance and this is simply the step of least error.
    """
    score = {h: max(per_h[h], ctx.allowed(floor_h[h])) for h in per_h}
    finest = min(score.values())
    best = min((h for h in per_h if score[h] <= 2 * finest), key=per_h.get)
    sweep = ", ".join(f"{h:g}: {e:.1e}" for h, e in per_h.items())
    return best, sweep


def _orthogonal(ctx: Context, qs: list[np.ndarray], what: str) -> Measured:
    ref = ctx.reference
    results = []
    for q in qs:
        got = ctx.ev(transformed(ctx.atoms, q))
        want_s = None if ref.stress is None else q @ ref.stress @ q.T
        results.append(_compare(ctx, got, ref.energy, ref.forces @ q.T, want_s))
    return _worst(ctx, results, what)


def _displaced(atoms: Atoms, i: int, k: int, h: float) -> Atoms:
    a = atoms.copy()
    a.positions[i, k] += h
    return a


def _strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    a = atoms.copy()
    a.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)  # eps symmetric
    return a


def _neighbourhood(atoms: Atoms, n: int) -> np.ndarray:
    """Atom 0 and its n-1 nearest neighbours (minimum image): a set whose Hessian block is not ~0."""
    n = min(n, len(atoms))
    d = atoms.get_distances(0, np.arange(len(atoms)), mic=bool(atoms.pbc.any()))
    return np.argsort(d, kind="stable")[:n]


# ---------------------------------------------------------------------------------- symmetries


def rotation_invariance(ctx: Context):
    """E invariant, F and sigma equivariant under ``n_rotations`` random proper rotations."""
    qs = [random_rotation(ctx.rng) for _ in range(ctx.opts["n_rotations"])]
    return _orthogonal(ctx, qs, "rotations")


def inversion(ctx: Context):
    """Same under improper rotations: the inversion -I and ``n_rotations - 1`` random -R."""
    qs = [-np.eye(3)] + [-random_rotation(ctx.rng) for _ in range(ctx.opts["n_rotations"] - 1)]
    return _orthogonal(ctx, qs, "improper rotations")


def translation(ctx: Context):
    """E, F, sigma unchanged when every atom is shifted by one random vector (a few Å, not wrapped)."""
    ref = ctx.reference
    results = []
    for _ in range(2):
        a = ctx.atoms.copy()
        a.positions += 3.0 * ctx.rng.standard_normal(3)
        results.append(_compare(ctx, ctx.ev(a), ref.energy, ref.forces, ref.stress))
    return _worst(ctx, results, "translations")


def permutation(ctx: Context):
    """Relabelling atoms by a random permutation p: E unchanged, F permuted, sigma unchanged."""
    n = len(ctx.atoms)
    if n < 2:
        raise Skip("a single atom has no permutation")
    p = ctx.rng.permutation(n)
    while np.all(p == np.arange(n)):
        p = ctx.rng.permutation(n)
    ref = ctx.reference
    results = [_compare(ctx, ctx.ev(ctx.atoms[p]), ref.energy, ref.forces[p], ref.stress)]
    return _worst(ctx, results, "permutation")


# ---------------------------------------------------------------------------------- conservativity


def _components(ctx: Context) -> list[tuple[int, int]]:
    n, m = len(ctx.atoms), ctx.opts["fd_samples"]
    flat = np.arange(3 * n) if 3 * n <= m else np.sort(ctx.rng.choice(3 * n, size=m, replace=False))
    return [(int(c) // 3, int(c) % 3) for c in flat]


def forces_gradient(ctx: Context):
    r"""F_ik = -(E(x + h e_ik) - E(x - h e_ik)) / 2h on sampled components; best h of the sweep."""
    ref, comps = ctx.reference, _components(ctx)
    want = np.array([ref.forces[i, k] for i, k in comps])
    den = _denominator(want, ctx.floors["forces"])
    per_h, floor_h = {}, {}
    for h in ctx.opts["fd_steps"]:
        fd = [
            -(ctx.ev.energy(_displaced(ctx.atoms, i, k, h)) - ctx.ev.energy(_displaced(ctx.atoms, i, k, -h))) / (2 * h)
            for i, k in comps
        ]
        per_h[h] = _rel(fd, want, ctx.floors["forces"])
        # noise: of the reference forces, and of two energies over 2h
        floor_h[h] = (ctx.noise.forces + ctx.noise.energy / h) / den
    best, sweep = _best_step(ctx, per_h, floor_h)
    return Measured(per_h[best], f"{len(comps)} components, best h={best:g} (sweep {sweep})", floor_h[best])


def curl_free(ctx: Context):
    r"""Symmetry of the finite-difference Hessian H_ab = -dF_a/dx_b on atom 0 and its neighbours.

    A force field is a gradient iff its Jacobian is symmetric (zero curl); forces that are a scaled
    gradient pass here and fail ``forces_gradient``, forces missing a chain-rule term fail both.
    """
    idx = _neighbourhood(ctx.atoms, ctx.opts["curl_atoms"])
    coords = [(int(i), k) for i in idx for k in range(3)]
    per_h, floor_h = {}, {}
    for h in ctx.opts["curl_steps"]:
        hess = np.empty((len(coords), len(coords)))
        for b, (i, k) in enumerate(coords):
            fp = ctx.ev(_displaced(ctx.atoms, i, k, h)).forces[idx].ravel()
            fm = ctx.ev(_displaced(ctx.atoms, i, k, -h)).forces[idx].ravel()
            hess[:, b] = -(fp - fm) / (2 * h)
        per_h[h] = _rel(hess, hess.T, ctx.floors["hessian"])  # max|H - H^T| / max|H|
        # noise: each entry is a force difference over 2h, H - H^T combines two entries
        floor_h[h] = 2 * ctx.noise.forces / h / _denominator(hess, ctx.floors["hessian"])
    best, sweep = _best_step(ctx, per_h, floor_h)
    return Measured(
        per_h[best],
        f"{len(coords)}x{len(coords)} block (atoms {idx.tolist()}), best h={best:g} (sweep {sweep})",
        floor_h[best],
    )


def net_force(ctx: Context):
    """|sum_i F_i| / sum_i |F_i| for isolated systems (translation invariance => zero net force)."""
    if ctx.atoms.pbc.any():
        raise Skip("periodic cell: checked only for isolated systems (see translation)")
    f = ctx.reference.forces
    total = f.sum(axis=0)
    scale = max(float(np.linalg.norm(f, axis=1).sum()), ctx.floors["forces"])
    floor = ctx.noise.forces * np.sqrt(len(f)) / scale  # independent noise of n forces
    return Measured(
        float(np.max(np.abs(total))) / scale, f"sum F = [{', '.join(f'{v:.1e}' for v in total)}] eV/Å", floor
    )


def stress_strain(ctx: Context):
    r"""sigma_ab vs (1/V) dE/d eps_ab by central differences of symmetric strains; best h of the sweep."""
    if not ctx.atoms.pbc.all():
        raise Skip("needs a cell periodic in all three directions")
    ref = ctx.reference
    if ref.stress is None:
        raise Skip("the model returned no stress")
    vol = ctx.atoms.get_volume()
    den = _denominator(ref.stress, ctx.floors["stress"])
    per_h, floor_h = {}, {}
    for h in ctx.opts["strain_steps"]:
        fd = np.empty((3, 3))
        for a in range(3):
            for b in range(a, 3):
                eps = np.zeros((3, 3))
                eps[a, b] = eps[b, a] = h
                de = ctx.ev.energy(_strained(ctx.atoms, eps)) - ctx.ev.energy(_strained(ctx.atoms, -eps))
                # off-diagonal: E depends on eps_ab and eps_ba, so dE/dh = 2 V sigma_ab
                fd[a, b] = fd[b, a] = de / (2 * h) / vol / (1 if a == b else 2)
        per_h[h] = _rel(fd, ref.stress, ctx.floors["stress"])
        floor_h[h] = ((ctx.noise.stress or 0.0) + ctx.noise.energy / (h * vol)) / den
    best, sweep = _best_step(ctx, per_h, floor_h)
    return Measured(per_h[best], f"6 components, best strain h={best:g} (sweep {sweep})", floor_h[best])


# ---------------------------------------------------------------------------------- locality, dynamics


def _far_copy(atoms: Atoms, gap: float) -> Atoms:
    """``atoms`` plus a copy of itself moved along x so that the two are ``gap`` Å apart."""
    far = atoms.copy()
    far.positions += np.array([np.ptp(atoms.positions[:, 0]) + gap, 0.0, 0.0])
    return atoms + far


def additivity(ctx: Context):
    r"""Locality. ``"local"``: E(A u B) = E(A) + E(B), F(A u B) = [F(A), F(B)] for B = A moved far away.

    ``"long-range"`` (electrostatics, dispersion: the SCF profile): the interaction energy
    :math:`\Delta E(R) = E(A \cup B_R) - 2E(A)` at the centre distances R of ``decay_gaps`` must decay;
    the error is :math:`|\Delta E(R_{max})| R_{max} / (|\Delta E(R_{min})| R_{min})`: below 1 for a
    decay at least as fast as 1/R, about R_max/R_min for an interaction that does not decay.
    """
    if ctx.atoms.pbc.any():
        raise Skip("periodic cell: a far-away copy is not defined")
    if ctx.locality == "long-range":
        return _interaction_decay(ctx)
    gap = ctx.opts["additivity_gap"] or (100.0 if ctx.cutoff is None else 3 * ctx.cutoff + 10.0)
    ref = ctx.reference
    got = ctx.ev(_far_copy(ctx.atoms, gap))
    # E(A u B) vs 2 E(A): three noisy energies (the floor compares two)
    result = _compare(ctx, got, 2 * ref.energy, np.concatenate([ref.forces, ref.forces]), None, noise_terms=3)
    m = _worst(ctx, [result], f"copy {gap:g} Å away")
    if m.error > ctx.allowed(m.floor):
        m.detail += "; a long-range model: pass locality='long-range'"
    return m


def _interaction_decay(ctx: Context) -> Measured:
    ref, gaps = ctx.reference, sorted(ctx.opts["decay_gaps"])
    extent = float(np.ptp(ctx.atoms.positions[:, 0]))
    dist = np.array([extent + g for g in gaps])  # centre-to-centre distance of A and its copy
    d_e, d_f = [], []
    for gap in gaps:
        got = ctx.ev(_far_copy(ctx.atoms, gap))
        d_e.append(got.energy - 2 * ref.energy)
        d_f.append(float(np.max(np.abs(got.forces - np.concatenate([ref.forces, ref.forces])))))
    d_e = np.abs(np.array(d_e))
    noise = 3 * ctx.noise.energy  # E(A u B) - 2 E(A)
    first = max(d_e[0], ctx.floors["scan"])
    error = d_e[-1] * dist[-1] / (first * dist[0])
    floor = noise * dist[-1] / (first * dist[0])
    table = ", ".join(f"{r:.0f}: {e:.1e}" for r, e in zip(dist, d_e))
    fit = ""
    ok = d_e > NOISE_FACTOR * max(noise, 1e-300)
    if ok.sum() >= 2:
        slope = np.polyfit(np.log(dist[ok]), np.log(d_e[ok]), 1)[0]
        fit = f", fitted |dE| ~ R^{slope:.1f}"
    return Measured(
        error,
        f"long-range: |dE| (eV) at R (Å) {table}{fit}; max |dF| {max(d_f):.1e} eV/Å",
        floor,
        tolerance=DECAY_TOLERANCE,
    )


def _spike(y: np.ndarray, floor: float) -> float:
    """Largest excess of one step |dy_k| over the mean of its two neighbours, relative to max |dy|."""
    d = np.abs(np.diff(y))
    excess = d[1:-1] - 0.5 * (d[:-2] + d[2:])
    return float(max(excess.max(), 0.0) / max(float(d.max()), floor))


def cutoff_smoothness(ctx: Context):
    """Pull a dimer (species of atoms 0 and 1) through r_cut in small steps: no jump in E or F."""
    if ctx.cutoff is None:
        raise Skip("no cutoff given (pass cutoff=r_max)")
    rc, w, n = ctx.cutoff, ctx.opts["cutoff_window"], ctx.opts["cutoff_points"]
    numbers = ctx.atoms.numbers[:2] if len(ctx.atoms) > 1 else ctx.atoms.numbers[[0, 0]]
    box = 4 * rc + 10.0
    energies, forces = [], []
    for r in np.linspace(rc - w, rc + w, n):
        dimer = Atoms(numbers=numbers, positions=[[0, 0, 0], [r, 0, 0]], cell=np.eye(3) * box, pbc=False)
        ev = ctx.ev(dimer)
        energies.append(ev.energy)
        forces.append(ev.forces[1, 0])
    floor = ctx.floors["scan"]
    energies, forces = np.array(energies), np.array(forces)
    errs = {"E": _spike(energies, floor), "F": _spike(forces, floor)}
    # a step differs by two noisy values (the structure's noise stands in for the dimer's)
    floors = {
        "E": 2 * ctx.noise.energy / max(np.abs(np.diff(energies)).max(), floor),
        "F": 2 * ctx.noise.forces / max(np.abs(np.diff(forces)).max(), floor),
    }
    key = _governing(ctx, errs, floors)
    return Measured(
        errs[key],
        f"{n} steps of {2 * w / (n - 1):.1e} Å across r_cut={rc:g}: E {errs['E']:.1e}, F {errs['F']:.1e}",
        floors[key],
    )


def _nve_energies(atoms: Atoms, calc, dt_fs: float, steps: int) -> np.ndarray:
    from ase.md.verlet import VelocityVerlet

    a = atoms.copy()
    a.calc = calc
    totals = []
    dyn = VelocityVerlet(a, timestep=dt_fs * units.fs)
    dyn.attach(lambda: totals.append(a.get_total_energy()), interval=1)  # also called at step 0
    dyn.run(steps)
    return np.array(totals) / len(a)


def nve_drift(ctx: Context):
    r"""Velocity Verlet from Maxwell-Boltzmann velocities: energy change per atom per ps as dt -> 0.

    For conservative forces the total-energy change over a time T is the Verlet error,
    :math:`\Delta E(dt) = A\,dt^2 + O(dt^4)`; non-conservative forces add work W that does not
    shrink with dt. Running T twice (dt, then dt/2 from the same start) and extrapolating,
    :math:`W \approx (4\Delta E(dt/2) - \Delta E(dt))/3`, separates the two: the error is |W|/T in
    eV/atom/ps. A plain slope of a run this short is dominated by the Verlet fluctuation.
    """
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    steps, dt = ctx.opts["md_steps"], ctx.opts["md_timestep_fs"]
    if steps < 2:
        raise Skip("md_steps < 2")
    a = ctx.atoms.copy()
    kt = units.kB * ctx.opts["md_temperature_K"]  # Maxwell-Boltzmann momenta, p ~ N(0, m kT)
    a.set_momenta(np.sqrt(a.get_masses() * kt)[:, None] * ctx.rng.standard_normal((len(a), 3)))
    Stationary(a)
    if not a.pbc.any() and len(a) > 2:
        ZeroRotation(a)
    calc = ctx.ev.as_calculator()
    coarse = _nve_energies(a, calc, dt, steps)
    fine = _nve_energies(a, calc, dt / 2, 2 * steps)
    ctx.md_evaluations += 3 * steps + 2
    t_ps = steps * dt * 1e-3
    work = (4 * (fine[-1] - fine[0]) - (coarse[-1] - coarse[0])) / 3
    raw = float(np.polyfit(np.arange(len(coarse)) * dt * 1e-3, coarse, 1)[0])
    # noise: the four end energies (weights 4, 4, 1, 1 over 3) and the work of random force errors
    # along the path, sum_steps dF . v dt, a random walk over 3n components and 2 steps
    n = len(a)
    v_rms = float(np.sqrt((a.get_velocities() ** 2).mean())) * units.fs  # Å/fs
    walk = ctx.noise.forces * v_rms * (dt / 2) * np.sqrt(3 * n * 2 * steps) / n
    floor = (10 / 3 * ctx.noise.energy / n + walk) / t_ps
    return Measured(
        abs(work) / t_ps,
        (
            f"{steps} x {dt:g} fs and {2 * steps} x {dt / 2:g} fs: extrapolated drift {work / t_ps:+.2e}, "
            f"raw slope {raw:+.2e} eV/atom/ps, fluctuation {coarse.std():.1e} eV/atom"
        ),
        floor,
    )


#: name -> check, in report order: the one registry. Names are part of the public API: never rename.
#: A check is ``check(ctx) -> (error, detail)`` or ``-> Measured(error, detail, floor)``; a new one is
#: added here and given a tolerance in every table of ``tolerances.TOLERANCES``.
CHECKS = {
    f.__name__: f
    for f in (
        rotation_invariance,
        inversion,
        translation,
        permutation,
        forces_gradient,
        curl_free,
        net_force,
        stress_strain,
        additivity,
        cutoff_smoothness,
        nve_drift,
    )
}
