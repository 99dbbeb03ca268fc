#!/usr/bin/env python3
"""Supervisor for real stacks (root, real processes): services as their own users, ports wired
between services, restarts that make sense, reload, part_of."""
import json
import os
import pwd
import signal
import socket
import sys
import time

from harness import Agent, end, free_port, pid_alive, run_as, run_tests, spawn, tell, wait_exit
from test_supervisor import HEALTH, http_get, of, status, ts, wait_healthy, wait_started

# The system's python: a service run as nobody cannot enter root's home, where a test runner's
# own interpreter may live.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

# A squatter: listens on argv[1] (SO_REUSEADDR, as servers do: the port's last user may have
# left connections in TIME_WAIT).
SQUATTER = r"""
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", os.getpid(), flush=True)
sys.stdin.read()
"""

# An HTTP server on $PORT whose /health says who it is, its uid/gid and the upstream it was told.
# With CHECK_WRITE naming a file, it also says whether it could open that file for writing.
WIRED = r"""
import http.server, json, os, sys
port = int(os.environ["PORT"])
info = {"service": os.environ.get("REVENANT_SERVICE"), "port": port,
        "upstream": os.environ.get("UPSTREAM"), "uid": os.getuid(), "gid": os.getgid(),
        "home": os.environ.get("HOME"), "user": os.environ.get("USER")}
target = os.environ.get("CHECK_WRITE")
if target:
    try:
        open(target, "a").close()
        info["write"] = "allowed"
    except OSError as e:
        info["write"] = "denied: %s" % e.strerror
print(json.dumps(info), flush=True)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(info).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def stack_agent(name, services, **extra):
    cfg = {"services": services, "monitoring": {"zombie_grace_ms": 200}}
    cfg.update(extra)
    a = Agent(cfg, name)
    path = os.path.join(a.dir, "wired.py")
    with open(path, "w") as f:
        f.write(WIRED)
    os.chmod(path, 0o644)
    return a


def wired(port, **kw):
    d = {"command": "exec %s wired.py" % PYTHON, "port": port, "health": dict(HEALTH),
         "stop_timeout_ms": 2000}
    d.update(kw)
    return d


def rewrite(agent, services):
    agent.config["services"] = services
    with open(agent.config_path, "w") as f:
        json.dump(agent.config, f)


def health_of(port):
    return json.loads(http_get(port).split("\r\n\r\n", 1)[1])


def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = v.split()
    return ids


def test_service_runs_as_its_user():
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    agent = stack_agent("user", {})
    rewrite(agent, {"a": wired(port, user="nobody",
                               env={"CHECK_WRITE": agent.log_path})})
    try:
        agent.start()
        s = wait_started(agent, "a")
        wait_healthy(agent, "a")
        ids = proc_ids(s["pid"])
        assert ids["Uid"] == [str(nobody.pw_uid)] * 4, ids
        assert ids["Gid"] == [str(nobody.pw_gid)] * 4, ids
        info = health_of(port)
        assert info["uid"] == nobody.pw_uid and info["user"] == "nobody", info
        assert info["home"] == nobody.pw_dir, info
        assert info["write"].startswith("denied"), "nobody could write the agent's log: %s" % info
        st = status(agent)["services"]["a"]
        assert st["user"] == "nobody", st
        # its output still reaches its log file, which the agent opened and owns
        logf = os.path.join(agent.dir, "a.log")
        with open(logf) as f:
            assert '"uid": %d' % nobody.pw_uid in f.read()
        assert os.stat(logf).st_uid == 0
    finally:
        agent.close()


def test_unknown_user_is_a_config_error():
    agent = stack_agent("nouser", {"a": {"command": "true", "user": "no-such-user-here"}})
    try:
        r = run_as(["run", "-c", agent.config_path])
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "services.a.user" in r.stderr and "no-such-user-here" in r.stderr, r.stderr
    finally:
        agent.close()


def test_dependent_follows_its_dependency_to_a_new_port():
    """backend is stopped, a squatter takes its port, backend comes back on an alternative:
    frontend, which was told backend's port, restarts once with the new one."""
    port, alt, fport = free_port(), free_port(), free_port()
    agent = stack_agent("wire", {
        "backend": wired(port, alternative_ports=[alt]),
        "frontend": wired(fport, depends_on=["backend"],
                          env={"UPSTREAM": "http://127.0.0.1:{port:backend}"}),
    })
    squatter = None
    try:
        agent.start()
        wait_healthy(agent, "frontend")
        assert health_of(fport)["upstream"] == "http://127.0.0.1:%d" % port
        f1 = wait_started(agent, "frontend")
        r = run_as(["port", "-c", agent.config_path, "backend"])
        assert r.returncode == 0 and r.stdout.strip() == str(port), r
        run_as(["stop", "-c", agent.config_path, "backend"])
        squatter = spawn(SQUATTER, port)
        n = len(agent.events)
        run_as(["start", "-c", agent.config_path, "backend"])
        m = agent.wait_event(lambda e: e["type"] == "port_migrated", what="port_migrated",
                             since=n)
        assert m["to"] == alt, m
        rs = agent.wait_event(lambda e: e["type"] == "service_restart" and
                              e["service"] == "frontend", what="frontend restart", since=n)
        assert rs["reason"] == "dependency_moved" and rs["dependency"] == "backend", rs
        assert rs["dependency_port"] == alt, rs
        hb = agent.wait_event(lambda e: e["type"] == "health" and e["service"] == "backend" and
                              e["ok"] and e["port"] == alt, what="backend healthy", since=n)
        assert agent.events.index(hb) < agent.events.index(rs), "restarted before healthy"
        f2 = agent.wait_event(lambda e: e["type"] == "service_start" and
                              e["service"] == "frontend" and e["pid"] != f1["pid"],
                              what="frontend started again", since=n)
        wait_healthy(agent, "frontend", since=agent.events.index(f2))
        assert health_of(fport)["upstream"] == "http://127.0.0.1:%d" % alt
        r = run_as(["port", "-c", agent.config_path, "backend"])
        assert r.stdout.strip() == str(alt), r
        assert len(of(agent.events[n:], "service_restart", service="frontend")) == 1
        # a service without a port: exit 1; no such service: exit 2
        r = run_as(["port", "-c", agent.config_path, "nope"])
        assert r.returncode == 2, r
    finally:
        agent.close()
        if squatter:
            end(squatter)


