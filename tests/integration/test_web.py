"""The live status page (issue 14): the page in headless Chromium (every service row, an exit and
its restart shown live through the event stream, a screenshot that is not blank), the JSON
endpoints against the CLI's --json output, Server-Sent Events resume with Last-Event-ID, and
control: read-only by default, POST only with the token. Every wait is for an event in the log,
a DOM change in the page or a socket, with a deadline."""
import json
import os
import select
import signal
import socket
import stat
import sys
import time

from browser import Browser, png_pixels
from harness import BIN, Agent, free_port, run_as, run_tests, spawn, tell, end, ZOMBIE_PARENT
from test_supervisor import SERVICE, ZOMBIE_SERVICE

HEALTH = {"http": "/health", "interval_ms": 200, "timeout_ms": 500}


def stack_agent(name, n=3, control=False, zombie=False, token_file=None):
    services = {}
    for i in range(n):
        services["svc%d" % i] = {"command": "exec %s svc.py" % sys.executable,
                                 "port": free_port(), "health": dict(HEALTH),
                                 "stop_timeout_ms": 2000}
    if zombie:
        services["leaky"] = {"command": "exec %s zsvc.py report" % sys.executable,
                             "zombie_policy": "report", "stop_timeout_ms": 2000}
    mport = free_port()
    metrics = {"listen": "127.0.0.1:%d" % mport, "control": control}
    if token_file:
        metrics["token_file"] = token_file
    a = Agent({"services": services, "monitoring": {"zombie_grace_ms": 200},
               "metrics": metrics}, name)
    with open(os.path.join(a.dir, "svc.py"), "w") as f:
        f.write(SERVICE)
    with open(os.path.join(a.dir, "zsvc.py"), "w") as f:
        f.write(ZOMBIE_SERVICE)
    a.mport = mport
    a.url = "http://127.0.0.1:%d/" % mport
    return a


def start(agent):
    agent.start()
    agent.wait_event(lambda e: e["type"] == "port_listen" and e.get("port") == agent.mport and
                     e.get("pid") == agent.proc.pid, what="the agent's HTTP listener")
    for name, s in agent.config["services"].items():
        if "health" in s:
            agent.wait_event(lambda e, name=name: e["type"] == "health" and
                             e.get("service") == name and e["ok"], what="%s healthy" % name)
        else:
            agent.wait_event(lambda e, name=name: e["type"] == "service_start" and
                             e.get("service") == name, what="%s started" % name)
    return agent


def request(port, method, path, headers=None, body=b"", timeout=10):
    """(status, headers dict with lowercase names, body bytes)."""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n" % (method, path, port)
    hdrs = dict(headers or {})
    if body or method == "POST":
        hdrs.setdefault("Content-Length", str(len(body)))
    for k, v in hdrs.items():
        head += "%s: %s\r\n" % (k, v)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    status = int(lines[0].split()[1])
    h = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        h[k.strip().lower()] = v.strip()
    return status, h, rest


