"""A real headless Chromium driven over the DevTools protocol (a websocket on loopback): navigate, run script in
the page, click, screenshot. Enough to test a static page as a user uses it, without a browser-automation
framework."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


class Browser:
    def __init__(self, profile: Path, width: int = 1300, height: int = 1000):
        from websockets.sync.client import connect

        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # left by an earlier browser on this profile
        self.ws = None
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--allow-file-access-from-files", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "--hide-scrollbars", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.ws = self._connect(profile / "DevToolsActivePort", connect)
        except BaseException:
            self.close()
            raise
        self.next_id = 0

    def _connect(self, port_file: Path, connect):
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        return connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def renders(self) -> int:
        return int(self.eval("document.body ? +(document.body.dataset.renders || 0) : 0") or 0)

    def wait_renders(self, at_least: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.renders() < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not finish render {at_least}")
            time.sleep(0.02)

    def goto(self, url: str) -> float:
        """Open ``url`` and wait for its first render; the wall-clock seconds it took."""
        t0 = time.perf_counter()
        # another fragment of the page already open is a same-document navigation: its render count goes on
        # (a URL without a fragment loads the document again, and the count starts over)
        same = "#" in url and (self.eval("location.href") or "").split("#")[0] == url.split("#")[0]
        before = self.renders() if same else 0
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while self.eval("location.href") != url or self.renders() < before + 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not render")
            time.sleep(0.02)
        return time.perf_counter() - t0

    def act(self, script: str, timeout: float = 60) -> None:
        """Run ``script`` (a click, a changed control) and wait for the render it causes."""
        n = self.renders()
        self.eval(script)
        self.wait_renders(n + 1, timeout)

    def screenshot(self):
        """The viewport as an RGB numpy array, after images have loaded."""
        import numpy as np
        from PIL import Image

        self.eval("Promise.race([new Promise(r => setTimeout(r, 5000)), Promise.all([...document.images].filter("
                  "i => !i.complete && i.getBoundingClientRect().top < innerHeight).map(i => new Promise(r => "
                  "{ i.onload = i.onerror = r; })))])")
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.int32)

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):  # closing a socket the browser may have dropped
                self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pixels_near(arr, rgb, tol: int = 16) -> int:
    return int((abs(arr - rgb).max(axis=-1) <= tol).sum())
