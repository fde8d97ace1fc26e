r"""The NequIP model (nequip 0.19.1 ``NequIPGNNModel``), assembled from the kernels; reads top to bottom.

Data flow for one graph (shapes: N atoms, E directed edges, T species; ``docs/model.md`` walks
through it with the dossier's equations):

1. species embedding  :math:`h^0_i = A[t_i]`                                   (N, T_f)
2. edge geometry      :math:`\vec r_e = \vec r_{j} - \vec r_{i} + S_e\,\mathrm{cell}`   (E, 3)
3. radial basis       :math:`b_e = \tfrac{2\pi}{r_{\max}^2} B(x_e) u(x_e)`       (E, n_bessel)
4. edge harmonics     :math:`Y_e = Y(\hat r_e)`                              (E, (l_max+1)²)
5. ``num_layers`` interaction layers, each:
   self-connection :math:`s = \mathrm{FCTP}(h, a)` (layers ≥ 1) →
   :math:`y = \mathrm{Linear}_1(h)/\sqrt{\bar n}` → radial MLP :math:`w_e = \mathrm{MLP}(b_e)` →
   :math:`M_i = \sum_{e\to i} \mathrm{TP}(y_{j(e)}, Y_e; w_e)` → :math:`z = \mathrm{Linear}_2(M) + s` →
   :math:`h' = \mathrm{Gate}(z)`
6. readout            :math:`\tilde E_i = \mathrm{MLP}(h_i)`                     (N,)
7. scale/shift        :math:`E_i = \mathrm{shift}[t_i] + \mathrm{scale}[t_i]\,\tilde E_i` (float64)
8. optional ZBL prior, then :math:`E = \sum_i E_i` per frame.

Forces and stress come from the hand-written reverse pass (``_backward``): it returns
:math:`\partial E/\partial\vec r_e`, from which :math:`F = -\partial E/\partial R` and the virial follow
by one scatter and one outer product (``docs/derivations/forces_and_stress.md``). The parameter gradient
of a force/stress loss runs the same forward and reverse passes in complex arithmetic
(``docs/derivations/training_gradients.md``).

Every step between two operations (casts, sums, row scalings, gathers by atom type) goes through
``ops.glue`` too: NumPy expressions for the numpy and numba backends, device kernels for cuda, so that
with ``backend="cuda"`` the arrays stay on the device from the edge vectors to the forces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nequip_np.kernels.common import scatter_sum
from nequip_np.kernels.glue import reference as host_glue
from nequip_np.kernels.registry import get_ops
from nequip_np.model.config import ModelConfig
from nequip_np.model.plan import build_plan
from nequip_np.model.radial_tables import build_radial_tables

_COMPLEX = {np.dtype(np.float32): np.complex64, np.dtype(np.float64): np.complex128}


class NequIPModel:
    """NequIP energy model with hand-derived forces, stress and training gradients.

    Args: the keyword arguments of nequip's ``NequIPGNNModel`` (see :class:`ModelConfig`), plus
    ``backend`` ("numpy" is the reference).

    Attributes:
        params: trainable arrays by name (float64 or float32 per ``model_dtype``).
        buffers: fixed arrays (cutoff table, Bessel frequencies, scales/shifts when not trainable).
        plan: the static :class:`~nequip_np.model.plan.ModelPlan`.
    """

    def __init__(self, backend: str = "numpy", params: dict | None = None, **kwargs):
        self.config = ModelConfig.from_kwargs(**kwargs)
        self.backend = backend
        self.ops = get_ops(backend)  # the operations of this backend (see kernels/registry.py)
        c = self.config
        self.dtype = np.dtype(c.model_dtype)
        self.plan = build_plan(
            l_max=c.l_max, parity=c.parity, num_layers=c.num_layers, num_features=c.num_features,
            type_embed_num_features=c.type_embed_num_features, num_bessels=c.num_bessels,
            radial_mlp_depth=c.radial_mlp_depth, radial_mlp_width=c.radial_mlp_width,
            readout_mlp_hidden_layers_depth=c.readout_mlp_hidden_layers_depth,
            readout_mlp_hidden_layers_width=c.readout_mlp_hidden_layers_width,
        )
        self.buffers = c.buffers()
        self.params = self._init_params(np.random.default_rng(c.seed))
        for name in ("per_type_energy_scales", "per_type_energy_shifts", "bessel_weights"):
            if name in self.params:
                self.buffers.pop(name)
        self.radial_tables = None  # RadialTables when use_radial_tables() is on (inference only)
        if params is not None:
            self.load_params(params)

    # ------------------------------------------------------------------ parameters
    def _init_params(self, rng) -> dict:
        """nequip's initial distributions (not its RNG stream): N(0,1) embedding/linears, U(−√3,√3) MLPs."""
        c, p, dt = self.config, self.plan, self.dtype
        out = {"type_embed": rng.standard_normal((len(c.type_names), c.type_embed_num_features))}
        for layer in p.layers:
            k = layer.index
            out[f"layer{k}.linear_1"] = rng.standard_normal(layer.linear_1.n_weights)
            for m, (a, b) in enumerate(zip(layer.radial_dims[:-1], layer.radial_dims[1:])):
                out[f"layer{k}.radial.{m}"] = rng.uniform(-np.sqrt(3), np.sqrt(3), (a, b))
            out[f"layer{k}.linear_2"] = rng.standard_normal(layer.linear_2.n_weights)
            if layer.self_connection is not None:
                out[f"layer{k}.sc"] = rng.standard_normal(layer.self_connection.n_weights)
        for m, (a, b) in enumerate(zip(p.readout_dims[:-1], p.readout_dims[1:])):
            out[f"readout.{m}"] = rng.uniform(-np.sqrt(3), np.sqrt(3), (a, b))
        if c.bessel_trainable:
            out["bessel_weights"] = self.buffers["bessel_weights"].copy()
        if c.per_type_energy_scales_trainable:
            out["per_type_energy_scales"] = self.buffers["per_type_energy_scales"].copy()
        if c.per_type_energy_shifts_trainable:
            out["per_type_energy_shifts"] = self.buffers["per_type_energy_shifts"].copy()
        float64_names = ("per_type_energy_scales", "per_type_energy_shifts", "bessel_weights")
        return {k: np.ascontiguousarray(v, dtype=np.float64 if k in float64_names else dt) for k, v in out.items()}

    def load_params(self, params: dict) -> None:
        """Replace parameter values (names and shapes must match; errors name the offending key)."""
        for key, value in params.items():
            if key not in self.params:
                raise KeyError(f"unknown parameter {key!r}; expected one of {sorted(self.params)}")
            value = np.asarray(value)
            if value.shape != self.params[key].shape:
                raise ValueError(f"parameter {key!r} has shape {value.shape}, expected {self.params[key].shape}")
            self.params[key] = np.array(value, dtype=self.params[key].dtype, order="C")  # a copy: never alias
        if self.radial_tables is not None:  # tables follow the parameters
            self.use_radial_tables(self.radial_tables.requested)

    def use_radial_tables(self, n_points: int | str | None = "auto") -> None:
        """Energies and forces from per-layer spline tables of the radial MLP (``model/radial_tables.py``).

        ``n_points``: nodes per table, ``"auto"`` (sized to an error bound), or None to switch back to
        the MLP. The tables are built from the current parameters (0.25–0.5 s of CPU time for the
        benchmark models); a forward pass on parameters that differ from them raises.
        """
        self.radial_tables = None if n_points is None else build_radial_tables(self, n_points)

    def _get(self, name: str, params: dict):
        return params[name] if name in params else self.buffers[name]

    def __repr__(self) -> str:
        c = self.config
        n = sum(v.size for v in self.params.values())
        return (f"NequIPModel(type_names={c.type_names}, r_max={c.r_max}, num_layers={c.num_layers}, "
                f"l_max={c.l_max}, parity={c.parity}, num_features={c.num_features}, "
                f"model_dtype={c.model_dtype!r}, backend={self.backend!r}, params={n}"
                + (f", radial_tables={self.radial_tables.n_points}" if self.radial_tables is not None else "") + ")")

    # ------------------------------------------------------------------ forward
    def _forward(self, graph, edge_vec, params, low_memory: bool = False):
        """Per-atom energies (float64/complex128, NumPy) and the caches of every operation.

        ``low_memory``: do not keep the radial MLP's activations and output ``w`` (the largest per-edge
        arrays, E × n_w); the reverse pass recomputes them, one layer at a time (+1 MLP forward per layer).
        """
        atomic, cache = self._forward_pass(graph, self.ops.glue.upload(edge_vec), params, low_memory)
        return self.ops.glue.to_host(atomic), cache

    def _forward_pass(self, graph, edge_vec, params, low_memory: bool = False):
        with self.ops.call_context():  # e.g. numba: BLAS single-threaded while Numba's threads run
            return self._forward_kernels(graph, edge_vec, params, low_memory)

    def _forward_kernels(self, graph, edge_vec, params, low_memory: bool = False):
        """:meth:`_forward` on backend arrays (device arrays with ``backend="cuda"``)."""
        c, plan, ops = self.config, self.plan, self.ops
        cdt = _COMPLEX[self.dtype] if np.iscomplexobj(edge_vec) else self.dtype
        types, dst, src = graph.atom_types, graph.edge_index[0], graph.edge_index[1]
        n = types.shape[0]
        params = {k: ops.glue.resident(v) for k, v in params.items()}  # cuda: uploaded once per value
        cache = {}
        # 3-4. geometry in float64 (complex128), then cast to the model dtype
        rmax_recip = ops.glue.resident(self.buffers["rmax_recip"][types[dst], types[src]])
        tables = self._active_radial_tables(params, edge_vec)  # None: the radial MLP (always when training)
        if tables is None:
            bessel_w = ops.glue.resident(self._get("bessel_weights", params))
            emb, cache["emb"] = ops.edge_embedding.forward(
                edge_vec, rmax_recip, bessel_w, c.polynomial_cutoff_p, 2.0 * np.pi / c.r_max**2)
            emb = ops.glue.cast(emb, cdt)
        Y, cache["sh"] = ops.spherical_harmonics.forward(edge_vec, c.l_max)
        Y = ops.glue.cast(Y, cdt)
        # 1. species embedding: node features and node attributes
        attr = params["type_embed"]
        h = ops.glue.cast(ops.glue.gather_rows(attr, types), cdt)
        neighbor_norm = self._neighbor_norm(types)
        cache["features"] = [h]
        # 5. interaction layers
        for layer in plan.layers:
            k, lc = layer.index, {}
            if layer.self_connection is not None:
                s, lc["sc"] = ops.self_connection.forward(h, attr, types, params[f"layer{k}.sc"], layer.self_connection)
            y, lc["l1"] = ops.linear.forward(h, params[f"layer{k}.linear_1"], layer.linear_1)
            y = ops.glue.mul(y, neighbor_norm)
            if tables is None:
                radial = [params[f"layer{k}.radial.{m}"] for m in range(len(layer.radial_dims) - 1)]
                w, lc["mlp"] = ops.mlp.forward(emb, radial, _alphas(layer.radial_dims), "silu")
            else:  # tabulated w(r/r_max): no MLP; the reverse pass goes to the edge vectors directly
                w, lc["mlp"] = ops.radial_table.forward(edge_vec, rmax_recip, tables.layer(k, cdt))
            M, lc["tp"] = ops.tp_conv.forward(y, Y, w, src, dst, n, layer.conv)
            if low_memory and tables is None:  # keep only what recomputes w: the embedding and the weights
                lc["mlp"], lc["tp"] = _RadialRecompute(emb, radial, layer.radial_dims), _drop(lc["tp"], w)
            z, lc["l2"] = ops.linear.forward(M, params[f"layer{k}.linear_2"], layer.linear_2)
            if layer.self_connection is not None:
                z = ops.glue.add(z, s)
            h, lc["gate"] = ops.gate.forward(z, layer.gate)
            cache[f"layer{k}"] = lc
            cache["features"].append(h)
        # 6. readout
        readout = [params[f"readout.{m}"] for m in range(len(plan.readout_dims) - 1)]
        nonlin = c.readout_mlp_nonlinearity
        e_tilde, cache["readout"] = ops.mlp.forward(h, readout, _alphas(plan.readout_dims, nonlin), nonlin)
        # 7. per-type scale and shift, in float64
        e_tilde = ops.glue.cast(e_tilde[:, 0], np.result_type(np.float64, e_tilde.dtype))
        scale = self._per_type("per_type_energy_scales", params, types)
        shift = self._per_type("per_type_energy_shifts", params, types)
        atomic = ops.glue.add(shift, ops.glue.mul(scale, e_tilde))
        cache["scale_shift"] = (e_tilde, scale)
        # 8. optional ZBL prior
        if c.pair_potential is not None:
            e_pair, cache["zbl"] = ops.zbl.forward(edge_vec, self.buffers["atomic_numbers"][types[dst]],
                                               self.buffers["atomic_numbers"][types[src]], rmax_recip,
                                               self.buffers["zbl_p"], self.buffers["zbl_ke"])
            atomic = ops.glue.add(atomic, ops.glue.scatter_sum(e_pair, dst, n))
        return atomic, cache

    def _active_radial_tables(self, params, edge_vec):
        """The radial tables if on and the pass is real (inference); they must match ``params``."""
        if self.radial_tables is None or np.iscomplexobj(edge_vec):
            return None
        self.radial_tables.check(params, self.buffers)
        return self.radial_tables

    def _per_type(self, name, params, types):
        v = self.ops.glue.resident(self._get(name, params))
        return self.ops.glue.gather_rows(v, types if v.shape[0] > 1 else np.zeros_like(types))

    def _neighbor_norm(self, types):
        """(N, 1) per-atom 1/√(avg. number of neighbours) in the model dtype (a resident value)."""
        return self.ops.glue.resident(self.buffers["neighbor_norm"][types].astype(self.dtype)[:, None])

    # ------------------------------------------------------------------ backward
    def _backward(self, d_atomic, cache, graph, params, param_grads: bool = True):
        """Reverse pass: ``d_atomic`` (N,) → (dE/d edge_vec (E, 3), dE/d params), NumPy arrays."""
        d_vec, grads = self._backward_pass(self.ops.glue.upload(d_atomic), cache, graph, params, param_grads)
        return self.ops.glue.to_host(d_vec), {k: self.ops.glue.to_host(g) for k, g in grads.items()}

    def _backward_pass(self, d_atomic, cache, graph, params, param_grads: bool = True):
        with self.ops.call_context():
            return self._backward_kernels(d_atomic, cache, graph, params, param_grads)

    def _backward_kernels(self, d_atomic, cache, graph, params, param_grads: bool = True):
        """:meth:`_backward` on backend arrays (device arrays with ``backend="cuda"``).

        ``param_grads=False`` (forces only) skips the MLP weight gradients, a third of the radial MLP's flops.
        """
        plan, ops = self.plan, self.ops
        types, dst, src = graph.atom_types, graph.edge_index[0], graph.edge_index[1]
        if param_grads and "emb" not in cache:
            raise RuntimeError("radial tables give no gradients of the radial MLP weights; call "
                               "model.use_radial_tables(None) before training")
        grads = {}
        e_tilde, scale = cache["scale_shift"]
        self._per_type_grad("per_type_energy_shifts", params, types, d_atomic, grads)
        self._per_type_grad("per_type_energy_scales", params, types, ops.glue.mul(d_atomic, e_tilde), grads)
        d_e = ops.glue.column(ops.glue.mul(d_atomic, scale))
        dh, d_ro = ops.mlp.backward(ops.glue.cast(d_e, cache["readout"][0][0].dtype), cache["readout"], param_grads)
        grads.update({f"readout.{m}": g for m, g in enumerate(d_ro) if g is not None})
        d_emb = d_Y = d_vec_table = 0.0
        d_attr = ops.glue.zeros(params["type_embed"].shape, np.result_type(dh.dtype, params["type_embed"].dtype))
        neighbor_norm = self._neighbor_norm(types)
        for layer in reversed(plan.layers):
            k, lc = layer.index, cache[f"layer{layer.index}"]
            dz = ops.gate.backward(dh, lc["gate"])
            dM, grads[f"layer{k}.linear_2"] = ops.linear.backward(dz, lc["l2"])
            if isinstance(lc["mlp"], _RadialRecompute):
                r = lc["mlp"]
                w, lc["mlp"] = ops.mlp.forward(r.emb, r.weights, _alphas(r.dims), "silu")
                lc["tp"] = _restore(lc["tp"], w)
            dy, dY_k, dw = ops.tp_conv.backward(dM, lc["tp"])
            if "emb" in cache:
                d_emb_k, d_radial = ops.mlp.backward(dw, lc["mlp"], param_grads)
                grads.update({f"layer{k}.radial.{m}": g for m, g in enumerate(d_radial) if g is not None})
                d_emb = ops.glue.add(d_emb, d_emb_k)
            else:  # radial tables: dE/dr_e from the spline's derivative
                d_vec_table = ops.glue.add(d_vec_table, ops.radial_table.backward(dw, lc["mlp"]))
            lc["mlp"] = lc["tp"] = None  # this layer's per-edge caches are done: free them now
            dh, grads[f"layer{k}.linear_1"] = ops.linear.backward(ops.glue.mul(dy, neighbor_norm), lc["l1"])
            if layer.self_connection is not None:
                dh_sc, d_attr_k, grads[f"layer{k}.sc"] = ops.self_connection.backward(dz, lc["sc"])
                dh = ops.glue.add(dh, dh_sc)
                d_attr = ops.glue.add(d_attr, d_attr_k)
            d_Y = ops.glue.add(d_Y, dY_k)
        d_attr = ops.glue.add(d_attr, ops.glue.scatter_sum(dh, types, d_attr.shape[0]))
        grads["type_embed"] = d_attr
        geo_dtype = cache["sh"][0].dtype
        if "emb" in cache:
            d_vec, d_bessel_w = ops.edge_embedding.backward(ops.glue.cast(d_emb, geo_dtype), cache["emb"])
        else:
            d_vec, d_bessel_w = d_vec_table, None
        d_vec = ops.glue.add(d_vec, ops.spherical_harmonics.backward(ops.glue.cast(d_Y, geo_dtype), cache["sh"]))
        if "bessel_weights" in params:
            grads["bessel_weights"] = d_bessel_w
        if "zbl" in cache:
            d_vec = ops.glue.add(d_vec, ops.zbl.backward(ops.glue.gather_rows(d_atomic, dst), cache["zbl"]))
        return d_vec, grads

    def _per_type_grad(self, name, params, types, d, grads):
        if name in params:
            n = params[name].shape[0]
            grads[name] = self.ops.glue.scatter_sum(d, types, n) if n > 1 else self.ops.glue.total(d)

    # ------------------------------------------------------------------ public API
    def compute(self, graph, forces: bool = True, stress: bool = True, params: dict | None = None) -> dict:
        """Energies (and forces, virial, stress) of a (batched) :class:`~nequip_np.data.graph.AtomicGraph`.

        Returns a dict of float64 arrays: ``atomic_energy`` (N,), ``total_energy`` (F,), and when
        requested ``forces`` (N, 3), ``virial`` (F, 3, 3), ``stress`` (F, 3, 3) — NaN for frames that are
        not periodic in all three directions (ASE sign convention: positive = tensile).
        """
        self._check_graph(graph)
        params, glue = self.params if params is None else params, self.ops.glue
        edge_vec = glue.upload(graph.edge_vectors())  # cuda: the one per-call copy to the device
        atomic, cache = self._forward_pass(graph, edge_vec, params)
        energies = glue.to_host(atomic)
        out = {"atomic_energy": energies, "total_energy": scatter_sum(energies, graph.batch, graph.n_frames)}
        if forces or stress:
            d_vec, _ = self._backward_pass(glue.ones_like(atomic), cache, graph, params, param_grads=False)
            out.update(forces_and_stress(graph, edge_vec, d_vec, glue))
        return out

    def node_features(self, graph) -> list:
        """Node features after the embedding and after every layer (irreps: ``plan.layers[k].gate.irreps_out``)."""
        features = self._forward(graph, graph.edge_vectors(), self.params)[1]["features"]
        return [self.ops.glue.to_host(h) for h in features]

    def energy(self, graph) -> np.ndarray:
        return self.compute(graph, forces=False, stress=False)["total_energy"]

    def _check_graph(self, graph):
        nt = len(self.config.type_names)
        if graph.atom_types.size and (graph.atom_types.min() < 0 or graph.atom_types.max() >= nt):
            raise ValueError(f"atom_types must lie in [0, {nt}) for type_names {self.config.type_names}")

    def save(self, path) -> None:
        """Write the model in the project's versioned .npz format (``nequip_np.load_model`` reads it)."""
        from nequip_np.model.io import save_model

        save_model(self, path)


