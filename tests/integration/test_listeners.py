"""The agent's local listeners under abuse (issue 11, finding 3): idle and slow HTTP clients, fd
exhaustion, requests split across segments, the control socket's caps and deadlines. Each test starts its own agent; every wait is for a socket,
an event in the log or a process state, with a deadline."""
import json
import os
import re
import resource
import select
import socket
import time

from harness import Agent, free_port, run_tests, run_as

REQUEST_S = 10  # HTTPD_REQUEST_MS: a request must arrive within this of the connect
CONTROL_REQUEST_S = 5  # CONTROL_REQUEST_MS
CONTROL_MAX_CLIENTS = 64
# A spin on a readable listener takes a whole CPU (the previous code: 78-100 % here). The agent
# watches the whole host, so other processes' events cost it CPU too (other tests on this machine
# made 1000 port events a second and up to 23 % of a CPU in a window): the bar sits between.
SPIN_SHARE = 0.5


def raise_own_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def cpu_ticks(pid):
    """utime + stime of pid, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rpartition(")")[2].split()
    return int(rest[11]) + int(rest[12])


def cpu_share(pid, seconds):
    """The share of one CPU pid used over a window of `seconds`: a measurement window, not a
    wait for anything (what is measured is that nothing happens: no busy loop)."""
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    time.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_ticks(pid)
    return (c1 - c0) / hz / (t1 - t0)


def nofile_soft(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


def metrics_agent(name, services=None, **extra):
    cfg = {"services": services or {"a": {"command": "exec sleep 1000", "auto_restart": False}},
           "metrics": {"listen": "127.0.0.1:%d" % free_port()}}
    cfg.update(extra)
    a = Agent(cfg, name)
    a.mport = int(cfg["metrics"]["listen"].rsplit(":", 1)[1])
    return a


def start(agent, **kw):
    """Start and wait until its listeners are open: the agent's own port_listen on metrics.listen
    comes after the control socket is bound."""
    agent.start(**kw)
    agent.wait_event(lambda e: e["type"] == "port_listen" and e.get("port") == agent.mport and
                     e.get("pid") == agent.proc.pid, what="metrics listener")
    return agent


def read_all(sock, timeout=10.0):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        data += b
    return data


def http(port, raw, timeout=10.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(raw)
        return read_all(c, timeout)


def metric(resp, name):
    m = re.search(rb"^%s (\d+)$" % name.encode(), resp, re.M)
    assert m, "no %s in\n%s" % (name, resp.decode(errors="replace"))
    return int(m.group(1))


def status_line(resp):
    return resp.split(b"\r\n", 1)[0].decode(errors="replace")


def closed_by_peer(sock, deadline):
    """Wait until the peer closes sock (EOF or reset); False at the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([sock], [], [], left)
        if r:
            try:
                if sock.recv(4096) == b"":
                    return True
            except (ConnectionResetError, BlockingIOError):
                return True


def agent_socket_rx(mport, client_port):
    """rx_queue of the agent's side of the connection from client_port, or None while the
    kernel has no such socket (/proc/net/tcp: local and remote as hex IP:port)."""
    want_local = ":%04X" % mport
    want_remote = ":%04X" % client_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if p[1].endswith(want_local) and p[2].endswith(want_remote):
                return int(p[4].split(":")[1], 16)
    return None


