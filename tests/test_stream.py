"""Live decoding on LSL (mindsight.stream): a recording replayed through mne-lsl's PlayerLSL is
cut, preprocessed and decoded online exactly as offline; problems are detected and reported once."""

from __future__ import annotations

import json
import logging
import threading
import time

import mne
import numpy as np
import pytest
import torch

from mindsight.errors import ConfigError, DataFormatError, MissingFileError
from mindsight.stream.pipeline import OnlinePipeline, offline_epochs, pipeline_for_run
from mindsight.stream.problems import Problems
from mindsight.stream.source import LiveSource, SampleBuffer
from mindsight.stream.units import unit_factor

pytestmark = pytest.mark.usefixtures("one_thread")

REPLAY_S = 4.6  # seconds of the test recording replayed (stimuli every 200 ms from 1 s on)


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """The tiny simulated dataset's raw release, preprocessed by `mindsight preprocess` (NICE/ATM
    variant, MVNN saved), and a ridge run trained on it."""
    from mindsight.config import RunConfig
    from mindsight.preprocess import VARIANTS, preprocess_subject
    from mindsight.simulate import preset, simulate
    from mindsight.train import train_run

    root, cache = tmp_path_factory.mktemp("sim"), tmp_path_factory.mktemp("sim-cache")
    simulate(root, preset("tiny", layouts=["raw"]), cache_dir=cache)
    pre = tmp_path_factory.mktemp("pre")
    preprocess_subject(root, 1, pre, VARIANTS["nice-atm"].with_overrides(reps_per_session={"train": 2, "test": 4}))
    cfg = RunConfig.from_dict({"data": {"eeg": str(pre), "images": str(root / "images"), "subjects": [1],
                                        "val_fraction": 0.2},
                               "model": {"encoder": "ridge"}, "train": {"seeds": [0]}})
    run_dir = tmp_path_factory.mktemp("run")
    train_run(cfg, run_dir, cache_dir=cache)
    raw_dir = root / "raw_data" / "sub-01" / "ses-01"
    return run_dir, cache, raw_dir, pre


def _session(live_run, name, tmp_path, markers="auto", marker_offset=0.0):
    from mindsight.stream.replay import Replay
    from mindsight.stream.session import StreamConfig, StreamSession

    run_dir, cache, raw_dir, _ = live_run
    replay = Replay(raw_dir / "raw_eeg_test.npy", name=name, duration=REPLAY_S).start()
    cfg = StreamConfig(source=name, markers=markers, timeout=1.0, outlet=None, out=str(tmp_path),
                       marker_offset=marker_offset)
    events = []

    class Collect:
        def publish(self, event):
            events.append(event)

        def close(self):
            pass

    session = StreamSession(run_dir, cfg, sinks=[Collect()], cache_dir=cache)
    finals = {}
    try:
        session.connect()
        session.decoder.on_final = lambda pred, x, emb: finals.__setitem__(pred["event"], x.copy())
        summary = session.run_loop()
    finally:
        session.close()
        replay.stop()
    return session, replay, summary, events, finals


def _offline(session, replay):
    """Every complete epoch of the replayed recording, cut by mne.Epochs, and its ranks."""
    raw = replay.raw
    events = mne.find_events(raw, stim_channel="stim", consecutive=True, verbose="error")
    events = events[events[:, 2] != 99999]
    x = offline_epochs(raw, events, session.pipeline).astype(np.float32)
    emb, _ = session.model.embed(torch.from_numpy(x), torch.full((len(x),), session.subject))
    scores = torch.nn.functional.normalize(emb, dim=1) @ session.candidates.targets.T
    target = torch.as_tensor(events[: len(x), 2] - 1)
    ranks = (scores > scores.gather(1, target[:, None])).sum(1)
    return x, ranks.numpy(), events[: len(x), 2]


