"""Load weights exported from official nequip 0.19.1 (``tools/export_nequip.py`` writes the file).

The .npz holds ``state/<state_dict key>`` for every entry of the official model's ``state_dict()``
and ``metadata``, a JSON string of the ``NequIPGNNModel`` keyword arguments. Other arrays are ignored.
Key mapping (``docs/interop.md``):

=====================================================================  ==========================
official key (prefix ``model.func.``)                                  nequip_np parameter
=====================================================================  ==========================
``type_embed.embed_module.weight``                                     ``type_embed``
``bessel_encode.bessel_weights`` (trainable or buffer)                 ``bessel_weights``
``layer{k}_convnet.conv.linear_1.weight``                              ``layer{k}.linear_1``
``layer{k}_convnet.conv.edge_mlp.mlp.{2m}.weight``                     ``layer{k}.radial.{m}``
``layer{k}_convnet.conv.linear_2.weight``                              ``layer{k}.linear_2``
``layer{k}_convnet.conv.sc.weight``                                    ``layer{k}.sc``
``per_atom_energy_readout.mlp_module.mlp.{2m}.weight``                 ``readout.{m}``
``per_type_energy_scale_shift.scales`` / ``.shifts``                   ``per_type_energy_*``
=====================================================================  ==========================
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from nequip_np.model.nequip import NequIPModel

PREFIX = "model.func."
#: NequIPGNNModel options that do not change the numbers computed here.
IGNORED_OPTIONS = {"compile_mode", "do_derivatives", "seed"}


def _mlp_keys(state: dict, prefix: str) -> list[str]:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    keys = [(int(m.group(1)), k) for k in state if (m := pat.match(k))]
    return [k for _, k in sorted(keys)]


def param_map(model, state: dict) -> dict:
    """nequip_np parameter/buffer name → official state_dict key."""
    out = {"type_embed": PREFIX + "type_embed.embed_module.weight"}
    for layer in model.plan.layers:
        k = layer.index
        base = f"{PREFIX}layer{k}_convnet.conv."
        out[f"layer{k}.linear_1"] = base + "linear_1.weight"
        out[f"layer{k}.linear_2"] = base + "linear_2.weight"
        if layer.self_connection is not None:
            out[f"layer{k}.sc"] = base + "sc.weight"
        for m, key in enumerate(_mlp_keys(state, base + "edge_mlp.mlp.")):
            out[f"layer{k}.radial.{m}"] = key
    for m, key in enumerate(_mlp_keys(state, PREFIX + "per_atom_energy_readout.mlp_module.mlp.")):
        out[f"readout.{m}"] = key
    out["bessel_weights"] = PREFIX + "bessel_encode.bessel_weights"
    out["per_type_energy_scales"] = PREFIX + "per_type_energy_scale_shift.scales"
    out["per_type_energy_shifts"] = PREFIX + "per_type_energy_scale_shift.shifts"
    return out


def read_nequip_npz(path):
    """Returns ``(kwargs, state)`` from an exported file, with clear errors for malformed files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"interop file {str(path)!r} does not exist")
    with np.load(path, allow_pickle=False) as data:
        if "metadata" not in data.files:
            raise ValueError(f"{str(path)!r} has no 'metadata' array (JSON of the NequIPGNNModel kwargs)")
        kwargs = json.loads(str(data["metadata"]))
        state = {k[len("state/") :]: data[k] for k in data.files if k.startswith("state/")}
    if not state:
        raise ValueError(f"{str(path)!r} holds no 'state/<key>' arrays")
    return kwargs, state


def load_nequip_npz(path, backend: str = "numpy"):
    """Build a :class:`~nequip_np.NequIPModel` from an official nequip export (see module docstring)."""
    kwargs, state = read_nequip_npz(path)
    return model_from_state(kwargs, state, backend=backend, source=path)


def model_from_state(kwargs: dict, state: dict, backend: str = "numpy", source="state_dict"):
    """Build a model from NequIPGNNModel kwargs and a state_dict given as arrays."""
    path = source
    kwargs = {k: v for k, v in kwargs.items() if k not in IGNORED_OPTIONS}
    model = NequIPModel(backend=backend, **kwargs)
    mapping = param_map(model, state)
    for name in model.params:
        key = mapping.get(name)
        if key not in state:
            raise ValueError(f"{str(path)!r}: missing weight {key!r} (needed for parameter {name!r})")
        _assign(model.params, name, state[key], key, path)
    for name in ("bessel_weights", "per_type_energy_scales", "per_type_energy_shifts"):
        if name in model.buffers and mapping[name] in state:
            _assign(model.buffers, name, state[mapping[name]], mapping[name], path)
    rmax_key = PREFIX + "edge_norm._rmax_recip"
    if rmax_key in state and state[rmax_key].size == 1 and not model.config.per_edge_type_cutoff:
        if not np.isclose(float(state[rmax_key]), 1.0 / model.config.r_max, rtol=1e-12):
            raise ValueError(
                f"{str(path)!r}: {rmax_key!r} = {float(state[rmax_key])} does not match "
                f"1/r_max = {1.0 / model.config.r_max} from the metadata"
            )
    return model


def _assign(target: dict, name: str, value: np.ndarray, key: str, path) -> None:
    ref = target[name]
    value = np.asarray(value, dtype=np.float64)
    if value.size != ref.size:
        raise ValueError(
            f"{str(path)!r}: weight {key!r} has shape {value.shape} ({value.size} values), "
            f"expected {ref.size} values for {name!r} of shape {ref.shape}"
        )
    target[name] = np.ascontiguousarray(value.reshape(ref.shape), dtype=ref.dtype)