def wait_agent_read(mport, client_port, timeout=10.0):
    """Until the agent has read everything sent on that connection (its receive queue is 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent_socket_rx(mport, client_port) == 0:
            return
        select.select([], [], [], 0.005)
    raise AssertionError("the agent did not read the first segment within %ss" % timeout)


def status_json(agent, timeout=10):
    r = run_as(["status", "--json", "-c", agent.config_path], timeout=timeout)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


# ---- tests --------------------------------------------------------------------------------------

def test_2000_idle_metrics_clients_at_nofile_1024():
    """2000 clients that connect and send nothing, the agent at RLIMIT_NOFILE 1024 (soft and
    hard, so it cannot raise it): status still answers, the agent does not spin, and once the
    clients are gone /metrics answers again."""
    raise_own_nofile(4096)
    agent = metrics_agent("idle2000")
    clients = []
    try:
        start(agent,
              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
        agent.wait_event(lambda e: e["type"] == "service_start", what="service_start")
        assert nofile_soft(agent.proc.pid) == 1024
        for _ in range(2000):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", agent.mport))  # not waited for: the agent may be slow
            clients.append(s)
        t0 = time.monotonic()
        st = status_json(agent, timeout=10)
        took = time.monotonic() - t0
        assert st["services"]["a"]["state"] == "running", st
        share = cpu_share(agent.proc.pid, 3.0)
        print("status under 2000 idle clients: %.0f ms; agent CPU over 3 s: %.1f %%"
              % (took * 1000, share * 100))
        assert share < SPIN_SHARE, "the agent used %.0f%% of a CPU with idle clients" % (
            share * 100)
        nfd = len(os.listdir("/proc/%d/fd" % agent.proc.pid))
        assert nfd < 1000, "the agent holds %d fds" % nfd
        for s in clients:
            s.close()
        clients = []
        # Closed clients are noticed at once (EOF): /metrics answers without waiting for the
        # request deadline.
        deadline = time.monotonic() + 5
        while True:
            r = http(agent.mport, b"GET /metrics HTTP/1.0\r\n\r\n")
            if status_line(r) == "HTTP/1.1 200 OK" or time.monotonic() > deadline:
                break
            select.select([], [], [], 0.05)
        assert status_line(r) == "HTTP/1.1 200 OK", r[:200]
        assert metric(r, "revenant_http_connections_max") == 256  # a quarter of 1024
        assert metric(r, "revenant_http_full_total") > 0, "the cap was never reached"
    finally:
        for s in clients:
            s.close()
        agent.close()


def test_request_split_across_segments():
    """'GET /met' then, once the agent has read it, 'rics ...': one request, answered 200."""
    agent = metrics_agent("split")
    try:
        start(agent)
        with socket.create_connection(("127.0.0.1", agent.mport), timeout=10) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sendall(b"GET /met")
            wait_agent_read(agent.mport, c.getsockname()[1])
            c.sendall(b"rics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            r = read_all(c)
        assert status_line(r) == "HTTP/1.1 200 OK", r[:200]
        assert b"revenant_events_total" in r
        # and limits answer with their status, not a hang or a 404
        big = b"GET /metrics HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
        assert status_line(http(agent.mport, big)) == "HTTP/1.1 431 Request Header Fields Too Large"
        long_target = b"GET /" + b"a" * 2000 + b" HTTP/1.0\r\n\r\n"
        assert status_line(http(agent.mport, long_target)) == "HTTP/1.1 414 URI Too Long"
        body = b"POST /metrics HTTP/1.0\r\nContent-Length: 100000\r\n\r\n"
        assert status_line(http(agent.mport, body)) == "HTTP/1.1 413 Content Too Large"
        assert status_line(http(agent.mport, b"\x16\x03\x01\x02\x00")) == "HTTP/1.1 400 Bad Request"
    finally:
        agent.close()


def test_idle_and_slow_clients_closed_after_timeout():
    """Clients that send nothing, or half a request, are closed at the request deadline — not
    before (a slow client gets its full time) and not never."""
    agent = metrics_agent("idle")
    try:
        start(agent)
        idle = [socket.create_connection(("127.0.0.1", agent.mport)) for _ in range(5)]
        slow = socket.create_connection(("127.0.0.1", agent.mport))
        t0 = time.monotonic()
        slow.sendall(b"GET /metr")
        deadline = t0 + REQUEST_S + 5
        for s in idle + [slow]:
            assert closed_by_peer(s, deadline), "a client was still open after %ds" % (
                REQUEST_S + 5)
        took = time.monotonic() - t0
        assert took >= REQUEST_S - 1, "closed after %.1fs, before the %ds deadline" % (
            took, REQUEST_S)
        for s in idle + [slow]:
            s.close()
        r = http(agent.mport, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert status_line(r) == "HTTP/1.1 200 OK"
        timeouts = metric(r, "revenant_http_timeouts_total")
        assert timeouts >= 6, timeouts
    finally:
        agent.close()


def test_fd_exhaustion_no_spin():
    """With its fd limit lowered under it, the agent sheds connections it has no fd for
    (accept-and-close with a spare fd) instead of spinning on a readable listener; once the
    clients leave, /metrics and status answer again."""
    agent = metrics_agent("emfile")
    clients = []
    try:
        start(agent)
        agent.wait_event(lambda e: e["type"] == "service_start", what="service_start")
        pid = agent.proc.pid
        nfd = len(os.listdir("/proc/%d/fd" % pid))
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (nfd + 4, hard))
        for _ in range(50):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", agent.mport))
            clients.append(s)
        # status cannot be served without an fd, but it must fail fast, not hang
        t0 = time.monotonic()
        r = run_as(["status", "-c", agent.config_path], timeout=20)
        assert time.monotonic() - t0 < 10, "status hung while fds were exhausted"
        share = cpu_share(pid, 3.0)
        print("agent CPU over 3 s with no fd left: %.1f %%" % (share * 100))
        assert share < SPIN_SHARE, "the agent used %.0f%% of a CPU at EMFILE" % (share * 100)
        for s in clients:
            s.close()
        clients = []
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
        r = http(agent.mport, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert status_line(r) == "HTTP/1.1 200 OK", r[:200]
        shed = metric(r, "revenant_http_shed_total")
        assert shed > 0, "no connection was shed"
        assert status_json(agent)["services"]["a"]["state"] == "running"
    finally:
        for s in clients:
            s.close()
        agent.close()


def test_nofile_raised_for_the_agent_not_its_services():
    agent = metrics_agent("nofile")
    try:
        start(agent, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, 4096)))
        e = agent.wait_event(lambda e: e["type"] == "service_start", what="service_start")
        assert nofile_soft(agent.proc.pid) == 4096
        wait_exec(e["pid"], "sleep")
        assert nofile_soft(e["pid"]) == 512, "the service inherited the agent's raised limit"
    finally:
        agent.close()


def wait_exec(pid, comm, timeout=10.0):
    """Until pid runs comm (its exec happened: what the child set up before is in place)."""
    deadline = time.monotonic() + timeout
    while True:
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() == comm:
                return
        assert time.monotonic() < deadline, "pid %d never ran %s" % (pid, comm)
        select.select([], [], [], 0.005)


def control_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    return s


def test_control_socket_cap_and_idle_deadline():
    """64 idle control clients: a 65th waits in the backlog (it is not served while they hold
    every slot); the idle ones are closed at the request deadline, and then it is answered."""
    agent = metrics_agent("ctlcap")
    idle = []
    try:
        start(agent)
        path = agent.config["control"]["socket"]
        t0 = time.monotonic()
        idle = [control_connect(path) for _ in range(CONTROL_MAX_CLIENTS)]
        extra = control_connect(path)
        extra.send(b'{"cmd":"status"}')
        r, _, _ = select.select([extra], [], [], CONTROL_REQUEST_S + 5)
        answered = time.monotonic() - t0
        assert r, "the 65th client was never answered"
        resp = json.loads(extra.recv(65536))
        extra.close()
        assert resp.get("ok") is True and "a" in resp["services"], resp
        assert answered >= CONTROL_REQUEST_S - 1, (
            "the 65th client was served after %.1fs, while 64 others held the slots" % answered)
        for s in idle:
            assert closed_by_peer(s, t0 + CONTROL_REQUEST_S + 5), "an idle control client was kept"
        assert status_json(agent)["services"]["a"]["state"] == "running"
    finally:
        for s in idle:
            s.close()
        agent.close()


if __name__ == "__main__":
    run_tests([
        test_request_split_across_segments,
        test_nofile_raised_for_the_agent_not_its_services,
        test_2000_idle_metrics_clients_at_nofile_1024,
        test_fd_exhaustion_no_spin,
        test_idle_and_slow_clients_closed_after_timeout,
        test_control_socket_cap_and_idle_deadline,
    ])
