"""nequip_np: NequIP in NumPy and Numba, with hand-written backpropagation."""
__version__ = "0.1.0"