def _aligned(finals, codes_on, x_off, codes_off):
    """Online epochs matched to the offline ones: the online stimuli are a run of the offline
    ones (a stream joined late misses the first), found by their codes."""
    n = min(len(finals), len(codes_off))
    first = min(finals)  # event numbers count from the first marker seen, lost ones included
    on = np.stack([finals[first + i] for i in range(n)])
    shifts = [s for s in range(len(codes_off) - n + 1) if list(codes_off[s : s + n]) == codes_on[:n]]
    assert len(shifts) == 1, (codes_on, list(codes_off), sorted(finals))
    return on, x_off[shifts[0] : shifts[0] + n], shifts[0]


def test_online_epochs_and_accuracy_equal_offline(live_run, tmp_path):
    session, replay, summary, events, finals = _session(live_run, "ms-test-stim", tmp_path)
    x_off, ranks_off, codes_off = _offline(session, replay)
    final = [e for e in events if e["type"] == "prediction" and e["final"]]
    # every complete epoch (the first may be lost if the session connected after its baseline began)
    assert len(x_off) - 1 <= len(finals) <= len(x_off) and len(finals) >= 11
    x_on, x_off, shift = _aligned(finals, [e["code"] for e in final], x_off, codes_off)
    assert x_on.shape == x_off.shape == (len(finals), 63, 250)
    np.testing.assert_allclose(x_on, x_off, rtol=1e-4, atol=1e-4 * np.abs(x_off).max())
    # live accuracy over the replay = offline single-trial accuracy on the same trials
    ranks_off = ranks_off[shift : shift + len(finals)]
    assert [e["rank"] for e in final] == ranks_off.tolist()
    acc = summary["accuracy"][summary["final_window"]]
    assert acc["top1"] == pytest.approx(float((ranks_off < 1).mean()))
    assert acc["top5"] == pytest.approx(float((ranks_off < 5).mean()))
    # growing windows before the final one, every 100 ms, each with k candidates
    per_event = [e["window"] for e in events if e["type"] == "prediction" and e["event"] == min(finals)]
    assert per_event == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert all(len(e["topk"]) == 5 for e in final)
    # the replay ended while stimuli still waited for data: stopped, lost, each reported once
    assert summary["reason"] == "the stream stopped"
    assert summary["lost"]["samples"] == 0
    assert summary["lost"]["events"] == summary["n_events"] - len(finals) > 0
    kinds = [e["kind"] for e in events if e["type"] == "problem"]
    assert sorted(kinds) == sorted(set(kinds)) and "stream-stopped" in kinds
    # the MVNN whitener is the one `mindsight preprocess` saved (training statistics)
    assert session.pipeline.whitener is not None and "mvnn.npz" in session.pipeline.origin["mvnn"]


def test_marker_stream_events_cut_the_same_epochs(live_run, tmp_path):
    # PlayerLSL stamps its markers one sample (1 ms) before their data samples: --marker-offset
    session, replay, summary, events, finals = _session(live_run, "ms-test-markers", tmp_path,
                                                        markers="ms-test-markers-annotations",
                                                        marker_offset=0.001)
    assert session.source.stim is None
    x_off, _, codes_off = _offline(session, replay)
    codes_on = [e["code"] for e in events if e["type"] == "prediction" and e["final"]]
    assert len(x_off) - 1 <= len(finals) <= len(x_off)
    x_on, x_off, _ = _aligned(finals, codes_on, x_off, codes_off)
    np.testing.assert_allclose(x_on, x_off, rtol=1e-4, atol=1e-4 * np.abs(x_off).max())


