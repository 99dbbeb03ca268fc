"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands
on fd 3, answers on fd 4, each a JSON message ending in NUL), for tests of the status page: load a
URL, wait inside the page for a DOM condition (a MutationObserver, with a deadline), read values,
take a screenshot. Stdlib only; the browser is ended by its pid.
"""
import base64
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, width=1400, height=1000):
        if not CHROMIUM:
            raise BrowserError("chromium is not installed (scripts/dev setup installs the "
                               "Debian package 'chromium')")
        self.profile = tempfile.mkdtemp(prefix="revenant-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.log = open(os.path.join(self.profile, "chromium.log"), "w+")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
             "--no-first-run", "--disable-extensions", "--disable-background-networking",
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.target = page["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time\n" + self.log_text())
            r, _, _ = select.select([self.from_chrome], [], [], left)
            if r:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium exited\n" + self.log_text())
                self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method, params=None, timeout=30.0, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.to_chrome, data)
            data = data[n:]
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") != self.next_id:
                continue  # an event, or the answer to nothing we wait for
            if "error" in m:
                raise BrowserError("%s: %s" % (method, m["error"]))
            return m["result"]

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})

    def eval(self, expr, timeout=30.0):
        r = self.call("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                           "returnByValue": True}, timeout=timeout + 5)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError("in the page: %s" % (
                d.get("exception", {}).get("description") or d.get("text")))
        return r["result"].get("value")

    def wait_for(self, cond, timeout=15.0, what=None):
        """Wait in the page until the JS expression cond is truthy (checked at every DOM change,
        and once at the start); its value, or BrowserError at the deadline."""
        js = """new Promise((resolve, reject) => {
          const check = () => { try { return (%s); } catch (e) { return false; } };
          const v = check();
          if (v) return resolve(v);
          const obs = new MutationObserver(() => {
            const v = check();
            if (v) { obs.disconnect(); clearTimeout(t); resolve(v); }
          });
          obs.observe(document, {subtree: true, childList: true, attributes: true,
                                 characterData: true});
          const t = setTimeout(() => { obs.disconnect(); reject(new Error("timed out: " + %s)); },
                               %d);
        })""" % (cond, json.dumps(what or cond), int(timeout * 1000))
        return self.eval(js, timeout=timeout)

    def screenshot(self, full_page=False):
        """A PNG of the viewport; full_page: the window is first made as tall as the page."""
        if full_page:
            height = int(self.call("Page.getLayoutMetrics")["cssContentSize"]["height"])
            inner = self.eval("innerHeight")
            win = self.call("Browser.getWindowForTarget", {"targetId": self.target},
                            session=False)["windowId"]
            bounds = self.call("Browser.getWindowBounds", {"windowId": win},
                               session=False)["bounds"]
            if height > inner:
                self.call("Browser.setWindowBounds", {"windowId": win, "bounds": {
                    "height": bounds["height"] + height - inner}}, session=False)
                self.wait_for("innerHeight >= %d" % height, timeout=5, what="the taller window")
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def log_text(self):
        try:
            self.log.seek(0)
            return self.log.read()[-3000:]
        except (OSError, ValueError):
            return ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def png_pixels(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB/RGBA PNG, decoded with zlib."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xff
            elif f == 2:
                line[i] = (line[i] + b) & 0xff
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xff
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xff
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows
