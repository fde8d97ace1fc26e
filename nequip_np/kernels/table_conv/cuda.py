r"""Tabulated radial function with the tensor-product convolution — numba.cuda (reference signatures).

What differs from the reference: nothing in the algebra; the two device operations run in sequence
(``radial_table/cuda.py`` then ``tp_conv/cuda.py``), so the arrays stay on the device and the (E, n_w)
weights are materialised there. A fused device kernel — each thread evaluating its edge's weights
from the table, as ``cpu.py`` does — is not written yet: on a GPU the weights array costs device
memory bandwidth, not the host's, and has not been measured to matter.
"""

from __future__ import annotations

from nequip_np.kernels.radial_table import cuda as _radial_table
from nequip_np.kernels.table_conv.reference import composed
from nequip_np.kernels.tp_conv import cuda as _tp_conv

forward, backward = composed(_radial_table, _tp_conv)
