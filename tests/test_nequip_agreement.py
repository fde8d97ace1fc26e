"""Rung 4: the same weights give official nequip 0.19.1's numbers (fixtures from tools/make_nequip_fixtures.py)."""

import numpy as np
import pytest

from nequip_np.interop import load_nequip_npz
from tests.nequip_fixtures import graph_from_fixture, model_files, structures


def _close(ours, ref, rtol, atol):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64).reshape(np.shape(ours))
    err = np.max(np.abs(ours - ref)) if ref.size else 0.0
    tol = atol + rtol * np.max(np.abs(ref)) if ref.size else 0.0
    assert err <= tol, f"max abs error {err:.3e} > tolerance {tol:.3e}"


@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_energies_forces_stress_match_official(path):
    model = load_nequip_npz(path)
    f32 = model.config.model_dtype == "float32"
    rtol, atol = (1e-5, 1e-6) if f32 else (1e-9, 1e-10)
    with np.load(path) as data:
        for s in structures(data):
            graph = graph_from_fixture(data, s)
            out = model.compute(graph)
            _close(out["atomic_energy"], data[f"output/{s}/atomic_energy"], rtol, atol)
            _close(out["total_energy"], data[f"output/{s}/total_energy"], rtol, atol)
            _close(out["forces"], data[f"output/{s}/forces"], rtol, atol)
            _close(out["virial"][0], data[f"output/{s}/virial"], rtol, atol)
            if np.all(graph.pbc):
                _close(out["stress"][0], data[f"output/{s}/stress"], rtol, atol)
