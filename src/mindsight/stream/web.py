"""A live web page of the stream, served by mindsight itself with the standard library.

:class:`LiveView` is a sink: every event the pipeline publishes goes to the open pages as a
Server-Sent Event, and the page redraws itself (current stimulus, top-k retrieved images, growing
window, latency, running accuracy, reconstruction, problems). The server is a
:class:`http.server.ThreadingHTTPServer` in a daemon thread on a local port, so nothing outside
Python is needed and nothing leaves the machine.

Routes: ``/`` the page, ``/static/<file>`` its style and script, ``/events`` the event stream,
``/state`` the latest state as JSON (a page opened late starts from it), ``/image/<i>`` candidate
image ``i`` and ``/reconstruction/<event>`` the PNG of a reconstruction.

Publishing never waits on a browser: each page has a bounded queue, and a page too slow to keep
up has its backlog replaced by one fresh snapshot of the state (the state already holds
everything the dropped events said). Reconstruction events carry PNG bytes in ``"png"``; the view
keeps the last :attr:`LiveView.n_reconstructions` in memory and sends the event on with ``"png"``
replaced by ``"url"``: ``/reconstruction/<event>``.
"""

from __future__ import annotations

import json
import math
import mimetypes
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mindsight.errors import ConfigError, MissingFileError
from mindsight.output import logger

_TEXT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"<svg", "image/svg+xml"),
    (b"<?xml", "image/svg+xml"),
)
N_PROBLEMS = 20  # problem messages the state keeps (the newest)


def image_content_type(path: Path, head: bytes) -> str:
    """The content type of an image file, from its first bytes, else from its suffix."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and non-finite floats as ``None``
    (a browser's JSON.parse rejects NaN), so every event serialises to strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _sse(data: Any, name: str | None = None) -> bytes:
    """One Server-Sent Event: an optional event name and one line of JSON data."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, allow_nan=False)}\n\n".encode()


class _Client:
    """One open ``/events`` connection: its bounded backlog and the flag that wakes its thread."""

    def __init__(self, conn: socket.socket, size: int) -> None:
        self.conn = conn
        self.queue: deque[bytes] = deque(maxlen=size)
        self.wake = threading.Event()
        self.lagged = True  # a new client first gets a snapshot of the state


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() ends the event streams itself
    view: LiveView

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a browser closing a tab mid-response is normal; anything else is worth a debug note
        logger.debug("live view: request from %s failed", client_address, exc_info=True)


