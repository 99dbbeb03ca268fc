"""The zombie grace kept in the kernel (pending exits in slots by pid and an overflow table, one
bpf_timer for the earliest deadline): a zombie is reported at the grace, an ordinary exit never
reaches userspace, a reap before the grace keeps it silent, a pid whose slot is taken is kept in
the overflow table, a reload changes the grace; and the userspace fallback
(REVENANT_ZOMBIE_GRACE=userspace) passes every zombie test."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from harness import ZOMBIE_PARENT, Agent, BIN, end, free_port, run_tests, spawn, tell
import test_scan
import test_sensor
import test_supervisor

MODE_VAR = "REVENANT_ZOMBIE_GRACE"

# Forks N children that exit at once and are reaped at once; prints their pids, then "done".
EXITS = r"""
import os, sys
n = int(sys.argv[1])
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
pids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
sys.stdin.readline()
"""


def set_mode(mode):
    if mode is None:
        os.environ.pop(MODE_VAR, None)
    else:
        os.environ[MODE_VAR] = mode


def metrics(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(revenant_\w+)(\{type="(\w+)"\})? (\d+)$', line)
        if m:
            out[(m.group(1), m.group(3))] = int(m.group(4))
    return out


def marker(agent):
    """A listen and close of ours, seen in the log: every record queued before it was handled."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port, what="marker")
    s.close()
    agent.wait_event(lambda e: e["type"] == "port_release" and e["port"] == port,
                     what="marker release")


def test_kernel_path_is_chosen_and_reports_at_the_grace():
    set_mode(None)
    parent = spawn(ZOMBIE_PARENT)
    agent = Agent({"monitoring": {"zombie_grace_ms": 300}}, "kgrace").start()
    try:
        assert agent.events[0]["zombie_grace"] == "kernel", agent.events[0]
        kid = int(tell(parent, "fork")[0])
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == kid, what="zombie")
        assert z["ppid"] == parent.pid and z["comm"] == "python3", z
        assert 300 <= z["age_ms"] < 1300, z
        assert tell(parent, "reap") == ["reaped"]
        r = agent.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == kid,
                             what="zombie_reaped")
        assert r["age_ms"] >= z["age_ms"], (z, r)
    finally:
        end(parent)
        agent.close()


def exits_seen(mode, n=300):
    """Records and loop wake-ups of an agent in `mode` while n processes exit and are reaped at
    once (plus a marker listen/close); returns the metric deltas."""
    set_mode(mode)
    port = free_port()
    agent = Agent({"monitoring": {"zombie_grace_ms": 200}, "metrics": {"listen":
                   "127.0.0.1:%d" % port}}, "exits-" + mode).start()
    p = spawn(EXITS, n)
    try:
        assert agent.events[0]["zombie_grace"] == mode, agent.events[0]
        marker(agent)
        before = metrics(port)
        pids = set(map(int, tell(p)))
        assert len(pids) == n
        marker(agent)  # every exit record was handled before this
        # frees come an RCU grace period after the reaps: wait for them (userspace path)
        deadline = time.monotonic() + 10
        after = metrics(port)
        while mode == "userspace" and after.get(("revenant_kernel_records_total", "reap"), 0) - \
                before.get(("revenant_kernel_records_total", "reap"), 0) < n and \
                time.monotonic() < deadline:
            time.sleep(0.05)  # polling a counter: the frees raise no event of their own
            after = metrics(port)
        n_ev = len(agent.events)
        # the grace of the last exit has passed when a zombie made after it is reported
        parent = spawn(ZOMBIE_PARENT)
        try:
            kid = int(tell(parent, "fork")[0])
            agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == kid, what="zombie")
        finally:
            end(parent)
        assert not [e for e in agent.events if e.get("pid") in pids], \
            [e for e in agent.events if e.get("pid") in pids][:5]
        assert n_ev >= 2
        return {k: after.get(k, 0) - before.get(k, 0) for k in after}
    finally:
        end(p)
        agent.close()
        set_mode(None)


def test_ordinary_exits_never_reach_userspace():
    """With the kernel's grace, processes that exit and are reaped in time send nothing through
    the ring buffer and do not wake the agent; with userspace's, each sends an exit and a reap."""
    n = 300
    k = exits_seen("kernel", n)
    u = exits_seen("userspace", n)
    rec = "revenant_kernel_records_total"
    assert k[(rec, "exit")] == 0 and k[(rec, "reap")] < n // 10, k
    assert u[(rec, "exit")] >= n and u[(rec, "reap")] >= n, u
    # the marker's own listen/release, and whatever else the host did meanwhile
    k_total = sum(v for (name, _), v in k.items() if name == rec)
    assert k_total < n // 10, k
    wake = ("revenant_loop_wakeups_total", None)
    assert k[wake] < n // 10, (k[wake], u[wake])
    print("  kernel grace: %d records, %d wake-ups; userspace: %d records, %d wake-ups "
          "(%d exits)" % (k_total, k[wake], sum(v for (nm, _), v in u.items() if nm == rec),
                          u[wake], n))