def get_json(agent, path):
    status, _, body = request(agent.mport, "GET", path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def cli_json(agent, *args):
    r = run_as([*args, "--json", "-c", agent.config_path])
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def service_pid(agent, name):
    return cli_json(agent, "status")["services"][name]["pid"]


# ---- the page in a browser ----------------------------------------------------------------------

ROWS = "document.querySelectorAll('#services tr[data-service]')"


def check_not_blank(png):
    w, h, rows = png_pixels(png)
    assert w >= 800 and h >= 400, (w, h)
    colours = {}
    for row in rows[::4]:
        for p in row[::4]:
            colours[p] = colours.get(p, 0) + 1
    total = sum(colours.values())
    top = max(colours.values())
    assert len(colours) > 20, "the screenshot has %d colours" % len(colours)
    assert top < 0.95 * total, "the screenshot is %.0f%% one colour" % (100.0 * top / total)


def test_page_shows_services_and_a_crash_live():
    agent = stack_agent("page")
    browser = None
    try:
        start(agent)
        names = sorted(agent.config["services"])
        browser = Browser(1280, 900)
        browser.navigate(agent.url)
        browser.wait_for("document.body.dataset.ready === '1' && %s.length === %d"
                         % (ROWS, len(names)), what="every service row")
        rows = browser.eval("[...%s].map(r => r.dataset.service)" % ROWS)
        assert sorted(rows) == names, rows
        # each row shows what status says (waited for: the page follows a change live)
        st = cli_json(agent, "status")["services"]
        for name in names:
            browser.wait_for(
                "(r => r.dataset.pid === '%d' && r.querySelector('.c-state').textContent === "
                "'%s' && r.querySelector('.c-port').textContent === '%d')(document.querySelector("
                "'#services tr[data-service=%s]'))" % (st[name]["pid"], st[name]["state"],
                                                       st[name]["port"], name),
                what="row %s as in status: %r" % (name, st[name]))
            assert st[name]["state"] == "running", st
        # read-only by default: no control buttons
        assert browser.eval("document.querySelectorAll('button.act').length") == 0
        load_id = browser.eval("window.revenantLoadId")

        victim = "svc1"
        old = st[victim]["pid"]
        n = len(agent.events)
        os.kill(old, signal.SIGKILL)
        new = agent.wait_event(lambda e: e["type"] == "service_start" and
                               e["service"] == victim, since=n, what="the restart")["pid"]
        # The page shows the exit (signal), the restart and the new pid, without a reload.
        sel = "document.querySelector('#services tr[data-service=%s]')" % victim
        browser.wait_for(
            "%s.dataset.pid === '%d' && %s.querySelector('.c-last-exit').dataset.exit === "
            "'signal SIGKILL' && document.querySelector('#events li[data-type=service_exit]"
            "[data-service=%s]') && document.querySelector('#events "
            "li[data-type=service_restart][data-service=%s]')" % (sel, new, sel, victim, victim),
            what="the exit and the restart of %s" % victim)
        assert browser.eval("window.revenantLoadId") == load_id, "the page was reloaded"
        assert browser.eval("%s.querySelector('.c-restarts').textContent" % sel) == "1"
        # the timeline of that service shows the exit
        assert browser.eval("%s.querySelectorAll('.c-history rect.exit').length" % sel) >= 1
        png = browser.screenshot(full_page=True)
        out = os.path.join(os.path.dirname(os.path.abspath(BIN)), "status-page.png")
        with open(out, "wb") as f:
            f.write(png)
        print("screenshot: %s" % out)
        check_not_blank(png)
    finally:
        if browser:
            browser.close()
        agent.close()


def test_page_control_buttons_with_token():
    """With metrics.control and the token (given in the URL fragment, never sent), the page has
    buttons and a click restarts the service."""
    agent = stack_agent("pagectl", n=1, control=True)
    browser = None
    try:
        start(agent)
        token_file = os.path.join(os.path.dirname(agent.config["control"]["socket"]),
                                  "metrics.token")
        with open(token_file) as f:
            token = f.read().strip()
        old = service_pid(agent, "svc0")
        browser = Browser(1280, 900)
        browser.navigate(agent.url + "#token=" + token)
        browser.wait_for("document.body.dataset.ready === '1' && "
                         "document.querySelectorAll('button.act').length === 3",
                         what="control buttons")
        assert browser.eval("location.hash") == "", "the token stayed in the URL"
        n = len(agent.events)
        browser.eval("document.querySelector('tr[data-service=svc0] button[data-cmd=restart]')"
                     ".click() || true")
        new = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "svc0",
                               since=n, what="restart from the page")["pid"]
        assert new != old
        browser.wait_for("document.querySelector('tr[data-service=svc0]').dataset.pid === '%d'"
                         % new, what="the new pid on the page")
        assert "accepted" in browser.eval("document.getElementById('control-msg').textContent")
    finally:
        if browser:
            browser.close()
        agent.close()


# ---- the JSON endpoints against the CLI ---------------------------------------------------------

