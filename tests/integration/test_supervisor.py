"""The supervisor (issue 4): a real stack under `revenant run` — dependency order, health, status,
graceful stop, port squatters and collisions, crash loops, zombie policies, and the CLI driving it
over the control socket. Every wait is for an event in the agent's log or for a process exit."""
import datetime
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys

from harness import (Agent, BIN, end, run_as, free_port, group_alive, pid_alive, port_bindable, run_tests,
                     spawn, tell, wait_exit)

# A service: an HTTP server on 127.0.0.1:$PORT answering /health. With $GATE naming a fifo that
# exists, it first reads one line from it (the test decides when the bind happens); the fifo is
# removed then, so a restarted instance binds at once.
SERVICE = r"""
import http.server, os, sys
port = int(os.environ["PORT"])
gate = os.environ.get("GATE")
if gate and os.path.exists(gate):
    with open(gate) as f:
        f.readline()
    os.unlink(gate)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/health" else 404
        body = ("%s %d\n" % (os.environ.get("REVENANT_SERVICE"), port)).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

srv = http.server.HTTPServer(("127.0.0.1", port), H)
print("listening on", port, flush=True)
srv.serve_forever()
"""

# A parent that leaves one zombie child: the child exits, the parent never waits for it. Under
# "nudge" the parent reaps from a SIGCHLD handler, and its child is made with exit signal 0 (raw
# clone), so the only SIGCHLD it ever gets is the agent's nudge — whatever the scheduling delays.
# With a marker file argument, only the first run leaks.
ZOMBIE_SERVICE = r"""
import ctypes, os, signal, sys, time
mode = sys.argv[1]
marker = sys.argv[2] if len(sys.argv) > 2 else None
if marker and os.path.exists(marker):
    while True:
        signal.pause()
if marker:
    open(marker, "w").close()
WALL = 0x40000000  # __WALL: also wait for children whose exit signal is not SIGCHLD
if mode == "nudge":
    def reap(*a):
        print("reaped", os.waitpid(-1, os.WNOHANG | WALL), "%.6f" % time.time(), flush=True)
    signal.signal(signal.SIGCHLD, reap)
    nr = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
    kid = ctypes.CDLL(None, use_errno=True).syscall(nr, 0, 0, 0, 0, 0)
else:
    kid = os.fork()
if kid == 0:
    os._exit(0)
assert kid > 0, "clone failed"
os.waitid(os.P_PID, kid, os.WEXITED | os.WNOWAIT | WALL)  # exited, not reaped: a zombie now
print("zombie", kid, "%.6f" % time.time(), flush=True)
while True:
    signal.pause()
"""

LISTENER = r"""
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    if line.strip() == "check":
        c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
        a, _ = s.accept()
        a.close(); c.close()
        print("listening", s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), flush=True)
"""

HEALTH = {"http": "/health", "interval_ms": 200, "timeout_ms": 500}


def write_service(agent):
    path = os.path.join(agent.dir, "svc.py")
    with open(path, "w") as f:
        f.write(SERVICE)
    return path


def svc(port, **kw):
    d = {"command": "exec %s svc.py" % sys.executable, "port": port, "health": dict(HEALTH),
         "stop_timeout_ms": 2000}
    d.update(kw)
    return d


def make_agent(name, services, **extra):
    cfg = {"services": services, "monitoring": {"zombie_grace_ms": 200}}
    cfg.update(extra)
    a = Agent(cfg, name)
    write_service(a)
    return a


def nobody():
    return pwd.getpwnam("nobody")


def rev(*args, user=None, check=None, timeout=60):
    r = run_as(args, user=user, timeout=timeout)
    if check is not None and r.returncode != check:
        raise AssertionError("revenant %s exited %d, expected %d\nstdout:%s\nstderr:%s" %
                             (" ".join(args), r.returncode, check, r.stdout, r.stderr))
    return r


def status(agent):
    r = rev("status", "--json", "-c", agent.config_path, check=0)
    return json.loads(r.stdout)


def of(events, type_, **kw):
    return [e for e in events if e["type"] == type_ and all(e.get(k) == v for k, v in kw.items())]


def index(events, pred):
    for i, e in enumerate(events):
        if pred(e):
            return i
    raise AssertionError("no such event")


def ts(e):
    return datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


