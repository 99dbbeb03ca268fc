"""revenant under systemd: the unit passes `systemd-analyze verify` as installed, and the agent
speaks the notify protocol to a test datagram socket the way systemd's would receive it (READY=1
after agent_start, STATUS= on changes, STOPPING=1 on SIGTERM, WATCHDOG=1 only when asked).
PID 1 here is not systemd, so the unit itself is not started by a service manager."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import SRC, ZOMBIE_PARENT, Agent, end, run_tests, spawn, tell

BUILD = os.path.dirname(os.environ.get("REVENANT_BIN") or os.path.join(SRC, "build", "revenant"))


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET (a path, or @abstract)."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="revenant-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        if abstract:
            name = "revenant-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.messages = []  # (monotonic time, text) of every datagram received

    def wait(self, pred, timeout, what, since=0):
        """The first message (from the since-th received on) matching pred; waits on the
        socket."""
        deadline = time.monotonic() + timeout
        while True:
            for _, m in self.messages[since:]:
                if pred(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %ss; got %r" % (what, timeout, self.messages))
            self.receive(left)

    def receive(self, timeout):
        """Take what arrives within timeout (at least one wait on the socket)."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            while True:
                data = self.sock.recv(4096)
                self.messages.append((time.monotonic(), data.decode()))
                self.sock.settimeout(0.001)
        except (socket.timeout, BlockingIOError):
            pass

    def fields(self):
        """Every KEY=VALUE line of every message, in order."""
        return [line for _, m in self.messages for line in m.split("\n") if line]

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, True)


