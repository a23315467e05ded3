import numpy as np
import pytest

from mindsight.errors import DataFormatError, LeakageError
from mindsight.recording import Recording, Trials, check_disjoint_concepts, check_same_channels


def make(n_img=20, n_rep=4, n_ch=3, n_t=10, partition="train", concept_names=None, seed=0, subject=1):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_img * n_rep, n_ch, n_t)).astype(np.float32)
    image = np.repeat(np.arange(n_img), n_rep)
    trials = Trials.build(image, image // 2, subject, repetition=np.tile(np.arange(n_rep), n_img))
    return Recording(data, [f"C{i}" for i in range(n_ch)], 100.0, np.arange(n_t) / 100 - 0.02,
                     trials, partition, concept_names, {"source": f"mem-{partition}"})


def test_metadata_and_repr():
    rec = make()
    assert (rec.n_trials, rec.n_chans, rec.n_times) == (80, 3, 10)
    assert rec.n_images == 20 and rec.n_concepts == 10 and rec.subjects == [1]
    assert "80 trials × 3 ch × 10 times" in repr(rec)


@pytest.mark.parametrize("bad", [
    dict(data=np.zeros((2, 3), np.float32)),
    dict(data=np.zeros((80, 3, 10), np.float64)),
    dict(ch_names=("a", "b")),
    dict(ch_names=("a", "a", "b")),
    dict(times=np.arange(9)),
    dict(partition="validation"),
])
def test_inconsistent_metadata_is_refused(bad):
    rec = make()
    fields = dict(data=rec.data, ch_names=rec.ch_names, sfreq=100.0, times=rec.times,
                  trials=rec.trials, partition="train")
    fields.update(bad)
    with pytest.raises(DataFormatError):
        Recording(**fields)


def test_pick_crop_select():
    rec = make()
    picked = rec.pick(["C2", "C0"])
    np.testing.assert_array_equal(picked.data, rec.data[:, [2, 0]])
    assert picked.ch_names == ("C2", "C0")
    with pytest.raises(DataFormatError, match=r"\['C9'\] not in this recording"):
        rec.pick(["C9"])
    cropped = rec.crop(0.0, 0.05)
    assert cropped.n_times == 6 and cropped.tmin == pytest.approx(0.0)
    np.testing.assert_array_equal(cropped.data, rec.data[:, :, 2:8])
    with pytest.raises(DataFormatError, match="not inside the epoch"):
        rec.crop(0.0, 0.5)
    with pytest.raises(DataFormatError, match="not inside the epoch"):
        rec.crop(-0.5, 0.0)
    one = rec[-1]
    assert one.n_trials == 1 and one.trials.image[0] == 19
    np.testing.assert_array_equal(one.data[0], rec.data[-1])
    with pytest.raises(IndexError, match="trial 80 out of range for 80 trials"):
        rec[80]
    sub = rec[rec.trials.repetition == 0]
    assert sub.n_trials == 20 and set(sub.trials.repetition) == {0}
    assert rec.select_repetitions([1, 3]).n_trials == 40


def test_average_repetitions_matches_numpy_and_handles_shuffled_order():
    rec = make()
    perm = np.random.default_rng(3).permutation(rec.n_trials)
    shuffled = rec[perm]
    avg = shuffled.average_repetitions(chunk_trials=7)  # several chunks
    expected = rec.data.reshape(20, 4, 3, 10).mean(axis=1)
    order = np.argsort(avg.trials.image)
    np.testing.assert_allclose(avg.data[order], expected, rtol=1e-5, atol=1e-6)
    assert set(avg.trials.n_averaged) == {4} and set(avg.trials.repetition) == {-1}
    first2 = rec.average_repetitions(n=2)
    np.testing.assert_allclose(first2.data, rec.data.reshape(20, 4, 3, 10)[:, :2].mean(1), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataFormatError, match="only 4"):
        rec.average_repetitions(n=5)


def test_validation_split_holds_out_whole_training_concepts():
    rec = make(n_img=40)
    train, val = rec.split_validation(fraction=0.25, seed=7)
    assert set(train.trials.concept).isdisjoint(val.trials.concept)
    assert len(set(val.trials.concept)) == 5 and train.n_trials + val.n_trials == rec.n_trials
    again = rec.split_validation(fraction=0.25, seed=7)[1]
    np.testing.assert_array_equal(again.trials.concept, val.trials.concept)
    other = rec.split_validation(fraction=0.25, seed=8)[1]
    assert set(other.trials.concept) != set(val.trials.concept)
    with pytest.raises(LeakageError, match="training partition"):
        make(partition="test").split_validation()


def test_concatenate_and_channel_checks():
    a, b = make(subject=1), make(subject=2, seed=1)
    both = Recording.concatenate([a, b])
    assert both.n_trials == 160 and both.subjects == [1, 2]
    c = a.pick(["C1", "C0", "C2"])
    with pytest.raises(DataFormatError, match="ch_names differ"):
        Recording.concatenate([a, c])
    with pytest.raises(DataFormatError, match="different order"):
        check_same_channels(a, c)


def test_disjoint_concepts_guard():
    train = make(concept_names=[f"c{i}" for i in range(10)])
    test = make(n_img=2, partition="test", concept_names=["c3", "zebra"])
    with pytest.raises(LeakageError, match="c3"):
        check_disjoint_concepts(train, test)
    check_disjoint_concepts(train, make(n_img=2, partition="test", concept_names=["yak", "zebra"]))


def test_to_epochs_carries_metadata():
    rec = make(n_img=3, n_ch=3)
    rec = Recording(rec.data, ["Oz", "Pz", "Cz"], rec.sfreq, rec.times, rec.trials, "train")
    epochs = rec.to_epochs()
    assert len(epochs) == rec.n_trials and epochs.ch_names == ["Oz", "Pz", "Cz"]
    assert list(epochs.metadata["image"]) == list(rec.trials.image)
    np.testing.assert_allclose(epochs.get_data(), rec.data, rtol=1e-6)


def test_analysis_windows_known_answers_and_errors():
    import numpy as np
    import pytest

    from mindsight.analysis import make_windows
    from mindsight.errors import DataFormatError

    times = np.arange(-0.2, 0.8, 0.01)
    sliding = make_windows(times, "sliding", 0.1, 0.05)
    assert sliding[0] == (-0.2, -0.1) and sliding[-1][1] <= 0.79 + 1e-9
    assert all(abs((e - s) - 0.1) < 1e-9 for s, e in sliding)
    growing = make_windows(times, "growing", 0.1, 0.25)
    assert growing == [(0.0, 0.25), (0.0, 0.5), (0.0, 0.75)]
    with pytest.raises(DataFormatError, match="not inside the epoch"):
        make_windows(times, "sliding", tmin=-0.5)
    with pytest.raises(DataFormatError, match="does not fit"):
        make_windows(times, "sliding", length=2.0)
    with pytest.raises(DataFormatError, match="sliding"):
        make_windows(times, "diagonal")


def test_to_epochs_types_channels_by_name():
    import mne

    from mindsight.sensors import channel_types, ctf_271

    assert channel_types(["MLO11-4408", "MZC01", "Oz", "E7"]) == ["mag", "mag", "eeg", "eeg"]
    base = make(n_img=2, n_rep=1, n_ch=4)
    meg_names = [f"{n}-4408" for n in ctf_271()[:4]]
    meg = Recording(base.data, meg_names, base.sfreq, base.times, base.trials, "train").to_epochs()
    assert meg.get_channel_types() == ["mag"] * 4
    pos = np.array([ch["loc"][:3] for ch in meg.info["chs"]])
    assert np.all(np.isfinite(pos)) and np.all(np.linalg.norm(pos, axis=1) > 0.05)  # on the helmet
    assert len(mne.pick_types(meg.info, meg="mag")) == 4
    eeg = Recording(base.data, ["Oz", "Pz", "Cz", "E7"], base.sfreq, base.times, base.trials,
                    "train").to_epochs()
    assert eeg.get_channel_types() == ["eeg"] * 4
    eeg_pos = np.array([ch["loc"][:3] for ch in eeg.info["chs"]])
    assert np.all(np.isfinite(eeg_pos[:3])) and np.all(np.abs(eeg_pos[:3]).sum(1) > 0)  # 10-05
    # a MEG name the CTF-275 layout lacks still gets its type, without a position
    odd = Recording(base.data, meg_names[:3] + ["MLO99"], base.sfreq, base.times, base.trials,
                    "train").to_epochs()
    assert odd.get_channel_types() == ["mag"] * 4


def test_neuroscan_cerebellar_electrodes_take_the_inion_row_positions():
    """EEG-ImageNet's CB1/CB2 have no 10-05 name: they take I1/I2's positions and the occipital
    region, so spatial maps and position-based encoders work on its 62 channels."""
    import numpy as np

    from mindsight.sensors import region_of, sensor_positions

    np.testing.assert_array_equal(sensor_positions(["CB1", "CB2"]), sensor_positions(["I1", "I2"]))
    assert region_of("CB1") == region_of("CB2") == "occipital"