def wait_healthy(agent, name, port=None, since=0, timeout=15):
    return agent.wait_event(lambda e: e["type"] == "health" and e["service"] == name and
                            e["ok"] is True and (port is None or e["port"] == port),
                            timeout=timeout, what="%s healthy" % name, since=since)


def wait_started(agent, name, since=0, timeout=15):
    return agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == name,
                            timeout=timeout, what="service_start %s" % name, since=since)


def http_get(port, path="/health"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
        data = b""
        while True:
            b = c.recv(4096)
            if not b:
                break
            data += b
    return data.decode(errors="replace")


# ---- stack: dependency order, status, SIGTERM --------------------------------------------------

def test_stack_order_status_and_sigterm():
    pdb, papi, pweb = free_port(), free_port(), free_port()
    agent = make_agent("stack", {
        "web": svc(pweb, depends_on=["api"]),
        "api": svc(papi, depends_on=["db"]),
        "db": svc(pdb),
    })
    try:
        agent.start()
        wait_healthy(agent, "web")
        ev = agent.events
        starts = {n: index(ev, lambda e, n=n: e["type"] == "service_start" and e["service"] == n)
                  for n in ("db", "api", "web")}
        healthy = {n: index(ev, lambda e, n=n: e["type"] == "health" and e["service"] == n and
                            e["ok"] is True) for n in ("db", "api", "web")}
        assert healthy["db"] < starts["api"], "api started before db was healthy"
        assert healthy["api"] < starts["web"], "web started before api was healthy"
        pids = {n: ev[starts[n]]["pid"] for n in starts}
        ports = {"db": pdb, "api": papi, "web": pweb}
        for n in pids:
            assert ev[starts[n]]["port"] == ports[n], ev[starts[n]]
            assert "%s %d" % (n, ports[n]) in http_get(ports[n])

        st = status(agent)
        assert set(st) == {"services"}, st
        assert set(st["services"]) == {"db", "api", "web"}, st
        for n, s in st["services"].items():
            assert s["state"] == "running" and s["pid"] == pids[n], (n, s)
            assert s["port"] == ports[n] and s["restarts"] == 0 and s["health"] == "ok", (n, s)

        table = rev("status", "-c", agent.config_path, check=0).stdout.splitlines()
        assert table[0].split() == ["SERVICE", "STATE", "PID", "PORT", "RESTARTS", "HEALTH",
                                    "USER", "LAST", "EXIT"], table
        rows = {l.split()[0]: l.split() for l in table[1:] if l.strip()}
        for n in pids:
            assert rows[n] == [n, "running", str(pids[n]), str(ports[n]), "0", "ok", "root",
                               "-"], rows

        n0 = len(agent.events)
        assert agent.stop(signal.SIGTERM) == 0
        agent.read_new()
        tail = agent.events[n0:]
        exits = [e["service"] for e in of(tail, "service_exit")]
        assert exits == ["web", "api", "db"], "stop order %s, want reverse dependency order" % exits
        for e in of(tail, "service_exit"):
            assert e["pid"] == pids[e["service"]], e
        assert tail[-1]["type"] == "agent_stop" and tail[-1]["reason"] == "SIGTERM", tail[-1]
        for n, pid in pids.items():
            assert not pid_alive(pid), "%s (pid %d) alive after the agent stopped" % (n, pid)
            assert not group_alive(pid), "%s's process group %d alive" % (n, pid)
        for p in ports.values():
            assert port_bindable(p), "port %d still taken after the agent stopped" % p
    finally:
        agent.close()


# ---- port taken before start -------------------------------------------------------------------

def test_foreign_squatter_migrates_and_survives():
    port, other, alt = free_port(), free_port(), free_port()
    squatter = spawn(LISTENER, port)
    # "a"'s first alternative is "b"'s configured port: skipped even though it is free.
    agent = make_agent("squat", {"a": svc(port, alternative_ports=[other, alt]),
                                 "b": svc(other)})
    try:
        agent.start()
        m = agent.wait_event(lambda e: e["type"] == "port_migrated" and e["service"] == "a",
                             what="port_migrated")
        assert m["from"] == port and m["to"] == alt, m
        assert m["owner_pid"] == squatter.pid, m
        s = wait_started(agent, "a")
        assert s["port"] == alt, s
        wait_healthy(agent, "a", port=alt)
        wait_healthy(agent, "b", port=other)
        assert "a %d" % alt in http_get(alt)
        st = status(agent)["services"]
        assert st["a"]["port"] == alt and st["a"]["state"] == "running", st
        assert st["b"]["port"] == other and st["b"]["state"] == "running", st
        assert squatter.poll() is None, "the squatter was touched"
        assert tell(squatter, "check") == ["listening", "1"]
    finally:
        agent.close()
        end(squatter)
    assert squatter.returncode == -signal.SIGKILL, "squatter died before the test ended it"


def test_foreign_squatter_without_migration_gives_up():
    port, alt = free_port(), free_port()
    squatter = spawn(LISTENER, port)
    agent = make_agent("nomigrate", {"a": svc(port, alternative_ports=[alt])},
                       conflict_resolution={"allow_port_migration": False})
    try:
        agent.start()
        g = agent.wait_event(lambda e: e["type"] == "service_give_up" and e["service"] == "a",
                             what="service_give_up")
        assert "pid %d" % squatter.pid in g["reason"], g
        assert not of(agent.events, "service_start", service="a"), "a started anyway"
        assert not of(agent.events, "port_migrated"), "migrated with migration off"
        assert status(agent)["services"]["a"]["state"] == "failed"
        assert agent.proc.poll() is None, "a non-critical give-up stopped the agent"
        assert tell(squatter, "check") == ["listening", "1"]
        assert agent.stop() == 0
    finally:
        agent.close()
        end(squatter)


# ---- port collision while running --------------------------------------------------------------

def test_collision_while_running_migrates():
    port, alt = free_port(), free_port()
    agent = make_agent("collide", {"a": svc(port, alternative_ports=[alt],
                                            env={"GATE": "gate.fifo"})})
    gate = os.path.join(agent.dir, "gate.fifo")
    os.mkfifo(gate)
    squatter = None
    fd = None
    try:
        agent.start()
        s = wait_started(agent, "a")
        assert s["port"] == port, s
        squatter = spawn(LISTENER, port)
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port and
                         e["pid"] == squatter.pid, what="squatter's port_listen")
        # Let the service go on to bind: O_RDWR never blocks, and the line waits in the fifo.
        fd = os.open(gate, os.O_RDWR)
        os.write(fd, b"go\n")
        c = agent.wait_event(lambda e: e["type"] == "port_collision" and e["port"] == port,
                             what="port_collision")
        assert c["service"] == "a" and c["pid"] == s["pid"], c
        assert c["owner_pid"] == squatter.pid and c["action"] == "migrate", c
        m = agent.wait_event(lambda e: e["type"] == "port_migrated" and e["service"] == "a",
                             what="port_migrated")
        assert m["from"] == port and m["to"] == alt and m["owner_pid"] == squatter.pid, m
        s2 = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "a" and
                              e["pid"] != s["pid"], what="restart on the alternative")
        assert s2["port"] == alt, s2
        # The log reads as what happened: the cause, the decision, the reaction.
        ev = agent.events
        assert ev.index(c) < ev.index(m) < ev.index(s2), (ev.index(c), ev.index(m), ev.index(s2))
        assert m["owner_comm"] == c["owner_comm"] == "python3", (m, c)
        wait_healthy(agent, "a", port=alt)
        st = status(agent)["services"]["a"]
        assert st["state"] == "running" and st["port"] == alt and st["pid"] == s2["pid"], st
        assert tell(squatter, "check") == ["listening", "1"]
    finally:
        if fd is not None:
            os.close(fd)
        agent.close()
        if squatter:
            end(squatter)


