r"""The NequIP model (nequip 0.19.1 ``NequIPGNNModel``), assembled from the kernels; reads top to bottom.

Data flow for one graph (shapes: N atoms, E directed edges, T species; ``docs/model.md`` walks
through it with the dossier's equations):

1. species embedding  :math:`h^0_i = A[t_i]`                                   (N, T_f)
2. edge geometry      :math:`\vec r_e = \vec r_{j} - \vec r_{i} + S_e\,\mathrm{cell}`   (E, 3)
3. radial basis       :math:`b_e = \tfrac{2\pi}{r_{\max}^2} B(x_e) u(x_e)`       (E, n_bessel)
4. edge harmonics     :math:`Y_e = Y(\hat r_e)`                              (E, (l_max+1)²)
5. ``num_layers`` interaction layers (:func:`interaction`), each:
   self-connection :math:`s = \mathrm{FCTP}(h, a)` (layers ≥ 1) →
   :math:`y = \mathrm{Linear}_1(h)/\sqrt{\bar n}` → radial MLP :math:`w_e = \mathrm{MLP}(b_e)` →
   :math:`M_i = \sum_{e\to i} \mathrm{TP}(y_{j(e)}, Y_e; w_e)` → :math:`z = \mathrm{Linear}_2(M) + s` →
   :math:`h' = \mathrm{Gate}(z)`
6. readout            :math:`\tilde E_i = \mathrm{MLP}(h_i)`                     (N,)
7. scale/shift        :math:`E_i = \mathrm{shift}[t_i] + \mathrm{scale}[t_i]\,\tilde E_i` (float64)
8. optional ZBL prior, then :math:`E = \sum_i E_i` per frame.

Forces and stress come from the hand-written reverse pass (:meth:`NequIPModel.backward`): it returns
:math:`\partial E/\partial\vec r_e`, from which :math:`F = -\partial E/\partial R` and the virial follow
by one scatter and one outer product (``docs/derivations/forces_and_stress.md``). The parameter gradient
of a force/stress loss runs the same forward and reverse passes in complex arithmetic
(``docs/derivations/training_gradients.md``).

Every operation is ``ops.<name>.forward(...) -> (out, cache)`` and ``ops.<name>.backward(d_out, cache)
-> (d_input, ...)`` (``kernels/registry.py``). The few steps *between* operations — casts, a sum, a row
scaling, a gather or scatter by atom type — go through ``xp = ops.glue``: NumPy expressions for the
numpy and numba backends, device kernels for cuda, so that with ``backend="cuda"`` the arrays stay on
the device from the edge vectors to the forces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nequip_np.kernels.common import scatter_sum
from nequip_np.kernels.glue import reference as host_glue
from nequip_np.kernels.plan import LayerPlan, build_plan
from nequip_np.kernels.plan import mlp_alphas as _alphas
from nequip_np.kernels.registry import get_ops
from nequip_np.model.config import ModelConfig
from nequip_np.model.file_format import save_model
from nequip_np.model.radial_tables import build_radial_tables

_COMPLEX = {np.dtype(np.float32): np.complex64, np.dtype(np.float64): np.complex128}


# ---------------------------------------------------------------------- caches (named records)
@dataclass
class LayerCache:
    """What one interaction layer's reverse pass reads: one cache per operation, by name."""

    weights: LayerWeights  # the parameters used (references, no copies)
    self_connection: object | None  # None in layer 0 (no self-connection)
    linear_1: object
    radial: object | None  # radial MLP; None in low-memory mode until recomputed, and with a radial table
    tp: object  # tensor product (``w`` None in low-memory mode until recomputed), or the table_conv cache
    linear_2: object
    gate: object
    tabulated: bool = False  # ``tp`` is a table_conv cache (radial table fused in): reverse goes to edge vectors


@dataclass
class ModelCache:
    """Everything :meth:`NequIPModel.backward` reads, from one :meth:`NequIPModel.forward`."""

    edge_vec: object  # (E, 3) backend array, float64 / complex128
    edge_embedding: object
    spherical_harmonics: object
    emb: object  # (E, n_bessel) radial basis in the model dtype (low memory: recomputes w); None with tables
    features: list  # node features after the embedding and after every layer
    layers: list = field(default_factory=list)  # LayerCache per layer
    readout: object = None
    scale_shift: object = None
    zbl: object | None = None


