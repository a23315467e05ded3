import os
import pickle

import numpy as np
import pytest

from mindsight.errors import DataFormatError
from mindsight.io import cache as cache_mod
from mindsight.io.cache import load_float32


def _write_atm(path, array, protocol=4):
    with open(path, "wb") as fh:
        pickle.dump({"preprocessed_eeg_data": array, "ch_names": ["a", "b"],
                     "times": np.arange(3.0)}, fh, protocol=protocol)
    return path


@pytest.fixture
def source(tmp_path):
    arr = np.random.default_rng(1).normal(size=(40, 4, 2, 50))  # 128 kB per condition block
    return _write_atm(tmp_path / "preprocessed_eeg_training.npy", arr), arr


def test_first_load_converts_in_chunks_then_memmaps(source, cache_dir, monkeypatch):
    path, arr = source
    monkeypatch.setattr(cache_mod, "CHUNK_BYTES", 5 * 4 * 2 * 50 * 8)  # 5 conditions per chunk
    calls = []
    data, extras = load_float32(path, "preprocessed_eeg_data", cache_dir,
                                on_rows=lambda done, total: calls.append((done, total)))
    assert isinstance(data, np.memmap) and data.dtype == np.float32
    np.testing.assert_allclose(data, arr.astype(np.float32))
    assert extras == {"ch_names": ["a", "b"], "times": [0.0, 1.0, 2.0]}
    assert [c[0] for c in calls] == list(range(5, 41, 5)), "conversion streams chunk by chunk"
    # second load: served from the cache without opening the source's pickle
    monkeypatch.setattr(cache_mod, "_open_source", lambda *a, **k: pytest.fail("reconverted"))
    again, _ = load_float32(path, "preprocessed_eeg_data", cache_dir)
    np.testing.assert_array_equal(again, data)


def test_changed_source_gets_a_new_entry(source, cache_dir):
    path, arr = source
    first, _ = load_float32(path, "preprocessed_eeg_data", cache_dir)
    _write_atm(path, arr + 1.0)
    os.utime(path, ns=(1, 10**18))  # a different mtime even on coarse file systems
    second, _ = load_float32(path, "preprocessed_eeg_data", cache_dir)
    np.testing.assert_allclose(second, (arr + 1.0).astype(np.float32))
    assert len(list((cache_dir / "arrays").iterdir())) == 2


def test_nan_is_reported_with_file_key_and_index(tmp_path, cache_dir):
    arr = np.zeros((6, 2, 3, 4))
    arr[4, 1, 2, 3] = np.nan
    path = _write_atm(tmp_path / "bad.npy", arr)
    with pytest.raises(DataFormatError, match=r"bad\.npy: 'preprocessed_eeg_data' holds NaN at index \(4, 1, 2, 3\)"):
        load_float32(path, "preprocessed_eeg_data", cache_dir)
    assert not list((cache_dir / "arrays").glob("*/meta.json")), "no cache entry for bad data"


def test_values_beyond_float32_are_reported(tmp_path, cache_dir):
    arr = np.zeros((3, 1, 1, 2))
    arr[1, 0, 0, 1] = 1e300
    path = _write_atm(tmp_path / "huge.npy", arr)
    with pytest.raises(DataFormatError, match="Inf"):
        load_float32(path, "preprocessed_eeg_data", cache_dir, use_cache=False)


def test_interrupted_conversion_is_redone(source, cache_dir, monkeypatch):
    path, arr = source
    real = cache_mod.iter_float32_chunks

    def dying(*a, **k):
        for i, item in enumerate(real(*a, **k)):
            if i == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(cache_mod, "CHUNK_BYTES", 8 * 4 * 2 * 50 * 8)
    monkeypatch.setattr(cache_mod, "iter_float32_chunks", dying)
    with pytest.raises(KeyboardInterrupt):
        load_float32(path, "preprocessed_eeg_data", cache_dir)
    entries = list((cache_dir / "arrays").iterdir())
    assert entries and not (entries[0] / "meta.json").exists()
    assert not (entries[0] / "data.npy").exists(), "no half-written cache file"
    monkeypatch.setattr(cache_mod, "iter_float32_chunks", real)
    data, _ = load_float32(path, "preprocessed_eeg_data", cache_dir)
    np.testing.assert_allclose(data, arr.astype(np.float32))


def test_without_cache_reads_into_memory(source, cache_dir):
    path, arr = source
    data, _ = load_float32(path, "preprocessed_eeg_data", cache_dir, use_cache=False)
    assert not isinstance(data, np.memmap)
    np.testing.assert_allclose(data, arr.astype(np.float32))
    assert not (cache_dir / "arrays").exists()


def test_float32_npy_is_mapped_in_place(tmp_path, cache_dir):
    arr = np.random.default_rng(0).normal(size=(3, 5, 2, 4, 6)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, arr)
    data, _ = load_float32(path, None, cache_dir)
    assert os.path.samefile(data.filename, path), "float32 sources are not copied"
    np.testing.assert_array_equal(data, arr)


def test_wrong_dtype_of_eeg_key(tmp_path, cache_dir):
    path = tmp_path / "x.npy"
    np.save(path, {"preprocessed_eeg_data": "oops", "times": [0]})
    with pytest.raises(DataFormatError, match="should be a numeric array"):
        load_float32(path, "preprocessed_eeg_data", cache_dir)