# ---- exits: crash loop, critical give-up -------------------------------------------------------

def test_crash_loop_gives_up_after_max_restarts():
    agent = make_agent("crash", {"boom": {"command": "exit 1", "auto_restart": True,
                                          "max_restarts": 3}})
    try:
        agent.start()
        g = agent.wait_event(lambda e: e["type"] == "service_give_up" and e["service"] == "boom",
                             timeout=20, what="service_give_up")
        ev = agent.events
        rs = of(ev, "service_restart", service="boom")
        assert [r["attempt"] for r in rs] == [1, 2, 3], rs
        delays = [r["delay_ms"] for r in rs]
        # the first restart at once, then restart_delay_ms doubling
        assert delays == [0, 250, 500], delays
        exits = of(ev, "service_exit", service="boom")
        assert len(exits) == 4 and all(e["code"] == 1 for e in exits), exits
        assert len(of(ev, "service_start", service="boom")) == 4
        assert ev.index(g) > ev.index(exits[-1])
        # each restart waits its back-off: the next start is at least delay_ms after the restart
        starts = of(ev, "service_start", service="boom")
        for r, nxt in zip(rs, starts[1:]):
            gap_ms = (ts(nxt) - ts(r)) * 1000
            assert gap_ms >= r["delay_ms"] * 0.9, (r, nxt, gap_ms)
        st = status(agent)["services"]["boom"]
        assert st["state"] == "failed" and st["restarts"] == 3, st
        assert agent.proc.poll() is None
        assert agent.stop() == 0
    finally:
        agent.close()


