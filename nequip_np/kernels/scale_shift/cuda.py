r"""Per-type scale and shift for ``backend="cuda"``: the reference's expressions on device arrays.

What differs from the reference: nothing but the array namespace — the same functions run with
``xp = glue/cuda.py`` (gather, cast, add, multiply and the per-type sums as device kernels), so the
energies stay on the device.
"""

from __future__ import annotations

from functools import partial

from nequip_np.kernels.glue import cuda as _glue
from nequip_np.kernels.scale_shift import reference

forward = partial(reference.forward, xp=_glue)
backward = partial(reference.backward, xp=_glue)
