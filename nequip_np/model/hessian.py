r"""Exact Hessians and Hessian-vector products of a NequIP model, by the complex step.

The Hessian-vector product is the directional derivative of the gradient,
:math:`H v = \frac{d}{dt}\nabla_R E(R + t v)\big|_{t=0}`. In edge variables
(:math:`\vec r_e = \vec R_{j(e)} - \vec R_{i(e)} + S_e\,\mathrm{cell}`, the cell held fixed) a
displacement :math:`V` of the atoms moves edge :math:`e` by :math:`\dot r_e = V_{j(e)} - V_{i(e)}`.
Running the model's own forward and reverse passes in complex arithmetic on
:math:`\vec r_e + i h\,\dot r_e` gives, for the holomorphic kernels of this package
(``docs/derivations/training_gradients.md`` §4–5),

.. math::

    g_e(\vec r + ih\dot r) = g_e + i h\,\frac{d g_e}{dt} + O(h^2),\qquad
    g_e = \frac{\partial E}{\partial \vec r_e},

and one scatter of :math:`\mathrm{Im}\,g_e/h` to the atoms,
:math:`(Hv)_n = \sum_{e: j(e)=n}\dot g_e - \sum_{e: i(e)=n}\dot g_e`, is the exact product (relative
error :math:`O(h^2) = 10^{-40}`, no subtractive cancellation; the real part is :math:`-F`).

K directions run as K copies of the graph in ONE batched complex pass (each copy carries its own
tangent), so the full Hessian takes :math:`\lceil 3N/K\rceil` passes instead of 3N. Derivation, cost
and memory: ``docs/vibrations.md``.

Example:
    >>> import numpy as np
    >>> from ase.build import molecule
    >>> from nequip_np import NequIPModel
    >>> from nequip_np.data.graph import graph_from_atoms
    >>> from nequip_np.model.hessian import hessian
    >>> model = NequIPModel(type_names=["H", "C", "O"], r_max=3.0, num_layers=1, l_max=1,
    ...                     num_features=4, avg_num_neighbors=3.0)
    >>> graph = graph_from_atoms(molecule("CH3OH"), model.config.type_names, model.config.r_max)
    >>> H = hessian(model, graph)
    >>> H.shape, bool(np.allclose(H, H.T, rtol=0, atol=1e-12 * np.abs(H).max()))
    ((18, 18), True)
"""

from __future__ import annotations

import numpy as np

from nequip_np.data.graph import batch_graphs

#: complex-step size (the same as the training pass; see ``train/loss.py``)
COMPLEX_STEP = 1e-20

#: the default number of directions per batched pass keeps K copies under this many edges. The complex
#: caches of one pass grow like K x E x (per-edge features) x 16 bytes: 5.6 KiB per edge for the model of
#: examples/aspirin/train.yaml (78 MiB at K = 63 for aspirin). Batching beyond K ~ 8 gains little on the
#: CPU (measured: 2x from K = 1 to K = 8, flat after), so the cap costs nothing (``docs/vibrations.md``).
MAX_BATCH_EDGES = 20_000


def _check(model, graph):
    if graph.n_frames != 1:
        raise ValueError(
            f"the Hessian is defined per structure; got a batch of {graph.n_frames} frames "
            "(split it with nequip_np.data.graph.split_batch)"
        )
    if graph.n_atoms == 0:
        raise ValueError("cannot compute the Hessian of an empty structure (0 atoms)")
    nt = len(model.config.type_names)
    types = graph.atom_types
    if types.min() < 0 or types.max() >= nt:
        raise ValueError(
            f"atom_types must lie in [0, {nt}) for type_names {model.config.type_names}; "
            f"got types {sorted(set(types.tolist()))}"
        )


