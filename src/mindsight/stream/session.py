"""``mindsight stream RUN_DIR``: one live decoding session, from connection to summary.

:class:`StreamSession` composes separately testable parts and exposes them
(:attr:`StreamSession.components`): the run's model and :class:`OnlinePipeline`, the
:class:`Candidates`, the :class:`LiveSource` with its event finder, the :class:`StreamDecoder`,
the optional :class:`LiveReconstructor`, and the sinks (JSON lines, LSL outlet, live page,
terminal view). :meth:`StreamSession.run` polls the stream until it stops (``timeout`` seconds
without samples), ``max_events`` stimuli are decoded or ``duration`` passes, then writes
``summary.json``: accuracy per window, latency percentiles, what was lost, and the protocol.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import write_json
from mindsight.errors import ConfigError
from mindsight.output import logger
from mindsight.stream.candidates import Candidates
from mindsight.stream.decoder import StreamDecoder, default_windows
from mindsight.stream.pipeline import pipeline_for_run
from mindsight.stream.problems import Problems
from mindsight.stream.source import LiveSource, MarkerStreamEvents, StimChannelEvents
from mindsight.stream.units import training_amplitude, unit_factor

__all__ = ["StreamConfig", "StreamSession", "stream_run"]

VIEWS = ("terminal", "web", "both", "none")


@dataclass
class StreamConfig:
    """Every choice of a live session (the CLI's options)."""

    source: str = "mindsight-replay"  # LSL name of the brain-data stream
    markers: str = "auto"  # 'stim' (the stream's stim channel), a marker stream's name, or 'auto'
    stim_channel: str = "stim"
    marker_offset: float = 0.0  # seconds added to marker-stream times (their delay against the data)
    fold: str | None = None  # default: the run's first
    subject: int | None = None  # whose subject token the model uses (default: the fold's test subject)
    candidates: str | None = None  # a folder of images (default: the run's test images)
    windows: list[float] | None = None  # seconds after onset (default: every window_step, then the end)
    window_step: float = 0.1
    k: int = 5
    preprocess: str | None = None  # variant or preprocessing.json (default: beside the data)
    mvnn: str | None = None  # 'none' or a raw training recording (default: saved covariances)
    mvnn_session: str | None = None
    scale: float | None = None  # unit factor for the live data (default: checked against training)
    timeout: float = 5.0  # seconds without samples: the stream stopped
    connect_timeout: float = 10.0
    max_gap: float = 1.0  # larger timestamp steps are clock jumps, not dropped samples
    buffer: float = 10.0  # seconds of samples kept
    max_events: int | None = None
    duration: float | None = None
    ignore_codes: list[int] = field(default_factory=lambda: [99999])  # THINGS-EEG2's target trials
    reconstruct: bool = False
    reconstruct_steps: int | None = None  # sampling steps of the live reconstruction (default: the generator's)
    out: str | None = None  # default: RUN_DIR/stream/<time>
    outlet: str | None = "mindsight-predictions"  # LSL outlet name; None: none
    view: str = "none"  # live view: 'terminal', 'web', 'both' or 'none'
    port: int = 8765  # of the web page (0: any free port)
    poll_interval: float = 0.002


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3), "n": len(a)}


