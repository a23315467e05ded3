"""The stream's two views: the live web page (LiveView, over real HTTP and in a real headless
Chromium when one is installed) and the compact terminal view (TerminalView)."""

from __future__ import annotations

import io
import json
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import pytest
from browser import Browser, dump_dom, find_chromium
from PIL import Image
from rich.console import Console

from mindsight.errors import ConfigError, MissingFileError
from mindsight.stream.terminal import TerminalView
from mindsight.stream.web import LiveView

NAMES = ["aardvark", "bagel", "canoe", "dolphin", "easel", "ferret"]
COLOURS = [(200, 80, 60), (220, 170, 60), (70, 150, 90), (60, 120, 200), (150, 90, 190),
           (200, 200, 200)]
WINDOWS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


@pytest.fixture
def candidates(tmp_path):
    """Six small candidate images: five PNGs and one JPEG (index 5)."""
    paths = []
    for i, colour in enumerate(COLOURS):
        path = tmp_path / (f"c{i}.jpg" if i == 5 else f"c{i}.png")
        Image.new("RGB", (24, 24), colour).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def view(candidates):
    live = LiveView(candidates, NAMES)
    live.start()
    yield live
    live.close()


def start_event(**extra):
    event = {"type": "start", "run": "runs/demo/atm", "fold": "sub-01_seed-0", "encoder": "atm",
             "source": "mindsight-replay", "sfreq": 1000.0, "windows": WINDOWS, "k": 5,
             "n_candidates": len(NAMES)}
    return {**event, **extra}


def prediction(event, stimulus, order, *, window=1.0, final=True, names=True, latency=3.2):
    """A prediction of candidate ``order[0]`` for true ``stimulus`` (None: unknown)."""
    topk = [{"index": j, "score": round(0.5 - 0.05 * r, 3)} for r, j in enumerate(order)]
    if names:
        for entry in topk:
            entry["name"] = NAMES[entry["index"]]
    return {"type": "prediction", "event": event, "onset": 100.0 + event,
            "code": None if stimulus is None else stimulus + 1, "stimulus": stimulus,
            "stimulus_name": None if stimulus is None or not names else NAMES[stimulus],
            "window": window, "final": final, "topk": topk,
            "correct": None if stimulus is None else order[0] == stimulus,
            "latency_ms": latency}


