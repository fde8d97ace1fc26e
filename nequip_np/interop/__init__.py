"""Interoperability with official nequip: ``load_nequip_npz`` reads weights exported by tools/export_nequip.py;
``load_any_model`` opens a model file of either format."""
from nequip_np.interop.model_file import load_any_model
from nequip_np.interop.nequip_npz import load_nequip_npz, model_from_state, param_map, read_nequip_npz

__all__ = ["load_any_model", "load_nequip_npz", "model_from_state", "param_map", "read_nequip_npz"]
