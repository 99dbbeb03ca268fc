"""Agent crash (issue 5): after `kill -9` of the agent its services keep running; the next agent
recognises them from the state file next to the control socket and replaces them on their own
ports (never migrates away from them, never runs two); `verify` and `cleanup` work from that state
when no agent runs."""
import ctypes
import json
import os
import select
import signal

from harness import free_port, pid_alive, port_bindable, run_tests
from test_supervisor import (http_get, make_agent, of, proc_state, rev, status, svc, wait_healthy)

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """The killed agent's services re-parent to us, not to PID 1, so the test reaps them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


class Orphans:
    """The killed agent's services, held by pidfds taken while they were verified alive: waits
    and (at the end) kills go to those processes, never to a reused pid."""

    def __init__(self, pids):
        self.pids = dict(pids)
        self.fds = {n: os.pidfd_open(pid) for n, pid in pids.items()}

    def reap(self, name, timeout=10):
        """Wait for the exit on the pidfd, then reap (we are their subreaper). False: alive."""
        fd = self.fds.get(name)
        if fd is None:
            return True
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return False
        try:
            os.waitpid(self.pids[name], 0)
        except ChildProcessError:
            pass  # re-parented elsewhere after all: exited is what matters
        os.close(self.fds.pop(name))
        return True

    def close(self):
        for name in list(self.fds):
            try:
                signal.pidfd_send_signal(self.fds[name], signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap(name)


def crashed_stack(name):
    """A healthy two-service stack whose agent was then killed with SIGKILL (its pid only)."""
    pdb, papi = free_port(), free_port()
    agent = make_agent(name, {"db": svc(pdb), "api": svc(papi, depends_on=["db"])})
    orphans = None
    try:
        agent.start()
        wait_healthy(agent, "api")
        pids = {e["service"]: e["pid"] for e in of(agent.events, "service_start")}
        ports = {"db": pdb, "api": papi}
        assert set(pids) == {"db", "api"}, pids
        orphans = Orphans(pids)  # while the agent, their parent, still holds them
        agent.proc.send_signal(signal.SIGKILL)
        assert agent.proc.wait(10) == -signal.SIGKILL
        for n, pid in pids.items():
            assert pid_alive(pid) and proc_state(pid) != "Z", "%s died with the agent" % n
            assert "%s %d" % (n, ports[n]) in http_get(ports[n])
        with open(os.path.join(agent.dir, "state.json")) as f:
            st = json.load(f)
        assert {n: s["pid"] for n, s in st["services"].items()} == pids, st
        return agent, orphans, ports
    except BaseException:
        agent.close()
        if orphans:
            orphans.close()
        raise


def test_new_agent_replaces_leftovers_on_their_ports():
    agent, orphans, ports = crashed_stack("recover")
    old = orphans.pids
    try:
        n = len(agent.events)
        agent.start()
        for name, pid in old.items():
            e = agent.wait_event(lambda e, name=name: e["type"] == "service_leftover" and
                                 e["service"] == name, since=n, what="service_leftover " + name)
            assert e["pid"] == pid and e["action"] == "replace" and e["port"] == ports[name], e
        wait_healthy(agent, "api", since=n)
        for name, pid in old.items():
            assert orphans.reap(name), "leftover %s (pid %d) still alive" % (name, pid)
        ev = agent.events[n:]
        assert not of(ev, "port_migrated"), "migrated away from our own leftovers: %s" % \
            of(ev, "port_migrated")
        new = {}
        for name in old:
            starts = of(ev, "service_start", service=name)
            assert len(starts) == 1, starts
            s = starts[0]
            assert s["port"] == ports[name] and s["pid"] != old[name], s
            new[name] = s["pid"]
            # replaced: the old instance let go of the port before the new one started
            rel = [i for i, e in enumerate(ev) if e["type"] == "port_release" and
                   e["port"] == ports[name] and e["pid"] == old[name]]
            assert rel and rel[0] < ev.index(s), "%s started before its leftover released" % name
        st = status(agent)["services"]
        for name in old:
            assert st[name]["state"] == "running" and st[name]["pid"] == new[name], st
            assert st[name]["port"] == ports[name], st
        r = rev("scan", "--json", "-c", agent.config_path, *map(str, ports.values()), check=0)
        rows = json.loads(r.stdout)
        for name, port in ports.items():
            mine = [x for x in rows if x["port"] == port and x["proto"] == "tcp"]
            assert len(mine) == 1 and mine[0]["pid"] == new[name], (name, mine)
            assert mine[0]["holders"] in ([], [new[name]]), mine
        assert agent.stop() == 0
        for name in old:
            assert not pid_alive(new[name])
    finally:
        agent.close()
        orphans.close()


def test_verify_and_cleanup_after_crash():
    agent, orphans, ports = crashed_stack("cleanup")
    old = orphans.pids
    try:
        r = rev("verify", "-c", agent.config_path)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        for name, pid in old.items():
            assert ("service %s: pid %d is alive" % (name, pid)) in r.stdout, r.stdout
            assert str(ports[name]) in r.stdout, r.stdout
        r = rev("verify", "--json", "-c", agent.config_path)
        assert r.returncode == 1 and json.loads(r.stdout)["ok"] is False, r.stdout

        r = rev("cleanup", "-c", agent.config_path, check=0)
        for name, pid in old.items():
            assert "stopped leftover %s (pid %d" % (name, pid) in r.stdout, r.stdout
            assert orphans.reap(name, timeout=1), \
                "cleanup returned, %s (pid %d) still alive" % (name, pid)
        for port in ports.values():
            assert port_bindable(port), "port %d not free after cleanup" % port

        r = rev("verify", "-c", agent.config_path)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        r = rev("cleanup", "-c", agent.config_path, check=0)
        assert "nothing to clean up" in r.stdout, r.stdout
    finally:
        agent.close()
        orphans.close()


if __name__ == "__main__":
    become_subreaper()
    run_tests([
        test_new_agent_replaces_leftovers_on_their_ports,
        test_verify_and_cleanup_after_crash,
    ])