def test_critical_give_up_stops_stack_and_exits_1():
    port = free_port()
    agent = make_agent("critical", {
        "web": svc(port),
        "core": {"command": "exit 3", "critical": True, "max_restarts": 1,
                 "depends_on": ["web"]},
    })
    try:
        agent.start()
        web = wait_started(agent, "web")
        rc = agent.proc.wait(30)
        agent.read_new()
        ev = agent.events
        assert rc == 1, "agent exit %d after a critical give-up, want 1" % rc
        g = of(ev, "service_give_up", service="core")
        assert len(g) == 1 and g[0]["critical"] is True, g
        x = of(ev, "service_exit", service="web")
        assert len(x) == 1 and x[0]["pid"] == web["pid"], x
        assert ev.index(g[0]) < ev.index(x[0])
        assert ev[-1]["type"] == "agent_stop", ev[-1]
        assert not pid_alive(web["pid"]) and not group_alive(web["pid"])
        assert port_bindable(port)
    finally:
        agent.close()


# ---- zombies -----------------------------------------------------------------------------------

def zombie_agent(policy, marker=False, grace_ms=200):
    agent = Agent({"services": {"leaky": {
        "command": "exec %s zsvc.py %s%s" % (sys.executable, policy, " marker" if marker else ""),
        "zombie_policy": policy, "stop_timeout_ms": 2000}},
        "monitoring": {"zombie_grace_ms": grace_ms}}, "zombie-" + policy)
    with open(os.path.join(agent.dir, "zsvc.py"), "w") as f:
        f.write(ZOMBIE_SERVICE)
    return agent


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_zombie_policy_nudge():
    agent = zombie_agent("nudge")
    try:
        agent.start()
        s = wait_started(agent, "leaky")
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e.get("service") == "leaky",
                             what="zombie of leaky")
        assert z["ppid"] == s["pid"] and z["action"] == "nudge", z
        r = agent.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == z["pid"],
                             what="zombie_reaped after the nudge")
        assert r["age_ms"] >= 200, r
        assert [e["action"] for e in of(agent.events, "zombie", pid=z["pid"])] == ["nudge"]
        assert len(of(agent.events, "service_start", service="leaky")) == 1
        assert pid_alive(s["pid"])
    finally:
        agent.close()


def test_zombie_policy_report():
    agent = zombie_agent("report")
    try:
        agent.start()
        s = wait_started(agent, "leaky")
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e.get("service") == "leaky",
                             what="zombie of leaky")
        assert z["ppid"] == s["pid"] and z["action"] == "report", z
        assert z["comm"] == "python3" and z["age_ms"] >= 200, z
        assert proc_state(z["pid"]) == "Z", "the zombie was reaped under policy report"
        assert len(of(agent.events, "service_start", service="leaky")) == 1
        assert not of(agent.events, "service_exit", service="leaky")
        # Stopping the agent stops the parent; the orphaned zombie lands on the agent (a
        # subreaper), which reaps it before it exits. (Its zombie_reaped may come too late for
        # the log: the kernel's free of the task is RCU-deferred, after the last ring drain.)
        assert agent.stop() == 0
        assert proc_state(z["pid"]) is None, "zombie %d left behind by the agent" % z["pid"]
    finally:
        agent.close()


