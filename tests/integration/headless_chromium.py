"""Load a page in headless Chromium (Debian's ``chromium``) and report what a person would see.

Speaks the DevTools protocol over ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies out,
each message JSON ending in NUL), so it needs nothing beyond the browser and the standard library.
:func:`inspect_page` returns console errors, uncaught exceptions, every request the page made, the
size of each ``<figure>`` and of its image, and a full-page screenshot (PNG bytes).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")

FIGURES_JS = """JSON.stringify([...document.querySelectorAll('figure')].map(f => {
  const r = f.getBoundingClientRect(); const img = f.querySelector('img');
  const ir = img ? img.getBoundingClientRect() : {width: 0, height: 0};
  return {width: r.width, height: r.height, img_width: ir.width, img_height: ir.height,
          natural_width: img ? img.naturalWidth : 0, natural_height: img ? img.naturalHeight : 0,
          alt: img ? img.alt : ''};
}))"""

DECODE_JS = """Promise.all([...document.images].map(
    i => i.decode().then(() => null, () => i.alt || i.src.slice(0, 40))))
  .then(failed => JSON.stringify(failed.filter(x => x !== null)))"""


def find_chromium() -> str | None:
    """``$EDITKIT_CHROMIUM``, else Debian's ``chromium`` (or ``chromium-browser``) on PATH."""
    override = os.environ.get("EDITKIT_CHROMIUM")
    if override:
        return override if shutil.which(override) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@attrs.frozen(kw_only=True)
class PageCheck:
    console_errors: list[str]
    requests: list[str]
    figures: list[dict[str, Any]]
    undecodable_images: list[str]
    screenshot: bytes = attrs.field(repr=False)


class _Pipe:
    def __init__(self, process: subprocess.Popen, to_browser: int, from_browser: int, timeout: float) -> None:
        self.process = process
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.deadline = time.monotonic() + timeout
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the DevTools pipe (exit {self.process.poll()})")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message()
            self.events.append(event)
            if event.get("method") == method:
                return event


def inspect_page(url: str, *, chromium: str, width: int = 1280, timeout: float = 90.0) -> PageCheck:
    """Open ``url`` at ``width`` CSS pixels in a fresh profile; see :class:`PageCheck`."""
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    def child_fds() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
        read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)  # out of the way of 3 and 4 first
        write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.dup2(read_end, 3)  # inheritable; everything else of ours is close-on-exec (PEP 446)
        os.dup2(write_end, 4)

    with tempfile.TemporaryDirectory(prefix="editkit-chromium-") as profile:
        process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, close_fds=False,  # closing fds would close 3 and 4 again
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        pipe = _Pipe(process, to_browser_w, from_browser_r, timeout)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
            pipe.send("Page.navigate", {"url": url}, session)
            pipe.wait_for("Page.loadEventFired")
            failed = json.loads(pipe.send("Runtime.evaluate", {"expression": DECODE_JS, "awaitPromise": True,
                                                               "returnByValue": True}, session)["result"]["value"])
            figures = json.loads(pipe.send("Runtime.evaluate", {"expression": FIGURES_JS, "returnByValue": True},
                                           session)["result"]["value"])
            size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = pipe.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}, session)
            errors = _errors(pipe.events)
            requests = [e["params"]["request"]["url"] for e in pipe.events
                        if e.get("method") == "Network.requestWillBeSent"]
            with contextlib.suppress(RuntimeError):  # the browser may close the pipe before it answers
                pipe.send("Browser.close")
        finally:
            os.close(to_browser_w)
            os.close(from_browser_r)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return PageCheck(console_errors=errors, requests=requests, figures=figures, undecodable_images=failed,
                     screenshot=base64.b64decode(shot["data"]))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in
                                                  params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append("log: " + str(params["entry"].get("text")))
    return errors


def save_screenshot(check: PageCheck, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(check.screenshot)
    return path