def test_json_endpoints_equal_cli():
    agent = stack_agent("json", n=2, zombie=True)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    parent = None
    try:
        start(agent)
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e.get("service") == "leaky",
                             what="the service's zombie")
        parent = spawn(ZOMBIE_PARENT)
        mine = int(tell(parent, "fork")[0])  # a zombie of the test's own, no service
        udp.bind(("127.0.0.1", free_port(socket.SOCK_DGRAM)))

        # status: same services and fields, same moment (uptime moves on)
        api, cli = get_json(agent, "/api/status"), cli_json(agent, "status")
        assert set(api) == set(cli) and "services" in api, (set(api), set(cli))
        assert list(api["services"]) == list(cli["services"])
        for name, s in cli["services"].items():
            a = api["services"][name]
            assert set(a) == set(s), (a, s)
            for k in ("state", "pid", "port", "restarts", "health"):
                assert a[k] == s[k], (name, k, a, s)
            if "uptime_ms" in s:
                assert abs(a["uptime_ms"] - s["uptime_ms"]) < 5000

        # ports: scan --json --tcp (and with ?udp=1, scan --json): the rows of our sockets are
        # the same objects (other tests on this host may add or drop their own meanwhile)
        ours = {s["port"] for s in agent.config["services"].values() if "port" in s}
        ours.add(agent.mport)
        for q, args in (("", ("scan", "--tcp")), ("?udp=1", ("scan",))):
            api = get_json(agent, "/api/ports" + q)
            cli = cli_json(agent, *args)
            key = lambda r: (r["proto"], r["addr"], r["port"], r["netns"])
            a = {key(r): r for r in api if r["port"] in ours}
            c = {key(r): r for r in cli if r["port"] in ours}
            assert a == c, (q, a, c)
            assert len(a) == len(ours), (q, sorted(ours), sorted(a))
            assert all(r["service"] for r in a.values() if r["port"] != agent.mport)
            if q:
                me = [r for r in api if r["proto"] == "udp" and
                      r["port"] == udp.getsockname()[1]]
                assert me and me[0]["pid"] == os.getpid(), me
            # and on the whole, the same shape ("inode" is there when the kernel gave one)
            fields = set(cli[0]) - {"inode"}
            assert all(set(r) - {"inode"} == fields for r in api), "fields differ"

        # zombies: both zombies, the same fields (age moves on)
        api, cli = get_json(agent, "/api/zombies"), cli_json(agent, "zombies")
        for pid, svc in ((z["pid"], "leaky"), (mine, None)):
            a = [r for r in api if r["pid"] == pid]
            c = [r for r in cli if r["pid"] == pid]
            assert len(a) == 1 and len(c) == 1, (pid, api, cli)
            a, c = a[0], c[0]
            assert a["service"] == svc, a
            assert abs(a.pop("age_ms") - c.pop("age_ms")) < 5000
            assert a == c, (a, c)
    finally:
        udp.close()
        if parent:
            end(parent)
        agent.close()


# ---- the event stream -----------------------------------------------------------------------------