def default_batch(graph) -> int:
    """Directions per complex pass: as many as keep K copies under :data:`MAX_BATCH_EDGES` edges."""
    return int(max(1, min(3 * graph.n_atoms, MAX_BATCH_EDGES // max(graph.n_edges, 1))))


def hessian_vector_products(
    model,
    graph,
    directions,
    *,
    batch: int | None = None,
    params=None,
    low_memory: bool = False,
    return_gradient: bool = False,
):
    r"""Exact products :math:`H v_k` for K directions :math:`v_k` (each an (N, 3) displacement).

    Args:
        model: a :class:`~nequip_np.NequIPModel` (any backend; float64 gives float64-exact products).
        graph: one structure (:class:`~nequip_np.data.graph.AtomicGraph` with one frame).
        directions: (K, N, 3) or (N, 3) displacement directions in Å (any norm; the product is linear).
        batch: directions per batched complex pass (default :func:`default_batch`).
        params: parameter dict (default ``model.params``).
        low_memory: recompute the radial MLP in the reverse pass (see the model's ``forward``).
        return_gradient: also return :math:`\nabla_R E = -F` (N, 3) from the same pass.

    Returns:
        (K, N, 3) float64 array :math:`H v_k` in eV/Å² × (unit of v), or (N, 3) for one direction;
        with ``return_gradient`` the tuple ``(products, gradient)``.

    Raises:
        ValueError: a batch of several frames, an empty structure, types outside the model's, or
            directions of the wrong shape or not finite.
    """
    _check(model, graph)
    v = np.asarray(directions, dtype=np.float64)
    single = v.ndim == 2
    v = v[None] if single else v
    n = graph.n_atoms
    if v.ndim != 3 or v.shape[1:] != (n, 3):
        raise ValueError(f"directions must have shape (K, {n}, 3) or ({n}, 3), got {np.shape(directions)}")
    if not np.isfinite(v).all():
        raise ValueError("directions contain NaN or inf")
    batch = default_batch(graph) if batch is None else int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1 directions per pass, got {batch}")
    params = model.params if params is None else params
    out, grad = np.empty_like(v), None
    for k0 in range(0, len(v), batch):
        out[k0 : k0 + batch], grad = _batched_pass(model, graph, v[k0 : k0 + batch], params, low_memory)
    out = out[0] if single else out
    return (out, grad) if return_gradient else out


def _batched_pass(model, graph, v, params, low_memory):
    """One complex forward + reverse pass over K copies of ``graph``, copy k displaced along v[k]."""
    k, n, e = len(v), graph.n_atoms, graph.n_edges
    big = graph if k == 1 else batch_graphs([graph] * k)
    dst, src = graph.edge_index[0], graph.edge_index[1]
    tangent = (v[:, src] - v[:, dst]).reshape(k * e, 3)  # \dot r_e = V_j - V_i for every copy
    vec = np.tile(graph.edge_vectors(), (k, 1)) + 1j * COMPLEX_STEP * tangent
    _atomic, cache = model.forward(big, vec, params, low_memory=low_memory)
    g, _ = model.backward(np.ones(k * n), cache, big, params, param_grads=False)
    g = np.asarray(g).reshape(k * e, 3)
    off = (np.arange(k) * n)[:, None]
    to_j, to_i = (src[None] + off).ravel(), (dst[None] + off).ravel()

    def to_atoms(x, m):  # dE/dR_n = sum_{e: j(e)=n} g_e - sum_{e: i(e)=n} g_e, per Cartesian component
        return np.stack(
            [
                np.bincount(to_j[: len(x)], x[:, c], minlength=m) - np.bincount(to_i[: len(x)], x[:, c], minlength=m)
                for c in range(3)
            ],
            axis=1,
        )

    hv = to_atoms(np.ascontiguousarray(g.imag), k * n).reshape(k, n, 3) / COMPLEX_STEP
    return hv, to_atoms(np.ascontiguousarray(g[:e].real), n)


def hessian(model, graph, *, atoms=None, batch: int | None = None, params=None, low_memory: bool = False):
    r"""The exact Hessian :math:`H_{(na),(mb)} = \partial^2 E/\partial R_{na}\,\partial R_{mb}`, (3N, 3N) eV/Å².

    Args:
        model, graph, batch, params, low_memory: as in :func:`hessian_vector_products`.
        atoms: optional indices of atoms whose rows are wanted; then (3·len(atoms), 3N) rows
            :math:`H_{(na),\cdot}` for n in ``atoms`` (what phonons need: the rows of one primitive cell).

    Returns:
        float64 array, row/column index 3n + a (atom n, Cartesian a), ASE's ``VibrationsData`` layout.
        Symmetric to round-off (not symmetrised: the asymmetry is a check of the computation).
    """
    n = graph.n_atoms if graph.n_frames == 1 else -1
    _check(model, graph)
    rows = np.arange(n) if atoms is None else np.asarray(atoms, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"atom indices must lie in [0, {n}), got {rows.tolist()}")
    dirs = np.zeros((3 * len(rows), n, 3))
    for r, atom in enumerate(rows):
        dirs[3 * r : 3 * r + 3, atom, :] = np.eye(3)
    return hessian_vector_products(model, graph, dirs, batch=batch, params=params, low_memory=low_memory).reshape(
        3 * len(rows), 3 * n
    )
