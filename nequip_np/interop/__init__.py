"""Interoperability with official nequip: ``load_nequip_npz`` reads weights exported by tools/export_nequip.py."""
from nequip_np.interop.nequip_npz import load_nequip_npz, model_from_state, param_map, read_nequip_npz

__all__ = ["load_nequip_npz", "model_from_state", "param_map", "read_nequip_npz"]
