"""Molecular dynamics: Langevin temperature, NVE conservation, the md/relax commands and their errors.

A tiny random model (one layer, l_max = 1) keeps every run to a few seconds; the physics checked here
(equipartition under a thermostat, Verlet energy conservation) holds for any smooth potential.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write

from nequip_np.calculator import NequIPCalculator
from nequip_np.cli import main
from nequip_np.md.run import MDBlowUpError, maxwell_boltzmann, run_md
from tests.model_factory import molecule, small_model


def tiny_model(seed=0):
    return small_model(seed=seed, num_layers=1, l_max=1, num_features=4)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    tiny_model().save(path)
    return path


@pytest.fixture
def structure(tmp_path):
    path = tmp_path / "mol.xyz"
    write(path, molecule(np.random.default_rng(5), 6))
    return path


def _block_mean_and_error(x, n_blocks=15):
    """Mean and its standard error from ``n_blocks`` contiguous block means (handles correlation)."""
    blocks = np.array([b.mean() for b in np.array_split(x, n_blocks)])
    return float(x.mean()), float(blocks.std(ddof=1) / np.sqrt(n_blocks))


# ----------------------------------------------------------------------------------- physics
def test_maxwell_boltzmann_zero_momentum_and_temperature():
    atoms = Atoms("H200", positions=np.random.default_rng(0).uniform(0, 30, (200, 3)))
    maxwell_boltzmann(atoms, 500.0, np.random.default_rng(1))
    np.testing.assert_allclose(atoms.get_momenta().sum(axis=0), 0.0, atol=1e-12)
    # 600 degrees of freedom: the sample temperature is 500 K within ~5.8% (1 sigma)
    assert abs(atoms.get_temperature() - 500.0) < 3 * 500.0 * np.sqrt(2 / 600)


def test_langevin_holds_the_target_temperature():
    """Mean kinetic temperature over the second half equals the target within 4 standard errors."""
    rng = np.random.default_rng(11)
    atoms = molecule(rng, 8)
    atoms.set_cell([7.0, 7.0, 7.0])
    atoms.pbc = True
    target = 400.0
    res = run_md(
        atoms,
        NequIPCalculator(tiny_model(), skin=0.5),
        steps=1000,
        timestep_fs=0.5,
        temperature_K=target,
        ensemble="langevin",
        friction=0.2,
        seed=3,
        log_interval=1,
    )
    temps = np.array([r[5] for r in res.log])
    second = temps[len(temps) // 2 :]
    mean, err = _block_mean_and_error(second)
    # one sample fluctuates by T sqrt(2/3N) = 115 K; a strong friction (kinetic energy decorrelates
    # in ~1/(2 gamma) = 2.5 fs) makes the 500 samples worth ~100 independent ones: err ~ 10-15 K
    assert err < 0.06 * target, (mean, err)
    assert abs(mean - target) < 4 * err + 1e-9, f"<T> = {mean:.1f} +- {err:.1f} K, target {target} K"
    assert res.nl_builds < res.steps / 3  # the list was reused


def test_nve_conserves_energy():
    rng = np.random.default_rng(2)
    atoms = molecule(rng, 8)
    res = run_md(
        atoms,
        NequIPCalculator(tiny_model()),
        steps=400,
        timestep_fs=0.25,
        temperature_K=300.0,
        ensemble="nve",
        seed=1,
        log_interval=1,
    )
    log = np.array(res.log)
    epot, etot = log[:, 2], log[:, 4]
    assert np.ptp(epot) > 1e-3  # energy flows between kinetic and potential...
    assert np.std(etot) < 2e-3 * np.std(epot)  # ...while the total stays put
    slope = np.polyfit(log[:, 1], etot / len(atoms), 1)[0]  # eV/atom/ps
    assert abs(slope) < 1e-4


def test_blow_up_on_absurd_displacement_names_the_step():
    atoms = molecule(np.random.default_rng(4), 6)
    with pytest.raises(MDBlowUpError, match=r"step 1 .*moved") as err:
        run_md(
            atoms,
            NequIPCalculator(tiny_model()),
            steps=5,
            timestep_fs=0.5,
            temperature_K=300.0,
            max_displacement=1e-5,
            seed=0,
        )
    assert err.value.step == 1


# ---------------------------------------------------------------------------------- md command
def test_md_cli_langevin_traj(model_file, structure, tmp_path, capsys):
    traj = tmp_path / "run.traj"
    rc = main(
        [
            "md",
            str(model_file),
            str(structure),
            "--steps",
            "40",
            "--timestep",
            "0.5",
            "--temperature",
            "300",
            "--ensemble",
            "langevin",
            "--trajectory",
            str(traj),
            "--log-interval",
            "10",
            "--seed",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    frames = read(traj, ":")
    assert len(frames) == 5  # steps 0, 10, ..., 40
    atoms = read(structure)
    assert [f.get_chemical_symbols() for f in frames] == [atoms.get_chemical_symbols()] * 5
    assert frames[-1].get_forces().shape == (6, 3) and np.isfinite(frames[-1].get_potential_energy())
    p0 = frames[0].get_momenta()
    np.testing.assert_allclose(p0.sum(axis=0), 0.0, atol=1e-12)  # Maxwell-Boltzmann start, zero momentum
    log_lines = [ln for ln in (tmp_path / "run.log").read_text().splitlines() if not ln.startswith("#")]
    assert len(log_lines) == 5 and log_lines[-1].split()[0] == "40"
    step, t_ps, epot, ekin, etot, temp = map(float, log_lines[-1].split())
    assert abs(etot - epot - ekin) < 1e-5 and t_ps == pytest.approx(0.02)
    assert abs(epot - frames[-1].get_potential_energy()) < 1e-5
    assert "Epot[eV]" in out and log_lines[-1] in out  # the log also goes to stdout
    # same seed, same run
    rc = main(
        [
            "md",
            str(model_file),
            str(structure),
            "--steps",
            "40",
            "--ensemble",
            "langevin",
            "--trajectory",
            str(tmp_path / "again.traj"),
            "--seed",
            "1",
            "--no-progress",
            "--timestep",
            "0.5",
        ]
    )
    np.testing.assert_array_equal(read(tmp_path / "again.traj").positions, frames[-1].positions)


@pytest.mark.parametrize("ensemble", ["nve", "nose-hoover"])
def test_md_cli_extxyz(model_file, structure, tmp_path, ensemble):
    traj = tmp_path / "run.extxyz"
    rc = main(
        [
            "md",
            str(model_file),
            str(structure),
            "--steps",
            "20",
            "--ensemble",
            ensemble,
            "--trajectory",
            str(traj),
            "--log-interval",
            "5",
            "--traj-interval",
            "10",
            "--no-progress",
            "--seed",
            "0",
        ]
    )
    assert rc == 0
    frames = read(traj, ":")
    assert len(frames) == 3
    assert frames[2].get_forces().shape == (6, 3)


def test_md_cli_never_overwrites(model_file, structure, tmp_path, capsys):
    traj = tmp_path / "run.traj"
    traj.write_bytes(b"precious")
    rc = main(["md", str(model_file), str(structure), "--steps", "2", "--trajectory", str(traj), "--no-progress"])
    assert rc == 2 and traj.read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().err
    rc = main(
        [
            "md",
            str(model_file),
            str(structure),
            "--steps",
            "2",
            "--trajectory",
            str(traj),
            "--overwrite",
            "--no-progress",
        ]
    )
    assert rc == 0 and len(read(traj, ":")) == 2


def test_md_cli_unknown_species(model_file, tmp_path, capsys):
    path = tmp_path / "nh3.xyz"
    write(path, Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    traj = tmp_path / "run.traj"
    rc = main(["md", str(model_file), str(path), "--steps", "2", "--trajectory", str(traj), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "element(s) N" in err and "C, H, O" in err
    assert not traj.exists()


def test_md_cli_unwritable_trajectory(model_file, structure, tmp_path, capsys):
    rc = main(["md", str(model_file), str(structure), "--trajectory", str(tmp_path / "no" / "such" / "run.traj")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(["md", str(model_file), str(structure), "--trajectory", str(tmp_path / "run.pdf")])
    assert rc == 2 and "unknown suffix" in capsys.readouterr().err
    try:  # /proc refuses new files even for root
        os.close(tempfile.mkstemp(dir="/proc")[0])
        pytest.skip("/proc is writable here")
    except OSError:
        pass
    rc = main(["md", str(model_file), str(structure), "--trajectory", "/proc/run.traj"])
    assert rc == 2 and "not writable" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_md_cli_read_only_folder(model_file, structure, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        rc = main(["md", str(model_file), str(structure), "--trajectory", str(folder / "run.traj")])
    finally:
        folder.chmod(0o700)
    assert rc == 2 and "not writable" in capsys.readouterr().err


@pytest.mark.parametrize("suffix,fault", [(".traj", "huge"), (".extxyz", "nan")])
def test_md_cli_blow_up_keeps_partial_trajectory(model_file, structure, tmp_path, capsys, monkeypatch, suffix, fault):
    """Forces go wrong from the 25th evaluation (step 24): stop there, name it, keep frames 0..20."""
    original = NequIPCalculator.calculate

    def faulty(self, atoms=None, properties=("energy",), system_changes=()):
        original(self, atoms, properties, system_changes)
        if self.n_calculations >= 25:
            self.results["forces"] = self.results["forces"] * (1e6 if fault == "huge" else np.nan)

    monkeypatch.setattr(NequIPCalculator, "calculate", faulty)
    traj = tmp_path / f"run{suffix}"
    rc = main(
        [
            "md",
            str(model_file),
            str(structure),
            "--steps",
            "100",
            "--trajectory",
            str(traj),
            "--log-interval",
            "5",
            "--no-progress",
            "--seed",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 3
    assert "blew up at step 24" in err and str(traj) in err
    assert (
        "force 1" in err and "eV/Å on atom" in err and "exceeds the limit" in err
        if fault == "huge"
        else "non-finite force" in err and "largest force" in err
    )
    frames = read(traj, ":")
    assert len(frames) == 5  # steps 0, 5, 10, 15, 20 — all written before the blow-up, file closed cleanly
    assert all(np.isfinite(f.get_forces()).all() for f in frames)
    assert "blew up" in (tmp_path / "run.log").read_text()


def test_md_cli_coincident_atoms(model_file, tmp_path, capsys):
    path = tmp_path / "bad.xyz"
    write(path, Atoms("CO", positions=[[0, 0, 0], [0, 0, 0]]))
    rc = main(
        ["md", str(model_file), str(path), "--steps", "5", "--trajectory", str(tmp_path / "r.traj"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 3 and "step 0" in err and "same position" in err


# ------------------------------------------------------------------------------- relax command
@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE"])
def test_relax_cli(model_file, structure, tmp_path, capsys, optimizer):
    out = tmp_path / "relaxed.extxyz"
    rc = main(
        [
            "relax",
            str(model_file),
            str(structure),
            "--fmax",
            "0.01",
            "--steps",
            "400",
            "--optimizer",
            optimizer,
            "--output",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr()
    assert "converged" in capsys.readouterr().out
    relaxed = read(out)
    relaxed.calc = NequIPCalculator(model_file)
    assert np.linalg.norm(relaxed.get_forces(), axis=1).max() < 0.01
    start = read(structure)
    start.calc = NequIPCalculator(model_file)
    assert relaxed.get_potential_energy() < start.get_potential_energy()
    rc = main(["relax", str(model_file), str(structure), "--output", str(out)])
    assert rc == 2  # exists, no --overwrite