def test_stream_run_writes_json_lines_and_summary(live_run, tmp_path):
    from mindsight.stream.replay import Replay
    from mindsight.stream.session import StreamConfig, stream_run

    run_dir, cache, raw_dir, _ = live_run
    received = []

    def listen():  # other BCI software reading the outlet of predictions
        from mne_lsl.lsl import StreamInlet, resolve_streams

        found = resolve_streams(timeout=20, name="ms-test-outlet")
        inlet = StreamInlet(found[0])
        inlet.open_stream(timeout=5)
        end = time.monotonic() + 8
        while time.monotonic() < end:
            samples, _ = inlet.pull_chunk(timeout=0.2)
            received.extend(json.loads(row[0]) for row in samples)
        inlet.close_stream()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    with Replay(raw_dir / "raw_eeg_test.npy", name="ms-test-run", duration=2.6):
        summary = stream_run(run_dir, StreamConfig(source="ms-test-run", timeout=0.8, out=str(tmp_path),
                                                   outlet="ms-test-outlet", windows=[0.5]), cache_dir=cache)
    listener.join(timeout=15)
    lines = [json.loads(s) for s in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "start" and lines[-1]["type"] == "stop"
    preds = [e for e in lines if e["type"] == "prediction"]
    assert {e["window"] for e in preds} == {0.5, 1.0}
    assert all(e["latency_ms"] > 0 for e in preds)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["n_predictions"] == len(preds) == summary["n_predictions"]
    assert saved["protocol"]["pipeline"]["sfreq"] == 250.0 and "versions" in saved["protocol"]
    # the LSL outlet carried the predictions (a listener may join after the first ones)
    assert received and all(r["type"] == "prediction" for r in received)
    assert [(r["event"], r["window"]) for r in received] == [(e["event"], e["window"]) for e in preds][-len(received):]
    with pytest.raises(ConfigError, match="earlier session"):  # a session never appends to another
        stream_run(run_dir, StreamConfig(source="ms-test-run", out=str(tmp_path)), cache_dir=cache)
    with pytest.raises(ConfigError, match="no LSL stream named 'nothing-here'"):
        stream_run(run_dir, StreamConfig(source="nothing-here", connect_timeout=0.5, out=str(tmp_path / "b"),
                                         outlet=None), cache_dir=cache)


def test_pipeline_settings_come_from_training_statistics(live_run):
    from mindsight.run import Run

    run_dir, cache, raw_dir, pre = live_run
    run = Run.open(run_dir, device="cpu", cache_dir=cache)
    saved = pipeline_for_run(run, 1, 1000.0)
    assert (saved.tmin, saved.tmax, saved.sfreq, saved.n_times) == (-0.2, 1.0, 250.0, 250)
    np.testing.assert_allclose(saved.times[[0, -1]], [0.0, 0.996])
    # the whitener from the raw training recording, as the published script computes it, is
    # the one `mindsight preprocess` saved (all training repetitions were kept)
    from_raw = pipeline_for_run(run, 1, 1000.0, mvnn=str(raw_dir / "raw_eeg_training.npy"))
    np.testing.assert_allclose(from_raw.whitener, saved.whitener, rtol=1e-6, atol=1e-6 * np.abs(saved.whitener).max())
    (pre / "sub-01" / "mvnn.npz").rename(pre / "sub-01" / "mvnn.bak")
    try:
        with pytest.raises(MissingFileError, match="no whitener was saved.*--mvnn"):
            pipeline_for_run(run, 1, 1000.0)
        assert pipeline_for_run(run, 1, 1000.0, mvnn="none").whitener is None
    finally:
        (pre / "sub-01" / "mvnn.bak").rename(pre / "sub-01" / "mvnn.npz")
    with pytest.raises(DataFormatError, match="not what preprocessing official makes"):
        pipeline_for_run(run, 1, 1000.0, preprocess="official")


def test_stream_without_the_runs_channels_is_refused_naming_them():
    from mne_lsl.player import PlayerLSL

    info = mne.create_info(["Fz", "Cz", "Oz"], 250.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(0).normal(size=(3, 2500)) * 1e-6, info, verbose="error")
    player = PlayerLSL(raw, chunk_size=25, name="ms-test-channels")
    player.start()
    try:
        with pytest.raises(DataFormatError, match="lacks 2 channel.*O1, O2"):
            LiveSource("ms-test-channels", ("Oz", "O1", "O2")).connect(timeout=5)
        problems = Problems()
        src = LiveSource("ms-test-channels", ("Oz",), problems=problems).connect(timeout=5)
        src.disconnect()
        assert "Fz" in problems.first["channels"]
    finally:
        player.stop()


def _source(sfreq=100.0) -> LiveSource:
    src = LiveSource("fake", ("a", "b"), problems=Problems(), max_gap=1.0)
    src.sfreq = sfreq
    src.buffer = SampleBuffer(2, 1000)
    return src


def _push(src, values, times):
    data, ts, filled = src._check_times(np.asarray(values, dtype=float), np.asarray(times, dtype=float))
    src.buffer.append(data, ts, filled)
    src.last_ts = float(ts[-1])


def test_dropped_samples_are_filled_flagged_and_reported_once(caplog):
    src = _source()
    _push(src, np.ones((2, 5)), np.arange(5) * 0.01)
    with caplog.at_level(logging.WARNING, logger="mindsight"):
        _push(src, np.full((2, 3), 2.0), np.array([8, 9, 10]) * 0.01)  # 3 missing (5, 6, 7)
        _push(src, np.full((2, 3), 3.0), np.array([11, 12, 16]) * 0.01)  # 3 more
    assert src.buffer.n_total == 17  # sample indices stay aligned with time
    np.testing.assert_allclose(src.buffer.times[:17], np.arange(17) * 0.01)
    assert src.buffer.get(5, 8).tolist() == [[1, 1, 1], [1, 1, 1]]  # filled with the last value
    assert src.buffer.any_filled(5, 8) and not src.buffer.any_filled(0, 5)
    assert src.lost_samples == 6 and src.problems.counts["dropped-samples"] == 6
    assert len([r for r in caplog.records if "missing" in r.getMessage()]) == 1


def test_clock_jumps_are_reported_not_filled():
    src = _source()
    _push(src, np.ones((2, 3)), np.arange(3) * 0.01)
    _push(src, np.ones((2, 3)), 50 + np.arange(3) * 0.01)  # +50 s
    _push(src, np.ones((2, 3)), 10 + np.arange(3) * 0.01)  # backwards
    assert src.buffer.n_total == 9 and src.lost_samples == 0
    assert src.problems.counts["clock-jump"] == 2 and len(src.problems.first) == 1


def test_growing_window_uses_only_past_samples_and_full_epoch_equals_mne():
    rng = np.random.default_rng(0)
    pipe = OnlinePipeline(("a", "b"), 1000.0, -0.2, 1.0, 250.0, keep=np.arange(50, 300))
    raw = rng.normal(size=(2, pipe.n_raw))
    full = pipe(raw)
    assert full.shape == (2, 250)
    info = mne.create_info(["a", "b"], 1000.0, "eeg")
    ep = mne.EpochsArray(raw[None], info, tmin=-0.2, baseline=(None, 0), verbose="error").resample(250.0)
    np.testing.assert_allclose(full, ep.get_data()[0][:, 50:300], rtol=1e-10, atol=1e-12)
    part = pipe(raw[:, : 200 + 300 + 1])  # onset + 300 ms
    assert part.shape == (2, 75)  # the kept samples at 0 .. 296 ms (501 raw samples → 125 at 250 Hz)
    future = raw.copy()
    future[:, 501:] = 1e6  # what comes later cannot change a window that closed
    np.testing.assert_allclose(pipe(future[:, :501]), part)


def test_unit_factor():
    assert unit_factor(1.0, 2.0) == (1.0, None)
    factor, note = unit_factor(3e-6, 2.5)  # volts against microvolts
    assert factor == 1e6 and "1e+06 times smaller" in note
    assert unit_factor(2e3, 1.0)[0] == 1e-3
    with pytest.raises(DataFormatError, match="not a unit prefix"):
        unit_factor(1.0, 100.0)
    with pytest.raises(DataFormatError, match="flat"):
        unit_factor(0.0, 1.0)


def test_replay_reads_the_raw_release_and_refuses_a_missing_file(live_run, tmp_path):
    from mindsight.stream.replay import read_raw

    _, _, raw_dir, _ = live_run
    raw = read_raw(raw_dir.parent.parent.parent)  # a dataset folder: its first raw test recording
    assert raw.info["sfreq"] == 1000.0 and "stim" in raw.ch_names
    codes = {int(d) for d in raw.annotations.description}
    assert 99999 in codes and min(codes) == 1
    onsets = raw.annotations.onset[:2]
    np.testing.assert_allclose(onsets, [1.0, 1.2])
    with pytest.raises(MissingFileError, match="no such recording"):
        read_raw(tmp_path / "nothing.fif")
    # a FIF file without annotations: markers from its stim channel
    info = mne.create_info(["Oz", "STI 014"], 250.0, ["eeg", "stim"])
    data = np.zeros((2, 1000))
    data[1, [250, 500]] = [3, 7]
    mne.io.RawArray(data, info, verbose="error").save(tmp_path / "rec_raw.fif", verbose="error")
    fif = read_raw(tmp_path / "rec_raw.fif")
    assert list(fif.annotations.description) == ["3", "7"]
    np.testing.assert_allclose(fif.annotations.onset, [1.0, 2.0])


def test_an_image_folder_as_candidates_is_embedded_like_the_test_images(live_run, tmp_path):
    import shutil

    from mindsight.run import Run
    from mindsight.stream.candidates import Candidates

    run_dir, cache, _, _ = live_run
    run = Run.open(run_dir, device="cpu", cache_dir=cache)
    fold = run.folds[0]
    test = Candidates.from_run(run, fold)
    for i in (0, 3):
        shutil.copy(test.paths[i], tmp_path / f"{i}_{test.paths[i].name}")
    folder = Candidates.from_folder(run, fold, tmp_path)
    assert len(folder) == 2 and folder.codes == {}
    torch.testing.assert_close(folder.targets, test.targets[[0, 3]], rtol=1e-4, atol=1e-5)
    with pytest.raises(MissingFileError, match="no images"):
        Candidates.from_folder(run, fold, tmp_path / "empty")


def test_live_reconstruction_runs_in_a_background_process(live_run, tmp_path):
    import time

    from mindsight.generate.prior import PriorConfig
    from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run
    from mindsight.stream.reconstruct import LiveReconstructor, cached_fits

    run_dir, cache, _, _ = live_run
    fold_dir = next((run_dir / "folds").iterdir())
    with pytest.raises(MissingFileError, match="mindsight reconstruct"):
        cached_fits(fold_dir)
    reconstruct_run(run_dir, ReconstructConfig(max_images=2, steps=2, prior_config=PriorConfig(epochs=2)),
                    out=tmp_path / "offline", cache_dir=cache, score=False)
    rec = LiveReconstructor(run_dir, fold_dir.name, 1, steps=2, cache_dir=cache, clock=time.monotonic)
    x = np.random.default_rng(0).normal(size=(63, 250)).astype(np.float32)
    try:
        for event in range(3):  # never waits: a newer epoch replaces the one still waiting
            rec.submit({"event": event, "window": 1.0}, x)
        got, deadline = [], time.monotonic() + 120
        while not got and time.monotonic() < deadline:
            got += rec.poll()
            time.sleep(0.05)
    finally:
        rec.close()
    assert got and got[0]["png"][:8] == b"\x89PNG\r\n\x1a\n" and got[0]["latency_ms"] > 0
    assert rec.skipped >= 1 and got[0]["event"] in (0, 2)


def test_a_stimulus_before_the_first_received_sample_is_counted_lost_not_cut():
    import types

    from mindsight.stream.candidates import Candidates
    from mindsight.stream.decoder import StreamDecoder
    from mindsight.stream.source import Event

    model = torch.nn.Linear(1, 1)
    model.scaler = types.SimpleNamespace(neutral=lambda: 0.0)
    pipe = OnlinePipeline(("a",), 1000.0, -0.2, 1.0, 250.0, keep=np.arange(50, 300))
    cands = Candidates(["x", "y"], [], torch.eye(2), "two", {1: 0, 2: 1})
    dec = StreamDecoder(model, pipe, cands, 1, [0.5], problems=Problems())
    buf = SampleBuffer(2, 5000)
    buf.append(np.zeros((2, 400)), np.arange(400) / 1000.0)
    dec.add([Event(150, 0.15, 1), Event(300, 0.3, 2)])  # baselines from -50 and 100
    assert dec.ready(buf) == [] and dec.lost_events == 1 and dec.problems.counts["late-buffer"] == 1
    assert [p.event.code for p in dec.pending] == [2]
