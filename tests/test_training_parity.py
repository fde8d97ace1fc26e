"""Training against official nequip 0.19.1: double-backward gradients and a 20-step Adam + EMA run."""

import json

import numpy as np

from nequip_np.data.graph import batch_graphs
from nequip_np.interop import load_nequip_npz, model_from_state, param_map
from nequip_np.train.ema import EMA
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from nequip_np.train.optim import Adam
from tests.nequip_fixtures import FIXTURES, labelled_graph

PATH = FIXTURES / "training.npz"


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def test_loss_gradient_equals_torch_double_backward():
    model = load_nequip_npz(PATH)
    with np.load(PATH) as data:
        graph = batch_graphs([labelled_graph(data, f"input/f{k}") for k in data["batch_frames"]])
        mapping = param_map(model, {k[5:]: None for k in data.files if k.startswith("grad/")})
        for coeffs, loss_key, grad_prefix in [
            (LossCoefficients(1, 1, 1), "loss", "grad/"),
            (LossCoefficients(1, 1, 0), "loss_ef", "grad_ef/"),
        ]:
            loss, _, grads, _ = loss_and_grad(model, graph, coeffs)
            assert abs(loss - float(data[loss_key])) <= 1e-10 * abs(float(data[loss_key]))
            for name, g in grads.items():
                ref = data[grad_prefix + mapping[name]].reshape(g.shape)
                assert _rel(g, ref) < 1e-9, f"{grad_prefix}{name}: relative error {_rel(g, ref):.2e}"


def test_twenty_adam_steps_with_ema_match_torch():
    with np.load(PATH) as data:
        kwargs = json.loads(str(data["traj/metadata"]))
        state = {k[len("traj/state/") :]: data[k] for k in data.files if k.startswith("traj/state/")}
        model = model_from_state(kwargs, state)
        pool = [labelled_graph(data, f"traj/pool/p{k}") for k in range(6)]
        mapping = param_map(model, state)
        config = json.loads(str(data["traj/config"]))
        opt = Adam(model.params, lr=config["lr"])
        ema = EMA(model.params, decay=config["ema_decay"])
        losses = []
        for step, batch in enumerate(data["traj/batches"]):
            graph = batch_graphs([pool[i] for i in batch])
            loss, _, grads, _ = loss_and_grad(model, graph, LossCoefficients(1, 1, 0))
            losses.append(loss)
            opt.step(grads)
            ema.update(model.params)
            for name, value in model.params.items():  # every step, not only the last
                ref = data[f"traj/params_after/{mapping[name]}"][step].reshape(value.shape)
                assert _rel(value, ref) < 1e-8, f"step {step} {name}: {_rel(value, ref):.2e}"
                ref = data[f"traj/ema_after/{mapping[name]}"][step].reshape(value.shape)
                assert _rel(ema.params[name], ref) < 1e-8, f"step {step} EMA {name}: {_rel(ema.params[name], ref):.2e}"
        np.testing.assert_allclose(losses, data["traj/loss"], rtol=1e-8)
