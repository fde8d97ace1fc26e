r"""Write any nequip-np model as a Lightning checkpoint that official nequip 0.19.x loads (no torch needed).

The file is what ``ModelFromCheckpoint`` expects: ``hyper_parameters["model"]`` holds the
``NequIPGNNModel`` options, ``hyper_parameters["info_dict"]["training_module"]`` names
``nequip.train.NequIPLightningModule`` (plain weights, no EMA: the weights written are the ones this
model evaluates with), and ``state_dict`` holds every entry the official module has — the weights
under ``model.sole_model.model.func.*`` plus the bookkeeping buffers e3nn registers (empty biases,
output masks marking the output blocks some path reaches, Wigner-3j constants of the tensor products whose three ``l`` are non-zero, as
e3nn's generated code keeps them), because Lightning loads state dicts strictly. From that file
official nequip's tools take over (``nequip-package build``, ``nequip-compile``, ``pair_nequip``).

``nequip-package`` and ``nequip-compile`` also draw one example structure from the training data
described in ``info_dict["data"]``; give ``data_file`` (any ASE-readable file with the model's species)
so that it points at real data.
"""

from __future__ import annotations

import collections

import numpy as np

from nequip_np.interop.torch_zip import write_torch_zip
from nequip_np.so3.clebsch_gordan import clebsch_gordan

LIGHTNING_VERSION = "2.6.6"
NEQUIP_VERSIONS = {"nequip": "0.19.1", "e3nn": "0.6.0"}
F = "model.func."


def official_kwargs(model) -> dict:
    """The ``NequIPGNNModel`` keyword arguments of a nequip-np model (scales/shifts: current values)."""
    c = model.config.to_dict()
    kw = {"_target_": "nequip.model.NequIPGNNModel"}
    kw.update({k: v for k, v in c.items() if v is not None})
    names = list(model.config.type_names)
    for name in ("per_type_energy_scales", "per_type_energy_shifts"):
        vals = np.asarray(model._get(name, model.params), dtype=np.float64).reshape(-1)
        kw[name] = float(vals[0]) if vals.size == 1 else dict(zip(names, map(float, vals)))
    if isinstance(kw.get("avg_num_neighbors"), dict):
        kw["avg_num_neighbors"] = {str(k): float(v) for k, v in kw["avg_num_neighbors"].items()}
    pp = kw.get("pair_potential")
    if pp is not None:
        kw["pair_potential"] = {
            "_target_": "nequip.nn.pair_potential.ZBL",
            "units": pp.get("units", "metal"),
            "chemical_species": list(pp.get("chemical_species", names)),
        }
    return kw


def _w3j_keys(prefix: str, triples, dtype) -> dict:
    out = {}
    for l1, l2, l3 in triples:
        if 0 in (l1, l2, l3):
            continue  # e3nn's specialised code for an l = 0 operand needs no constant
        name = f"{prefix}._compiled_main_left_right._w3j_{l1}_{l2}_{l3}"
        out.setdefault(name, clebsch_gordan(l1, l2, l3).astype(dtype))
    return out


def _output_mask(lin, dt) -> np.ndarray:
    """e3nn's ``output_mask``: ones on the output blocks some path writes to, zeros elsewhere."""
    hit = {out for _, out, _ in lin.paths}
    return np.concatenate(
        [np.full(mul * ir.dim, 1.0 if b in hit else 0.0, dt) for b, (mul, ir) in enumerate(lin.irreps_out)]
        or [np.zeros(0, dt)]
    )