def test_zombie_policy_restart_parent():
    agent = zombie_agent("restart_parent", marker=True)
    try:
        agent.start()
        s = wait_started(agent, "leaky")
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e.get("service") == "leaky",
                             what="zombie of leaky")
        assert z["ppid"] == s["pid"] and z["action"] == "restart_parent", z
        x = agent.wait_event(lambda e: e["type"] == "service_exit" and e["service"] == "leaky",
                             what="service_exit of the parent")
        assert x["pid"] == s["pid"], x
        s2 = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "leaky"
                              and e["pid"] != s["pid"], what="service restarted")
        r = agent.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == z["pid"],
                             what="orphaned zombie reaped by the subreaper")
        assert proc_state(z["pid"]) is None
        assert not pid_alive(s["pid"])
        st = status(agent)["services"]["leaky"]
        assert st["state"] == "running" and st["pid"] == s2["pid"], st
        assert r["pid"] == z["pid"]
    finally:
        agent.close()


def test_zombie_nudge_short_grace_logs_reap():
    """With a grace shorter than the kernel's deferred free of a reaped task (sched_process_free
    runs from an RCU callback, ~15-30 ms later), a nudged zombie that its parent then reaps must
    still end with zombie_reaped (or, if it persisted, a second zombie event)."""
    agent = zombie_agent("nudge", grace_ms=10)
    try:
        agent.start()
        s = wait_started(agent, "leaky")
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e.get("service") == "leaky",
                             what="zombie of leaky")
        assert z["ppid"] == s["pid"] and z["action"] == "nudge", z
        n = agent.events.index(z) + 1
        e = agent.wait_event(lambda e: e["type"] in ("zombie_reaped", "zombie") and
                             e["pid"] == z["pid"], since=n, timeout=5,
                             what="zombie_reaped (or a second report) after the nudge")
        # the parent reaps on the nudge (its log says so): the end must be zombie_reaped
        with open(os.path.join(agent.dir, "leaky.log")) as f:
            assert "reaped (%d," % z["pid"] in f.read(), "the parent did not reap on the nudge"
        assert e["type"] == "zombie_reaped", e
    finally:
        agent.close()


SLOW_EXIT = r"""
import mmap, os, signal, sys
kid = os.fork()
if kid == 0:
    # 512 MiB of touched memory: the exit spends tens of ms in exit_mm, between the kernel's
    # sched_process_exit and the moment the task becomes a zombie
    m = mmap.mmap(-1, 512 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    os._exit(0)
os.waitid(os.P_PID, kid, os.WEXITED | os.WNOWAIT)
print("zombie", kid, flush=True)
while True:
    signal.pause()
"""


def test_zombie_with_slow_exit_is_reported():
    """A zombie is a zombie however long its exit took: the deadline check must not take a task
    still inside do_exit (state R/D, not yet Z) for one reaped in time."""
    agent = Agent({"services": {"big": {"command": "exec %s slow.py" % sys.executable,
                                        "zombie_policy": "report", "stop_timeout_ms": 2000}},
                   "monitoring": {"zombie_grace_ms": 10}}, "zombie-slow")
    with open(os.path.join(agent.dir, "slow.py"), "w") as f:
        f.write(SLOW_EXIT)
    try:
        agent.start()
        s = wait_started(agent, "big")
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e.get("service") == "big",
                             timeout=5, what="zombie of big (a slow exit)")
        assert z["ppid"] == s["pid"] and z["action"] == "report", z
    finally:
        agent.close()


# ---- stop / start / restart through the CLI ----------------------------------------------------

def test_stop_start_restart_service():
    port = free_port()
    agent = make_agent("ctl", {"a": svc(port)})
    try:
        agent.start()
        s = wait_started(agent, "a")
        wait_healthy(agent, "a")
        n = len(agent.events)
        r = rev("stop", "-c", agent.config_path, "a", check=0)
        assert "stopped" in r.stdout, r.stdout
        # Done means the port is free, and the kernel's release was seen before the reply.
        assert port_bindable(port), "port %d still taken after `stop` returned" % port
        agent.read_new()
        rel = of(agent.events[n:], "port_release", port=port)
        assert rel and rel[0]["pid"] == s["pid"], "no port_release logged before `stop` returned"
        assert of(agent.events[n:], "service_exit", service="a", pid=s["pid"])
        assert not pid_alive(s["pid"]) and not group_alive(s["pid"])
        st = status(agent)["services"]["a"]
        assert st["state"] == "stopped" and st["pid"] is None, st
        assert not of(agent.events[n:], "service_start"), "restarted after an explicit stop"

        n = len(agent.events)
        r = rev("start", "-c", agent.config_path, "a", check=0)
        assert "running" in r.stdout, r.stdout
        agent.read_new()
        s2 = of(agent.events[n:], "service_start", service="a")
        assert len(s2) == 1 and s2[0]["port"] == port, s2
        st = status(agent)["services"]["a"]
        assert st["state"] == "running" and st["pid"] == s2[0]["pid"] and st["health"] == "ok", st

        n = len(agent.events)
        rev("restart", "-c", agent.config_path, "a", check=0)
        agent.read_new()
        s3 = of(agent.events[n:], "service_start", service="a")
        assert len(s3) == 1 and s3[0]["pid"] != s2[0]["pid"] and s3[0]["port"] == port, s3
        assert not pid_alive(s2[0]["pid"])
        st = status(agent)["services"]["a"]
        assert st["state"] == "running" and st["pid"] == s3[0]["pid"], st
        assert "a %d" % port in http_get(port)
    finally:
        agent.close()


