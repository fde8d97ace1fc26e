"""Vibrations, thermochemistry and phonons from the exact Hessian, against ASE's finite differences."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.io import write
from ase.phonons import Phonons
from ase.vibrations import Vibrations

from nequip_np import NequIPModel
from nequip_np.calculator import NequIPCalculator
from nequip_np.cli import main
from nequip_np.data.examples import xtb_vibrations_path
from nequip_np.md.run import relax
from nequip_np.md.vibrations import (
    acoustic_sum_rule_error,
    check_minimum,
    phonons,
    thermochemistry,
    vibrations,
)
from tests.model_factory import small_model


def cu_model():
    return NequIPModel(
        type_names=["Cu"],
        r_max=3.0,
        num_layers=2,
        l_max=1,
        num_features=4,
        avg_num_neighbors=12.0,
        radial_mlp_width=8,
        seed=3,
    )


@pytest.fixture(scope="module")
def water():
    """(calc, relaxed H2O) with a small random model (relaxed to 1e-5 eV/Å; seed 2: bent, 77 degrees)."""
    calc = NequIPCalculator(small_model(seed=2))
    atoms = molecule("H2O")
    res = relax(atoms, calc, fmax=1e-5, steps=500)
    assert res.converged
    return calc, atoms


def test_cu_supercell_phonons_at_gamma_match_finite_differences(tmp_path):
    calc = NequIPCalculator(cu_model())
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)  # 4 atoms: 9 optical (zone-folded) modes at Gamma
    ph = phonons(atoms, calc, supercell=(2, 2, 2))
    assert ph.asr_error < 1e-12  # measured 3e-16
    fd = Phonons(atoms, calc, supercell=(2, 2, 2), name=str(tmp_path / "ph"), delta=1e-3)
    fd.run()
    fd.read(method="standard", symmetrize=0, acoustic=False)
    assert np.abs(ph.C_N - fd.C_N).max() < 1e-5 * np.abs(fd.C_N).max()  # FD error ~ delta^2
    w, w_fd = (np.sort(p.band_structure([[0, 0, 0]], verbose=False)[0]) for p in (ph, fd))
    order = np.argsort(np.abs(w))
    assert np.abs(w[order[3:]]).min() > 1e-3  # eV: the comparison is not between zeros
    assert np.abs(w - w_fd).max() < 1e-5 * np.abs(w_fd).max()
    assert np.abs(w[order[:3]]).max() < 1e-6  # acoustic modes at Gamma vanish
    path = atoms.cell.bandpath(npoints=20)
    assert ph.get_band_structure(path, verbose=False).energies.shape == (1, 20, 12)
    broken = fd.C_N.copy()
    broken[0, 0, 0] += 1e-3 * np.abs(fd.C_N).max()  # the sum-rule measure sees a planted violation
    assert acoustic_sum_rule_error(broken) == pytest.approx(1e-3, rel=1e-6)


def test_molecule_hessian_equals_ase_vibrations(water, tmp_path):
    calc, atoms = water
    vib = vibrations(atoms, calc)
    moved = atoms.copy()
    moved.calc = calc
    fd = Vibrations(moved, name=str(tmp_path / "vib"), delta=1e-4, nfree=2)
    fd.run()
    h_fd = fd.get_vibrations().get_hessian_2d()
    assert np.abs(vib.get_hessian_2d() - h_fd).max() < 1e-6 * np.abs(h_fd).max()
    part = vibrations(atoms, calc, indices=[0])  # only the O atom moves
    assert np.array_equal(part.get_hessian_2d(), vib.get_hessian_2d()[:3, :3])


def test_thermochemistry_matches_the_harmonic_formulas(water):
    calc, atoms = water
    vib = vibrations(atoms, calc)
    check = check_minimum(vib, forces=atoms.get_forces())
    assert check.ok and check.n_rigid == 6, check.message()
    e0 = atoms.get_potential_energy()
    th = thermochemistry(vib, e0, temperature=500.0, kind="harmonic")
    eps = np.sort(np.abs(vib.get_energies()))[6:].real
    kt = units.kB * 500.0
    f_closed = e0 + np.sum(0.5 * eps + kt * np.log1p(-np.exp(-eps / kt)))
    assert th["zpe_eV"] == pytest.approx(0.5 * eps.sum(), rel=1e-12)
    assert th["helmholtz_eV"] == pytest.approx(f_closed, rel=1e-10)
    gas = thermochemistry(vib, e0, temperature=300.0)
    assert gas["kind"] == "ideal_gas" and np.isfinite(gas["gibbs_eV"]) and gas["entropy_eV_per_K"] > 0


def test_unrelaxed_structure_is_reported(water):
    """Linear H-O-H is a saddle of a model whose minimum is bent (77 degrees): imaginary bending modes."""
    calc, atoms = water
    d = atoms.get_distance(0, 1)
    linear = Atoms("OH2", positions=[[0, 0, 0], [d, 0, 0], [-d, 0, 0]])
    vib = vibrations(linear, calc)
    check = check_minimum(vib, forces=calc.get_forces(linear))
    assert not check.ok and check.n_rigid == 5
    assert "imaginary vibrational mode" in check.message() and "relax" in check.message()
    with pytest.raises(ValueError, match="imaginary vibrational mode"):
        thermochemistry(vib, 0.0)


def test_cli_vib(tmp_path, capsys):
    model = small_model(seed=0)
    model.save(tmp_path / "m.npz")
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    args = [str(tmp_path / "m.npz"), str(tmp_path / "h2o.xyz")]
    rc = main(["vib", *args, "--relax", "--fmax", "1e-4", "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Gibbs energy G" in out and "Zero-point energy" in out
    assert all((tmp_path / f"out{s}").exists() for s in (".json", ".xyz", ".relaxed.xyz"))
    rc = main(["vib", *args, "--output", str(tmp_path / "out")])  # no --overwrite: refused, nothing run
    assert rc == 2 and "already exists" in capsys.readouterr().err
    write(tmp_path / "nh3.xyz", molecule("NH3"))
    rc = main(["vib", str(tmp_path / "m.npz"), str(tmp_path / "nh3.xyz")])
    assert rc == 2 and "does not know element(s) N" in capsys.readouterr().err
    rc = main(["vib", *args, "--indices", "0,x"])
    assert rc == 2 and "expected comma-separated atom indices" in capsys.readouterr().err


def test_cli_vib_warns_on_unrelaxed_structure(water, tmp_path, capsys):
    calc, atoms = water
    calc.model.save(tmp_path / "m.npz")
    d = atoms.get_distance(0, 1) + 0.05
    write(tmp_path / "s.xyz", Atoms("OH2", positions=[[0, 0, 0], [d, 0, 0], [-d, 0, 0]]))
    rc = main(["vib", str(tmp_path / "m.npz"), str(tmp_path / "s.xyz")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "not relaxed: max |F|" in err and "imaginary vibrational mode(s)" in err


def test_cli_phonons(tmp_path, capsys):
    cu_model().save(tmp_path / "cu.npz")
    write(tmp_path / "cu.xyz", bulk("Cu", "fcc", a=3.61))
    rc = main(
        [
            "phonons",
            str(tmp_path / "cu.npz"),
            str(tmp_path / "cu.xyz"),
            "--supercell",
            "2",
            "2",
            "2",
            "--npoints",
            "30",
            "--dos-kpts",
            "6",
            "--output",
            str(tmp_path / "ph"),
        ]
    )
    out = capsys.readouterr()
    assert rc in (0, 1), out.err
    assert "acoustic sum rule" in out.out
    assert all((tmp_path / f"ph{s}").exists() for s in (".bands.json", ".dos.csv", ".png"))


def test_xtb_reference_fixture_is_a_minimum_with_consistent_frequencies():
    """nequip_np/data/examples/xtb_aspirin_vibrations.npz (tools/make_xtb_frequencies.py): GFN2-xTB aspirin."""
    from ase.vibrations import VibrationsData

    with np.load(xtb_vibrations_path()) as d:
        atoms = Atoms(numbers=d["numbers"], positions=d["positions"])
        vib = VibrationsData.from_2d(atoms, d["hessian"])
        assert np.allclose(vib.get_frequencies(), d["frequencies_cm"], rtol=1e-10, atol=1e-8)
        assert float(d["fmax"]) < 1e-3
    assert atoms.get_chemical_formula() == "C9H8O4"
    check = check_minimum(vib)
    assert check.ok, check.message()
    freqs = np.sort(np.abs(vib.get_frequencies()))
    assert freqs[5] < 10.0 and freqs[6] > 30.0  # six rigid modes, then the 57 vibrations
    assert 3400 < freqs[-1] < 3500  # the O-H stretch of GFN2-xTB
