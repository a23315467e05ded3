"""The one rule for a ``times`` that disagrees with the data (mindsight.io.timeaxis)."""

import numpy as np
import pytest

from mindsight.errors import DataFormatError
from mindsight.io.timeaxis import epoch_times

NICE_TIMES = np.round(np.arange(-50, 250) / 250.0, 4)  # 300 values, -0.2..0.996 s


def test_equal_lengths_are_used_as_they_are():
    times = np.arange(-20, 80) / 100.0
    np.testing.assert_array_equal(epoch_times(times, 100, "f.npy"), times)


def test_the_nice_atm_post_stimulus_tail_is_accepted():
    out = epoch_times(NICE_TIMES, 250, "f.npy")
    assert len(out) == 250 and out[0] == 0.0 and out[-1] == pytest.approx(0.996)
    # within half a sample of 0 s (0.25 of a 4 ms sample here) still counts as starting at 0
    np.testing.assert_allclose(epoch_times(NICE_TIMES + 0.001, 250, "f.npy")[0], 0.001)


@pytest.mark.parametrize("n_times", [100, 249, 251])
def test_a_longer_times_whose_tail_does_not_start_at_zero_is_refused(n_times):
    with pytest.raises(DataFormatError) as exc:
        epoch_times(NICE_TIMES, n_times, "sub-01/preprocessed_eeg_training.npy")
    msg = str(exc.value)
    assert msg.startswith("sub-01/preprocessed_eeg_training.npy: 'times' has 300 values")
    assert "-0.200…0.996 s" in msg and f"the data have {n_times} samples" in msg
    assert "post-stimulus tail starting at 0 s" in msg and "re-export" in msg


def test_a_tail_more_than_half_a_sample_from_zero_is_refused():
    with pytest.raises(DataFormatError, match="starting at 0 s"):
        epoch_times(NICE_TIMES + 0.0025, 250, "f.npy")  # 0.6 of a sample


def test_fewer_times_than_samples_is_refused():
    with pytest.raises(DataFormatError, match=r"f\.npy: 'times' has 50 values .* 100 samples"):
        epoch_times(np.arange(50) / 100.0, 100, "f.npy")