def test_reap_before_the_grace_cancels_the_timer():
    """A zombie reaped before its grace is never reported (its timer died with its entry), and a
    zombie made after it, not reaped, is: its report comes after the first one's deadline."""
    for mode in ("kernel", "userspace"):
        set_mode(mode)
        parent = spawn(ZOMBIE_PARENT)
        agent = Agent({"monitoring": {"zombie_grace_ms": 1000}}, "cancel").start()
        try:
            assert agent.events[0]["zombie_grace"] == mode
            early = int(tell(parent, "fork")[0])
            assert tell(parent, "reap") == ["reaped"]
            late = int(tell(parent, "fork")[0])
            agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == late,
                             what="the second zombie (%s)" % mode)
            assert not [e for e in agent.events if e.get("pid") == early], agent.events
        finally:
            end(parent)
            agent.close()
            set_mode(None)


def test_pid_whose_slot_is_taken_goes_to_the_overflow_table():
    """With one slot (REVENANT_ZOMBIE_SLOTS=1) the second of two zombies waits in the overflow
    table: both are reported at the grace, counted among the unreaped (the per-CPU counts
    summed), and both reaps are seen; the first's slot is taken again after its reap."""
    set_mode("kernel")
    parent = spawn(ZOMBIE_PARENT)
    port = free_port()
    agent = Agent({"monitoring": {"zombie_grace_ms": 200},
                   "metrics": {"listen": "127.0.0.1:%d" % port}}, "overflow")
    agent.start(env={"REVENANT_ZOMBIE_SLOTS": "1"})
    try:
        for _ in range(2):
            kids = [int(tell(parent, "fork")[0]) for _ in range(2)]
            for kid in kids:
                z = agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == kid,
                                     what="zombie %d" % kid)
                assert z["ppid"] == parent.pid and z["comm"] == "python3", z
            assert metrics(port)[("revenant_exited_unreaped", None)] >= 2
            assert tell(parent, "reap") == ["reaped"]
            for kid in kids:
                agent.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == kid,
                                 what="zombie_reaped %d" % kid)
    finally:
        end(parent)
        agent.close()
        set_mode(None)


def test_reload_changes_the_kernel_grace():
    set_mode("kernel")
    try:
        test_sensor.test_reload_shorter_grace_applies_to_new_zombies()
    finally:
        set_mode(None)


def test_bad_mode_is_a_usage_error():
    agent = Agent(name="badmode")
    try:
        r = subprocess.run([BIN, "run", "-c", agent.config_path], capture_output=True, text=True,
                           timeout=30, env={**os.environ, MODE_VAR: "sometimes"})
        assert r.returncode == 2 and MODE_VAR in r.stderr, (r.returncode, r.stderr)
    finally:
        agent.close()


def fallback(test):
    """One of the existing zombie tests, with the userspace tracker forced."""
    def run():
        set_mode("userspace")
        try:
            test()
        finally:
            set_mode(None)
    run.__name__ = "userspace_" + test.__name__
    return run


if __name__ == "__main__":
    run_tests([
        test_kernel_path_is_chosen_and_reports_at_the_grace,
        test_ordinary_exits_never_reach_userspace,
        test_reap_before_the_grace_cancels_the_timer,
        test_pid_whose_slot_is_taken_goes_to_the_overflow_table,
        test_reload_changes_the_kernel_grace,
        test_bad_mode_is_a_usage_error,
    ] + [fallback(t) for t in (
        test_sensor.test_zombies_before_and_after_start,
        test_sensor.test_reload_shorter_grace_applies_to_new_zombies,
        test_sensor.test_reload_turns_monitoring_on,
        test_sensor.test_exit_reaped_in_time_is_not_a_zombie,
        test_supervisor.test_zombie_policy_nudge,
        test_supervisor.test_zombie_policy_report,
        test_supervisor.test_zombie_policy_restart_parent,
        test_supervisor.test_zombie_policy_restart_parent_counts_restarts_and_gives_up,
        test_supervisor.test_zombie_nudge_short_grace_logs_reap,
        test_supervisor.test_zombie_with_slow_exit_is_reported,
        test_scan.test_zombies_lists_a_zombie_with_its_parent,
        test_scan.test_service_attribution,
    )])
