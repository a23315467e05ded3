"""Where stream events go besides the views: a JSON-lines file and an LSL outlet.

Every sink has ``publish(event)`` (thread-safe, quick: it must never delay decoding) and
``close()``; the live page (:mod:`mindsight.stream.web`) and the terminal view
(:mod:`mindsight.stream.terminal`) are sinks too.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol

from mindsight.errors import ConfigError

__all__ = ["JsonLines", "LslOutlet", "Sink"]


class Sink(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class JsonLines:
    """One JSON object per line, flushed as written, so a crash leaves only whole lines.
    A reconstruction's PNG is written beside the file and its path replaces the bytes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise ConfigError(f"{self.path} exists: it holds an earlier session's predictions; pass "
                              "another --out (or remove it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "x", encoding="utf-8")  # noqa: SIM115 (kept open for the session)
        self._lock = threading.Lock()

    def publish(self, event: dict[str, Any]) -> None:
        if "png" in event:
            folder = self.path.parent / "reconstructions"
            folder.mkdir(exist_ok=True)
            image = folder / f"event-{event['event']:05d}.png"
            image.write_bytes(event["png"])
            event = {**{k: v for k, v in event.items() if k != "png"}, "image": str(image)}
        line = json.dumps(event, default=float)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class LslOutlet:
    """An LSL marker stream of predictions (one JSON string per prediction), for other BCI
    software: ``mne_lsl.lsl.StreamInlet`` or any LSL client reads it. Stamped with the
    stimulus onset's LSL time, so consumers can align it with the data."""

    def __init__(self, name: str = "mindsight-predictions", source_id: str = "mindsight") -> None:
        from mne_lsl.lsl import StreamInfo, StreamOutlet

        info = StreamInfo(name, "Markers", 1, 0.0, "string", source_id)
        self.outlet = StreamOutlet(info)
        self.name = name

    def publish(self, event: dict[str, Any]) -> None:
        if event.get("type") != "prediction":
            return
        self.outlet.push_sample([json.dumps(event, default=float)], timestamp=float(event["onset"]))

    def close(self) -> None:
        del self.outlet
