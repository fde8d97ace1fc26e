r"""ZBL pair prior for ``backend="cuda"``: the reference, run on the host.

What differs from the reference: nothing in the math — ZBL is a few flops per edge and optional, so it
has no kernel yet. The inputs are read on the host (:func:`_cuda_util.host_copy`: resident arrays
from their kept host copy, others by a counted device→host copy) and the results are uploaded, so a
model with ``pair_potential`` pays about E·(3 + 2) floats each way per call; without it, nothing.
A device kernel (one thread per edge, the same expressions) is the upgrade when a model needs it.
"""

from __future__ import annotations

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.zbl import reference


def _host(a):
    return cu.host_copy(a) if cu.is_device_array(a) else a


def _like(out, *inputs):
    return cu.to_device(out) if any(cu.is_device_array(x) for x in inputs) else out


def forward(edge_vec, z_center, z_neighbor, rmax_recip, p, ke):
    energy, cache = reference.forward(*(_host(a) for a in (edge_vec, z_center, z_neighbor, rmax_recip, p, ke)))
    return _like(energy, edge_vec, rmax_recip), (cache, edge_vec)


def backward(d_energy, cache):
    ref_cache, like = cache
    (d_vec,) = reference.backward(_host(d_energy), ref_cache)
    return (_like(d_vec, like, d_energy),)
