"""Live brain data and stimulus markers from Lab Streaming Layer, through mne-lsl.

:class:`LiveSource` connects an ``mne_lsl.stream.StreamLSL`` (mne-lsl's ring buffer, filled by
its own acquisition thread) and copies every new sample, once, into a :class:`SampleBuffer`
indexed by sample number since the connection, so an epoch is cut by sample indices as
``mne.Epochs`` cuts it offline. Timestamps are checked on the way in: missing samples are
filled (and flagged), jumps of the clock and a stream that stops are reported.

Stimulus onsets come from a stim channel of the same stream (:class:`StimChannelEvents`, exact
sample) or from a separate LSL marker stream (:class:`MarkerStreamEvents`, read with mne-lsl's
``StreamInlet``; each marker lands on the sample nearest its timestamp).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mindsight.errors import ConfigError, DataFormatError, MissingFileError
from mindsight.stream.problems import Problems

__all__ = ["Event", "LiveSource", "MarkerStreamEvents", "SampleBuffer", "StimChannelEvents"]


@dataclass
class Event:
    """One stimulus: its onset sample (index since the connection), LSL time and code."""

    sample: int
    time: float
    code: int
    label: str = ""


class SampleBuffer:
    """The last ``capacity`` samples (channels × samples) with their timestamps, addressed by
    global sample index (0 = the first sample received)."""

    def __init__(self, n_chans: int, capacity: int) -> None:
        self.data = np.zeros((n_chans, capacity))
        self.times = np.zeros(capacity)
        self.filled = np.zeros(capacity, dtype=bool)  # samples that were missing and filled in
        self.capacity = capacity
        self.n_total = 0

    @property
    def first(self) -> int:
        """Index of the oldest sample still held."""
        return max(0, self.n_total - self.capacity)

    def append(self, x: np.ndarray, ts: np.ndarray, filled: np.ndarray | None = None) -> None:
        n = x.shape[1]
        if n > self.capacity:
            x, ts = x[:, -self.capacity :], ts[-self.capacity :]
            filled = None if filled is None else filled[-self.capacity :]
            self.n_total += n - self.capacity
            n = self.capacity
        idx = (self.n_total + np.arange(n)) % self.capacity
        self.data[:, idx] = x
        self.times[idx] = ts
        self.filled[idx] = False if filled is None else filled
        self.n_total += n

    def _idx(self, start: int, stop: int) -> np.ndarray:
        if start < self.first or stop > self.n_total:
            raise IndexError(f"samples {start}..{stop} not held (buffer holds {self.first}..{self.n_total})")
        return np.arange(start, stop) % self.capacity

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop - 1`` (channels × samples)."""
        return self.data[:, self._idx(start, stop)]

    def any_filled(self, start: int, stop: int) -> bool:
        return bool(self.filled[self._idx(start, stop)].any())

    def time_of(self, index: int) -> float:
        return float(self.times[self._idx(index, index + 1)][0])

    def nearest(self, t: float) -> int | None:
        """The held sample whose timestamp is nearest ``t`` (None when ``t`` is outside them by
        more than a sample)."""
        if self.n_total == 0:
            return None
        idx = self._idx(self.first, self.n_total)
        times = self.times[idx]
        k = int(np.argmin(np.abs(times - t)))
        step = (times[-1] - times[0]) / max(len(times) - 1, 1) if len(times) > 1 else 0.0
        if abs(times[k] - t) > 1.5 * step + 1e-6:
            return None
        return self.first + k