# ---- control socket ----------------------------------------------------------------------------

def test_stop_reaches_a_process_that_left_the_group():
    """A descendant that setsid()s leaves the process group but not the cgroup: a stop ends it.
    (Skipped where no cgroup v2 hierarchy is writable: the process group is all there is.)"""
    if not any(os.access(os.path.join(r, "cgroup.procs"), os.W_OK)
               for r in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")):
        return
    port = free_port()
    agent = make_agent("escape", {"a": svc(port, command=(
        "setsid sleep 600 & echo $! > escaped.pid; exec %s svc.py" % sys.executable))})
    try:
        agent.start()
        wait_healthy(agent, "a")
        with open(os.path.join(agent.dir, "escaped.pid")) as f:
            escaped = int(f.read())
        assert pid_alive(escaped) and os.getpgid(escaped) != status(agent)["services"]["a"]["pid"]
        rev("stop", "-c", agent.config_path, "a", check=0)
        assert wait_exit(escaped, 10), "the setsid'd descendant survived the stop"
    finally:
        agent.close()


# The main process starts a daemon that leaves its process group (setsid) and exits.
DAEMONIZER = "setsid sleep 600 & echo $! > escaped.pid; exit 3"


def escaped_pid(agent):
    with open(os.path.join(agent.dir, "escaped.pid")) as f:
        return int(f.read())


def check_exit_ends_escaped_daemon(name, env=None):
    agent = make_agent(name, {"d": {"command": DAEMONIZER, "auto_restart": False,
                                    "stop_timeout_ms": 3000}})
    try:
        agent.start(env=env)
        x = agent.wait_event(lambda e: e["type"] == "service_exit" and e["service"] == "d",
                             what="service_exit")
        assert x["code"] == 3, x
        daemon = escaped_pid(agent)
        assert wait_exit(daemon, 10), "the setsid'd daemon outlived its service's main process"
        st = status(agent)["services"]["d"]
        assert st["state"] == "stopped" and st["pid"] is None, st
    finally:
        agent.close()


def test_exit_of_main_ends_an_escaped_daemon():
    """kill_mode group (the default): a daemon the main process left behind (setsid) is ended
    with it, through the service's cgroup."""
    check_exit_ends_escaped_daemon("daemon-cg")


def test_exit_of_main_ends_an_escaped_daemon_without_cgroups():
    """Where the agent makes no cgroup (forced here), the process tree the BPF fork hook keeps
    finds the daemon."""
    check_exit_ends_escaped_daemon("daemon-tree", env={"REVENANT_NO_CGROUP": "1"})


def test_stop_reaches_a_process_that_left_the_group_without_cgroups():
    port = free_port()
    agent = make_agent("escape-tree", {"a": svc(port, command=(
        "setsid sleep 600 & echo $! > escaped.pid; exec %s svc.py" % sys.executable))})
    try:
        agent.start(env={"REVENANT_NO_CGROUP": "1"})
        wait_healthy(agent, "a")
        escaped = escaped_pid(agent)
        assert pid_alive(escaped)
        rev("stop", "-c", agent.config_path, "a", check=0)
        assert wait_exit(escaped, 10), "the setsid'd descendant survived the stop"
    finally:
        agent.close()


def test_kill_mode_main_leaves_the_daemon():
    agent = make_agent("daemon-main", {"d": {"command": DAEMONIZER, "auto_restart": False,
                                             "kill_mode": "main"}})
    daemon = None
    try:
        agent.start()
        agent.wait_event(lambda e: e["type"] == "service_exit" and e["service"] == "d",
                         what="service_exit")
        daemon = escaped_pid(agent)
        assert status(agent)["services"]["d"]["state"] == "stopped"
        assert pid_alive(daemon) and not wait_exit(daemon, 0.5), "kill_mode main killed it"
    finally:
        agent.close()
        if daemon and pid_alive(daemon):
            os.kill(daemon, signal.SIGKILL)  # the test's own: started by its service

def test_control_socket_permissions_and_no_agent():
    port = free_port()
    agent = make_agent("perm", {"a": svc(port)})
    idle = Agent(name="idle")
    try:
        r = rev("status", "-c", idle.config_path)
        assert r.returncode == 3 and "no agent" in r.stderr, (r.returncode, r.stderr)
        agent.start()
        s = wait_started(agent, "a")
        sock = agent.config["control"]["socket"]
        mode = os.stat(sock).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
        for args in (("status",), ("stop", "a"), ("stop", "--all")):
            r = rev(args[0], "-c", agent.config_path, *args[1:], user=nobody())
            assert r.returncode == 4, (args, r.returncode, r.stdout, r.stderr)
            assert "root" in r.stderr or "permitted" in r.stderr, r.stderr
        assert pid_alive(s["pid"])
        assert status(agent)["services"]["a"]["pid"] == s["pid"]
    finally:
        agent.close()
        idle.close()


def test_control_socket_refuses_non_root_peer():
    """Even with the socket file opened up, the agent's SO_PEERCRED check refuses a non-root peer."""
    port = free_port()
    agent = make_agent("peercred", {"a": svc(port)})
    try:
        agent.start()
        s = wait_started(agent, "a")
        os.chmod(agent.config["control"]["socket"], 0o666)
        r = rev("stop", "-c", agent.config_path, "a", user=nobody())
        assert r.returncode == 4 and "not permitted" in r.stderr, (r.returncode, r.stderr)
        assert pid_alive(s["pid"]) and not of(agent.events, "service_exit")
    finally:
        agent.close()


def test_stop_all_keeps_agent():
    p1, p2 = free_port(), free_port()
    agent = make_agent("stopall", {"a": svc(p1), "b": svc(p2, depends_on=["a"])})
    try:
        agent.start()
        wait_healthy(agent, "b")
        pids = {e["service"]: e["pid"] for e in of(agent.events, "service_start")}
        n = len(agent.events)
        r = rev("stop", "-c", agent.config_path, "--all", check=0)
        assert "stopped" in r.stdout, r.stdout
        agent.read_new()
        assert [e["service"] for e in of(agent.events[n:], "service_exit")] == ["b", "a"]
        assert agent.proc.poll() is None, "the agent exited on stop --all"
        st = status(agent)["services"]
        assert {k: v["state"] for k, v in st.items()} == {"a": "stopped", "b": "stopped"}, st
        for pid in pids.values():
            assert not pid_alive(pid) and not group_alive(pid)
        assert port_bindable(p1) and port_bindable(p2)
        assert not of(agent.events[n:], "service_start")
        assert agent.stop() == 0
    finally:
        agent.close()


def test_kill_port():
    port, fport = free_port(), free_port()
    agent = make_agent("killport", {"a": svc(port)})
    foreign = None
    try:
        agent.start()
        s = wait_started(agent, "a")
        wait_healthy(agent, "a")
        foreign = spawn(LISTENER, fport)
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == fport,
                         what="foreign listener")
        r = rev("kill-port", "-c", agent.config_path, str(fport))
        assert r.returncode == 1 and str(foreign.pid) in r.stderr, (r.returncode, r.stderr)
        assert foreign.poll() is None and tell(foreign, "check") == ["listening", "1"]
        r = rev("kill-port", "-c", agent.config_path, "--force", str(fport), check=0)
        assert wait_exit(foreign.pid, 5), "foreign process alive after kill-port --force"
        assert foreign.wait(5) == -signal.SIGTERM, foreign.returncode

        n = len(agent.events)
        r = rev("kill-port", "-c", agent.config_path, str(port), check=0)
        assert "a" in r.stdout, r.stdout
        agent.read_new()
        assert of(agent.events[n:], "service_exit", service="a", pid=s["pid"])
        st = status(agent)["services"]["a"]
        assert st["state"] == "stopped", st
        assert not of(agent.events[n:], "service_start") and not of(agent.events[n:],
                                                                    "service_restart")
        assert port_bindable(port)
    finally:
        agent.close()
        if foreign:
            end(foreign)