class StreamSession:
    """One live session on a trained run (see the module docstring)."""

    def __init__(self, run_dir: str | Path, config: StreamConfig | None = None, *, sinks: list[Any] | None = None,
                 device: str = "cpu", cache_dir: Any = None) -> None:
        from mne_lsl.lsl import local_clock

        from mindsight.run import Run

        self.cfg = config or StreamConfig()
        self.run = Run.open(run_dir, device=device, cache_dir=cache_dir)
        self.fold = self.run.fold(self.cfg.fold)
        self.model = self.run.model(self.fold)
        self.subject = self.cfg.subject if self.cfg.subject is not None else self.fold.test_subject
        self.clock = local_clock
        self.sinks: list[Any] = list(sinks or [])
        self.problems = Problems(self.publish)
        self.candidates = (Candidates.from_folder(self.run, self.fold, self.cfg.candidates) if self.cfg.candidates
                           else Candidates.from_run(self.run, self.fold))
        self.source: LiveSource | None = None
        self.reconstructor = None
        self.stats: dict[str, Any] = {}

    @property
    def components(self) -> dict[str, Any]:
        return {"run": self.run, "model": self.model, "pipeline": getattr(self, "pipeline", None),
                "candidates": self.candidates, "source": self.source, "decoder": getattr(self, "decoder", None),
                "reconstructor": self.reconstructor, "sinks": self.sinks}

    def publish(self, event: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.publish(event)

    # -- set-up -----------------------------------------------------------------------------------
    def connect(self) -> StreamSession:
        """Resolve the stream, build the pipeline for its rate and channels, find the markers."""
        from mne_lsl.lsl import resolve_streams

        cfg = self.cfg
        found = resolve_streams(timeout=cfg.connect_timeout, name=cfg.source)
        if not found:
            raise ConfigError(f"no LSL stream named {cfg.source!r} answered within {cfg.connect_timeout:g} s; "
                              "start the amplifier's stream (or `mindsight replay FILE`) and check --source")
        sfreq = float(found[0].sfreq)
        self.pipeline = pipeline_for_run(self.run, self.subject, sfreq, preprocess=cfg.preprocess,
                                         mvnn=cfg.mvnn, mvnn_session=cfg.mvnn_session)
        # everything slow happens before the data stream connects (its ring buffer holds 2 s)
        if cfg.scale is None:
            self.training_amplitude = training_amplitude(self.run, self.fold)
        windows = cfg.windows or default_windows(self.pipeline, cfg.window_step)
        self.decoder = StreamDecoder(self.model, self.pipeline, self.candidates, self.subject, windows, cfg.k,
                                     self.problems, self.clock)
        self.decoder.warm_up()
        if cfg.reconstruct:
            from mindsight.stream.reconstruct import LiveReconstructor

            self.reconstructor = LiveReconstructor(self.run.path, self.fold.name, self.subject,
                                                   steps=cfg.reconstruct_steps, cache_dir=self.run.cache_dir,
                                                   clock=self.clock)
            self.decoder.on_final = self.reconstructor.submit
        markers, ignore = cfg.markers, set(cfg.ignore_codes)
        # a named marker stream is opened first, so no marker is pushed before we listen
        marker_events = (None if markers in ("auto", "stim") else
                         MarkerStreamEvents(markers, ignore, self.problems, cfg.connect_timeout,
                                            cfg.marker_offset))
        stim = cfg.stim_channel if markers in ("auto", "stim") else None
        self.source = LiveSource(cfg.source, self.pipeline.ch_names, stim=stim, buffer_seconds=cfg.buffer,
                                 max_gap=cfg.max_gap, problems=self.problems,
                                 stim_optional=markers == "auto").connect(cfg.connect_timeout)
        if self.source.stim is not None:
            markers, self.events = "stim", StimChannelEvents(self.source, ignore)
        else:
            if markers == "auto":
                markers = f"{cfg.source}-annotations"
                marker_events = MarkerStreamEvents(markers, ignore, self.problems, cfg.connect_timeout,
                                                   cfg.marker_offset)
            self.events = marker_events.attach(self.source)
        self.marker_source = markers
        return self

    def _check_units(self) -> None:
        """Before the first prediction: the live data's unit against the training data's."""
        if self.cfg.scale is not None:
            self.pipeline.scale = float(self.cfg.scale)
            return
        p = self.decoder.pending[0]
        buf = self.source.buffer
        start = p.event.sample + self.pipeline.start
        end = min(buf.n_total, p.event.sample + self.pipeline.stop + 1)
        from mindsight.train.scaler import typical_amplitude

        live = typical_amplitude(self.pipeline(buf.get(start, end)[: self.pipeline.n_chans]))
        train = self.training_amplitude
        factor, note = unit_factor(live, train)
        self.pipeline.scale = factor
        self.stats["units"] = {"live_amplitude": live, "training_amplitude": train, "scale": factor}
        if note:
            self.problems.report("units", note)

    # -- the loop ---------------------------------------------------------------------------------
    def run_loop(self) -> dict[str, Any]:
        cfg = self.cfg
        src, dec = self.source, self.decoder
        self.publish({"type": "start", "run": str(self.run.path), "fold": self.fold.name,
                      "encoder": self.model.spec.encoder, "source": cfg.source, "markers": self.marker_source,
                      "sfreq": src.sfreq, "windows": dec.windows, "k": cfg.k,
                      "n_candidates": len(self.candidates), "candidates": self.candidates.source,
                      "reconstruct": self.reconstructor is not None})
        t_start = time.monotonic()
        first_pred = last_pred = None
        latencies: list[float] = []
        computes: list[float] = []
        per_window: dict[float, list[tuple[int, bool]]] = {w: [] for w in dec.windows}
        n_pred = 0
        checked = False
        reason = "the stream stopped"
        finished_events = 0
        try:
            while True:
                got = src.poll()
                if got:
                    dec.add(self.events.poll())
                elif isinstance(self.events, MarkerStreamEvents):
                    dec.add(self.events.poll())
                if dec.pending and not checked:
                    dec.prune(src.buffer)
                if dec.pending and not checked:
                    p = dec.pending[0]
                    if p.event.sample + self.pipeline.end_offset(dec.windows[0]) < src.buffer.n_total:
                        self._check_units()
                        checked = True
                preds = dec.step(src.buffer) if checked else []
                for pred in preds:
                    self.publish(pred)
                    n_pred += 1
                    latencies.append(pred["latency_ms"])
                    computes.append(pred["compute_ms"])
                    if pred["rank"] is not None:
                        per_window[pred["window"]].append((pred["rank"], pred["correct"]))
                    if pred["final"]:
                        finished_events += 1
                    now = time.monotonic()
                    first_pred = first_pred or now
                    last_pred = now
                if self.reconstructor is not None:
                    for rec in self.reconstructor.poll():
                        self.publish(rec)
                if cfg.max_events is not None and finished_events >= cfg.max_events:
                    reason = f"{cfg.max_events} stimuli decoded"
                    break
                if cfg.duration is not None and time.monotonic() - t_start > cfg.duration:
                    reason = f"{cfg.duration:g} s passed"
                    break
                if src.idle_for() > cfg.timeout:
                    self.problems.report("stream-stopped", f"stream {cfg.source!r} sent no samples for "
                                         f"{cfg.timeout:g} s; stopping")
                    dec.abandon()
                    break
                if not got and not preds:
                    time.sleep(cfg.poll_interval)
        except KeyboardInterrupt:
            reason = "interrupted"
        k = cfg.k
        accuracy = {}
        for w, rows in per_window.items():
            if rows:
                ranks = np.array([r for r, _ in rows])
                accuracy[f"{w:g}"] = {"top1": float((ranks < 1).mean()), f"top{k}": float((ranks < k).mean()),
                                      "n": len(rows)}
        active = (last_pred - first_pred) if first_pred and last_pred and last_pred > first_pred else None
        summary = {
            "type": "stop", "reason": reason, "n_events": dec.n_events, "n_final": finished_events,
            "n_predictions": n_pred,
            "predictions_per_s": None if not active else round((n_pred - 1) / active, 3),
            "accuracy": accuracy, "final_window": f"{dec.windows[-1]:g}",
            "latency_ms": _percentiles(latencies), "compute_ms": _percentiles(computes),
            "lost": {"samples": src.lost_samples, "events": dec.lost_events +
                     getattr(self.events, "lost", 0)},
            "problems": self.problems.summary(),
        }
        if self.reconstructor is not None:
            summary["reconstructions"] = {"done": self.reconstructor.done, "skipped": self.reconstructor.skipped}
        return summary

    def protocol(self) -> dict[str, Any]:
        from mindsight.train.run import versions

        return {"run": str(self.run.path), "fold": self.fold.name, "subject": self.subject,
                "encoder": self.model.spec.encoder, "candidates": self.candidates.source,
                "n_candidates": len(self.candidates), "pipeline": self.pipeline.describe(),
                "config": asdict(self.cfg), "versions": versions(), **self.stats}

    def close(self) -> None:
        if self.reconstructor is not None:
            self.reconstructor.close()
        if isinstance(getattr(self, "events", None), MarkerStreamEvents):
            self.events.close()
        if self.source is not None:
            self.source.disconnect()
        for sink in self.sinks:
            sink.close()


def add_views(session: StreamSession, console: Any = None) -> str | None:
    """The configured live views as sinks; returns the web page's URL (None without one)."""
    kind, url = session.cfg.view, None
    if kind not in VIEWS:
        raise ConfigError(f"view must be one of {', '.join(VIEWS)}, got {kind!r}")
    if kind in ("terminal", "both"):
        from mindsight.stream.terminal import TerminalView

        session.sinks.append(TerminalView(session.candidates.names, console=console, k=session.cfg.k))
    if kind in ("web", "both"):
        from mindsight.stream.web import LiveView

        page = LiveView(session.candidates.paths, session.candidates.names, port=session.cfg.port,
                        k=session.cfg.k)
        url = page.start()
        logger.warning("live view: %s", url)
        session.sinks.append(page)
    return url


def stream_run(run_dir: str | Path, config: StreamConfig | None = None, *, sinks: list[Any] | None = None,
               device: str = "cpu", cache_dir: Any = None, console: Any = None) -> dict[str, Any]:
    """Decode a live stream with the run in ``run_dir``; returns the summary (also written to
    ``OUT/summary.json`` beside ``OUT/predictions.jsonl``)."""
    from mindsight.stream.sinks import JsonLines, LslOutlet

    cfg = config or StreamConfig()
    out = Path(cfg.out) if cfg.out else Path(run_dir) / "stream" / time.strftime("%Y%m%d-%H%M%S")
    session = StreamSession(run_dir, cfg, sinks=sinks, device=device, cache_dir=cache_dir)
    session.sinks.insert(0, JsonLines(out / "predictions.jsonl"))
    try:
        if cfg.outlet:
            session.sinks.append(LslOutlet(cfg.outlet))
        add_views(session, console)
        session.connect()
        logger.info("decoding %r with %s (%d candidates, windows %s s)", cfg.source, session.model.spec.encoder,
                    len(session.candidates), ", ".join(f"{w:g}" for w in session.decoder.windows))
        summary = session.run_loop()
        summary["protocol"] = session.protocol()
        session.publish(summary)
        write_json(out / "summary.json", summary)
        summary["out"] = str(out)
        return summary
    finally:
        session.close()
