"""A headless Chromium for tests and screenshots, driven over the DevTools protocol on a pipe.

``--dump-dom`` alone dumps at the load event (before images decode or live events arrive), and
``--virtual-time-budget`` never expires while a page holds an open event stream, so the helpers
here talk to Chromium through ``--remote-debugging-pipe`` (the standard library is enough: JSON
messages ending in a NUL byte on file descriptors 3 and 4) and wait for a JavaScript condition
before reading the DOM or taking a screenshot.

    find_chromium()                      # the binary, or None (tests skip then)
    dump_dom(url, wait_for="...")        # the page's HTML once wait_for is true
    screenshot(url, path, size=(1280, 800), wait_for="...")
    with Browser() as b: b.open(url); b.wait_for("..."); b.dom(); b.screenshot(path)

Debian: ``apt-get install -y chromium``; elsewhere point ``MINDSIGHT_CHROMIUM`` at the binary.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ENV = "MINDSIGHT_CHROMIUM"
# The pipe protocol reads fd 3 and writes fd 4: this runs the browser with our two pipe ends
# moved there (a shell cannot always: dash redirects single-digit descriptors only).
_ON_FDS_3_AND_4 = """
import fcntl, os, sys
given = [int(fd) for fd in sys.argv[1:3]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in given]
for fd in given:
    os.close(fd)
os.dup2(high[0], 3)
os.dup2(high[1], 4)
for fd in high:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


def find_chromium() -> str | None:
    """The Chromium binary: ``$MINDSIGHT_CHROMIUM``, else ``chromium`` / ``chromium-browser`` /
    ``google-chrome`` on the PATH; ``None`` when there is none."""
    given = os.environ.get(ENV)
    if given:
        return given if Path(given).is_file() or shutil.which(given) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """Chromium did not start, answer or reach the awaited state in time."""


class Browser:
    """One headless Chromium with one page of ``size`` CSS pixels (a context manager)."""

    def __init__(self, binary: str | None = None, *, size: tuple[int, int] = (1280, 800),
                 timeout: float = 15.0) -> None:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError(f"no Chromium found (install it or set {ENV})")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="mindsight-chromium-")
        self._log = tempfile.TemporaryFile()
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        flags = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}", f"--window-size={size[0]},{size[1]}",
        ]
        binary = shutil.which(binary) or binary
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, str(to_child_r), str(from_child_w), binary,
             *flags, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.call("Target.attachToTarget", targetId=target,
                                      flatten=True)["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride", session=True, width=size[0],
                      height=size[1], deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._replies.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                reply = json.loads(message)
                if "id" in reply:  # events (no id) are not needed here
                    self._replies.put(reply)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one DevTools command (to the page when ``session``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                reply = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BrowserError(f"Chromium did not answer {method} in {self.timeout:g} s; "
                                   f"its log ends: {self.log_tail()}") from None
            if reply is None:
                raise BrowserError(f"Chromium exited during {method}; its log ends: "
                                   f"{self.log_tail()}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> None:
        """Poll until ``expression`` is truthy in the page (BrowserError after ``timeout``)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.evaluate(f"!!({expression})"):
            if time.monotonic() > deadline:
                raise BrowserError(f"the page never satisfied {expression!r}")
            time.sleep(0.05)

    def open(self, url: str, wait_for: str | None = None) -> None:
        """Load ``url``, wait for its load event, then for ``wait_for`` if given."""
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")
        if wait_for:
            self.wait_for(wait_for)

    def dom(self) -> str:
        """The page's current HTML (what ``--dump-dom`` prints)."""
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self, path: str | Path) -> Path:
        """Save the page's viewport as a PNG."""
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def log_tail(self, n: int = 600) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:].strip()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                os.write(self._to_child, json.dumps(
                    {"id": 10**9, "method": "Browser.close", "params": {}}).encode() + b"\0")
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=2)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dump_dom(url: str, *, wait_for: str | None = None, size: tuple[int, int] = (1280, 800),
             timeout: float = 15.0) -> str:
    """The HTML of ``url`` once loaded (and once ``wait_for`` holds), from a fresh Chromium."""
    with Browser(size=size, timeout=timeout) as browser:
        browser.open(url, wait_for)
        return browser.dom()


def screenshot(url: str, path: str | Path, size: tuple[int, int] = (1280, 800), *,
               wait_for: str | None = None, timeout: float = 15.0, settle: float = 0.5) -> Path:
    """A PNG of ``url`` at ``size`` CSS pixels, once loaded (and once ``wait_for`` holds), after
    ``settle`` seconds more so that CSS transitions have finished."""
    with Browser(size=size, timeout=timeout) as browser:
        browser.open(url, wait_for)
        time.sleep(settle)
        return browser.screenshot(path)
