"""Loss variants: per-type force weights, total energy, Huber, MAE — values against official nequip,
gradients against finite differences (through the complex-step second-order pass).

tests/fixtures/loss_nequip.json comes from tools/make_loss_fixtures.py (nequip 0.19.1's
``EnergyForceLoss`` / ``EnergyForceStressLoss`` / ``MetricsManager`` on random predictions and labels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.train.loss import (
    LossCoefficients,
    loss_and_grad,
    loss_from_residuals,
    penalty,
)
from tests.model_factory import molecule, periodic, small_model

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "loss_nequip.json").read_text())


def coeffs_from_spec(spec, type_names):
    kw = {k: float(v) for k, v in spec["loss_coeffs"].items()}
    kw["stress"] = kw.get("stress", 0.0)
    kw["forces"] = kw.get("forces", 0.0)
    kw["per_atom_energy"] = kw.get("per_atom_energy", 0.0)
    if "per_type_forces_coeffs" in spec:
        kw["per_type_forces"] = tuple(spec["per_type_forces_coeffs"][t] for t in type_names)
    return LossCoefficients(loss=spec.get("loss", "mse"), huber_delta=spec.get("huber_delta", 0.01), **kw)


@pytest.mark.parametrize("case", sorted(FIXTURE["cases"]))
def test_loss_value_equals_official_nequip(case):
    c = FIXTURE["cases"][case]
    coeffs = coeffs_from_spec(c["spec"], FIXTURE["type_names"])
    for b, expected in zip(FIXTURE["batches"], c["loss"]):
        p, y = ({k: np.asarray(v) for k, v in b[w].items()} for w in ("pred", "label"))
        loss, *_ = loss_from_residuals(
            coeffs,
            p["total_energy"] - y["total_energy"],
            np.asarray(b["num_atoms"]),
            p["forces"] - y["forces"],
            np.asarray(b["atom_types"]),
            p["stress"] - y["stress"],
        )
        assert loss == pytest.approx(expected, rel=1e-12, abs=0)


def test_per_type_weights_change_the_loss_and_equal_weights_do_not():
    b = FIXTURE["batches"][0]
    args = [np.asarray(b["pred"][k]) - np.asarray(b["label"][k]) for k in ("total_energy", "forces")]
    n, t = np.asarray(b["num_atoms"]), np.asarray(b["atom_types"])
    plain = loss_from_residuals(LossCoefficients(0, 1, 0), args[0], n, args[1], t)[0]
    equal = loss_from_residuals(LossCoefficients(0, 1, 0, per_type_forces=(2.0, 2.0, 2.0)), args[0], n, args[1], t)[0]
    heavy_h = loss_from_residuals(LossCoefficients(0, 1, 0, per_type_forces=(9.0, 1.0, 1.0)), args[0], n, args[1], t)[0]
    per_type_means = [np.mean(args[1][t == k] ** 2) for k in range(3)]
    assert equal == pytest.approx(np.mean(per_type_means), rel=1e-14)  # mean of type means, not of all atoms
    assert equal != pytest.approx(plain, rel=1e-6)
    assert heavy_h == pytest.approx((9 * per_type_means[0] + per_type_means[1] + per_type_means[2]) / 11, rel=1e-14)


@pytest.mark.parametrize("loss", ["huber", "mae"])
def test_penalty_derivative_matches_finite_differences(loss):
    x = np.array([-0.31, -0.02, 0.004, 0.07, 0.5])  # both sides of delta, away from the kinks
    h = 1e-7
    _, d = penalty(x, loss, delta=0.05)
    fd = (penalty(x + h, loss, delta=0.05)[0] - penalty(x - h, loss, delta=0.05)[0]) / (2 * h)
    np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-9)


def _labelled(model, atoms, rng):
    g = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
    g.energy = np.array([rng.normal(-3000.0, 0.5)])
    g.forces = rng.standard_normal((len(atoms), 3))
    s = rng.standard_normal((3, 3)) * 0.05
    g.stress = (s + s.T)[None] if np.all(atoms.pbc) else np.full((1, 3, 3), np.nan)
    return g


@pytest.mark.parametrize(
    "coeffs",
    [
        LossCoefficients(
            1.0,
            1.0,
            1.0,
            loss="huber",
            huber_delta={"per_atom_energy": 0.3, "forces": 0.8, "stress": 0.05, "total_energy": 1.0},
        ),
        LossCoefficients(
            0.0, 2.0, 0.5, total_energy=1.0, loss="huber", huber_delta=0.5, per_type_forces=(5.0, 1.0, 0.5)
        ),
        LossCoefficients(0.5, 1.0, 0.0, total_energy=0.5, per_type_forces=(1.0, 3.0, 2.0)),
    ],
    ids=["huber", "huber_total_energy_per_type", "mse_per_type"],
)
def test_loss_gradient_matches_finite_differences(rng, coeffs):
    """Forces/stress penalties reach the parameters through the complex-step pass: FD per parameter block."""
    model = small_model(seed=11, num_layers=2, per_type_energy_shifts_trainable=True)
    graph = batch_graphs([_labelled(model, a, rng) for a in (periodic(rng, small=True), molecule(rng, 6))])
    # the residuals must straddle delta, or the Huber test would only check one branch
    loss, _, grads, pred = loss_and_grad(model, graph, coeffs)
    if coeffs.loss == "huber":
        r = np.abs(pred["forces"] - graph.forces)
        assert (r < 0.8).any() and (r > 0.8).any()
    base = {k: v.copy() for k, v in model.params.items()}
    h = 1e-6
    for name in sorted(base):
        v = rng.standard_normal(base[name].shape)
        vals = []
        for sign in (1, -1):
            params = dict(base)
            params[name] = base[name] + sign * h * v
            vals.append(loss_and_grad(model, graph, coeffs, params=params)[0])
        fd = (vals[0] - vals[1]) / (2 * h)
        an = float(np.sum(grads[name] * v))
        assert abs(fd - an) <= 1e-6 * max(abs(an), 1e-3 * abs(loss)), f"{name}: analytic {an!r} vs FD {fd!r}"