def png_bytes(colour=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET (404s included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


class SSEReader:
    """Reads ``/events`` in a thread; messages arrive as (event name, parsed data). A raw socket,
    so that :meth:`close` ends the reading thread at once."""

    def __init__(self, url: str) -> None:
        host, port = urllib.parse.urlsplit(url).netloc.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        self.messages: queue.Queue = queue.Queue()
        self.lines: list[str] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name, data, in_body = None, [], False
        try:
            for raw in self.sock.makefile("rb"):
                line = raw.decode().rstrip("\r\n")
                if not in_body:
                    in_body = not line  # the headers end with an empty line
                    continue
                self.lines.append(line)
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and data:
                    self.messages.put((name or "message", json.loads("\n".join(data))))
                    name, data = None, []
        except OSError:
            pass
        self.ended.set()

    def next(self, timeout: float = 5.0) -> tuple[str, dict]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


# -- LiveView over HTTP ----------------------------------------------------------------------


def test_page_and_its_static_files_are_served(view):
    status, kind, body = get(view.url)
    assert status == 200 and kind.startswith("text/html")
    assert b'src="/static/live.js"' in body and b'href="/static/live.css"' in body
    status, kind, body = get(view.url + "static/live.js")
    assert status == 200 and "javascript" in kind and b"new EventSource(\"/events\")" in body
    assert get(view.url + "static/live.css")[1].startswith("text/css")
    assert get(view.url + "static/web.py")[0] == 404
    assert get(view.url + "static/..%2Fweb.py")[0] == 404
    assert get(view.url + "nowhere")[0] == 404


def test_images_are_the_candidate_files_with_their_type(view, candidates):
    status, kind, body = get(view.url + "image/0")
    assert (status, kind, body) == (200, "image/png", candidates[0].read_bytes())
    status, kind, body = get(view.url + "image/5")
    assert (status, kind, body) == (200, "image/jpeg", candidates[5].read_bytes())
    for bad in ("6", "-1", "x", "1.5", "99999999999999999999"):
        assert get(view.url + "image/" + bad)[0] == 404, bad


def test_state_holds_the_last_prediction_and_the_running_accuracy(view):
    view.publish(start_event())
    view.publish(prediction(0, 2, [2, 0, 1, 3, 4]))                  # top-1
    view.publish(prediction(1, 3, [1, 3, 0, 2, 4], names=False))     # top-5 only, names filled
    view.publish(prediction(2, 4, [0, 1, 2, 3, 5], window=0.3, final=False))  # not counted
    status, kind, body = get(view.url + "state")
    assert status == 200 and kind == "application/json"
    state = json.loads(body)
    assert state["prediction"]["event"] == 2 and state["prediction"]["window"] == 0.3
    assert state["final"]["event"] == 1
    assert state["final"]["stimulus_name"] == "dolphin"
    assert [e["name"] for e in state["final"]["topk"]] == ["bagel", "dolphin", "aardvark",
                                                          "canoe", "easel"]
    acc = state["accuracy"]
    assert (acc["n"], acc["top1"], acc["top5"]) == (2, 0.5, 1.0)
    assert state["start"]["encoder"] == "atm" and state["k"] == 5

    view.publish(prediction(3, None, [1, 2, 3, 4, 5]))  # unknown stimulus: not scored
    view.publish({"type": "problem", "kind": "dropped-samples", "message": "12 samples missing"})
    state = json.loads(get(view.url + "state")[2])
    assert state["accuracy"]["n"] == 2 and state["prediction"]["stimulus_name"] is None
    assert state["problems"][-1]["message"] == "12 samples missing"

    view.publish(start_event(run="runs/other"))  # a new run starts from scratch
    state = json.loads(get(view.url + "state")[2])
    assert state["prediction"] is None and state["accuracy"]["n"] == 0
    assert state["problems"] == []


def test_events_are_strict_json_even_with_nan_and_numpy(view):
    np = pytest.importorskip("numpy")
    event = prediction(np.int64(4), np.int64(1), [1, 2, 3, 4, 5])
    event["topk"][1]["score"] = float("nan")
    event["topk"][2]["score"] = np.float32(0.25)
    view.publish(event)
    state = json.loads(get(view.url + "state")[2])
    assert state["prediction"]["event"] == 4 and state["prediction"]["stimulus_name"] == "bagel"
    assert [e["score"] for e in state["prediction"]["topk"][:3]] == [0.5, None, 0.25]


def test_event_stream_starts_with_the_state_then_delivers_published_events(view):
    view.publish(start_event())
    view.publish(prediction(0, 2, [2, 0, 1, 3, 4]))  # before the page connects
    reader = SSEReader(view.url)
    try:
        name, state = reader.next()
        assert name == "state" and state["prediction"]["event"] == 0  # a late page catches up
        published = prediction(1, 3, [3, 0, 1, 2, 4], window=0.4, final=False)
        view.publish(published)
        name, data = reader.next()
        assert name == "message"
        assert data == {**published, "stimulus_name": "dolphin"}
        view.publish(prediction(1, 3, [0, 3, 1, 2, 4]))
        assert reader.next()[1]["final"] is True
        name, acc = reader.next()
        assert name == "accuracy" and (acc["n"], acc["top1"], acc["top5"]) == (2, 0.5, 1.0)
        assert reader.lines[0] == "retry: 2000"
    finally:
        reader.close()


def test_idle_event_stream_gets_keep_alive_comments(candidates):
    with LiveView(candidates, NAMES) as live:
        live.keepalive_s = 0.1
        reader = SSEReader(live.url)
        deadline = time.monotonic() + 5
        while ": keep-alive" not in reader.lines and time.monotonic() < deadline:
            time.sleep(0.05)
        reader.close()
    assert ": keep-alive" in reader.lines


def test_reconstructions_are_served_and_sent_as_urls(view):
    reader = SSEReader(view.url)
    try:
        reader.next()  # the state
        png = png_bytes()
        view.publish({"type": "reconstruction", "event": 3, "window": 1.0, "png": png,
                      "latency_ms": 850.0})
        name, data = reader.next()
        assert data["url"] == "/reconstruction/3" and "png" not in data
        assert data["latency_ms"] == 850.0
    finally:
        reader.close()
    assert get(view.url + "reconstruction/3") == (200, "image/png", png)
    assert json.loads(get(view.url + "state")[2])["reconstruction"]["url"] == "/reconstruction/3"
    assert get(view.url + "reconstruction/4")[0] == 404
    assert get(view.url + "reconstruction/x")[0] == 404

    for i in range(100, 100 + view.n_reconstructions + 5):  # only the last ones are kept
        view.publish({"type": "reconstruction", "event": i, "window": 1.0,
                      "png": png_bytes((i, 0, 0))})
    assert get(view.url + "reconstruction/3")[0] == 404
    assert get(view.url + "reconstruction/104")[0] == 404
    assert get(view.url + "reconstruction/105")[2] == png_bytes((105, 0, 0))


def test_publish_never_waits_for_a_page_that_does_not_read(view):
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, before connecting
    stuck.connect(("127.0.0.1", view.port))
    stuck.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    time.sleep(0.2)
    done = threading.Event()

    def flood():
        for i in range(10_000):
            event = prediction(i, i % 6, [0, 1, 2, 3, 4])
            event["padding"] = "x" * 2000  # fills the socket buffers quickly
            view.publish(event)
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(60), "publish blocked on a client that does not read"
    assert view.n_overflows > 0  # the stuck page's backlog did overflow
    # the server still answers others, and they see the newest prediction
    assert json.loads(get(view.url + "state")[2])["prediction"]["event"] == 9_999
    reader = SSEReader(view.url)
    assert reader.next()[1]["prediction"]["event"] == 9_999
    reader.close()
    started = time.monotonic()
    view.close()  # with the stuck client still connected
    assert time.monotonic() - started < 10
    stuck.close()


def test_close_ends_open_streams_and_frees_the_port(candidates):
    live = LiveView(candidates, NAMES)
    url = live.start()
    readers = [SSEReader(url) for _ in range(2)]
    for reader in readers:
        reader.next()
    started = time.monotonic()
    live.close()
    assert time.monotonic() - started < 5
    for reader in readers:
        assert reader.ended.wait(5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", live.port), timeout=2).close()
    live.close()  # twice is fine


def test_bad_candidates_and_busy_port_are_one_line_errors(candidates, tmp_path):
    with pytest.raises(ConfigError, match="6 candidate images but 5 names"):
        LiveView(candidates, NAMES[:5])
    with pytest.raises(MissingFileError, match="gone.png"):
        LiveView([*candidates[:5], tmp_path / "gone.png"], NAMES)
    with LiveView(candidates, NAMES) as first:
        with pytest.raises(ConfigError, match=f"127.0.0.1:{first.port}"):
            LiveView(candidates, NAMES, port=first.port).start()


# -- LiveView in a real browser --------------------------------------------------------------


class _Dom(HTMLParser):
    """The <img> attributes and the text of each element with an id, from dumped HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.tiles: list[dict] = []
        self.text: dict[str, str] = {}
        self.tile_names: list[str] = []
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
            return
        if "tile" in (attrs.get("class") or "").split():
            self.tiles.append(attrs)
        if attrs.get("class") == "tile-name":
            self._open.append("@tile-name")
            self.tile_names.append("")
            return
        self._open.append(attrs.get("id"))
        if attrs.get("id"):
            self.text[attrs["id"]] = ""

    def handle_endtag(self, tag):
        if tag != "img" and self._open:
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident == "@tile-name":
                self.tile_names[-1] += data
            elif ident:
                self.text[ident] += data


def tile_images(dom: _Dom) -> list[dict]:
    return [img for img in dom.imgs if img.get("class") == "tile-img"]


ALL_LOADED = ("document.querySelectorAll('.tile-img[data-loaded=\"1\"]').length === 5 && "
              "document.getElementById('stimulus-img').dataset.loaded === '1'")

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium (apt-get install -y chromium, or set MINDSIGHT_CHROMIUM)")


@needs_chromium
def test_browser_shows_the_prediction_and_updates_live(view):
    view.publish(start_event())
    view.publish(prediction(0, 2, [2, 0, 1, 3, 4]))
    view.publish(prediction(1, 3, [1, 3, 0, 2, 4], latency=4.5))  # the page opens after this

    dom = _Dom(dump_dom(view.url, wait_for=ALL_LOADED))  # the page opened late
    imgs = tile_images(dom)
    assert [img["src"] for img in imgs] == ["/image/1", "/image/3", "/image/0", "/image/2",
                                            "/image/4"]
    assert all(img["data-loaded"] == "1" for img in imgs)  # the browser decoded every image
    assert [t["data-index"] for t in dom.tiles if "correct" in t["class"].split()] == ["3"]
    assert dom.tile_names == ["bagel", "dolphin", "aardvark", "canoe", "easel"]
    assert dom.text["stimulus-name"] == "dolphin"
    assert dom.text["acc-top1"] == "50.0 %" and dom.text["acc-top5"] == "100.0 %"
    assert dom.text["window-text"] == "window 1000 ms / 1000 ms"
    assert dom.text["latency"] == "4.5 ms"
    assert "atm" in dom.text["run"]

    with Browser() as browser:
        browser.open(view.url, ALL_LOADED)
        # published while the page is open: it must redraw without reloading
        view.publish(prediction(2, 4, [4, 5, 1, 0, 2], window=0.3, final=False, latency=2.0))
        view.publish({"type": "reconstruction", "event": 2, "window": 0.3, "png": png_bytes(),
                      "latency_ms": 850.0})
        view.publish({"type": "problem", "kind": "dropped-samples",
                      "message": "12 samples missing at 101.2 s"})
        browser.wait_for("document.getElementById('window-text').textContent.includes('300 ms')"
                         " && document.getElementById('recon-img').dataset.loaded === '1' && "
                         + ALL_LOADED)
        view.publish(prediction(2, 4, [4, 5, 1, 0, 2]))  # final and correct: 2 of 3 top-1
        browser.wait_for("document.getElementById('acc-top1').textContent === '66.7 %'")
        dom = _Dom(browser.dom())
    assert [img["src"] for img in tile_images(dom)] == ["/image/4", "/image/5", "/image/1",
                                                        "/image/0", "/image/2"]
    assert dom.tile_names == ["easel", "ferret", "bagel", "aardvark", "canoe"]
    assert dom.text["stimulus-name"] == "easel"
    assert dom.text["window-text"] == "window 1000 ms / 1000 ms"
    assert "12 samples missing at 101.2 s" in dom.text["problems"]
    recon = next(img for img in dom.imgs if img.get("id") == "recon-img")
    assert recon["src"].startswith("/reconstruction/2") and recon["data-loaded"] == "1"
    assert dom.text["acc-top1"] == "66.7 %"


@needs_chromium
def test_browser_page_without_a_known_stimulus_says_unknown(view, tmp_path):
    view.publish(start_event())
    view.publish(prediction(0, None, [5, 1, 2, 3, 4]))
    with Browser(size=(1280, 800)) as browser:
        browser.open(view.url, "document.querySelectorAll('.tile-img[data-loaded=\"1\"]')"
                               ".length === 5")
        dom = _Dom(browser.dom())
        shot = browser.screenshot(tmp_path / "page.png")
    assert dom.text["stimulus-name"] == "unknown"
    assert not [t for t in dom.tiles if "correct" in t["class"].split()]
    assert tile_images(dom)[0]["src"] == "/image/5"  # the JPEG candidate
    with Image.open(shot) as image:
        assert image.size == (1280, 800)


# -- TerminalView ----------------------------------------------------------------------------


def terminal(**options) -> tuple[TerminalView, Console]:
    console = Console(record=True, width=120, color_system=None)
    return TerminalView(NAMES, console=console, **options), console


def lines(console: Console) -> list[str]:
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_terminal_prints_one_line_per_final_prediction():
    view, console = terminal()
    view.publish(start_event())
    view.publish(prediction(0, 2, [1, 2, 0, 3, 4], window=0.5, final=False))
    view.publish(prediction(0, 2, [2, 1, 0, 3, 4], latency=3.25))
    view.publish(prediction(1, 3, [1, 2, 0, 3, 4], names=False))
    view.publish(prediction(2, None, [5, 2, 0, 3, 4]))
    out = lines(console)
    assert len(out) == 4
    assert out[0].startswith("streaming runs/demo/atm · sub-01_seed-0 · atm")
    assert "6 candidates" in out[0] and "windows 100–1000 ms" in out[0]
    assert re.match(r"#0 +code 3 canoe +-> canoe +0\.500 +✓ +1000 ms +3\.2 ms$", out[1]), out[1]
    assert re.match(r"#1 +code 4 dolphin +-> bagel +0\.500 +✗ rank 4 +1000 ms", out[2]), out[2]
    assert re.match(r"#2 +\? +-> ferret +0\.500 +· +1000 ms", out[3]), out[3]
    assert "500 ms" not in "".join(out[1:])  # the intermediate window is not printed


def test_terminal_every_window_prints_the_growing_windows_too():
    view, console = terminal(every_window=True)
    for w in (0.3, 0.6):
        view.publish(prediction(0, 2, [1, 2, 0, 3, 4], window=w, final=False))
    view.publish(prediction(0, 2, [2, 1, 0, 3, 4]))
    out = lines(console)
    assert len(out) == 3
    assert " 300 ms" in out[0] and " 600 ms" in out[1] and "1000 ms" in out[2]
    assert "✗ rank 2" in out[0] and "✓" in out[2]


def test_terminal_problems_once_in_red_and_a_summary_at_stop():
    console = Console(record=True, width=120, force_terminal=True, color_system="standard",
                      file=io.StringIO())
    view = TerminalView(NAMES, console=console)
    view.publish({"type": "problem", "kind": "dropped-samples", "message": "12 samples missing"})
    view.publish({"type": "problem", "kind": "dropped-samples", "message": "again"})
    view.publish({"type": "problem", "kind": "clock", "message": "clock jumped"})
    view.publish(prediction(0, 2, [2, 1, 0, 3, 4], latency=2.0))
    view.publish(prediction(1, 3, [1, 3, 0, 2, 4], latency=4.0))
    view.publish({"type": "stop", "reason": "end of replay", "n_events": 2, "n_predictions": 20,
                  "latency_ms": {"p50": 3.0, "p95": 3.9}})
    ansi = console.export_text(styles=True, clear=False)
    out = [line.rstrip() for line in console.export_text().splitlines()]
    assert [line for line in out if line.startswith("problem")] == [
        "problem dropped-samples: 12 samples missing", "problem clock: clock jumped"]
    assert "\x1b[1;31mproblem dropped-samples" in ansi  # bold red
    assert out[-1] == ("stop (end of replay): 2 events · 20 predictions · top-1 50.0 % · "
                       "top-5 100.0 % · latency p50 3.0 ms p95 3.9 ms")


def test_terminal_summary_prefers_the_stop_events_accuracy_and_closes_once():
    view, console = terminal()
    view.publish(prediction(0, 2, [2, 1, 0, 3, 4], latency=1.0))
    view.publish(prediction(1, 3, [0, 1, 2, 4, 5], latency=3.0))
    view.publish({"type": "stop", "reason": "stream lost", "accuracy": {"top1": 0.25,
                                                                          "top5": 0.75}})
    view.close()
    out = lines(console)
    assert out[-1] == ("stop (stream lost): 2 events · 2 predictions · top-1 25.0 % · "
                       "top-5 75.0 % · latency p50 2.0 ms p95 2.9 ms")
    assert sum(line.startswith("stop") for line in out) == 1

    view, console = terminal()
    view.publish(prediction(0, 2, [0, 1, 2, 3, 4]))
    view.close()  # no stop event: the summary comes from what was seen
    assert lines(console)[-1].startswith("stop (closed): 1 events · 1 predictions · top-1 0.0 %")