def start_with_env(agent, env):
    """agent.start() with extra environment variables for the agent only."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        agent.start(wait=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_unit_verifies_as_installed():
    """cmake --install with a temporary --prefix writes the unit with that prefix's binary and
    config; systemd-analyze verify accepts it (ExecStart exists, man pages found)."""
    prefix = tempfile.mkdtemp(prefix="revenant-prefix-")
    try:
        r = subprocess.run(
            [os.path.join(SRC, "tests", "integration", "ro_host_install"), BUILD, "--prefix",
             os.path.join(prefix, "usr")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        unit = os.path.join(prefix, "usr", "lib", "systemd", "system", "revenant.service")
        text = open(unit).read()
        assert "ExecStart=%s/usr/bin/revenant run -c %s/usr/etc/revenant/revenant.json\n" % (
            prefix, prefix) in text, text
        for key in ("Type=notify", "KillMode=mixed", "Restart=on-failure",
                    "RuntimeDirectory=revenant", "LogsDirectory=revenant",
                    "ExecReload=/bin/kill -HUP $MAINPID"):
            assert key + "\n" in text, key
        env = dict(os.environ, MANPATH=os.path.join(prefix, "usr", "share", "man"))
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           env=env, cwd=prefix, timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
        # The check is real: a unit naming a binary that is not there fails it.
        bad = os.path.join(prefix, "bad.service")
        with open(bad, "w") as f:
            f.write(text.replace("%s/usr/bin/revenant" % prefix, "%s/nothing" % prefix))
        r = subprocess.run(["systemd-analyze", "verify", bad], capture_output=True, text=True,
                           env=env, cwd=prefix, timeout=60)
        assert r.returncode != 0, "systemd-analyze accepted a missing ExecStart binary"
    finally:
        shutil.rmtree(prefix, True)


def test_ready_status_stopping():
    """READY=1 once the agent has logged agent_start; STATUS= as services come up and zombies
    come and go; the service does not inherit NOTIFY_SOCKET; STOPPING=1 on SIGTERM, exit 0;
    no WATCHDOG=1 without WATCHDOG_USEC."""
    ns = NotifySocket()
    a = Agent({"services": {"web": {"command": "env > env.txt; exec sleep 600"}},
               "monitoring": {"zombie_grace_ms": 200}}, name="notify")
    parent = None
    try:
        env = {"NOTIFY_SOCKET": ns.address}
        for k in ("WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(k, None)
        start_with_env(a, env)
        ready = ns.wait(lambda m: "READY=1" in m.split("\n"), 20, "READY=1")
        # READY=1 comes after the seeding and agent_start: the log already holds it.
        a.read_new()
        assert any(e["type"] == "agent_start" and e["pid"] == a.proc.pid for e in a.events), \
            a.events
        assert "STATUS=" in ready, ready
        ns.wait(lambda m: "STATUS=1/1 services up, 0 zombies" in m, 20, "service up in STATUS")
        a.wait_event(lambda e: e["type"] == "service_start", what="service_start")
        envfile = os.path.join(a.dir, "env.txt")
        deadline = time.monotonic() + 10
        while not (os.path.exists(envfile) and open(envfile).read().endswith("\n")):
            assert time.monotonic() < deadline, "the service did not write its environment"
            ns.receive(0.05)
        assert "NOTIFY_SOCKET" not in open(envfile).read(), "the service inherited NOTIFY_SOCKET"

        parent = spawn(ZOMBIE_PARENT)
        zpid = int(tell(parent, "fork")[0])
        a.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == zpid, what="zombie")
        ns.wait(lambda m: "STATUS=1/1 services up, 1 zombies" in m, 10, "zombie in STATUS")
        n = len(ns.messages)
        tell(parent, "reap")
        a.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == zpid,
                     what="zombie_reaped")
        ns.wait(lambda m: m == "STATUS=1/1 services up, 0 zombies", 10, "zombie gone from STATUS",
                since=n)

        a.proc.send_signal(signal.SIGTERM)
        stopping = ns.wait(lambda m: "STOPPING=1" in m.split("\n"), 20, "STOPPING=1")
        assert "STATUS=stopping (SIGTERM)" in stopping, stopping
        assert a.proc.wait(30) == 0, a.stderr_text()
        ns.receive(0.2)
        lines = ns.fields()
        assert lines.count("READY=1") == 1 and lines.count("STOPPING=1") == 1, lines
        assert "WATCHDOG=1" not in lines, lines
        # STATUS= only on changes: never the same text twice in a row.
        statuses = [l for l in lines if l.startswith("STATUS=")]
        assert all(x != y for x, y in zip(statuses, statuses[1:])), statuses
    finally:
        if parent:
            end(parent)
        a.close()
        shutil.rmtree(a.dir, True)
        ns.close()


def test_watchdog_only_when_asked():
    """WATCHDOG_USEC set: WATCHDOG=1 every half interval (abstract socket here). WATCHDOG_PID
    naming another process: none."""
    for pid_env, expect in ((None, True), ("1", False)):
        ns = NotifySocket(abstract=True)
        a = Agent(name="watchdog")
        try:
            env = {"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "400000"}
            if pid_env:
                env["WATCHDOG_PID"] = pid_env
            else:
                os.environ.pop("WATCHDOG_PID", None)
            start_with_env(a, env)
            ns.wait(lambda m: "READY=1" in m.split("\n"), 20, "READY=1")
            t0 = time.monotonic()
            if expect:
                # One with READY=1, then every 200 ms: four more within 1.5 s even when loaded.
                ns.wait(lambda m: sum(1 for l in ns.fields() if l == "WATCHDOG=1") >= 5, 3,
                        "five WATCHDOG=1")
                times = [t for t, m in ns.messages if m == "WATCHDOG=1"]
                gaps = [y - x for x, y in zip(times, times[1:])]
                assert all(0.1 < g < 0.6 for g in gaps[1:]), gaps
            else:
                # Nothing to wait for: watch the socket for three would-be intervals.
                ns.receive(0.6)
                while time.monotonic() - t0 < 0.6:
                    ns.receive(0.6 - (time.monotonic() - t0))
                assert "WATCHDOG=1" not in ns.fields(), ns.messages
            assert a.stop() == 0, a.stderr_text()
        finally:
            a.close()
            shutil.rmtree(a.dir, True)
            ns.close()


if __name__ == "__main__":
    run_tests([test_unit_verifies_as_installed, test_ready_status_stopping,
               test_watchdog_only_when_asked])
