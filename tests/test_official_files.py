"""Official nequip .ckpt / .nequip.zip files read without torch (fixtures: tools/make_official_model_files.py).

Every fixture was written by nequip-train / nequip-package 0.19.1; its ``NAME_ref.npz`` holds official
nequip's energies, forces and virials (``ckpt/``: ModelFromCheckpoint, i.e. EMA weights; ``package/``:
ModelFromPackage; ``live/``: the non-EMA weights).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nequip_np.interop.model_file import detect_format, load_any_model
from nequip_np.interop.official import load_official, read_official
from tests.nequip_fixtures import graph_from_fixture, structures

OFFICIAL = Path(__file__).parent / "fixtures" / "official"
NAMES = sorted(p.name[: -len("_ref.npz")] for p in OFFICIAL.glob("*_ref.npz"))
REPO = Path(__file__).resolve().parents[1]


def _rel(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64).reshape(np.shape(ours))
    return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300))


def _compare(model, ref, prefix):
    rtol = 1e-5 if model.config.model_dtype == "float32" else 1e-10
    for s in structures(ref):
        out = model.compute(graph_from_fixture(ref, s))
        for key, ours in (
            ("total_energy", out["total_energy"]),
            ("forces", out["forces"]),
            ("virial", out["virial"][0]),
            ("atomic_energy", out["atomic_energy"]),
        ):
            err = _rel(ours, ref[f"{prefix}/{s}/{key}"])
            assert err <= rtol, f"{prefix}/{s}/{key}: relative error {err:.2e} > {rtol}"


def test_fixture_set_covers_the_required_architectures():
    assert {"perl", "edgecut", "zbl", "f32", "trainable", "finetuned"} <= set(NAMES)
    for name in NAMES:
        assert (OFFICIAL / f"{name}.ckpt").exists() and (OFFICIAL / f"{name}.nequip.zip").exists()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["ckpt", "package"])
def test_official_file_reproduces_official_outputs(name, kind):
    path = OFFICIAL / (f"{name}.ckpt" if kind == "ckpt" else f"{name}.nequip.zip")
    model = load_any_model(path)
    assert detect_format(path) == {"ckpt": "lightning-checkpoint", "package": "nequip-package"}[kind]
    with np.load(OFFICIAL / f"{name}_ref.npz") as ref:
        _compare(model, ref, kind)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "f32"])
def test_checkpoint_uses_ema_weights_like_official_and_live_on_request(name):
    path = OFFICIAL / f"{name}.ckpt"
    with np.load(OFFICIAL / f"{name}_ref.npz") as ref:
        if f"live/{structures(ref)[0]}/forces" not in ref.files:
            pytest.skip("no EMA in this checkpoint")
        ema, live = load_official(path), load_official(path, weights="live")
        assert ema.provenance["weights"] == "ema" and live.provenance["weights"] == "live"
        _compare(live, ref, "live")
        s = structures(ref)[1]
        assert _rel(ema.compute(graph_from_fixture(ref, s))["forces"], ref[f"live/{s}/forces"]) > 1e-8


def test_architecture_details_come_from_the_files():
    assert load_any_model(OFFICIAL / "perl.ckpt").config.num_features == [6, 4, 2]
    m = load_any_model(OFFICIAL / "trainable.nequip.zip")
    assert m.config.per_type_energy_shifts_trainable and "per_type_energy_shifts" in m.params
    assert m.config.bessel_trainable and m.config.readout_mlp_hidden_layers_depth == 1
    assert load_any_model(OFFICIAL / "edgecut.ckpt").config.per_edge_type_cutoff["C"]["O"] == 3.2
    assert load_any_model(OFFICIAL / "zbl.ckpt").config.pair_potential is not None
    assert load_any_model(OFFICIAL / "f32.ckpt").config.model_dtype == "float32"
    ft = read_official(OFFICIAL / "finetuned.ckpt")
    assert ft.provenance["model_target"] == "nequip.model.modify"
    shifts = load_any_model(OFFICIAL / "finetuned.ckpt").params["per_type_energy_shifts"]
    base = load_any_model(OFFICIAL / "perl.ckpt").buffers["per_type_energy_shifts"]
    assert shifts.shape == (3,) and base.shape == (1,)  # modify_PerTypeScaleShift made them per-type


def test_reading_never_imports_torch_even_when_torch_is_importable():
    """A subprocess in which importing torch raises: every fixture loads and matches its reference."""
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(REPO)!r})
import numpy as np
from nequip_np.interop.model_file import load_any_model
from tests.nequip_fixtures import graph_from_fixture, structures
worst = 0.0
for name in {NAMES!r}:
    for suffix, prefix in ((".ckpt", "ckpt"), (".nequip.zip", "package")):
        model = load_any_model({str(OFFICIAL)!r} + "/" + name + suffix)
        if model.config.model_dtype == "float32":
            continue
        with np.load({str(OFFICIAL)!r} + "/" + name + "_ref.npz") as ref:
            s = structures(ref)[1]
            f = model.compute(graph_from_fixture(ref, s))["forces"]
            r = ref[prefix + "/" + s + "/forces"]
            worst = max(worst, float(np.max(np.abs(f - r)) / np.max(np.abs(r))))
print({{"torch_imported": "torch" in sys.modules, "worst": worst}})
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = eval(out.stdout.strip().splitlines()[-1])
    assert res["torch_imported"] is False and res["worst"] <= 1e-10, res


def test_info_reports_format_types_rmax_parameters_and_provenance(capsys):
    from nequip_np.cli import main

    assert main(["info", str(OFFICIAL / "zbl.ckpt"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    model = load_any_model(OFFICIAL / "zbl.ckpt")
    assert d["format"] == "lightning-checkpoint" and d["type_names"] == ["H", "C", "O"] and d["r_max"] == 4.0
    assert d["parameters"] == sum(v.size for v in model.params.values())
    assert d["provenance"]["weights"] == "ema" and d["provenance"]["versions"]["nequip"] == "0.19.1"
    assert main(["info", str(OFFICIAL / "perl.nequip.zip")]) == 0
    text = capsys.readouterr().out
    assert "nequip-package" in text and "num_features" in text


def test_model_path_verbs_and_calculator_accept_official_files(tmp_path, capsys):
    """evaluate, check and NequIPCalculator all go through load_any_model (md/relax/lammps use the
    calculator / load_any_model too)."""
    from ase.io import read, write

    from nequip_np.calculator import NequIPCalculator
    from nequip_np.cli import main

    frames = read(REPO / "examples" / "aspirin" / "aspirin_xtb_300.extxyz", ":2")
    write(tmp_path / "two.extxyz", frames, format="extxyz")
    pkg = OFFICIAL / "perl.nequip.zip"
    assert main(["evaluate", str(pkg), str(tmp_path / "two.extxyz"), "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["n_frames"] == 2
    assert (
        main(
            [
                "check",
                "--model",
                str(OFFICIAL / "perl.ckpt"),
                "--structure",
                str(tmp_path / "two.extxyz"),
                "--checks",
                "translation,permutation",
            ]
        )
        == 0
    )
    atoms = frames[0].copy()
    atoms.calc = NequIPCalculator(str(OFFICIAL / "perl.ckpt"))
    ref = load_any_model(OFFICIAL / "perl.ckpt")
    from nequip_np.data.graph import graph_from_atoms

    out = ref.compute(graph_from_atoms(frames[0], ref.config.type_names, ref.config.r_max))
    np.testing.assert_allclose(atoms.get_potential_energy(), out["total_energy"][0], rtol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"], rtol=1e-10, atol=1e-12)
    capsys.readouterr()
