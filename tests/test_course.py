"""nequip_np.course (the notebooks' helpers), the shipped example data and the committed learning curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nequip_np import NequIPModel
from nequip_np.course import (
    bending_scan,
    bent_triatomic,
    fit_loglog_slope,
    gauss_sphere_quadrature,
    learning_curves_path,
    load_learning_curves,
)
from nequip_np.so3 import spherical_harmonics


def test_fit_loglog_slope_recovers_a_power_law_and_rejects_one_size():
    n = np.array([10, 20, 40, 80])
    slope, err = fit_loglog_slope(n, 3.0 * n**-0.4)
    assert slope == pytest.approx(-0.4, abs=1e-12) and err < 1e-12
    noisy_slope, noisy_err = fit_loglog_slope(n, 3.0 * n**-0.4 * np.array([1.1, 0.9, 1.05, 0.95]))
    assert noisy_err > 1e-3 and abs(noisy_slope + 0.4) < 0.2
    with pytest.raises(ValueError, match="two distinct"):
        fit_loglog_slope([10, 10], [1.0, 2.0])


def test_bent_triatomic_geometry_and_bad_angle():
    pos = bent_triatomic(1.0, 2.0, np.pi / 3)
    assert np.linalg.norm(pos[0] - pos[1]) == pytest.approx(1.0)
    assert np.linalg.norm(pos[2] - pos[1]) == pytest.approx(2.0)
    assert np.linalg.norm(pos[2] - pos[0]) == pytest.approx(np.sqrt(3.0))  # law of cosines
    with pytest.raises(ValueError, match="angle"):
        bent_triatomic(1.0, 1.0, 0.0)


@pytest.mark.parametrize("l_max, layers, flat", [(0, 2, True), (1, 1, True), (1, 2, False)])
def test_bending_scan_sees_the_angle_only_with_l1_and_two_layers(l_max, layers, flat):
    """r_max (2 Å) below the end-to-end distance (≥ 2.08 Å): the angle needs l ≥ 1 and two hops."""
    model = NequIPModel(
        type_names=["O"], r_max=2.0, num_layers=layers, l_max=l_max, num_features=4, avg_num_neighbors=1.5, seed=0
    )
    e = bending_scan(model, np.deg2rad([120.0, 150.0, 180.0]), 1.2, 1.2, "OOO")
    assert (np.ptp(e) < 1e-12) == flat, f"energy range {np.ptp(e):.2e} eV"


def test_gauss_sphere_quadrature_is_exact_for_harmonic_products():
    pts, w = gauss_sphere_quadrature(8)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    Y = spherical_harmonics(4, pts)
    assert np.abs((Y * w[:, None]).T @ Y - np.eye(25)).max() < 1e-13
    with pytest.raises(ValueError, match="degree"):
        gauss_sphere_quadrature(-1)


def test_load_learning_curves_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="learning_curves.py"):
        load_learning_curves(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match="summary"):
        load_learning_curves(bad)


def test_committed_learning_curves_are_consistent():
    """The summary is recomputable from the runs, ≥ 3 seeds per point, and the shipped copy is identical."""
    path = learning_curves_path()
    doc = load_learning_curves(path)
    from importlib import resources

    shipped = resources.files("nequip_np.data.examples") / "learning_curves.json"
    assert json.loads(shipped.read_text()) == doc, "the shipped copy differs from benchmarks/results"
    assert set(doc["summary"]) == {"0", "1", "2"}
    for l_max, entry in doc["summary"].items():
        runs = [r for r in doc["runs"] if str(r["l_max"]) == l_max]
        for k, n in enumerate(entry["sizes"]):
            values = [r["test_forces_mae_meV_A"] for r in runs if r["n_train"] == n]
            assert len(values) >= 3, f"l_max {l_max}, N = {n}: {len(values)} seeds"
            assert entry["forces_mean"][k] == pytest.approx(np.mean(values), rel=1e-12)
        slope, _ = fit_loglog_slope([r["n_train"] for r in runs], [r["test_forces_mae_meV_A"] for r in runs])
        assert entry["forces_slope"] == pytest.approx(slope, rel=1e-12)
    # every run ended by the convergence rule (not by the safety cap), with its history to show it
    cap = doc["protocol"]["schedule"]["max_steps"]
    for r in doc["runs"]:
        assert r["converged"] and r["stop"] in ("lr_below_stop", "early_stopping"), (
            r["n_train"],
            r["l_max"],
            r["seed"],
        )
        assert r["steps"] < cap and r["val_history"][-1][0] == r["steps"]
    # the convergence check: points of every size and l_max also trained with the coarser rule, which
    # stops no later; its ratios are those of the recorded errors
    check = doc["convergence_check"]
    assert {(c["n_train"], c["l_max"]) for c in check} == {(n, l) for n in doc["protocol"]["sizes"] for l in (0, 1, 2)}
    by_key = {(r["n_train"], r["l_max"], r["seed"]): r for r in doc["runs"]}
    for c in check:
        run = by_key[(c["n_train"], c["l_max"], c["seed"])]
        assert c["steps"][1] == run["steps"] and c["steps"][0] <= c["steps"][1]
        assert c["forces_ratio_protocol_over_loose"] == pytest.approx(
            run["test_forces_mae_meV_A"] / c["forces_mae_meV_A"][0], rel=1e-12
        )


def test_shipped_aspirin_frames():
    from nequip_np.data.dataset import read_frames
    from nequip_np.data.examples import aspirin_path

    frames = read_frames(aspirin_path())
    assert len(frames) == 300 and frames[0].get_chemical_formula() == "C9H8O4"
    assert frames[0].get_forces().shape == (21, 3)
