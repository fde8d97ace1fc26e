"""Save/load round trip and the model's clear errors on bad input."""

import json

import numpy as np
import pytest
from ase import Atoms

from nequip_np import NequIPModel, load_model
from nequip_np.data.graph import graph_from_atoms
from nequip_np.interop import load_nequip_npz
from tests.model_factory import molecule, periodic, small_model
from tests.nequip_fixtures import model_files


def test_save_load_round_trip_gives_identical_outputs(tmp_path, rng):
    model = small_model(seed=1, num_layers=2)
    atoms = periodic(rng)
    g = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
    model.save(tmp_path / "m.npz")
    again = load_model(tmp_path / "m.npz")
    a, b = model.compute(g), again.compute(g)
    for key in ("atomic_energy", "forces", "stress"):
        np.testing.assert_array_equal(a[key], b[key])
    assert repr(again) == repr(model) and "backend='numpy'" in repr(model)


def test_newer_format_version_is_refused(tmp_path):
    model = small_model(num_layers=1)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as d:
        arrays = {k: d[k] for k in d.files}
    arrays["format_version"] = np.array(99)
    np.savez(tmp_path / "new.npz", **arrays)
    with pytest.raises(ValueError, match="version 99, newer"):
        load_model(tmp_path / "new.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]]), "'N'.*H.*C.*O"),
        (lambda: Atoms("CO", positions=[[0, 0, 0], [np.nan, 0, 0]]), "finite"),
        (lambda: Atoms("CO", positions=[[0, 0, 0], [0, 0, 0]]), "same position|coincident|distance"),
        (lambda: Atoms(), "empty"),
        (
            lambda: Atoms("CO", positions=[[0, 0, 0], [1, 0, 0]], cell=[[2, 0, 0], [4, 0, 0], [0, 0, 3]], pbc=True),
            "singular|volume",
        ),
    ],
)
def test_bad_structures_get_clear_errors(make, message):
    model = small_model(num_layers=1)
    with pytest.raises(ValueError, match=message):
        graph_from_atoms(make(), model.config.type_names, model.config.r_max)


def test_bad_model_options():
    with pytest.raises(ValueError, match="avg_num_neighbors"):
        NequIPModel(type_names=["H"], r_max=4.0)
    with pytest.raises(TypeError, match="did you mean 'num_layers'"):
        NequIPModel(type_names=["H"], r_max=4.0, avg_num_neighbors=3.0, num_layer=2)
    with pytest.raises(ValueError, match="num_features"):
        NequIPModel(type_names=["H"], r_max=4.0, avg_num_neighbors=3.0, l_max=2, num_features=[4, 4])
    with pytest.raises(ValueError, match="backend 'cuba' is not available"):
        NequIPModel(type_names=["H"], r_max=4.0, avg_num_neighbors=3.0, backend="cuba")


def _rewrite(src, dst, edit):
    with np.load(src) as d:
        arrays = {k: d[k] for k in d.files}
    edit(arrays)
    np.savez(dst, **arrays)


def test_interop_file_with_missing_or_mismatched_weights(tmp_path):
    src = model_files()[1]
    key = "state/model.func.layer0_convnet.conv.linear_2.weight"
    _rewrite(src, tmp_path / "missing.npz", lambda a: a.pop(key))
    with pytest.raises(ValueError, match="missing weight 'model.func.layer0_convnet.conv.linear_2.weight'"):
        load_nequip_npz(tmp_path / "missing.npz")
    _rewrite(src, tmp_path / "shape.npz", lambda a: a.__setitem__(key, a[key][:-1]))
    with pytest.raises(ValueError, match="layer0_convnet.conv.linear_2.weight' has shape"):
        load_nequip_npz(tmp_path / "shape.npz")

    def bad_meta(a):
        meta = json.loads(str(a["metadata"]))
        meta["num_features"] = 99
        a["metadata"] = np.array(json.dumps(meta))

    _rewrite(src, tmp_path / "meta.npz", bad_meta)
    with pytest.raises(ValueError, match="has shape"):
        load_nequip_npz(tmp_path / "meta.npz")


def test_float32_model_keeps_energies_in_float64(rng):
    m64 = small_model(seed=2, num_layers=2)
    m32 = small_model(seed=2, num_layers=2, model_dtype="float32")
    m32.load_params(m64.params)
    g = graph_from_atoms(molecule(rng), m64.config.type_names, m64.config.r_max)
    a, b = m64.compute(g), m32.compute(g)
    assert b["total_energy"].dtype == np.float64 and b["forces"].dtype == np.float64
    np.testing.assert_allclose(b["total_energy"], a["total_energy"], rtol=1e-6)
    np.testing.assert_allclose(b["forces"], a["forces"], atol=1e-4 * np.abs(a["forces"]).max())


def test_float32_model_computes_in_float32(rng):
    """NumPy float64 scalars (normalisation constants, CG blocks) must not promote a float32 model."""
    model = small_model(seed=2, num_layers=2, model_dtype="float32")
    g = graph_from_atoms(molecule(rng), model.config.type_names, model.config.r_max)
    _, cache = model.forward(g, g.edge_vectors(), model.params)
    assert all(f.dtype == np.float32 for f in cache.features)
    assert all(z.dtype == np.float32 for z in cache.layers[1].radial[1])
