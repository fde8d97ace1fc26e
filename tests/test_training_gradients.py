"""The parameter gradient of the energy/force/stress loss: finite differences and official nequip's double backward."""

import numpy as np
import pytest

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from tests.model_factory import molecule, periodic, small_model


def _labelled(model, atoms, rng, stress=True):
    g = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
    g.energy = np.array([rng.normal(-1000.0, 1.0)])
    g.forces = rng.standard_normal((len(atoms), 3))
    if stress and np.all(atoms.pbc):
        s = rng.standard_normal((3, 3)) * 0.05
        g.stress = (s + s.T)[None]
    elif stress:
        g.stress = np.full((1, 3, 3), np.nan)
    return g


def _fd_check(model, graph, coeffs, rng, h=1e-6, rtol=1e-6):
    loss, _, grads, _ = loss_and_grad(model, graph, coeffs)
    base = {k: v.copy() for k, v in model.params.items()}
    for name in sorted(model.params):
        v = rng.standard_normal(base[name].shape)
        vals = []
        for sign in (1, -1):
            params = dict(base)
            params[name] = base[name] + sign * h * v
            vals.append(loss_and_grad(model, graph, coeffs, params=params)[0])
        fd = (vals[0] - vals[1]) / (2 * h)
        an = float(np.sum(grads[name] * v))
        assert abs(fd - an) <= rtol * max(abs(an), 1e-3 * abs(loss)), f"{name}: analytic {an!r} vs FD {fd!r}"


@pytest.mark.parametrize("kind", ["periodic", "molecule", "batch"])
def test_loss_gradient_matches_finite_differences_per_parameter_block(rng, kind):
    model = small_model(
        seed=5,
        bessel_trainable=True,
        per_type_energy_scales_trainable=True,
        per_type_energy_shifts_trainable=True,
        num_layers=2,
    )
    frames = {
        "periodic": [periodic(rng)],
        "molecule": [molecule(rng)],
        "batch": [periodic(rng, small=True), molecule(rng, 5)],
    }[kind]
    graph = batch_graphs([_labelled(model, a, rng) for a in frames])
    _fd_check(model, graph, LossCoefficients(1.0, 1.0, 1.0), rng)


@pytest.mark.parametrize(
    "coeffs", [LossCoefficients(1.0, 0.0, 0.0), LossCoefficients(0.0, 1.0, 0.0)], ids=["energy_only", "forces_only"]
)
def test_energy_only_and_force_only_losses(rng, coeffs):
    model = small_model(seed=6, num_layers=2)
    graph = batch_graphs([_labelled(model, periodic(rng), rng, stress=False)])
    _fd_check(model, graph, coeffs, rng)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_complex_pass_keeps_or_recomputes_radial_caches_with_the_same_gradient(rng, backend, monkeypatch):
    from nequip_np.train import loss as loss_mod

    model = small_model(seed=7, num_layers=2, backend=backend)
    graph = batch_graphs([_labelled(model, periodic(rng), rng), _labelled(model, molecule(rng), rng)])
    coeffs = LossCoefficients(1.0, 1.0, 1.0)
    seen = []
    forward = model.forward

    def spy(*a, **k):
        seen.append(k.get("low_memory", False))
        return forward(*a, **k)

    monkeypatch.setattr(model, "forward", spy)
    kept = loss_and_grad(model, graph, coeffs, low_memory=False)
    recomputed = loss_and_grad(model, graph, coeffs, low_memory=True)
    assert seen == [False, False, False, True]  # the real pass, then the complex pass as asked
    assert kept[0] == recomputed[0]
    for k in kept[2]:
        np.testing.assert_allclose(kept[2][k], recomputed[2][k], rtol=1e-13, atol=1e-15, err_msg=k)
    # None decides by the size of the caches against LOW_MEMORY_BYTES
    assert loss_mod.radial_cache_bytes(model, graph.n_edges) > 0
    seen.clear()
    loss_and_grad(model, graph, coeffs)
    monkeypatch.setattr(loss_mod, "LOW_MEMORY_BYTES", 0)
    loss_and_grad(model, graph, coeffs)
    assert seen == [False, False, False, True]