class Stream:
    """A raw SSE client: events as (id, data, event-name) in arrival order."""

    def __init__(self, port, query="", last_id=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        req = "GET /api/events%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % query
        if last_id is not None:
            req += "Last-Event-ID: %d\r\n" % last_id
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        self.head = None
        self.events = []

    def pump(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("the stream was closed")
        self.buf += data
        if self.head is None and b"\r\n\r\n" in self.buf:
            self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        while self.head is not None and b"\n\n" in self.buf:
            block, _, self.buf = self.buf.partition(b"\n\n")
            ev = {"id": None, "data": None, "event": "message"}
            for line in block.decode().split("\n"):
                k, _, v = line.partition(": ")
                if k == "id":
                    ev["id"] = int(v)
                elif k == "data":
                    ev["data"] = v
                elif k == "event":
                    ev["event"] = v
            if ev["data"] is not None:
                self.events.append(ev)
        return True

    def until(self, pred, timeout=10.0, what="stream events"):
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; got %r" % (what, self.events[-5:]))
            self.pump(left)

    def messages(self):
        return [e for e in self.events if e["event"] == "message"]

    def close(self):
        self.sock.close()


def log_lines(agent):
    with open(agent.log_path, "rb") as f:
        return [l.decode() for l in f.read().split(b"\n") if l]


def test_event_stream_and_resume():
    agent = stack_agent("sse", n=1)
    streams = []
    try:
        start(agent)
        s = Stream(agent.mport, "?replay=1024")
        streams.append(s)
        s.until(lambda s: s.events and s.events[0]["event"] == "agent")
        hello = json.loads(s.events[0]["data"])
        assert hello["agent_pid"] == agent.proc.pid and hello["missed"] == 0
        last = hello["next_event_id"] - 1
        s.until(lambda s: s.messages() and s.messages()[-1]["id"] == last, what="the replay")
        assert b"text/event-stream" in s.head
        # The replay is the log, line for line (all but agent_start, logged before the tap; the
        # log may have grown since: the agent sees the whole host's events).
        lines = log_lines(agent)
        got = [e["data"] for e in s.messages()]
        assert lines[0].find('"agent_start"') > 0 and got[0] == lines[1], (got[:2], lines[:2])
        assert got == lines[1:1 + len(got)], "the replay differs from the log"
        ids = [e["id"] for e in s.messages()]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "ids not consecutive"

        # live: a restart's events arrive as they are logged
        n = len(agent.events)
        run_as(["restart", "-c", agent.config_path, "svc0"])
        agent.wait_event(lambda e: e["type"] == "health" and e["ok"], since=n,
                         what="healthy after the restart")
        lines = log_lines(agent)
        s.until(lambda s: lines[-1] in (e["data"] for e in s.messages()[-2000:]),
                what="the live events")
        got = [e["data"] for e in s.messages()]
        assert got == lines[1:1 + len(got)], "the stream differs from the log"
        all_msgs = s.messages()

        # resume from an id in the middle: exactly what came after it
        k = all_msgs[len(all_msgs) // 2]["id"]
        r = Stream(agent.mport, last_id=k)
        streams.append(r)
        r.until(lambda r: r.messages() and r.messages()[-1]["id"] == all_msgs[-1]["id"],
                what="the resumed stream")
        assert [(e["id"], e["data"]) for e in r.messages()] == \
            [(e["id"], e["data"]) for e in all_msgs if e["id"] > k]

        # a resume from further back than the ring reaches says how much was missed
        for _ in range(600):  # 1200 events: port_listen and port_release
            l = socket.socket()
            l.bind(("127.0.0.1", 0))
            l.listen()
            l.close()
        agent.wait_event(lambda e: e["type"] == "port_release", since=len(agent.events),
                         what="the last release")
        g = Stream(agent.mport, last_id=1)
        streams.append(g)
        g.until(lambda g: g.events)
        info = json.loads(g.events[0]["data"])
        assert g.events[0]["event"] == "agent" and info["missed"] > 0, g.events[0]
        g.until(lambda g: g.messages())
        assert g.messages()[0]["id"] == 2 + info["missed"], (g.messages()[0]["id"], info)
        # the first stream kept up with all of it
        s.until(lambda s: s.messages()[-1]["id"] >= info["next_event_id"] - 1, timeout=20,
                what="the first stream catching up")
        ids = [e["id"] for e in s.messages()]
        gaps = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
        assert not gaps, "the first stream lost events: %s; %s" % (
            gaps[:5], [e for e in s.events if e.get("event") == "agent"][-2:])
    finally:
        for s in streams:
            s.close()
        agent.close()


def http_connections(agent):
    _, _, body = request(agent.mport, "GET", "/metrics")
    for line in body.decode().split("\n"):
        if line.startswith("revenant_http_connections "):
            return int(line.split()[1])
    raise AssertionError("no revenant_http_connections in /metrics")


def test_stuck_stream_client_is_dropped():
    """A stream client that never reads is dropped once more than 512 KiB is queued for it — well
    before the 10 s write deadline — while a reading client keeps every event."""
    agent = stack_agent("stuck", n=1)
    streams = []
    try:
        start(agent)
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stuck.connect(("127.0.0.1", agent.mport))
        stuck.sendall(b"GET /api/events?replay=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        streams.append(stuck)
        reader = Stream(agent.mport, "?replay=0")
        streams.append(reader.sock)
        reader.until(lambda r: r.events, what="the reader's first event")
        assert http_connections(agent) == 3  # the two streams and this request
        t0 = time.monotonic()
        n = 0
        while http_connections(agent) > 2 and time.monotonic() - t0 < 8:
            for _ in range(200):  # 400 events of ~250 bytes: port_listen, port_release
                l = socket.socket()
                l.bind(("127.0.0.1", 0))
                l.listen()
                l.close()
            n += 400
            while reader.pump(0):  # this one keeps up
                pass
        took = time.monotonic() - t0
        assert http_connections(agent) == 2, "the stuck client was kept (%d events)" % n
        assert took < 8, "dropped after %.1f s: by the write deadline, not by its backlog" % took
        last = agent.wait_event(lambda e: e["type"] == "port_release", since=len(agent.events))
        lines = log_lines(agent)
        reader.until(lambda r: r.messages() and r.messages()[-1]["data"] == lines[-1] or
                     len(r.messages()) >= n, timeout=20, what="the reader catching up")
        ids = [e["id"] for e in reader.messages()]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "the reader lost events"
        assert len(ids) >= n, (len(ids), n, last)
    finally:
        for s in streams:
            s.close()
        agent.close()


# ---- control and the listener's rules ---------------------------------------------------------

def test_control_needs_the_token():
    agent = stack_agent("ctl", n=1, control=True)
    ro = stack_agent("ro", n=1)
    try:
        start(agent)
        start(ro)
        path = os.path.join(os.path.dirname(agent.config["control"]["socket"]), "metrics.token")
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
        with open(path) as f:
            token = f.read().strip()
        assert len(token) == 64, token
        body = json.dumps({"cmd": "restart", "service": "svc0"}).encode()
        pid = service_pid(agent, "svc0")
        n = len(agent.events)
        for hdrs in ({}, {"X-Revenant-Token": "0" * 64}, {"Authorization": "Bearer " + token[:-1]},
                     {"X-Revenant-Token": token + "x"}):
            code, _, resp = request(agent.mport, "POST", "/api/control", hdrs, body)
            assert code == 403 and b"token" in resp, (hdrs, code, resp)
        code, h, _ = request(agent.mport, "GET", "/api/control")
        assert code == 405 and "POST" in h.get("allow", ""), (code, h)
        code, _, _ = request(agent.mport, "POST", "/api/control", {"X-Revenant-Token": token},
                             b'{"cmd": "stop_all"}')
        assert code == 400
        # a page elsewhere that rebinds its name to 127.0.0.1: refused (but not /metrics)
        code, _, _ = request(agent.mport, "GET", "/api/status", {"Host": "evil.example"})
        assert code == 400, code  # two Host fields: the request itself is malformed
        with socket.create_connection(("127.0.0.1", agent.mport)) as c:
            c.sendall(b"GET /api/status HTTP/1.1\r\nHost: evil.example:80\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 403"), "a foreign Host was served"
        with socket.create_connection(("127.0.0.1", agent.mport)) as c:
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: prometheus.example\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 200")
        assert service_pid(agent, "svc0") == pid
        assert not [e for e in agent.events[n:] if e["type"] == "service_exit"]

        code, h, resp = request(agent.mport, "POST", "/api/control",
                                {"X-Revenant-Token": token}, body)
        assert code == 202 and json.loads(resp)["accepted"] is True, (code, resp)
        new = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "svc0",
                               since=n, what="the restart")["pid"]
        assert new != pid
        assert "content-security-policy" in h

        # read-only: the right header does not help
        code, _, resp = request(ro.mport, "POST", "/api/control", {"X-Revenant-Token": token},
                                body)
        assert code == 403 and b"read-only" in resp, (code, resp)
        code, h, page = request(ro.mport, "GET", "/")
        assert code == 200 and b"<!doctype html>" in page
        csp = h["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
    finally:
        agent.close()
        ro.close()


def test_token_file_planted_as_symlink_is_refused():
    d = "/tmp/revenant-token-%d" % os.getpid()
    os.mkdir(d, 0o755)
    link = os.path.join(d, "token")
    os.symlink("/etc/hostname", link)
    agent = stack_agent("tokenlink", n=1, control=True, token_file=link)
    try:
        start(agent)
        assert "symlink" in agent.stderr_text() or "token" in agent.stderr_text()
        code, _, resp = request(agent.mport, "POST", "/api/control",
                                {"X-Revenant-Token": "x" * 64}, b'{"cmd":"stop","service":"svc0"}')
        assert code == 403 and b"token file could not be used" in resp, (code, resp)
        assert os.path.islink(link) and os.readlink(link) == "/etc/hostname"
        assert get_json(agent, "/api/info")["control"] is False
    finally:
        agent.close()
        os.unlink(link)
        os.rmdir(d)


if __name__ == "__main__":
    run_tests([
        test_json_endpoints_equal_cli,
        test_control_needs_the_token,
        test_token_file_planted_as_symlink_is_refused,
        test_event_stream_and_resume,
        test_stuck_stream_client_is_dropped,
        test_page_shows_services_and_a_crash_live,
        test_page_control_buttons_with_token,
    ])