def test_zombie_policy_restart_parent_counts_restarts_and_gives_up():
    """A service that leaks a zombie at every start, under restart_parent: its restarts are
    service_restart events with a reason, counted toward max_restarts, under back-off."""
    agent = zombie_agent("restart_parent")
    agent.config["services"]["leaky"]["max_restarts"] = 3
    with open(agent.config_path, "w") as f:
        json.dump(agent.config, f)
    try:
        agent.start()
        g = agent.wait_event(lambda e: e["type"] == "service_give_up" and e["service"] == "leaky",
                             timeout=30, what="service_give_up of leaky")
        ev = agent.events
        rs = of(ev, "service_restart", service="leaky")
        assert [r["attempt"] for r in rs] == [1, 2, 3], rs
        assert all(r["reason"] == "zombie_policy" for r in rs), rs
        delays = [r["delay_ms"] for r in rs]
        assert delays == [0, 250, 500], delays
        zs = of(ev, "zombie", service="leaky")
        assert len(zs) == 4 and all(z["action"] == "restart_parent" for z in zs[:3]), zs
        # each restart follows the zombie that caused it, and the give-up comes last
        for z, r in zip(zs, rs):
            assert ev.index(z) < ev.index(r), (z, r)
        assert ev.index(g) > ev.index(rs[-1])
        starts = of(ev, "service_start", service="leaky")
        assert len(starts) == 4, starts
        for r, nxt in zip(rs, starts[1:]):
            assert (ts(nxt) - ts(r)) * 1000 >= r["delay_ms"] * 0.9, (r, nxt)
        st = status(agent)["services"]["leaky"]
        assert st["state"] == "failed" and st["restarts"] == 3, st
    finally:
        agent.close()