@dataclass(frozen=True)
class LayerWeights:
    """One layer's parameters (views into ``params``)."""

    self_connection: object | None  # (n_w_sc,) or None in layer 0
    linear_1: object  # (n_w_1,)
    radial: list  # radial MLP matrices [(n_bessel, width), …, (width, n_w)]
    linear_2: object  # (n_w_2,)

    @classmethod
    def of(cls, params: dict, layer: LayerPlan) -> LayerWeights:
        k = layer.index
        return cls(
            params.get(f"layer{k}.sc"),
            params[f"layer{k}.linear_1"],
            [params[f"layer{k}.radial.{m}"] for m in range(len(layer.radial_dims) - 1)],
            params[f"layer{k}.linear_2"],
        )


# ---------------------------------------------------------------------- one interaction layer
def interaction(
    ops, layer: LayerPlan, W: LayerWeights, h, attr, types, emb, Y, src, dst, norm, low_memory=False, table=None
):
    r"""One NequIP interaction layer (``docs/model.md``); returns ``(h', LayerCache)``.

    Shapes: N atoms, E edges; I, MID, O, H = the layer's input, message, conv-output and output irreps.
    ``table``: ``(edge_vec, rmax_recip, layer_table)`` to read ``w`` from the tabulated radial function
    (inference, ``model/radial_tables.py``) instead of evaluating the radial MLP on ``emb``.

    .. math:: h' = \mathrm{Gate}\Big(\mathrm{Linear}_2\Big(\sum_{e \to i}
              \mathrm{TP}\big(c\,\mathrm{Linear}_1(h)_{j(e)},\ Y_e;\ \mathrm{MLP}(b_e)\big)\Big)
              + \mathrm{FCTP}(h, a)\Big)
    """
    xp, sc = ops.glue, None
    if layer.self_connection is not None:  # s: (N, dim O)
        s, sc = ops.self_connection.forward(h, attr, types, W.self_connection, layer.self_connection)
    y, l1 = ops.linear.forward(h, W.linear_1, layer.linear_1)  # (N, dim I)
    y = xp.mul(y, norm)  # y_j ← c_j y_j: 1/√(avg. neighbours) of the *sender* (N, 1)
    if table is None:
        w, radial = ops.mlp.forward(emb, W.radial, _alphas(layer.radial_dims), "silu")  # (E, n_w)
        M, tp = ops.tp_conv.forward(y, Y, w, src, dst, types.shape[0], layer.conv)  # (N, dim MID)
    else:  # w_e = S(r_e / r_max,pair): a C² spline of the same function, no MLP, read edge by edge
        radial = None  # the fused operation keeps the table and the edge vectors, no (E, n_w) array
        M, tp = ops.table_conv.forward(y, Y, *table, src, dst, types.shape[0], layer.conv)  # (N, dim MID)
    z, l2 = ops.linear.forward(M, W.linear_2, layer.linear_2)  # (N, dim O)
    if layer.self_connection is not None:
        z = xp.add(z, s)
    h, gate = ops.gate.forward(z, layer.gate)  # (N, dim H)
    if low_memory and table is None:  # drop the (E, n_w) weights and the MLP activations: recomputed later
        radial, tp = None, tp._replace(w=None)
    return h, LayerCache(W, sc, l1, radial, tp, l2, gate, tabulated=table is not None)


def interaction_backward(ops, layer: LayerPlan, dh, lc: LayerCache, emb, norm, param_grads=True, edge_grads=True):
    r"""Reverse of :func:`interaction`: ``dh`` (N, dim H) → ``(dh_in, d_attr, d_emb, d_Y, grads)``.

    ``edge_grads=False``: ``d_Y`` is None (the tensor product skips it) — the training pass's complex
    reverse pass needs only parameter gradients.

    ``d_emb`` is (E, n_bessel); with a radial table (``lc.tabulated``) it is instead the edge-vector
    gradient (E, 3) of the table, and ``grads["radial"]`` is empty. ``grads`` maps ``"self_connection"``, ``"linear_1"``, ``"radial"`` (list), ``"linear_2"`` to the
    parameter gradients; ``d_attr`` is None in layer 0. ``lc`` is consumed (its per-edge caches freed).
    """
    xp, grads = ops.glue, {}
    (dz,) = ops.gate.backward(dh, lc.gate)  # (N, dim O)
    dM, grads["linear_2"] = ops.linear.backward(dz, lc.linear_2, param_grads)  # (N, dim MID)
    if lc.tabulated:  # inference: d_emb is the table's edge-vector gradient (E, 3)
        (dy, d_Y, d_emb), grads["radial"] = ops.table_conv.backward(dM, lc.tp), []
    else:
        if lc.radial is None:  # low-memory mode: recompute w (one more radial MLP forward)
            w, lc.radial = ops.mlp.forward(emb, lc.weights.radial, _alphas(layer.radial_dims), "silu")
            lc.tp = lc.tp._replace(w=w)
        dy, d_Y, dw = ops.tp_conv.backward(dM, lc.tp, edge_grads)  # (N, dim I), (E, (l+1)²), (E, n_w)
        d_emb, grads["radial"] = ops.mlp.backward(dw, lc.radial, param_grads)  # (E, n_bessel)
    lc.radial = lc.tp = None  # this layer's per-edge caches are done: free them now
    dh_in, grads["linear_1"] = ops.linear.backward(xp.mul(dy, norm), lc.linear_1, param_grads)  # (N, dim I)
    d_attr = None
    if lc.self_connection is not None:
        dh_sc, d_attr, grads["self_connection"] = ops.self_connection.backward(dz, lc.self_connection, param_grads)
        dh_in = xp.add(dh_in, dh_sc)
    return dh_in, d_attr, d_emb, d_Y, grads


