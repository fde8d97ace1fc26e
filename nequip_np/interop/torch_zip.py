r"""torch's zip serialisation (``torch.save``, Lightning ``.ckpt``, ``torch.package``) read and written without torch.

A torch zip archive holds one folder ``<root>/`` with

==============================  ==================================================================
``<root>/data.pkl``             the object tree, a pickle in which every tensor is a call
                                ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)``
                                and every storage a *persistent id*
                                ``("storage", torch.<Type>Storage, key, location, numel)``
``<root>/data/<key>``           the raw bytes of storage ``key`` (``.data/<key>.storage`` in a package)
``<root>/byteorder``            ``little`` or ``big``
``<root>/version``              serialisation version (``3``)
``<root>/.data/serialization_id``  an id string
==============================  ==================================================================

**Reading is restricted.** A pickle is a small program: any global it names is imported and may be
called. :class:`RestrictedUnpickler` resolves only the globals of an explicit allow-list: torch's
tensor/parameter rebuild functions and storage types (mapped to NumPy), ``collections.OrderedDict``
and a few harmless builtins. Everything else is refused with an error that names the global — except
that, for ``torch.package`` model pickles only (``allow_module_records=True``), the classes of the
``nequip``, ``e3nn`` and ``torch.nn`` namespaces resolve to inert :class:`Record` placeholders that
store their constructor arguments and state and run no code. Nothing from the file is imported or
executed. Every storage's size is checked against the archive's record before it is used, and every
tensor view against its storage.

**Writing** (:func:`write_torch_zip`) emits protocol-2 pickle opcodes directly (no ``pickle.Pickler``,
which would need the torch globals importable) for plain containers, strings, numbers and NumPy arrays
(written as tensors), and stores the storages 64-byte aligned the way torch does.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

#: torch storage class name -> NumPy dtype
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexDoubleStorage": np.complex128,
    "ComplexFloatStorage": np.complex64,
}
_DTYPE_STORAGE = {np.dtype(v): k for k, v in STORAGE_DTYPES.items()}
#: torch dtype objects (``torch.float64``) -> their NumPy name
TORCH_DTYPES = {
    "float64": "float64",
    "double": "float64",
    "float32": "float32",
    "float": "float32",
    "float16": "float16",
    "half": "float16",
    "int64": "int64",
    "long": "int64",
    "int32": "int32",
    "int": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
    "bfloat16": "bfloat16",
    "complex128": "complex128",
    "complex64": "complex64",
}
#: namespaces whose classes become inert :class:`Record` objects in package pickles
RECORD_PREFIXES = ("nequip.", "e3nn.", "torch.nn.modules.", "torch.nn.functional", "torch.nn.parameter")
MAX_PICKLE_BYTES = 256 * 2**20  # a model's data.pkl is kilobytes; refuse absurd ones before reading


class UnsafeFileError(ValueError):
    """The file asks for something the restricted reader does not allow (a global outside the allow-list)."""


class Record:
    """Inert stand-in for an object of a class named in a package pickle: stores, never runs, anything.

    Attributes:
        cls: ``"module.Class"`` as written in the pickle.
        args: constructor arguments (from NEWOBJ/REDUCE).
        state: the state given to ``__setstate__`` (for ``torch.nn.Module`` the instance ``__dict__``).
    """

    cls = "?"

    def __new__(klass, *args, **kwargs):
        obj = object.__new__(klass)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"Record({self.cls})"


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2 in NumPy: a view of the storage, checked to lie inside it, copied."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not isinstance(storage, np.ndarray) or len(size) != len(stride) or min(size + (0,)) < 0 or offset < 0:
        raise ValueError(f"malformed tensor record (size {size}, stride {stride}, offset {offset})")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if min(stride + (0,)) < 0 or last >= storage.size:
        raise ValueError(
            f"tensor of size {size}, stride {stride} at offset {offset} reaches element {last}, "
            f"beyond its storage of {storage.size} elements"
        )
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * item for s in stride), writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad=True, hooks=None, *rest):
    return data


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler with an allow-list of globals; storages come from ``load_storage(dtype, key, numel)``."""

    DATA_GLOBALS = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "complex"): complex,
    }

    def __init__(self, fh, load_storage, allow_module_records: bool = False, what: str = "file"):
        super().__init__(fh)
        self._load_storage, self._records, self._what = load_storage, allow_module_records, what
        self._record_classes: dict = {}

    def find_class(self, module, name):
        if (module, name) in self.DATA_GLOBALS:
            return self.DATA_GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in TORCH_DTYPES:
            return TORCH_DTYPES[name]
        if self._records and (module + ".").startswith(RECORD_PREFIXES):
            key = f"{module}.{name}"
            if key not in self._record_classes:
                self._record_classes[key] = type(name, (Record,), {"cls": key})
            return self._record_classes[key]
        raise UnsafeFileError(
            f"{self._what}: refusing to load global {module}.{name}: it is not on the "
            "allow-list of tensor/container types this reader resolves (nothing was "
            "imported or executed)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeFileError(f"{self._what}: unsupported persistent id {pid!r} (expected a storage)")
        _, stype, key, _location, numel = pid
        return self._load_storage(stype.dtype, str(key), int(numel))


class TorchZip:
    """A torch zip archive opened for restricted reading (``.ckpt``, ``torch.save`` files, packages)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"model file {str(self.path)!r} does not exist")
        try:
            self.zip = zipfile.ZipFile(self.path)
            self.names = set(self.zip.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(
                f"{str(self.path)!r} is not a readable zip archive (truncated or not a torch file?): {exc}"
            ) from exc
        roots = {n.split("/", 1)[0] for n in self.names if "/" in n}
        if len(roots) != 1:
            raise ValueError(f"{str(self.path)!r}: expected one top-level folder in the archive, found {sorted(roots)}")
        self.root = roots.pop()
        order = self.read("byteorder").decode().strip() if self.has("byteorder") else "little"
        if order not in ("little", "big"):
            raise ValueError(f"{str(self.path)!r}: byteorder record is {order!r}, expected 'little' or 'big'")
        self.byteorder = "<" if order == "little" else ">"

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, name: str) -> bool:
        return f"{self.root}/{name}" in self.names

    def read(self, name: str, max_bytes: int | None = None) -> bytes:
        full = f"{self.root}/{name}"
        if full not in self.names:
            raise ValueError(f"{str(self.path)!r}: the archive has no record {full!r}")
        info = self.zip.getinfo(full)
        if max_bytes is not None and info.file_size > max_bytes:
            raise ValueError(
                f"{str(self.path)!r}: record {full!r} is {info.file_size} bytes, more than the {max_bytes} allowed"
            )
        try:
            return self.zip.read(full)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{str(self.path)!r}: record {full!r} cannot be read (truncated or corrupt archive): {exc}"
            ) from exc

    def storage_name(self, key: str) -> str:
        return f"data/{key}" if self.has(f"data/{key}") else f".data/{key}.storage"

    def load_storage(self, dtype, key: str, numel: int) -> np.ndarray:
        name = self.storage_name(key)
        full = f"{self.root}/{name}"
        if full not in self.names:
            raise ValueError(f"{str(self.path)!r}: storage {key!r} is referenced but the archive has no {full!r}")
        size = self.zip.getinfo(full).file_size
        if numel < 0 or size != numel * dtype.itemsize:
            raise ValueError(
                f"{str(self.path)!r}: storage {key!r} should hold {numel} x {dtype.name} = "
                f"{numel * dtype.itemsize} bytes but the archive's record is {size} bytes"
            )
        raw = self.read(name)
        return np.frombuffer(raw, dtype=dtype.newbyteorder(self.byteorder)).astype(dtype)

    def load_pickle(self, name: str = "data.pkl", allow_module_records: bool = False):
        """Unpickle record ``name`` with :class:`RestrictedUnpickler`; storages are read lazily, once each."""
        cache: dict = {}

        def storage(dtype, key, numel):
            if key not in cache:
                cache[key] = self.load_storage(dtype, key, numel)
            return cache[key]

        data = self.read(name, MAX_PICKLE_BYTES)
        what = f"{str(self.path)!r} ({self.root}/{name})"
        try:
            return RestrictedUnpickler(io.BytesIO(data), storage, allow_module_records, what).load()
        except (UnsafeFileError, ValueError, FileNotFoundError):
            raise
        except Exception as exc:
            raise ValueError(f"{what}: malformed pickle ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------------------------------- writing
class _Emitter:
    """Protocol-2 pickle opcodes for None/bool/int/float/str/tuple/list/dict/OrderedDict/np.ndarray."""

    def __init__(self):
        self.out = io.BytesIO()
        self.storages: list[np.ndarray] = []
        self.out.write(b"\x80\x02")  # PROTO 2

    def w(self, b: bytes):
        self.out.write(b)

    def global_(self, module: str, name: str):
        self.w(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def emit(self, obj):
        if obj is None:
            self.w(b"N")
        elif obj is True or obj is False:
            self.w(b"\x88" if obj else b"\x89")
        elif isinstance(obj, (int, np.integer)):
            v = int(obj)
            if 0 <= v < 256:
                self.w(b"K" + struct.pack("<B", v))
            elif 0 <= v < 65536:
                self.w(b"M" + struct.pack("<H", v))
            elif -(2**31) <= v < 2**31:
                self.w(b"J" + struct.pack("<i", v))
            else:
                raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
                self.w(b"\x8a" + struct.pack("<B", len(raw)) + raw)
        elif isinstance(obj, (float, np.floating)):
            self.w(b"G" + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            raw = obj.encode("utf-8", "surrogatepass")
            self.w(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(obj, tuple):
            if len(obj) <= 3:
                for item in obj:
                    self.emit(item)
                self.w((b")", b"\x85", b"\x86", b"\x87")[len(obj)])
            else:
                self.w(b"(")
                for item in obj:
                    self.emit(item)
                self.w(b"t")
        elif isinstance(obj, list):
            self.w(b"]")
            if obj:
                self.w(b"(")
                for item in obj:
                    self.emit(item)
                self.w(b"e")
        elif isinstance(obj, dict):
            if isinstance(obj, collections.OrderedDict):
                self.global_("collections", "OrderedDict")
                self.w(b")R")
            else:
                self.w(b"}")
            if obj:
                self.w(b"(")
                for k, v in obj.items():
                    self.emit(k)
                    self.emit(v)
                self.w(b"u")
        elif isinstance(obj, np.ndarray):
            self.tensor(obj)
        else:
            raise TypeError(f"cannot write an object of type {type(obj).__name__} into a torch file")

    def tensor(self, arr: np.ndarray):
        arr = np.array(arr, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        if arr.dtype not in _DTYPE_STORAGE:
            raise TypeError(f"no torch storage type for dtype {arr.dtype}")
        key = str(len(self.storages))
        self.storages.append(arr.astype(arr.dtype.newbyteorder("<")).reshape(-1))
        stride = tuple(int(np.prod(arr.shape[i + 1 :], dtype=np.int64)) for i in range(arr.ndim))
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.w(b"(")  # args tuple
        self.w(b"(")  # persistent id
        self.emit("storage")
        self.global_("torch", _DTYPE_STORAGE[arr.dtype])
        self.emit(key)
        self.emit("cpu")
        self.emit(arr.size)
        self.w(b"tQ")  # TUPLE, BINPERSID
        self.emit(0)
        self.emit(tuple(int(s) for s in arr.shape))
        self.emit(stride)
        self.emit(False)
        self.emit(collections.OrderedDict())
        self.w(b"tR")

    def finish(self) -> bytes:
        self.w(b".")
        return self.out.getvalue()


def dumps(obj) -> tuple[bytes, list[np.ndarray]]:
    """``(data.pkl bytes, storages)`` for ``obj``; arrays become tensors on storages ``0, 1, …``.

    >>> pkl, storages = dumps({"w": np.arange(3.0)})
    >>> pkl[:2], [s.tolist() for s in storages]
    (b'\\x80\\x02', [[0.0, 1.0, 2.0]])
    """
    em = _Emitter()
    em.emit(obj)
    return em.finish(), em.storages


def _aligned_entry(zf: zipfile.ZipFile, fh, name: str, data: bytes, align: int = 64) -> None:
    """Store ``data`` uncompressed with its bytes starting at a multiple of ``align`` (torch's layout)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header = 30 + len(name.encode())
    start = fh.tell() + header + 4  # +4: the extra field's own (id, length) header
    pad = (-start) % align
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # id "FB", as torch writes it
    zf.writestr(info, data)


def write_torch_zip(obj, path, root: str = "archive") -> None:
    """Write ``obj`` as torch's zip serialisation (what ``torch.save`` writes), atomically; never overwrites."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{str(path)!r} already exists; choose another name or remove it first")
    pkl, storages = dumps(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            _aligned_entry(zf, fh, f"{root}/data.pkl", pkl)
            _aligned_entry(zf, fh, f"{root}/.format_version", b"1")
            _aligned_entry(zf, fh, f"{root}/.storage_alignment", b"64")
            _aligned_entry(zf, fh, f"{root}/byteorder", b"little")
            for i, s in enumerate(storages):
                _aligned_entry(zf, fh, f"{root}/data/{i}", s.tobytes())
            _aligned_entry(zf, fh, f"{root}/version", b"3\n")
            sid = "".join(str(b % 10) for b in os.urandom(40))
            _aligned_entry(zf, fh, f"{root}/.data/serialization_id", sid.encode())
        if path.exists():
            raise FileExistsError(f"{str(path)!r} appeared while writing; not overwritten")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
