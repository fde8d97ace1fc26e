"""Hostile and broken model files: clear errors, nothing executed; and the torch-free checkpoint writer."""

import collections
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nequip_np.interop.export_ckpt import checkpoint_dict, export_checkpoint, official_state_dict
from nequip_np.interop.model_file import load_any_model
from nequip_np.interop.torch_zip import TorchZip, UnsafeFileError, dumps, write_torch_zip

OFFICIAL = Path(__file__).parent / "fixtures" / "official"
NEQUIP = Path(__file__).parent / "fixtures" / "nequip"
needs_official = pytest.mark.skipif(not (OFFICIAL / "perl.ckpt").exists(), reason="official fixtures missing")


def _zip(path, entries: dict):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


def test_pickle_calling_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": _System(f"touch {marker}"), "hyper_parameters": {}}, protocol=2)
    path = _zip(tmp_path / "evil.ckpt", {"archive/data.pkl": payload, "archive/byteorder": b"little"})
    with pytest.raises(UnsafeFileError, match=r"refusing to load global (posix|os|nt)\.system"):
        load_any_model(path)
    assert not marker.exists()


def test_package_pickle_cannot_call_builtins_and_module_classes_stay_inert(tmp_path):
    marker = tmp_path / "pwned"
    evil = (
        b"\x80\x02cbuiltins\nexec\nX"
        + len(f"open({str(marker)!r},'w')").to_bytes(4, "little")
        + f"open({str(marker)!r},'w')".encode()
        + b"\x85R."
    )
    entries = {"p/model/eager_model.pkl": evil, "p/model/config.yaml": b"training_module: {model: {}}\n"}
    with pytest.raises(UnsafeFileError, match="builtins.exec"):
        TorchZip(_zip(tmp_path / "evil.nequip.zip", entries)).load_pickle(
            "model/eager_model.pkl", allow_module_records=True
        )
    # a nequip-namespace class is only recorded: calling it runs no code of the real class
    inert = b"\x80\x02cnequip.nn.graph_model\nGraphModel\nX\x03\x00\x00\x00abc\x85R."
    with TorchZip(_zip(tmp_path / "inert.nequip.zip", {"p/model/eager_model.pkl": inert})) as z:
        rec = z.load_pickle("model/eager_model.pkl", allow_module_records=True)
    assert rec.cls == "nequip.nn.graph_model.GraphModel" and rec.args == ("abc",)
    assert not marker.exists()
    with TorchZip(_zip(tmp_path / "inert.ckpt", {"archive/data.pkl": inert})) as z:
        with pytest.raises(UnsafeFileError, match="GraphModel"):  # checkpoints: no records at all
            z.load_pickle("data.pkl")


@needs_official
def test_truncated_zip_is_a_clear_error(tmp_path):
    raw = (OFFICIAL / "perl.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cannot be read as one: the file is truncated or corrupt"):
        load_any_model(tmp_path / "cut.ckpt")


def test_wrong_storage_size_and_out_of_range_views_are_clear_errors(tmp_path):
    pkl, storages = dumps({"w": np.arange(6.0).reshape(2, 3)})
    good = {"archive/data.pkl": pkl, "archive/byteorder": b"little"}
    short = _zip(tmp_path / "short.ckpt", {**good, "archive/data/0": storages[0].tobytes()[:-8]})
    with pytest.raises(ValueError, match=r"storage '0' should hold 6 x float64 = 48 bytes .* 40 bytes"):
        TorchZip(short).load_pickle()
    ok = _zip(tmp_path / "ok.ckpt", {**good, "archive/data/0": storages[0].tobytes()})
    np.testing.assert_array_equal(TorchZip(ok).load_pickle()["w"], np.arange(6.0).reshape(2, 3))
    wide = pkl.replace(b"K\x02K\x03\x86", b"K\x02K\x09\x86")  # shape (2, 9) over 6 elements
    assert wide != pkl
    bad = _zip(tmp_path / "view.ckpt", {**good, "archive/data.pkl": wide, "archive/data/0": storages[0].tobytes()})
    with pytest.raises(ValueError, match="beyond its storage of 6 elements"):
        TorchZip(bad).load_pickle()


def test_unknown_model_class_and_compiled_files_are_named(tmp_path):
    model = load_any_model(NEQUIP / "model_01.npz")
    ckpt = checkpoint_dict(model)
    ckpt["hyper_parameters"]["model"] = {"_target_": "allegro.model.AllegroModel", "r_max": 4.0}
    write_torch_zip(ckpt, tmp_path / "allegro.ckpt")
    with pytest.raises(ValueError, match=r"allegro\.model\.AllegroModel model; nequip-np implements only"):
        load_any_model(tmp_path / "allegro.ckpt")
    for name in ("m.nequip.pt2", "m.nequip.pth"):
        (tmp_path / name).write_bytes(b"\0" * 16)
        with pytest.raises(ValueError, match=r"compiled nequip model .*\(\.ckpt\) or the package"):
            load_any_model(tmp_path / name)