def test_first_crash_restarts_at_once_then_back_off():
    port = free_port()
    agent = stack_agent("fast", {"a": wired(port, restart_delay_ms=400)})
    try:
        agent.start()
        s = wait_started(agent, "a")
        wait_healthy(agent, "a")
        os.kill(s["pid"], signal.SIGKILL)
        x = agent.wait_event(lambda e: e["type"] == "service_exit", what="service_exit")
        s2 = agent.wait_event(lambda e: e["type"] == "service_start" and e["pid"] != s["pid"],
                              what="restart")
        gap = (ts(s2) - ts(x)) * 1000
        assert gap < 20, "first restart took %.1f ms after the exit" % gap
        r = of(agent.events, "service_restart")[0]
        assert r["delay_ms"] == 0 and r["reason"] == "exit" and r["attempt"] == 1, r
        # a second crash within the stability window waits restart_delay_ms
        os.kill(s2["pid"], signal.SIGKILL)
        s3 = agent.wait_event(lambda e: e["type"] == "service_start" and e["pid"] not in
                              (s["pid"], s2["pid"]), what="second restart")
        x2 = of(agent.events, "service_exit")[1]
        r2 = of(agent.events, "service_restart")[1]
        assert r2["delay_ms"] == 400 and r2["attempt"] == 2, r2
        assert (ts(s3) - ts(x2)) * 1000 >= 400 * 0.95, (x2, s3)
    finally:
        agent.close()


def test_max_restarts_minus_one_never_gives_up():
    agent = stack_agent("forever", {"a": {"command": "exit 1", "max_restarts": -1,
                                          "restart_delay_ms": 10, "restart_delay_max_ms": 20}})
    try:
        agent.start()
        agent.wait_event(lambda e: e["type"] == "service_restart" and e["attempt"] == 12,
                         what="12 restarts", timeout=20)
        assert not of(agent.events, "service_give_up")
        assert max(r["delay_ms"] for r in of(agent.events, "service_restart")) == 20
    finally:
        agent.close()


