r"""Molecular dynamics and relaxation with ASE's integrators and optimisers: library functions.

``run_md`` drives one of ASE's integrators (velocity Verlet for NVE, Langevin, or the Nosé–Hoover
chain of ``ase.md.nose_hoover_chain``) with a trajectory writer, a log and a blow-up guard;
``relax`` runs BFGS or FIRE. The ``nequip-np md`` / ``nequip-np relax`` commands
(:mod:`nequip_np.md.cli`) are thin wrappers around them. Units: fs, K, eV, Å; the friction is in 1/fs.

The blow-up guard stops a run, at the first step where the energy or a force is not finite, an atom
feels more than ``max_force`` (eV/Å) or moved more than ``max_displacement`` (Å) in one step, or the
calculator refuses the structure (e.g. two atoms on top of each other). It raises
:class:`MDBlowUpError` naming the step and the largest force, after closing the trajectory, which
keeps every frame written before that step.

The temperature in the log is ASE's kinetic temperature :math:`T = 2E_\mathrm{kin}/(3Nk_B)`
(``atoms.get_temperature()``, fewer degrees of freedom under constraints). Langevin runs with
``fixcm=False``, so all 3N momenta are thermostatted and :math:`\langle T\rangle` equals the target
(``fixcm=True`` pins the centre of mass and samples 3N − 3, a 1/N bias on small systems).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import units

ENSEMBLES = ("nve", "langevin", "nose-hoover")
OPTIMIZERS = ("BFGS", "FIRE")
TRAJECTORY_SUFFIXES = {".traj": "traj", ".extxyz": "extxyz", ".xyz": "extxyz"}
LOG_HEADER = f"{'step':>9s} {'time[ps]':>10s} {'Epot[eV]':>15s} {'Ekin[eV]':>12s} {'Etot[eV]':>15s} {'T[K]':>9s}"


class MDBlowUpError(ValueError):
    """An MD run became unphysical; ``step``, ``max_force`` (eV/Å) and ``trajectory`` say where."""

    def __init__(self, message, step, max_force, trajectory=None, frames_written=0):
        super().__init__(message)
        self.step, self.max_force = step, max_force
        self.trajectory, self.frames_written = trajectory, frames_written


# --------------------------------------------------------------------------------------------------
# inputs and outputs
# --------------------------------------------------------------------------------------------------
def check_writable(path, overwrite: bool = False, what: str = "output") -> Path:
    """Fail early (before any simulation) if ``path`` cannot be written or would be overwritten.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the path is a folder, the file exists and ``overwrite`` is False, or the folder
            is not writable (tried by creating and deleting a temporary file in it).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write the {what} {str(path)!r}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"cannot write the {what} {str(path)!r}: it is a folder")
    if path.exists() and not overwrite:
        raise ValueError(
            f"the {what} {str(path)!r} already exists; pass --overwrite to replace it or choose another path"
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nequip-np-write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(
            f"cannot write the {what} {str(path)!r}: folder {str(folder)!r} is not writable ({exc.strerror})"
        ) from None
    return path


def trajectory_format(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in TRAJECTORY_SUFFIXES:
        raise ValueError(
            f"trajectory {str(path)!r}: unknown suffix {suffix!r}; use one of "
            f"{', '.join(TRAJECTORY_SUFFIXES)} (ASE trajectory or extended XYZ)"
        )
    return TRAJECTORY_SUFFIXES[suffix]


class TrajectoryWriter:
    """Frames (with energy, forces, per-atom energies) to a .traj or .extxyz file, flushed per frame."""

    def __init__(self, path):
        self.path = Path(path)
        self.format = trajectory_format(path)
        self.frames = 0
        if self.format == "traj":
            from ase.io import Trajectory

            self._traj = Trajectory(str(self.path), "w")
        else:
            self._fh = open(self.path, "w")

    def write(self, atoms) -> None:
        if self.format == "traj":
            self._traj.write(atoms)
        else:
            from ase.io import write

            write(self._fh, atoms, format="extxyz")
            self._fh.flush()
        self.frames += 1

    def close(self) -> None:
        if self.format == "traj":
            self._traj.close()
        elif not self._fh.closed:
            self._fh.close()


def read_structure(path, index="-1"):
    """One structure from any ASE-readable file (``index``: ASE index of the frame, default last)."""
    from ase.io import read

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
    try:
        atoms = read(str(path), index=index)
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise ValueError(f"cannot read a structure from {str(path)!r} (index {index}): {exc}") from exc
    if isinstance(atoms, list):
        raise ValueError(f"index {index!r} selects {len(atoms)} frames of {str(path)!r}; give one frame")
    return atoms


# --------------------------------------------------------------------------------------------------
# velocities and integrators
# --------------------------------------------------------------------------------------------------
def maxwell_boltzmann(atoms, temperature_K: float, rng) -> None:
    r"""Momenta :math:`p_{i\alpha} \sim \mathcal N(0, m_i k_B T)`, then the net momentum removed."""
    if temperature_K < 0:
        raise ValueError(f"temperature must be >= 0 K, got {temperature_K}")
    masses = atoms.get_masses()
    p = np.sqrt(masses * units.kB * temperature_K)[:, None] * rng.standard_normal((len(atoms), 3))
    if len(atoms) > 1:
        p -= masses[:, None] * (p.sum(axis=0) / masses.sum())  # zero total momentum
    atoms.set_momenta(p)


def make_dynamics(
    atoms,
    ensemble: str,
    timestep_fs: float,
    temperature_K: float,
    *,
    friction: float = 0.01,
    tdamp_fs: float | None = None,
    rng=None,
):
    """An ASE integrator for ``ensemble`` ("nve", "langevin", "nose-hoover").

    Args:
        friction: Langevin friction in 1/fs (0.01/fs = 10/ps).
        tdamp_fs: Nosé–Hoover chain damping time in fs (default 100 time steps).
        rng: ``np.random.Generator`` for Langevin's noise.
    """
    if not (np.isfinite(timestep_fs) and timestep_fs > 0):
        raise ValueError(f"the time step must be a positive number of fs, got {timestep_fs}")
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "langevin":
        from ase.md.langevin import Langevin

        if not friction > 0:
            raise ValueError(f"Langevin needs a friction > 0 (1/fs), got {friction}")
        return Langevin(
            atoms,
            timestep=dt,
            temperature_K=temperature_K,
            friction=friction / units.fs,
            fixcm=False,
            rng=rng if rng is not None else np.random.default_rng(),
        )
    if ensemble == "nose-hoover":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        tdamp = (tdamp_fs if tdamp_fs is not None else 100 * timestep_fs) * units.fs
        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_K, tdamp=tdamp)
    raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")


# --------------------------------------------------------------------------------------------------
# the MD driver
# --------------------------------------------------------------------------------------------------
@dataclass
class MDResult:
    """What a finished run did: steps, frames written, wall time, neighbour-list builds, last energies."""

    steps: int
    frames_written: int
    wall_seconds: float
    nl_builds: int | None
    log: list = field(default_factory=list)  # rows (step, time ps, Epot, Ekin, Etot, T)


class _Guard:
    """Blow-up detection after every step (see module docstring)."""

    def __init__(self, atoms, max_force, max_displacement):
        self.atoms, self.max_force, self.max_disp = atoms, max_force, max_displacement
        self.prev = atoms.get_positions()

    def check(self, step):
        """None if the state is sane, else (reason, largest force, atom)."""
        forces = self.atoms.get_forces()
        energy = self.atoms.get_potential_energy()
        fnorm = np.linalg.norm(forces, axis=1)
        i = int(np.nanargmax(fnorm)) if np.isfinite(fnorm).any() else 0
        fmax = float(fnorm[i]) if np.isfinite(fnorm).any() else float("nan")
        pos = self.atoms.get_positions()
        moved = np.linalg.norm(pos - self.prev, axis=1)
        self.prev = pos
        if not np.isfinite(energy):
            return f"non-finite potential energy {energy}", fmax, i
        if not np.isfinite(forces).all():
            bad = int(np.flatnonzero(~np.isfinite(forces).all(axis=1))[0])
            return f"non-finite force on atom {bad}", fmax, bad
        if fmax > self.max_force:
            return f"force {fmax:.4g} eV/Å on atom {i} exceeds the limit {self.max_force:g} eV/Å", fmax, i
        if step > 0 and moved.max() > self.max_disp:
            k = int(np.argmax(moved))
            return (f"atom {k} moved {moved[k]:.3g} Å in one step (limit {self.max_disp:g} Å)"), fmax, i
        return None


def _log_row(atoms, step, timestep_fs):
    epot, ekin = float(atoms.get_potential_energy()), float(atoms.get_kinetic_energy())
    return (step, step * timestep_fs * 1e-3, epot, ekin, epot + ekin, float(atoms.get_temperature()))


def format_log_row(row) -> str:
    step, t_ps, epot, ekin, etot, temp = row
    return f"{step:9d} {t_ps:10.4f} {epot:15.6f} {ekin:12.6f} {etot:15.6f} {temp:9.2f}"


def run_md(
    atoms,
    calc,
    *,
    steps: int,
    timestep_fs: float,
    temperature_K: float,
    ensemble: str = "nve",
    trajectory=None,
    traj_interval: int = 10,
    log=None,
    log_interval: int = 10,
    friction: float = 0.01,
    tdamp_fs: float | None = None,
    seed: int | None = None,
    init_velocities: bool = True,
    max_force: float = 1e3,
    max_displacement: float = 1.0,
    progress: bool = False,
    stdout=None,
) -> MDResult:
    """Run ``steps`` MD steps of ``atoms`` with ``calc`` in place.

    Args:
        atoms: the structure (its positions and momenta advance in place).
        calc: an ASE calculator (e.g. :class:`~nequip_np.calculator.NequIPCalculator`).
        steps, timestep_fs, temperature_K, ensemble, friction, tdamp_fs: the dynamics
            (see :func:`make_dynamics`).
        trajectory: path (.traj / .extxyz / .xyz), an open :class:`TrajectoryWriter`, or None; frames
            at step 0, every ``traj_interval`` steps and the last step.
        log: path, open text file, or None; a line (step, time, Epot, Ekin, Etot, T) every
            ``log_interval`` steps, also printed to ``stdout`` when given.
        seed: seeds the Maxwell–Boltzmann velocities and the Langevin noise.
        init_velocities: draw Maxwell–Boltzmann momenta at ``temperature_K`` (else keep the atoms').
        max_force, max_displacement: blow-up limits (eV/Å, Å per step).
        progress: show a tqdm progress bar (on stderr).

    Returns:
        :class:`MDResult`.

    Raises:
        MDBlowUpError: the run became unphysical; the trajectory so far is kept (closed cleanly).
    """
    from tqdm.auto import tqdm

    if steps < 0 or int(steps) != steps:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    if log_interval < 1 or traj_interval < 1:
        raise ValueError("log_interval and traj_interval must be >= 1")
    rng = np.random.default_rng(seed)
    atoms.calc = calc
    if init_velocities:
        maxwell_boltzmann(atoms, temperature_K, rng)
    dyn = make_dynamics(atoms, ensemble, timestep_fs, temperature_K, friction=friction, tdamp_fs=tdamp_fs, rng=rng)
    writer = TrajectoryWriter(trajectory) if isinstance(trajectory, (str, os.PathLike)) else trajectory
    log_fh = open(log, "w") if isinstance(log, (str, os.PathLike)) else log
    bar = tqdm(total=steps, disable=not progress, unit="step", file=sys.stderr, dynamic_ncols=True)
    result = MDResult(steps=0, frames_written=0, wall_seconds=0.0, nl_builds=None)
    guard = None
    t0 = time.perf_counter()

    def emit(line):
        if log_fh is not None:
            log_fh.write(line + "\n")
            log_fh.flush()
        if stdout is not None:
            (bar.write(line, file=stdout) if progress else print(line, file=stdout, flush=True))

    def blow_up(step, reason, fmax):
        where = (
            (
                f"; the trajectory up to step {(step - 1) // traj_interval * traj_interval} is kept in "
                f"{str(writer.path)!r} ({writer.frames} frames)"
            )
            if writer is not None and step > 0
            else ""
        )
        if writer is not None and step == 0:
            where = f"; nothing was written to {str(writer.path)!r}"
        fstr = "n/a" if fmax is None or not np.isfinite(fmax) else f"{fmax:.4g} eV/Å"
        largest = "" if reason.startswith("force ") else f"; largest force {fstr}"
        msg = f"MD blew up at step {step} (t = {step * timestep_fs * 1e-3:.4f} ps): {reason}{largest}{where}"
        emit(f"# {msg}")
        return MDBlowUpError(msg, step, fmax, getattr(writer, "path", None), getattr(writer, "frames", 0))

    def observe():
        step = dyn.nsteps
        bad = guard.check(step)
        if bad is not None:
            raise blow_up(step, bad[0], bad[1])
        if writer is not None and (step % traj_interval == 0 or step == steps):
            writer.write(atoms)
        if step % log_interval == 0 or step == steps:
            row = _log_row(atoms, step, timestep_fs)
            result.log.append(row)
            emit(format_log_row(row))
        if step > 0:
            bar.update(1)
        result.steps = step

    try:
        emit("#" + LOG_HEADER[1:])
        try:
            atoms.get_forces()
        except ValueError as exc:
            raise blow_up(0, f"the calculator refused the initial structure: {exc}", None) from exc
        guard = _Guard(atoms, max_force, max_displacement)
        dyn.attach(observe, interval=1)
        try:
            dyn.run(steps)
        except MDBlowUpError:
            raise
        except (ValueError, FloatingPointError) as exc:  # e.g. two atoms on top of each other
            raise blow_up(dyn.nsteps + 1, f"the calculator failed: {exc}", None) from exc
    finally:
        bar.close()
        if writer is not None and isinstance(trajectory, (str, os.PathLike)):
            writer.close()
        if log_fh is not None and isinstance(log, (str, os.PathLike)):
            log_fh.close()
        result.wall_seconds = time.perf_counter() - t0
        result.frames_written = getattr(writer, "frames", 0)
        result.nl_builds = getattr(calc, "nl_builds", None)
    return result


# --------------------------------------------------------------------------------------------------
# relaxation
# --------------------------------------------------------------------------------------------------
@dataclass
class RelaxResult:
    converged: bool
    steps: int
    energy: float
    fmax: float


def relax(
    atoms, calc, *, fmax: float = 0.05, steps: int = 500, optimizer: str = "BFGS", trajectory=None, logfile=None
) -> RelaxResult:
    """Relax the positions of ``atoms`` in place with ASE's BFGS or FIRE until max |F| < ``fmax`` eV/Å."""
    from ase.optimize import BFGS, FIRE

    opt_cls = {"BFGS": BFGS, "FIRE": FIRE}.get(optimizer.upper())
    if opt_cls is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not fmax > 0:
        raise ValueError(f"fmax must be > 0 eV/Å, got {fmax}")
    atoms.calc = calc
    opt = opt_cls(atoms, trajectory=None if trajectory is None else str(trajectory), logfile=logfile)
    try:
        converged = bool(opt.run(fmax=fmax, steps=steps))
    finally:
        if getattr(opt, "trajectory", None) is not None and hasattr(opt.trajectory, "close"):
            opt.trajectory.close()
    forces = atoms.get_forces()
    return RelaxResult(
        converged, int(opt.nsteps), float(atoms.get_potential_energy()), float(np.linalg.norm(forces, axis=1).max())
    )