@pytest.mark.parametrize("fixture", ["model_03", "model_07", "model_f32"])
def test_export_roundtrip_is_exact(tmp_path, fixture):
    model = load_any_model(NEQUIP / f"{fixture}.npz")
    export_checkpoint(model, tmp_path / "m.ckpt")
    back = load_any_model(tmp_path / "m.ckpt")
    assert back.config.to_dict() == {**model.config.to_dict(), "seed": back.config.seed}
    for name, value in model.params.items():
        np.testing.assert_array_equal(back.params[name], value, err_msg=name)
        assert back.params[name].dtype == value.dtype
    with pytest.raises(FileExistsError, match="already exists"):
        export_checkpoint(model, tmp_path / "m.ckpt")


@needs_official
@pytest.mark.parametrize("name", ["perl", "edgecut", "zbl", "f32", "trainable"])
def test_exported_state_dict_has_exactly_the_official_entries(name):
    """Lightning loads state dicts strictly: every key, shape, dtype and bookkeeping value must match."""
    with TorchZip(OFFICIAL / f"{name}.ckpt") as z:
        official = z.load_pickle()["state_dict"]
    official = {
        k[len("model.sole_model.") :]: np.asarray(v) for k, v in official.items() if k.startswith("model.sole_model.")
    }
    model = load_any_model(OFFICIAL / f"{name}.ckpt")  # EMA weights; the state_dict holds the live ones
    ours = official_state_dict(model)
    assert sorted(ours) == sorted(official)
    buffers = ("bias", "_rmax_recip", "atomic_numbers", "_qqr2exesquare") + (
        () if model.config.bessel_trainable else ("bessel_weights",)
    )
    for key, ref in official.items():
        assert ours[key].shape == ref.shape and ours[key].dtype == ref.dtype, key
        if "mask" in key or "_w3j_" in key or key.endswith(buffers):
            np.testing.assert_allclose(ours[key], ref, rtol=1e-15, atol=1e-15, err_msg=key)


def test_written_archive_layout_is_torchs(tmp_path):
    write_torch_zip({"a": np.ones(3, np.float32), "b": collections.OrderedDict(x=1)}, tmp_path / "t.ckpt")
    with zipfile.ZipFile(tmp_path / "t.ckpt") as z:
        names = z.namelist()
        assert names[0] == "archive/data.pkl" and "archive/version" in names and "archive/byteorder" in names
        assert "archive/.data/serialization_id" in names and z.read("archive/byteorder") == b"little"
        info = z.getinfo("archive/data/0")
        with open(tmp_path / "t.ckpt", "rb") as fh:
            fh.seek(info.header_offset + 26)
            n, m = np.frombuffer(fh.read(4), "<u2")
        assert (info.header_offset + 30 + n + m) % 64 == 0  # storages 64-byte aligned, as torch writes
    back = TorchZip(tmp_path / "t.ckpt").load_pickle()
    assert back["a"].dtype == np.float32 and back["b"] == {"x": 1} and isinstance(back["b"], collections.OrderedDict)
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("path", sorted(NEQUIP.glob("model_*.npz")), ids=lambda p: p.stem)
def test_exported_state_dict_matches_the_official_state_dicts_of_the_npz_fixtures(path):
    """The 11 architectures of tests/fixtures/nequip carry official state_dicts: keys, shapes, dtypes,
    output masks and e3nn's Wigner-3j constants must all be reproduced."""
    from nequip_np.interop import load_nequip_npz

    with np.load(path) as data:
        official = {k[len("state/") :]: data[k] for k in data.files if k.startswith("state/")}
    ours = official_state_dict(load_nequip_npz(path))
    assert sorted(ours) == sorted(official)
    for key, ref in official.items():
        assert ours[key].shape == ref.shape and ours[key].dtype == ref.dtype, key
        np.testing.assert_allclose(ours[key], ref, rtol=1e-15, atol=1e-15, err_msg=key)


@needs_official
def test_finetuned_file_without_its_parent_names_the_missing_file(tmp_path):
    shutil.copy(OFFICIAL / "finetuned.ckpt", tmp_path / "finetuned.ckpt")
    with pytest.raises(FileNotFoundError, match=r"was built from '.*perl\.ckpt' \(ModelFromCheckpoint"):
        load_any_model(tmp_path / "finetuned.ckpt")
    shutil.copy(OFFICIAL / "perl.ckpt", tmp_path / "perl.ckpt")  # next to it: found
    assert load_any_model(tmp_path / "finetuned.ckpt").config.num_features == [6, 4, 2]
