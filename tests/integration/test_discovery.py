"""Commands given no -c find the running agent through the host's agent record
(REVENANT_AGENT_RECORD here, so these agents do not meet the host's or other tests' agents):
scan, zombies, status, start/stop, verify and tail answer for it; -c still picks another; the
record goes at a clean stop, and one left by a killed agent is not believed."""
import json
import os
import signal
import subprocess
import sys
import tempfile

from harness import BIN, Agent, end, free_port, run_as, run_tests

import test_scan

RECORD_ENV = "REVENANT_AGENT_RECORD"


def rev(*args, check=None):
    r = run_as(args)
    if check is not None and r.returncode != check:
        raise AssertionError("revenant %s exited %d, expected %d\nstdout:%s\nstderr:%s" %
                             (" ".join(args), r.returncode, check, r.stdout, r.stderr))
    return r


class Record:
    """A private record path for this test, in the environment of the agents and commands."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="revenant-rec-")
        self.path = os.path.join(self.dir, "agent")
        self.old = os.environ.get(RECORD_ENV)
        os.environ[RECORD_ENV] = self.path

    def read(self):
        with open(self.path) as f:
            return json.load(f)

    def close(self):
        if self.old is None:
            os.environ.pop(RECORD_ENV, None)
        else:
            os.environ[RECORD_ENV] = self.old
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self.dir)


def service_agent(name):
    port = free_port()
    agent = Agent({"services": {"web": {"command": "exec %s svc.py" % sys.executable,
                                        "port": port, "zombie_policy": "report",
                                        "stop_timeout_ms": 2000}},
                   "monitoring": {"zombie_grace_ms": 60000}}, name=name)
    with open(os.path.join(agent.dir, "svc.py"), "w") as f:
        f.write(test_scan.SERVICE)
    return agent, port


def test_commands_without_c_find_the_agent():
    rec = Record()
    agent, port = service_agent("found")
    noagent = Agent(name="other")
    try:
        agent.start()
        st = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "web",
                              what="service_start")
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port,
                         what="port_listen")
        r = rec.read()
        assert r["pid"] == agent.proc.pid and r["pin"] == agent.events[0]["pin"], r
        assert r["control"] == agent.config["control"]["socket"], r
        assert r["config"] == os.path.realpath(agent.config_path), r

        out = rev("scan", "--json", "-v", str(port), check=0)
        assert "listeners map" in out.stderr, out.stderr
        row = test_scan.one_row(json.loads(out.stdout), port)
        assert row["pid"] == st["pid"] and row["service"] == "web", row
        out = rev("--scan", "--json", "--tcp", str(port), check=0)
        assert test_scan.one_row(json.loads(out.stdout), port)["service"] == "web"

        out = rev("status", "--json", check=0)
        svc = json.loads(out.stdout)["services"]["web"]
        assert svc["pid"] == st["pid"] and svc["port"] == port, out.stdout

        zs = [z for z in json.loads(rev("zombies", "--json", check=0).stdout)
              if z["ppid"] == st["pid"]]
        assert all(z["service"] == "web" for z in zs), zs

        out = rev("tail", "--json", "-n", "50", check=0)
        assert any(json.loads(l).get("pid") == agent.proc.pid and
                   json.loads(l)["type"] == "agent_start" for l in out.stdout.splitlines()), \
            out.stdout

        out = rev("verify", "--json", check=1)  # the agent's config: web runs, its port is held
        assert "web" in out.stdout, out.stdout

        # -c still chooses: a config with no agent gets the iterators
        out = rev("scan", "--json", "-v", "-c", noagent.config_path, str(port), check=0)
        assert "BPF iterators" in out.stderr, out.stderr
        out = rev("status", "-c", noagent.config_path, check=3)

        # start/stop through the found agent, names checked by the agent itself
        rev("stop", "web", check=0)
        out = rev("status", "--json", check=0)
        assert json.loads(out.stdout)["services"]["web"]["state"] == "stopped", out.stdout
        out = rev("start", "nosuch", check=1)
        assert "nosuch" in out.stderr, out.stderr

        assert agent.stop() == 0
        assert not os.path.exists(rec.path), "record left after a clean stop"
        out = rev("scan", "--json", "-v", str(port))
        assert "listeners map" not in out.stderr, out.stderr
    finally:
        agent.close()
        noagent.close()
        rec.close()


def test_killed_agents_record_is_not_believed():
    rec = Record()
    a1 = Agent(name="killed")
    a2 = None
    try:
        a1.start()
        assert rec.read()["pid"] == a1.proc.pid
        a1.proc.send_signal(signal.SIGKILL)
        a1.proc.wait()
        assert os.path.exists(rec.path)  # left behind, but its lock went with the process
        out = rev("scan", "--json", "-v")
        assert "listeners map" not in out.stderr, out.stderr
        a2 = Agent(name="next").start()
        assert rec.read()["pid"] == a2.proc.pid
        out = rev("scan", "--json", "-v")
        assert a2.events[0]["pin"] in out.stderr, out.stderr
    finally:
        for a in (a2, a1):
            if a:
                a.close()
        rec.close()


def test_second_agent_leaves_the_record_to_the_first():
    rec = Record()
    a1 = a2 = None
    try:
        a1 = Agent(name="first").start()
        a2 = Agent(name="second").start()
        assert rec.read()["pid"] == a1.proc.pid
        assert "host's agent" in a2.stderr_text(), a2.stderr_text()
        out = rev("scan", "--json", "-v")
        assert a1.events[0]["pin"] in out.stderr, out.stderr
        # the second agent's stop leaves the first one's record alone
        assert a2.stop() == 0
        assert rec.read()["pid"] == a1.proc.pid
    finally:
        for a in (a2, a1):
            if a:
                a.close()
        rec.close()


def test_no_agent_and_no_config_says_where_it_looked():
    """Without -c, a live agent or a config file, a command names the record and the files it
    looked for and what to do (not "cannot read" of a fallback path)."""
    if os.path.exists("/etc/revenant/revenant.json"):
        print("  skipped: this host has /etc/revenant/revenant.json")
        return
    rec = Record()
    cwd = tempfile.mkdtemp(prefix="revenant-nocfg-")
    try:
        for cmd in (["status"], ["tail"], ["stop", "web"]):
            r = subprocess.run([BIN, *cmd], cwd=cwd, capture_output=True, text=True, timeout=30)
            assert r.returncode == 2, (cmd, r.returncode, r.stderr)
            assert "no running agent found" in r.stderr and rec.path in r.stderr and \
                "/etc/revenant/revenant.json" in r.stderr and "-c FILE" in r.stderr, r.stderr
    finally:
        os.rmdir(cwd)
        rec.close()


if __name__ == "__main__":
    run_tests([
        test_commands_without_c_find_the_agent,
        test_killed_agents_record_is_not_believed,
        test_second_agent_leaves_the_record_to_the_first,
        test_no_agent_and_no_config_says_where_it_looked,
    ])
