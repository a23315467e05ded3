import pickle

import numpy as np
import pytest

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.containers import (
    read_dict,
    read_npy,
    read_pickled,
    sniff,
    write_npy_dict,
    write_pickle_dict,
)


@pytest.fixture
def content():
    rng = np.random.default_rng(0)
    return {
        "preprocessed_eeg_data": rng.normal(size=(60, 4, 17, 100)),  # 1.6 MB: stays on disk
        "ch_names": ["Pz", "P3", "Oz"],
        "times": np.linspace(-0.2, 0.79, 100),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_raw_pickle_every_protocol(tmp_path, content, protocol):
    path = tmp_path / "preprocessed_eeg_training.npy"
    with open(path, "wb") as fh:
        pickle.dump(content, fh, protocol=protocol)
    assert sniff(path) == "pickle"
    out = read_dict(path)
    np.testing.assert_array_equal(out["preprocessed_eeg_data"], content["preprocessed_eeg_data"])
    np.testing.assert_array_equal(out["times"], content["times"])
    assert out["ch_names"] == content["ch_names"]


def test_npy_dict_container_is_lazy(tmp_path, content):
    path = tmp_path / "x.npy"
    np.save(path, content)
    assert sniff(path) == "npy"
    out = read_dict(path)
    big = out["preprocessed_eeg_data"]
    assert isinstance(big, np.memmap), "large arrays must stay on disk until touched"
    assert not big.flags.writeable
    np.testing.assert_array_equal(big, content["preprocessed_eeg_data"])
    assert not isinstance(out["times"], np.memmap)  # small arrays are read normally


def test_fortran_order_and_plain_npy(tmp_path, content):
    path = tmp_path / "f.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"x": np.asfortranarray(content["preprocessed_eeg_data"])}, fh, protocol=4)
    np.testing.assert_array_equal(read_dict(path)["x"], content["preprocessed_eeg_data"])
    plain = tmp_path / "plain.npy"
    np.save(plain, np.arange(6.0).reshape(2, 3))
    assert isinstance(read_pickled(plain), np.memmap)


def test_missing_key_names_the_keys_present(tmp_path, content):
    path = tmp_path / "x.npy"
    np.save(path, {"eeg": 1, "times": 2})
    with pytest.raises(DataFormatError, match=r"missing key\(s\) 'preprocessed_eeg_data'.*'eeg', 'times'"):
        read_dict(path, required=("preprocessed_eeg_data",))


def test_not_a_dict(tmp_path):
    path = tmp_path / "x.npy"
    with open(path, "wb") as fh:
        pickle.dump([1, 2], fh)
    with pytest.raises(DataFormatError, match="expected a dict"):
        read_dict(path)


@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_files_are_reported(tmp_path, content, keep):
    full = tmp_path / "full.npy"
    with open(full, "wb") as fh:
        pickle.dump(content, fh, protocol=4)
    data = full.read_bytes()
    cut = tmp_path / "cut.npy"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataFormatError, match=r"cut\.npy.*truncated"):
        read_dict(cut)


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"hello world, not an array")
    with pytest.raises(DataFormatError, match="junk.npy"):
        read_dict(junk)
    with pytest.raises(MissingFileError, match="nope.npy"):
        read_dict(tmp_path / "nope.npy")
    bad_npy = tmp_path / "bad.npy"
    np.save(bad_npy, np.zeros((1000, 100)))
    bad_npy.write_bytes(bad_npy.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match="bad.npy"):
        read_npy(bad_npy)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo should-not-run",))


def test_code_in_pickles_is_refused(tmp_path):
    path = tmp_path / "evil.npy"
    with open(path, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(DataFormatError, match="refusing to unpickle"):
        read_dict(path)


def test_writers_round_trip_with_plain_numpy(tmp_path, content):
    a = write_npy_dict(tmp_path / "a.npy", content)
    b = write_pickle_dict(tmp_path / "b.npy", content)
    ref_a = np.load(a, allow_pickle=True).item()
    ref_b = np.load(b, allow_pickle=True)  # np.load reads raw pickles too, as ATM's code does
    for ref in (ref_a, ref_b):
        np.testing.assert_array_equal(ref["preprocessed_eeg_data"], content["preprocessed_eeg_data"])
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file may be left behind"


def test_pickles_written_by_numpy_1(tmp_path, content):
    """The public releases were pickled by numpy 1.x, which names ``numpy.core.multiarray``."""
    raw = pickle.dumps({**content, "sfreq": np.float64(1000.0)}, protocol=3)  # no frames: safe to edit
    new, old = b"numpy._core.multiarray", b"numpy.core.multiarray"
    assert new in raw
    raw = raw.replace(b"c" + new + b"\n", b"c" + old + b"\n")  # GLOBAL opcodes: 'c' module '\n' name
    assert new not in raw and old in raw
    path = tmp_path / "numpy1.npy"
    path.write_bytes(raw)
    out = read_dict(path)
    assert isinstance(out["preprocessed_eeg_data"], np.memmap)
    np.testing.assert_array_equal(out["preprocessed_eeg_data"], content["preprocessed_eeg_data"])
    assert out["sfreq"] == 1000.0


def test_torch_checkpoints_may_carry_their_training_arguments_but_not_code(tmp_path):
    """Training scripts (LaBraM's among them) save an argparse.Namespace next to the weights:
    it is read; any other class in the same file is still refused."""
    import argparse

    import torch

    from mindsight.io.tensors import read_torch

    ok = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=5e-4), "epoch": 3}, ok)
    obj = read_torch(ok)
    assert obj["args"].lr == 5e-4 and torch.equal(obj["model"]["w"], torch.ones(2))
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"w": torch.ones(2)}, "x": _Evil()}, bad)
    with pytest.raises(DataFormatError, match="refusing to unpickle"):
        read_torch(bad)