def test_reload_adds_removes_changes_and_keeps_the_rest():
    pk, pr, pc, pa = free_port(), free_port(), free_port(), free_port()
    agent = stack_agent("reload", {
        "keep": wired(pk), "gone": wired(pr), "change": wired(pc, env={"V": "1"}),
    })
    try:
        agent.start()
        for n in ("keep", "gone", "change"):
            wait_healthy(agent, n)
        before = status(agent)["services"]
        rewrite(agent, {"keep": wired(pk), "change": wired(pc, env={"V": "2"}),
                        "added": wired(pa)})
        n0 = len(agent.events)
        r = run_as(["reload", "-c", agent.config_path])
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert "added: added" in r.stdout and "removed: gone" in r.stdout, r.stdout
        assert "changed (restarted): change" in r.stdout, r.stdout
        ev = agent.wait_event(lambda e: e["type"] == "agent_reload", what="agent_reload",
                              since=n0)
        assert ev["ok"] is True, ev
        wait_healthy(agent, "added", since=n0)
        agent.wait_event(lambda e: e["type"] == "service_exit" and e["service"] == "gone",
                         what="gone stopped", since=n0)
        rs = agent.wait_event(lambda e: e["type"] == "service_restart" and
                              e["service"] == "change", what="change restarted", since=n0)
        assert rs["reason"] == "reload", rs
        wait_healthy(agent, "change", since=agent.events.index(rs))
        after = status(agent)["services"]
        assert set(after) == {"keep", "change", "added"}, after
        assert after["keep"]["pid"] == before["keep"]["pid"], (before, after)
        assert after["change"]["pid"] != before["change"]["pid"], (before, after)
        assert not pid_alive(before["gone"]["pid"])
        assert not [e for e in agent.events[n0:] if e.get("service") == "keep" and
                    e["type"] in ("service_exit", "service_start", "service_restart")]
        # a bad file changes nothing and says why
        rewrite(agent, {"keep": wired(pk), "bad": {"command": "true", "colour": "red"}})
        n1 = len(agent.events)
        r = run_as(["reload", "-c", agent.config_path])
        assert r.returncode == 2 and "colour" in r.stderr, (r.returncode, r.stderr)
        ev = agent.wait_event(lambda e: e["type"] == "agent_reload", what="bad reload",
                              since=n1)
        assert ev["ok"] is False and "colour" in ev["detail"], ev
        rewrite(agent, {"keep": wired(pk), "change": wired(pc, env={"V": "2"}),
                        "added": wired(pa)})
        st = status(agent)["services"]
        assert set(st) == {"keep", "change", "added"}, st
        assert st["keep"]["pid"] == before["keep"]["pid"], st
        # SIGHUP does the same as `revenant reload`
        rewrite(agent, {"keep": wired(pk)})
        n2 = len(agent.events)
        agent.proc.send_signal(signal.SIGHUP)
        ev = agent.wait_event(lambda e: e["type"] == "agent_reload", what="SIGHUP reload",
                              since=n2)
        assert ev["ok"] is True and "removed: change, added" in ev["detail"], ev
        for n in ("change", "added"):
            agent.wait_event(lambda e, n=n: e["type"] == "service_exit" and e["service"] == n,
                             what="%s stopped" % n, since=n2)
        assert status(agent)["services"]["keep"]["pid"] == before["keep"]["pid"]
    finally:
        agent.close()


def test_part_of_restarts_after_its_dependency():
    pdb, pweb = free_port(), free_port()
    agent = stack_agent("partof", {"db": wired(pdb), "web": wired(pweb, part_of=["db"])})
    try:
        agent.start()
        wait_healthy(agent, "web")
        w1 = wait_started(agent, "web")
        n = len(agent.events)
        r = run_as(["restart", "-c", agent.config_path, "db"])
        assert r.returncode == 0, r.stderr
        rs = agent.wait_event(lambda e: e["type"] == "service_restart" and
                              e["service"] == "web", what="web restarted", since=n)
        assert rs["reason"] == "dependency_restarted" and rs["dependency"] == "db", rs
        db2 = [e for e in agent.events[n:] if e["type"] == "service_start" and
               e["service"] == "db"][0]
        w2 = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "web"
                              and e["pid"] != w1["pid"], what="web started again", since=n)
        assert agent.events.index(db2) < agent.events.index(w2)
        wait_healthy(agent, "web", since=agent.events.index(w2))
    finally:
        agent.close()


if __name__ == "__main__":
    run_tests([
        test_service_runs_as_its_user,
        test_unknown_user_is_a_config_error,
        test_dependent_follows_its_dependency_to_a_new_port,
        test_first_crash_restarts_at_once_then_back_off,
        test_max_restarts_minus_one_never_gives_up,
        test_reload_adds_removes_changes_and_keeps_the_rest,
        test_part_of_restarts_after_its_dependency,
    ])