class NequIPModel:
    """NequIP energy model with hand-derived forces, stress and training gradients.

    Args: the keyword arguments of nequip's ``NequIPGNNModel`` (see :class:`ModelConfig`), plus
    ``backend`` ("numpy" is the reference).

    Attributes:
        params: trainable arrays by name (float64 or float32 per ``model_dtype``).
        buffers: fixed arrays (cutoff table, Bessel frequencies, scales/shifts when not trainable).
        plan: the static :class:`~nequip_np.kernels.plan.ModelPlan`.
    """

    def __init__(self, backend: str = "numpy", params: dict | None = None, **kwargs):
        self.config = ModelConfig.from_kwargs(**kwargs)
        self.backend = backend
        self.ops = get_ops(backend)  # the operations of this backend (see kernels/registry.py)
        c = self.config
        self.dtype = np.dtype(c.model_dtype)
        self.plan = build_plan(
            l_max=c.l_max,
            parity=c.parity,
            num_layers=c.num_layers,
            num_features=c.num_features,
            type_embed_num_features=c.type_embed_num_features,
            num_bessels=c.num_bessels,
            radial_mlp_depth=c.radial_mlp_depth,
            radial_mlp_width=c.radial_mlp_width,
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
        return (
            f"NequIPModel(type_names={c.type_names}, r_max={c.r_max}, num_layers={c.num_layers}, "
            f"l_max={c.l_max}, parity={c.parity}, num_features={c.num_features}, "
            f"model_dtype={c.model_dtype!r}, backend={self.backend!r}, params={n}"
            + (f", radial_tables={self.radial_tables.n_points}" if self.radial_tables is not None else "")
            + ")"
        )

    # ------------------------------------------------------------------ forward
    def forward(self, graph, edge_vec, params: dict | None = None, low_memory: bool = False, to_host: bool = True):
        r"""Per-atom energies :math:`E_i` (N,) and the :class:`ModelCache` of every operation.

        ``edge_vec`` (E, 3) is float64, or complex128 in the training pass. The energies are float64
        (complex128) NumPy arrays; with ``to_host=False`` they stay backend arrays (device arrays with
        ``backend="cuda"``). ``low_memory``: do not keep the radial MLP's activations and output ``w``
        (the largest per-edge arrays, E × n_w); the reverse pass recomputes them one layer at a time.
        """
        c, ops, xp = self.config, self.ops, self.ops.glue
        params = {k: xp.resident(v) for k, v in (self.params if params is None else params).items()}
        types, dst, src = graph.atom_types, graph.edge_index[0], graph.edge_index[1]
        cdt = _COMPLEX[self.dtype] if np.iscomplexobj(edge_vec) else self.dtype
        with ops.call_context():  # e.g. numba: BLAS single-threaded while Numba's threads run
            edge_vec = xp.upload(edge_vec)  # cuda: the one per-call copy to the device
            # 3-4. geometry in float64 (complex128), then cast to the model dtype
            rmax_recip = xp.resident(self.buffers["rmax_recip"][types[dst], types[src]])  # (E,)
            tables = self._active_radial_tables(params, edge_vec)  # None: the radial MLP (always in training)
            emb = emb_cache = None
            if tables is None:
                bessel_w = xp.resident(self._get("bessel_weights", params))  # (n_b,)
                emb, emb_cache = ops.edge_embedding.forward(
                    edge_vec, rmax_recip, bessel_w, c.polynomial_cutoff_p, 2.0 * np.pi / c.r_max**2
                )  # (E, n_b)
                emb = xp.cast(emb, cdt)
            Y, sh_cache = ops.spherical_harmonics.forward(edge_vec, c.l_max)  # (E, (l_max+1)²)
            Y = xp.cast(Y, cdt)
            # 1. species embedding: node attributes a_i = A[t_i] are also the first features
            attr = params["type_embed"]  # (T, T_f)
            h = xp.cast(xp.gather_rows(attr, types), cdt)  # (N, T_f)
            cache = ModelCache(edge_vec, emb_cache, sh_cache, emb, [h])
            # 5. interaction layers
            norm = self._neighbor_norm(types)  # (N, 1)
            for layer in self.plan.layers:
                W = LayerWeights.of(params, layer)
                table = None if tables is None else (edge_vec, rmax_recip, tables.layer(layer.index, cdt))
                h, lc = interaction(ops, layer, W, h, attr, types, emb, Y, src, dst, norm, low_memory, table)
                cache.layers.append(lc)
                cache.features.append(h)
            # 6. readout, 7. per-type scale and shift in float64
            readout, nonlin = self._readout_weights(params), c.readout_mlp_nonlinearity
            e_tilde, cache.readout = ops.mlp.forward(h, readout, _alphas(self.plan.readout_dims, nonlin), nonlin)
            scales = xp.resident(self._get("per_type_energy_scales", params))  # (T,) or (1,), float64
            shifts = xp.resident(self._get("per_type_energy_shifts", params))
            atomic, cache.scale_shift = ops.scale_shift.forward(e_tilde, types, scales, shifts)  # (N,)
            # 8. optional ZBL prior, per directed edge, added to the centre atom
            if c.pair_potential is not None:
                z = self.buffers["atomic_numbers"]
                e_pair, cache.zbl = ops.zbl.forward(
                    edge_vec, z[types[dst]], z[types[src]], rmax_recip, self.buffers["zbl_p"], self.buffers["zbl_ke"]
                )
                atomic = xp.add(atomic, xp.scatter_sum(e_pair, dst, types.shape[0]))
        return (xp.to_host(atomic) if to_host else atomic), cache

    # ------------------------------------------------------------------ backward
    def backward(
        self,
        d_atomic,
        cache: ModelCache,
        graph,
        params: dict | None = None,
        param_grads: bool = True,
        to_host: bool = True,
        edge_grads: bool = True,
    ):
        r"""Reverse pass: ``d_atomic`` (N,) → (:math:`\partial E/\partial\vec r_e` (E, 3), parameter gradients).

        ``edge_grads=False``: parameter gradients only; the edge-vector gradient is not formed (None is
        returned in its place) and the tensor products skip their spherical-harmonics gradient (about
        half of their reverse-pass arithmetic) — what the training pass's complex reverse pass needs.

        Results are NumPy arrays, or backend arrays with ``to_host=False``. ``param_grads=False`` (forces
        only) skips every parameter gradient (the returned dict may then be partial or empty): a third of
        the radial MLP's flops and most of the self-connection's. ``cache`` is consumed.
        """
        ops, xp, plan = self.ops, self.ops.glue, self.plan
        params = self.params if params is None else params  # read for names and shapes only
        types, dst = graph.atom_types, graph.edge_index[0]
        if param_grads and cache.emb is None:
            raise RuntimeError(
                "radial tables give no gradients of the radial MLP weights; call "
                "model.use_radial_tables(None) before training"
            )
        with ops.call_context():
            d_atomic = xp.upload(d_atomic)  # (N,)
            d_e, d_scales, d_shifts = ops.scale_shift.backward(d_atomic, cache.scale_shift)  # (N, 1), (T,), (T,)
            grads = {
                k: g
                for k, g in (("per_type_energy_shifts", d_shifts), ("per_type_energy_scales", d_scales))
                if k in params
            }
            dh, d_readout = ops.mlp.backward(d_e, cache.readout, param_grads)
            grads.update({f"readout.{m}": g for m, g in enumerate(d_readout) if g is not None})
            d_emb = d_Y = d_attr = 0.0  # sums over layers (d_emb: (E, 3) edge-vector gradient with tables)
            norm = self._neighbor_norm(types)
            for layer in reversed(plan.layers):
                k = layer.index
                dh, d_attr_k, d_emb_k, d_Y_k, g = interaction_backward(
                    ops, layer, dh, cache.layers[k], cache.emb, norm, param_grads, edge_grads
                )
                grads[f"layer{k}.linear_2"] = g["linear_2"]
                grads.update({f"layer{k}.radial.{m}": gm for m, gm in enumerate(g["radial"]) if gm is not None})
                grads[f"layer{k}.linear_1"] = g["linear_1"]
                if d_attr_k is not None:
                    grads[f"layer{k}.sc"] = g["self_connection"]
                    d_attr = xp.add(d_attr, d_attr_k)
                d_emb = xp.add(d_emb, d_emb_k)
                d_Y = xp.add(d_Y, d_Y_k) if edge_grads else None
            if param_grads:
                n_types = params["type_embed"].shape[0]
                grads["type_embed"] = xp.add(d_attr, xp.scatter_sum(dh, types, n_types))  # h⁰ = A[t]
            grads = {k: g for k, g in grads.items() if g is not None}  # forces only: no parameter gradients
            geo = cache.edge_vec.dtype  # geometry precision
            if cache.emb is None:  # radial tables: the layers' spline derivatives already are ∂E/∂r_e
                d_vec, d_bessel_w = d_emb, None
            elif edge_grads or "bessel_weights" in params:
                d_vec, d_bessel_w = ops.edge_embedding.backward(xp.cast(d_emb, geo), cache.edge_embedding)
            else:  # parameter gradients only, Bessel weights fixed: nothing left to form
                d_vec = d_bessel_w = None
            if "bessel_weights" in params:
                grads["bessel_weights"] = d_bessel_w
            if not edge_grads:
                return None, ({k: xp.to_host(g) for k, g in grads.items()} if to_host else grads)
            (d_vec_sh,) = ops.spherical_harmonics.backward(xp.cast(d_Y, geo), cache.spherical_harmonics)
            d_vec = xp.add(d_vec, d_vec_sh)  # (E, 3)
            if cache.zbl is not None:
                (d_vec_zbl,) = ops.zbl.backward(xp.gather_rows(d_atomic, dst), cache.zbl)
                d_vec = xp.add(d_vec, d_vec_zbl)
        if not to_host:
            return d_vec, grads
        return xp.to_host(d_vec), {k: xp.to_host(g) for k, g in grads.items()}

    # ------------------------------------------------------------------ small helpers
    def _readout_weights(self, params):
        return [params[f"readout.{m}"] for m in range(len(self.plan.readout_dims) - 1)]

    def _active_radial_tables(self, params, edge_vec):
        """The radial tables if on and the pass is real (inference); they must match ``params``."""
        if self.radial_tables is None or np.iscomplexobj(edge_vec):
            return None
        self.radial_tables.check(params, self.buffers)
        return self.radial_tables

    def _neighbor_norm(self, types):
        """(N, 1) per-atom 1/√(avg. number of neighbours) in the model dtype (a resident value)."""
        return self.ops.glue.resident(self.buffers["neighbor_norm"][types].astype(self.dtype)[:, None])

    # ------------------------------------------------------------------ public API
    def compute(self, graph, forces: bool = True, stress: bool = True, params: dict | None = None) -> dict:
        """Energies (and forces, virial, stress) of a (batched) :class:`~nequip_np.data.graph.AtomicGraph`.

        Returns a dict of float64 arrays: ``atomic_energy`` (N,), ``total_energy`` (F,), and when
        requested ``forces`` (N, 3), ``virial`` (F, 3, 3), ``stress`` (F, 3, 3) — NaN for frames that are
        not periodic in all three directions (ASE sign convention: positive = tensile).
        """
        self._check_graph(graph)
        xp = self.ops.glue
        atomic, cache = self.forward(graph, graph.edge_vectors(), params, to_host=False)
        energies = xp.to_host(atomic)
        out = {"atomic_energy": energies, "total_energy": scatter_sum(energies, graph.batch, graph.n_frames)}
        if forces or stress:  # on the device for cuda: only (N, 3) forces and (F, 3, 3) come back
            d_vec, _ = self.backward(xp.ones_like(atomic), cache, graph, params, param_grads=False, to_host=False)
            out.update(forces_and_stress(graph, cache.edge_vec, d_vec, xp))
        return out

    def node_features(self, graph) -> list:
        """Node features after the embedding and after every layer (irreps: ``plan.layers[k].gate.irreps_out``)."""
        features = self.forward(graph, graph.edge_vectors())[1].features
        return [self.ops.glue.to_host(h) for h in features]

    def energy(self, graph) -> np.ndarray:
        return self.compute(graph, forces=False, stress=False)["total_energy"]

    def _check_graph(self, graph):
        nt = len(self.config.type_names)
        if graph.atom_types.size and (graph.atom_types.min() < 0 or graph.atom_types.max() >= nt):
            raise ValueError(f"atom_types must lie in [0, {nt}) for type_names {self.config.type_names}")

    def save(self, path) -> None:
        """Write the model in the project's versioned .npz format (``nequip_np.load_model`` reads it)."""
        save_model(self, path)


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