class LiveView:
    """A sink that serves a live web page of the decoding (see the module docstring).

    ``images[i]`` / ``names[i]`` are candidate ``i``: what a prediction's ``topk[j]["index"]``
    and ``"stimulus"`` refer to. ``k`` is how many retrieved images the page shows. ``port=0``
    picks a free port; :meth:`start` returns the page's URL.
    """

    queue_size = 256  # events buffered per page before its backlog becomes one snapshot
    keepalive_s = 15.0  # a comment line on idle event streams, so proxies keep them open
    n_reconstructions = 50  # reconstruction PNGs kept in memory

    def __init__(self, images: Sequence[Path], names: Sequence[str], *, host: str = "127.0.0.1",
                 port: int = 0, k: int = 5) -> None:
        if len(images) != len(names):
            raise ConfigError(f"live view: {len(images)} candidate images but {len(names)} names; "
                              "give one name per image")
        if k < 1:
            raise ConfigError(f"live view: k must be at least 1, got {k}")
        self.images = [Path(p) for p in images]
        missing = [p for p in self.images if not p.is_file()]
        if missing:
            raise MissingFileError(f"live view: candidate image {missing[0]} does not exist "
                                   f"({len(missing)} of {len(self.images)} missing)")
        self.names = [str(n) for n in names]
        self.host, self.port, self.k = host, int(port), int(k)
        self.url = ""
        self._lock = threading.Lock()
        self._clients: list[_Client] = []
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pngs: OrderedDict[int, bytes] = OrderedDict()
        self.n_overflows = 0  # times a page fell behind and got a snapshot instead of a backlog
        self._static = self._static_files()
        self._state: dict[str, Any] = {
            "k": self.k, "n_candidates": len(self.names), "start": None, "prediction": None,
            "final": None, "reconstruction": None, "problems": [], "stop": None,
            "accuracy": {"n": 0, "top1": None, "top5": None, "n_top1": 0, "n_top5": 0},
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving in a daemon thread and return the page's URL (idempotent)."""
        if self._server is not None:
            return self.url
        try:
            server = _Server((self.host, self.port), _Handler)
        except OSError as err:
            raise ConfigError(f"cannot serve the live view on {self.host}:{self.port}: {err}; "
                              "choose another port (0 picks a free one)") from err
        server.view = self
        self._server = server
        self.port = int(server.server_address[1])
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{self.port}/"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mindsight-live-view", daemon=True)
        self._thread.start()
        logger.info("live view at %s", self.url)
        return self.url

    def close(self) -> None:
        """Stop serving: end every event stream and free the port (idempotent, prompt)."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.wake.set()
            try:  # unblocks a thread stuck writing to a page that stopped reading
                client.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sink ----------------------------------------------------------------------------

    def publish(self, event: Mapping[str, Any]) -> None:
        """Record ``event`` in the state and queue it for every open page; never waits."""
        event = dict(event)
        kind = event.get("type")
        png = event.pop("png", None) if kind == "reconstruction" else None
        event = _plain(event)
        if kind == "prediction":
            self._fill_names(event)
        if kind == "reconstruction":
            number = event.get("event")
            event["url"] = f"/reconstruction/{number}"
        message = [_sse(event)]
        with self._lock:
            if kind == "reconstruction" and png is not None:
                self._keep_png(event.get("event"), png)
            accuracy = self._update(kind, event)
            if accuracy is not None:
                message.append(_sse(accuracy, "accuracy"))
            for client in self._clients:
                if client.lagged:
                    continue
                if len(client.queue) + len(message) > self.queue_size:
                    client.lagged = True
                    client.queue.clear()
                    self.n_overflows += 1
                    logger.debug("live view: a page fell behind; it gets a snapshot instead")
                else:
                    client.queue.extend(message)
                client.wake.set()

    def state(self) -> dict[str, Any]:
        """A JSON-ready copy of the latest state (what ``/state`` serves)."""
        with self._lock:
            return json.loads(json.dumps(self._state))

    # -- state -------------------------------------------------------------------------------

    def _fill_names(self, event: dict[str, Any]) -> None:
        """Names from the candidate list where the event left them out."""
        stim = event.get("stimulus")
        if event.get("stimulus_name") is None and isinstance(stim, int) \
                and 0 <= stim < len(self.names):
            event["stimulus_name"] = self.names[stim]
        topk = []
        for entry in event.get("topk") or []:
            entry = dict(entry)
            i = entry.get("index")
            if entry.get("name") is None and isinstance(i, int) and 0 <= i < len(self.names):
                entry["name"] = self.names[i]
            topk.append(entry)
        event["topk"] = topk

    def _update(self, kind: Any, event: dict[str, Any]) -> dict[str, Any] | None:
        """Fold ``event`` into the state (lock held); the new accuracy after a final prediction."""
        state = self._state
        if kind == "start":
            state.update(start=event, prediction=None, final=None, reconstruction=None,
                         problems=[], stop=None,
                         accuracy={"n": 0, "top1": None, "top5": None, "n_top1": 0, "n_top5": 0})
        elif kind == "prediction":
            state["prediction"] = event
            if event.get("final"):
                state["final"] = event
                return self._score(event)
        elif kind == "reconstruction":
            state["reconstruction"] = event
        elif kind == "problem":
            state["problems"] = (state["problems"] + [event])[-N_PROBLEMS:]
        elif kind == "stop":
            state["stop"] = event
        return None

    def _score(self, event: dict[str, Any]) -> dict[str, Any]:
        """Count a final prediction of a known stimulus into the running top-1 / top-5."""
        acc = self._state["accuracy"]
        stim = event.get("stimulus")
        if stim is not None:
            ranked = [e.get("index") for e in event.get("topk") or []]
            acc["n"] += 1
            acc["n_top1"] += int(bool(ranked) and ranked[0] == stim)
            acc["n_top5"] += int(stim in ranked[:5])
            acc["top1"] = acc["n_top1"] / acc["n"]
            acc["top5"] = acc["n_top5"] / acc["n"]
        return dict(acc)

    def _keep_png(self, number: Any, png: Any) -> None:
        if isinstance(png, (str, Path)):
            try:
                png = Path(png).read_bytes()
            except OSError as err:
                logger.warning("live view: reconstruction %s not readable: %s", png, err)
                return
        if not isinstance(number, int) or not isinstance(png, (bytes, bytearray, memoryview)):
            logger.warning("live view: a reconstruction event needs an int 'event' and PNG "
                           "bytes in 'png'; got %r and %s", number, type(png).__name__)
            return
        self._pngs[number] = bytes(png)
        self._pngs.move_to_end(number)
        while len(self._pngs) > self.n_reconstructions:
            self._pngs.popitem(last=False)

    # -- what the handler asks ---------------------------------------------------------------

    @staticmethod
    def _static_files() -> dict[str, Any]:
        root = resources.files("mindsight.stream").joinpath("static")
        return {f.name: f for f in root.iterdir() if Path(f.name).suffix in _TEXT_TYPES}

    def _subscribe(self, conn: socket.socket) -> _Client:
        client = _Client(conn, self.queue_size)
        with self._lock:
            self._clients.append(client)
        return client

    def _unsubscribe(self, client: _Client) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def _drain(self, client: _Client) -> bytes:
        """What ``client`` has not been sent yet: its backlog, or one snapshot if it lagged."""
        with self._lock:
            client.wake.clear()
            if client.lagged:
                client.lagged = False
                client.queue.clear()
                return _sse(self._state, "state")
            out = b"".join(client.queue)
            client.queue.clear()
            return out

    def _png(self, number: int) -> bytes | None:
        with self._lock:
            return self._pngs.get(number)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mindsight-live"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        logger.debug("live view: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        view = self.server.view
        path = urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        if not parts or parts == ["index.html"]:
            self._send_static(view, "live.html")
        elif len(parts) == 2 and parts[0] == "static":
            self._send_static(view, parts[1])
        elif parts == ["events"]:
            self._stream(view)
        elif parts == ["state"]:
            self._send(json.dumps(view.state()).encode(), "application/json")
        elif len(parts) == 2 and parts[0] == "image":
            self._send_image(view, parts[1])
        elif len(parts) == 2 and parts[0] == "reconstruction":
            png = view._png(int(parts[1])) if parts[1].isdigit() else None
            if png is None:
                self._not_found()
            else:
                self._send(png, "image/png")
        else:
            self._not_found()

    def _send(self, body: bytes, kind: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._send(b"not found\n", "text/plain; charset=utf-8", 404)

    def _send_static(self, view: LiveView, name: str) -> None:
        entry = view._static.get(name)
        if entry is None:
            self._not_found()
            return
        self._send(entry.read_bytes(), _TEXT_TYPES[Path(name).suffix])

    def _send_image(self, view: LiveView, index: str) -> None:
        i = int(index) if index.isdigit() else -1
        if not 0 <= i < len(view.images):
            self._not_found()
            return
        path = view.images[i]
        try:
            body = path.read_bytes()
        except OSError:
            self._not_found()
            return
        self._send(body, image_content_type(path, body[:16]))

    def _stream(self, view: LiveView) -> None:
        """Hold the connection open and write events as they are published."""
        client = view._subscribe(self.connection)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            while not view._closing.is_set():
                chunk = view._drain(client)
                if chunk:
                    self.wfile.write(chunk)
                elif not client.wake.wait(view.keepalive_s):
                    self.wfile.write(b": keep-alive\n\n")
        except OSError:  # the page went away, or close() shut the socket
            pass
        finally:
            view._unsubscribe(client)
            self.close_connection = True