def official_state_dict(model) -> collections.OrderedDict:
    """The ``GraphModel`` state_dict (keys ``model.func.…``) official nequip builds for this architecture."""
    c, plan = model.config, model.plan
    dt = np.dtype(c.model_dtype)
    f64 = np.float64
    empty = np.zeros(0, dt)
    p = model.params
    sd = collections.OrderedDict()
    sd["model._empty"] = empty.copy()
    sd[F + "type_embed.embed_module.weight"] = p["type_embed"]
    table = model.buffers["rmax_recip"]
    sd[F + "edge_norm._rmax_recip"] = (
        np.asarray(1.0 / c.r_max, f64) if not c.per_edge_type_cutoff else table.reshape(-1).astype(f64)
    )
    sd[F + "bessel_encode.bessel_weights"] = np.asarray(model._get("bessel_weights", p), f64).reshape(1, -1)
    for layer in plan.layers:
        k, base = layer.index, f"{F}layer{layer.index}_convnet."
        gated = int(layer.gate.gated_cols.size)
        sd[base + "equivariant_nonlin.mul.weight"] = empty.copy()
        sd[base + "equivariant_nonlin.mul.output_mask"] = np.ones(gated, dt)
        conv = base + "conv."
        sd[conv + "linear_1.weight"] = p[f"layer{k}.linear_1"]
        sd[conv + "linear_1.bias"] = empty.copy()
        sd[conv + "linear_1.output_mask"] = _output_mask(layer.linear_1, dt)
        sd[conv + "tp_scatter.tp.weight"] = empty.copy()
        sd[conv + "tp_scatter.tp.output_mask"] = np.ones(layer.conv.irreps_mid.dim, dt)
        triples = [
            (layer.conv.irreps_in[t.i_in].ir.l, t.l_sh, layer.conv.irreps_mid[t.i_mid].ir.l) for t in layer.conv.paths
        ]
        sd.update(_w3j_keys(conv + "tp_scatter.tp", triples, dt))
        m = 0
        while f"layer{k}.radial.{m}" in p:
            sd[f"{conv}edge_mlp.mlp.{2 * m}.weight"] = p[f"layer{k}.radial.{m}"]
            m += 1
        sd[conv + "linear_2.weight"] = p[f"layer{k}.linear_2"]
        sd[conv + "linear_2.bias"] = empty.copy()
        sd[conv + "linear_2.output_mask"] = _output_mask(layer.linear_2, dt)
        if layer.self_connection is not None:
            sd[conv + "sc.weight"] = p[f"layer{k}.sc"]
            sd[conv + "sc.output_mask"] = _output_mask(layer.self_connection, dt)
    m = 0
    while f"readout.{m}" in p:
        sd[f"{F}per_atom_energy_readout.mlp_module.mlp.{2 * m}.weight"] = p[f"readout.{m}"]
        m += 1
    for name, key in (("per_type_energy_scales", "scales"), ("per_type_energy_shifts", "shifts")):
        sd[f"{F}per_type_energy_scale_shift.{key}"] = np.asarray(model._get(name, p), f64).reshape(-1, 1)
    if c.pair_potential is not None:
        sd[F + "pair_potential.atomic_numbers"] = model.buffers["atomic_numbers"].astype(f64)
        sd[F + "pair_potential._qqr2exesquare"] = np.asarray(0.5 * model.buffers["zbl_ke"], f64)
    return collections.OrderedDict((k, np.array(v, order="C")) for k, v in sd.items())


def checkpoint_dict(model, data_file=None) -> dict:
    """The Lightning checkpoint as plain data (what :func:`export_checkpoint` writes)."""
    from nequip_np._version import __version__

    kwargs = official_kwargs(model)
    names = list(model.config.type_names)
    state = collections.OrderedDict([("run_stage", np.zeros(1, np.int64))])
    state.update((f"model.sole_model.{k}", v) for k, v in official_state_dict(model).items())
    info = {
        "versions": dict(NEQUIP_VERSIONS),
        "training_module": {"_target_": "nequip.train.NequIPLightningModule", "model": kwargs},
        "global_options": {"allow_tf32": False},
        "exported_by": f"nequip-np {__version__}",
        "provenance": {k: str(v) for k, v in (getattr(model, "provenance", None) or {}).items()},
    }
    if data_file is not None:
        info["data"] = {
            "_target_": "nequip.data.datamodule.ASEDataModule",
            "seed": 0,
            "train_file_path": str(data_file),
            "val_file_path": str(data_file),
            "transforms": [
                {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": model.config.r_max},
                {
                    "_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper",
                    "model_type_names": names,
                    "chemical_species_to_atom_type_map": {t: t for t in names},
                },
            ],
            "train_dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": 1},
            "val_dataloader": {"_target_": "torch.utils.data.DataLoader", "batch_size": 1},
        }
    hp = {
        "model": kwargs,
        "num_datasets": {"train": 1, "val": 0, "test": 0, "predict": 0},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.001},
        "lr_scheduler": None,
        "loss": None,
        "train_metrics": None,
        "val_metrics": None,
        "test_metrics": None,
        "info_dict": info,
    }
    return {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": state,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hp,
    }


def export_checkpoint(model, path, data_file=None) -> None:
    """Write ``model`` as a Lightning ``.ckpt`` for official nequip (refuses to overwrite ``path``)."""
    write_torch_zip(checkpoint_dict(model, data_file=data_file), path)