def test_every_alternative_port_is_probed():
    """More alternatives than any fixed array holds, the first 80 taken: the agent probes them
    all and starts on the first free one, never on one it did not look at."""
    held, ports = [], []
    try:
        while len(ports) < 101:
            p = free_port()
            if p in ports:
                continue
            ports.append(p)
            if len(ports) <= 81:  # the service's own port and its first 80 alternatives
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                s.listen()
                held.append(s)
        agent = make_agent("manyalt", {"a": svc(ports[0], alternative_ports=ports[1:])})
        try:
            agent.start()
            m = agent.wait_event(lambda e: e["type"] == "port_migrated" and e["service"] == "a",
                                 what="port_migrated")
            assert m["to"] == ports[81], (m, ports[81])
            st = wait_started(agent, "a")
            assert st["port"] == ports[81], st
            wait_healthy(agent, "a", port=ports[81])
            assert not of(agent.events, "port_collision", service="a"), \
                of(agent.events, "port_collision")
        finally:
            agent.close()
    finally:
        for s in held:
            s.close()


if __name__ == "__main__":
    run_tests([
        test_stack_order_status_and_sigterm,
        test_foreign_squatter_migrates_and_survives,
        test_foreign_squatter_without_migration_gives_up,
        test_collision_while_running_migrates,
        test_crash_loop_gives_up_after_max_restarts,
        test_critical_give_up_stops_stack_and_exits_1,
        test_zombie_policy_nudge,
        test_zombie_policy_report,
        test_zombie_policy_restart_parent,
        test_zombie_policy_restart_parent_counts_restarts_and_gives_up,
        test_every_alternative_port_is_probed,
        test_zombie_nudge_short_grace_logs_reap,
        test_zombie_with_slow_exit_is_reported,
        test_stop_start_restart_service,
        test_stop_reaches_a_process_that_left_the_group,
        test_exit_of_main_ends_an_escaped_daemon,
        test_exit_of_main_ends_an_escaped_daemon_without_cgroups,
        test_stop_reaches_a_process_that_left_the_group_without_cgroups,
        test_kill_mode_main_leaves_the_daemon,
        test_control_socket_permissions_and_no_agent,
        test_control_socket_refuses_non_root_peer,
        test_stop_all_keeps_agent,
        test_kill_port,
    ])