def _alphas(dims, nonlinearity="silu"):
    """nequip forward init: gain/√fan_in with gain 1 for the first layer, √2 after a nonlinearity."""
    # Python floats: a NumPy float64 scalar would silently promote float32 models to float64
    return [float((1.0 if (k == 0 or not nonlinearity) else np.sqrt(2.0)) / np.sqrt(d)) for k, d in enumerate(dims[:-1])]


@dataclass(frozen=True)
class _RadialRecompute:
    """Stand-in for a radial-MLP cache in low-memory mode: the inputs that recompute it exactly."""

    emb: object
    weights: list
    dims: tuple


_W = object()  # placeholder for the radial weights w inside a tensor-product cache


def _drop(cache: tuple, w) -> tuple:
    """The cache without its reference to ``w`` (so that ``w`` can be freed)."""
    return tuple(_W if c is w else c for c in cache)


def _restore(cache: tuple, w) -> tuple:
    return tuple(w if c is _W else c for c in cache)


def forces_and_stress(graph, edge_vec, d_vec, glue=host_glue) -> dict:
    r"""Forces, virial and stress from :math:`g_e = \partial E/\partial\vec r_e`.

    :math:`F_i = \sum_{e: i(e)=i} g_e - \sum_{e: j(e)=i} g_e`; under the symmetric strain
    :math:`\vec r \to \vec r(1+\varepsilon)`, :math:`\partial E/\partial\varepsilon =
    \mathrm{sym}\sum_e \vec r_e\otimes g_e`, virial :math:`= -\partial E/\partial\varepsilon`,
    stress :math:`= \partial E/\partial\varepsilon / V` (``docs/derivations/forces_and_stress.md``).
    The sums over edges run in ``glue`` (on the device for cuda; only (N, 3) + (F, 3, 3) come back).
    """
    dst, src = graph.edge_index[0], graph.edge_index[1]
    n, nf = graph.pos.shape[0], graph.n_frames
    forces, dE_deps = glue.forces_and_strain(d_vec, edge_vec, dst, src, graph.batch[dst], n, nf)
    forces, dE_deps = glue.to_host(forces), glue.to_host(dE_deps)
    dE_deps = 0.5 * (dE_deps + np.swapaxes(dE_deps, 1, 2))
    volume = np.abs(np.linalg.det(graph.cell))
    periodic = np.all(graph.pbc, axis=1) & (volume > 0)
    stress = np.full((nf, 3, 3), np.nan)
    stress[periodic] = dE_deps[periodic] / volume[periodic, None, None]
    return {"forces": forces, "virial": -dE_deps, "stress": stress}