class LiveSource:
    """A regularly sampled LSL stream, read through ``mne_lsl.stream.StreamLSL``.

    ``channels`` are the channels the pipeline needs, in its order (a missing one is an
    error naming it); ``stim`` the stim channel to keep beside them (None: none; with
    ``stim_optional`` a stream without it is read without one).
    """

    def __init__(self, name: str, channels: tuple[str, ...], *, stim: str | None = None,
                 buffer_seconds: float = 10.0, max_gap: float = 1.0, problems: Problems | None = None,
                 source_id: str | None = None, stim_optional: bool = False) -> None:
        self.name, self.channels, self.stim = name, tuple(channels), stim
        self.stim_optional = stim_optional
        self.buffer_seconds, self.max_gap = buffer_seconds, max_gap
        self.problems = problems or Problems()
        self.source_id = source_id
        self.stream = None
        self.last_ts: float | None = None
        self.last_arrival = time.monotonic()
        self.lost_samples = 0

    def connect(self, timeout: float = 10.0) -> LiveSource:
        from mne_lsl.stream import StreamLSL

        stream = StreamLSL(bufsize=2.0, name=self.name, source_id=self.source_id)
        try:
            stream.connect(processing_flags=("clocksync",), timeout=timeout)
        except RuntimeError as exc:
            raise MissingFileError(f"no LSL stream named {self.name!r} answered within {timeout:g} s "
                                   f"({exc}); start it (or `mindsight replay FILE`) and check --source") from None
        if not stream.info["sfreq"] > 0:
            stream.disconnect()
            raise DataFormatError(f"LSL stream {self.name!r} is irregularly sampled; brain data need a "
                                  "regular rate (pass the marker stream with --markers instead)")
        names = list(stream.ch_names)
        missing = [c for c in self.channels if c not in names]
        if missing:
            stream.disconnect()
            raise DataFormatError(
                f"LSL stream {self.name!r} lacks {len(missing)} channel(s) the run was trained on: "
                f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''} (the stream has "
                f"{len(names)}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}); decode with a run "
                "trained on the channels this amplifier records")
        if self.stim is not None and self.stim not in names:
            if not self.stim_optional:
                stream.disconnect()
                raise ConfigError(f"LSL stream {self.name!r} has no stim channel {self.stim!r}; pass "
                                  "--markers NAME for a separate marker stream")
            self.stim = None
        extra = [c for c in names if c not in self.channels and c != self.stim]
        if extra:
            self.problems.report("channels", f"stream {self.name!r} has {len(extra)} channel(s) the "
                                 f"run does not read ({', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}); "
                                 "they are ignored")
        order = [c for c in self.channels if c != self.stim]
        self.picks = [names.index(c) for c in order] + ([names.index(self.stim)] if self.stim else [])
        self.sfreq = float(stream.info["sfreq"])
        self.buffer = SampleBuffer(len(self.picks), int(self.buffer_seconds * self.sfreq))
        self.stream = stream
        self.last_arrival = time.monotonic()
        return self

    @property
    def n_data(self) -> int:
        """Rows of the buffer that are data channels (the stim channel, if any, is last)."""
        return len(self.picks) - (1 if self.stim else 0)

    def poll(self) -> int:
        """Move new samples into the buffer; returns how many arrived."""
        stream = self.stream
        n_new = stream.n_new_samples
        if n_new == 0:
            return 0
        margin = int(0.05 * self.sfreq) + 1  # samples that arrived while we asked
        data, ts = stream.get_data(winsize=min(2.0, (n_new + margin) / self.sfreq), picks=self.picks,
                                   exclude=())
        if self.last_ts is None:  # the ring buffer's older slots were never filled
            data, ts = data[:, -n_new:], ts[-n_new:]
        else:
            fresh = ts > self.last_ts + 0.1 / self.sfreq
            if not fresh.all() and ts.size and ts[-1] < self.last_ts - 0.5 / self.sfreq:
                fresh = np.zeros_like(fresh)
                fresh[-n_new:] = True  # the clock went backwards: the newest samples are new
            data, ts = data[:, fresh], ts[fresh]
        if ts.size == 0:
            return 0
        data, ts, filled = self._check_times(np.asarray(data, dtype=np.float64), np.asarray(ts))
        self.buffer.append(data, ts, filled)
        self.last_ts = float(ts[-1])
        self.last_arrival = time.monotonic()
        return data.shape[1]

    def _check_times(self, data: np.ndarray, ts: np.ndarray):
        """Fill samples missing between received ones (flagged); report jumps of the clock."""
        period = 1.0 / self.sfreq
        prev = self.last_ts
        steps = np.diff(ts if prev is None else np.r_[prev, ts])
        offset = 1 if prev is None else 0  # steps[i] comes just before ts[i + offset]
        if steps.size == 0 or (np.abs(steps - period) < 0.5 * period).all():
            return data, ts, None
        jumps = (steps < -0.5 * period) | (steps > self.max_gap)
        if jumps.any():
            self.problems.report("clock-jump", f"stream {self.name!r}: timestamps jumped by "
                                 f"{steps[jumps][0]:+.3f} s between two samples; samples are kept in "
                                 "order of arrival")
        gaps = np.flatnonzero((steps > 1.5 * period) & ~jumps)
        if not gaps.size:
            return data, ts, None
        pieces, times, flags, start = [], [], [], 0
        for i in gaps:
            j = int(i) + offset
            missing = int(round(steps[i] * self.sfreq)) - 1
            before = data[:, j - 1 : j] if j > 0 else self.buffer.get(self.buffer.n_total - 1,
                                                                      self.buffer.n_total)
            t0 = ts[j - 1] if j > 0 else prev
            pieces += [data[:, start:j], np.repeat(before, missing, axis=1)]
            times += [ts[start:j], t0 + period * np.arange(1, missing + 1)]
            flags += [np.zeros(j - start, dtype=bool), np.ones(missing, dtype=bool)]
            start = j
            self.lost_samples += missing
            self.problems.report("dropped-samples", f"stream {self.name!r}: {missing} sample(s) missing "
                                 f"before t={ts[j]:.3f}; filled with the last value, the predictions "
                                 "over them are flagged 'gap'", count=missing)
        pieces.append(data[:, start:])
        times.append(ts[start:])
        flags.append(np.zeros(data.shape[1] - start, dtype=bool))
        return np.concatenate(pieces, axis=1), np.concatenate(times), np.concatenate(flags)

    def idle_for(self) -> float:
        """Seconds since samples last arrived."""
        return time.monotonic() - self.last_arrival

    def disconnect(self) -> None:
        if self.stream is not None:
            try:
                self.stream.disconnect()
            finally:
                self.stream = None


class StimChannelEvents:
    """Onsets on the stim channel (the source's last buffer row): a sample whose value is
    nonzero and differs from the one before it, as ``mne.find_events`` finds them."""

    def __init__(self, source: LiveSource, ignore: set[int]) -> None:
        self.source, self.ignore = source, ignore
        self.checked = 0  # samples scanned
        self.prev = 0.0

    def poll(self) -> list[Event]:
        buf = self.source.buffer
        start = max(self.checked, buf.first)
        if start >= buf.n_total:
            return []
        stim = buf.get(start, buf.n_total)[-1]
        before = np.r_[self.prev, stim[:-1]]
        onsets = np.flatnonzero((stim != 0) & (stim != before))
        self.prev, self.checked = float(stim[-1]), buf.n_total
        events = []
        for k in onsets:
            code = int(round(stim[k]))
            if code in self.ignore:
                continue
            events.append(Event(start + int(k), buf.time_of(start + int(k)), code))
        return events


class MarkerStreamEvents:
    """Onsets from a separate LSL marker stream (strings holding an integer code, or numbers),
    read with ``mne_lsl.lsl.StreamInlet``; each is placed on the data sample nearest its time
    plus ``offset`` seconds (a known delay of the markers against the data: PlayerLSL stamps its
    markers one sample before the data samples they belong to)."""

    def __init__(self, name: str, ignore: set[int], problems: Problems, timeout: float = 10.0,
                 offset: float = 0.0) -> None:
        from mne_lsl.lsl import StreamInlet, resolve_streams

        found = resolve_streams(timeout=timeout, name=name)
        if not found:
            raise MissingFileError(f"no LSL marker stream named {name!r} answered within {timeout:g} s; "
                                   "check --markers (or use the stim channel with --markers stim)")
        self.inlet = StreamInlet(found[0], processing_flags=("clocksync",))
        self.inlet.open_stream(timeout=timeout)
        self.name, self.ignore, self.problems, self.offset = name, ignore, problems, offset
        self.source: LiveSource | None = None
        self.pending: list[tuple[float, str]] = []
        self.lost = 0

    def attach(self, source: LiveSource) -> MarkerStreamEvents:
        """The data stream whose samples the markers land on."""
        self.source = source
        return self

    def _code(self, value: object) -> int | None:
        try:
            return int(float(str(value).strip()))
        except ValueError:
            self.problems.report("unknown-code", f"marker stream {self.name!r}: marker {value!r} "
                                        "is not an integer code; ignored")
            return None

    def poll(self) -> list[Event]:
        samples, ts = self.inlet.pull_chunk(timeout=0.0)
        for row, t in zip(samples, ts, strict=False):
            value = row[0] if np.ndim(row) else row
            self.pending.append((float(t) + self.offset, str(value)))
        buf = self.source.buffer
        events, keep = [], []
        for t, value in self.pending:
            if buf.n_total == 0 or t > buf.time_of(buf.n_total - 1) + 0.5 / self.source.sfreq:
                keep.append((t, value))  # its sample has not arrived yet
                continue
            sample = buf.nearest(t)
            if sample is None:
                self.lost += 1
                self.problems.report("marker-without-data", f"marker {value!r} at t={t:.3f} "
                                            "falls outside the received data; its epoch is lost")
                continue
            code = self._code(value)
            if code is None or code in self.ignore:
                continue
            events.append(Event(sample, t, code, value))
        self.pending = keep
        return events

    def close(self) -> None:
        self.inlet.close_stream()
