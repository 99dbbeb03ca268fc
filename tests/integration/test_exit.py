"""Why a service died (issue 10): service_exit's killed_by, oom and core_dumped, recorded by the
kernel (bpf/cause on signal_generate and mark_victim) and shown by `status`. Real processes: a
shell started by the test sends SIGKILL, a service exits by itself, `revenant stop` is named as the
agent, and a service that moves itself into a small memory cgroup is OOM-killed. Every wait is for
an event in the log."""
import json
import os
import subprocess
import sys
import tempfile
import time

from harness import Agent, run_tests

SLEEPER = "exec sleep 1000"


def started(agent, name, since=0):
    return agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == name,
                            timeout=15, what="service_start of " + name, since=since)


def exited(agent, name, pid):
    return agent.wait_event(lambda e: e["type"] == "service_exit" and e["service"] == name
                            and e["pid"] == pid, timeout=20, what="service_exit of %s" % name)


def wait_file_contains(agent, path, text, timeout=15):
    """Until path holds text: woken by inotify on the agent's directory, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        left = deadline - time.monotonic()
        assert left > 0, "%s never held %r" % (path, text)
        agent.ino.wait(min(left, 1.0))


def status(agent):
    return json.loads(agent.cli("status", "-c", agent.config_path, "--json", check=0).stdout)


def test_sigkill_from_a_shell_names_the_shell():
    agent = Agent({"services": {"victim": {"command": SLEEPER, "auto_restart": False}}},
                  "exit-kill").start()
    try:
        pid = started(agent, "victim")["pid"]
        # `kill` is a builtin: the signal comes from the shell process itself.
        shell = subprocess.Popen(["bash", "-c", "kill -KILL %d" % pid])
        assert shell.wait(10) == 0
        e = exited(agent, "victim", pid)
        assert e["signal"] == "SIGKILL" and e["code"] is None, e
        assert e["killed_by"] == {"pid": shell.pid, "comm": "bash", "uid": 0}, e
        assert e["oom"] is False and e["core_dumped"] is False, e

        st = status(agent)["services"]["victim"]
        assert st["last_exit"]["killed_by"]["pid"] == shell.pid, st
        table = agent.cli("status", "-c", agent.config_path, check=0).stdout
        assert "SIGKILL by bash[%d]" % shell.pid in table, table
        row = agent.cli("tail", "-c", agent.config_path, "--service", "victim", "-n", "1",
                        check=0).stdout
        assert '"comm":"bash"' in row and "oom" not in row, row
    finally:
        agent.close()


# Handles SIGTERM and exits 0: a signal was sent, but the process ended by itself.
HANDLER = r"""
import os, signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("ready", flush=True)
signal.pause()
"""


def test_exit_by_itself_has_no_killer():
    agent = Agent({"services": {
        "quits": {"command": "exit 3", "auto_restart": False},
        "handles": {"command": "exec %s -c '%s'" % (sys.executable, HANDLER.replace("'", "\"")),
                    "auto_restart": False},
    }}, "exit-self").start()
    try:
        pid = started(agent, "quits")["pid"]
        e = exited(agent, "quits", pid)
        assert e["code"] == 3 and e["signal"] is None, e
        assert e["killed_by"] is None and e["oom"] is False and e["core_dumped"] is False, e

        pid = started(agent, "handles")["pid"]
        # The handler is installed once it printed "ready" (its output file is in agent.dir).
        wait_file_contains(agent, os.path.join(agent.dir, "handles.log"), "stdout F ready")
        shell = subprocess.Popen(["bash", "-c", "kill -TERM %d" % pid])
        assert shell.wait(10) == 0
        e = exited(agent, "handles", pid)
        assert e["code"] == 0 and e["killed_by"] is None, e
    finally:
        agent.close()


def test_stop_is_named_as_the_agent():
    agent = Agent({"services": {"stoppable": {"command": SLEEPER}}}, "exit-stop").start()
    try:
        pid = started(agent, "stoppable")["pid"]
        agent.cli("stop", "-c", agent.config_path, "stoppable", check=0)
        e = exited(agent, "stoppable", pid)
        assert e["signal"] == "SIGTERM", e
        assert e["killed_by"] == {"pid": agent.proc.pid, "comm": "revenant", "uid": 0,
                                  "agent": True}, e
        table = agent.cli("status", "-c", agent.config_path, check=0).stdout
        assert "SIGTERM by the agent" in table, table
    finally:
        agent.close()


# Moves itself into the memory cgroup given (v1: cgroup.procs; v2 the same) and allocates far
# past its limit, a MiB at a time, touching every page.
HOG = r"""
import sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write("0")
chunks = []
while True:
    chunks.append(b"x" * (1 << 20))
"""


def memory_cgroup():
    """A fresh memory cgroup with a 64 MiB limit (v1 where mounted, else v2), no swap."""
    name = "revenant-test-oom-%d" % os.getpid()
    v1 = "/sys/fs/cgroup/memory"
    if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
        path = os.path.join(v1, name)
        os.mkdir(path)
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(64 << 20))
        swap = os.path.join(path, "memory.memsw.limit_in_bytes")
        if os.path.exists(swap):
            with open(swap, "w") as f:
                f.write(str(64 << 20))
        return path
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            with open(os.path.join(root, "cgroup.controllers")) as f:
                if "memory" not in f.read().split():
                    continue
        except FileNotFoundError:
            continue
        path = os.path.join(root, name)
        os.mkdir(path)
        for k, v in (("memory.max", 64 << 20), ("memory.swap.max", 0)):
            if os.path.exists(os.path.join(path, k)):
                with open(os.path.join(path, k), "w") as f:
                    f.write(str(v))
        return path
    return None


def test_oom_kill_is_marked():
    cg = memory_cgroup()
    if cg is None:
        print("no memory cgroup controller here: OOM test skipped")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(HOG)
        hog = f.name
    os.chmod(hog, 0o644)
    agent = Agent({"services": {"hog": {"command": "exec %s %s %s" % (sys.executable, hog, cg),
                                        "auto_restart": False}}}, "exit-oom")
    try:
        agent.start()
        pid = started(agent, "hog")["pid"]
        e = exited(agent, "hog", pid)
        assert e["signal"] == "SIGKILL" and e["oom"] is True, e
        assert e["killed_by"] is not None and e["killed_by"].get("kernel") is True, e
        assert status(agent)["services"]["hog"]["last_exit"]["oom"] is True
        table = agent.cli("status", "-c", agent.config_path, check=0).stdout
        assert "SIGKILL by the kernel (OOM)" in table, table
    finally:
        agent.close()
        os.unlink(hog)
        os.rmdir(cg)  # empty once the hog is gone (the agent reaped it)


def test_without_the_probes_nothing_is_guessed():
    """REVENANT_NO_EXIT_CAUSE=1 (bench/storm's baseline): the agent runs, and says it does not
    know rather than guess."""
    agent = Agent({"services": {"victim": {"command": SLEEPER, "auto_restart": False}}},
                  "exit-off").start(env={"REVENANT_NO_EXIT_CAUSE": "1"})
    try:
        pid = started(agent, "victim")["pid"]
        shell = subprocess.Popen(["bash", "-c", "kill -KILL %d" % pid])
        assert shell.wait(10) == 0
        e = exited(agent, "victim", pid)
        assert e["signal"] == "SIGKILL" and e["killed_by"] is None, e
        assert "REVENANT_NO_EXIT_CAUSE=1" in agent.stderr_text()
    finally:
        agent.close()


if __name__ == "__main__":
    run_tests([
        test_sigkill_from_a_shell_names_the_shell,
        test_exit_by_itself_has_no_killer,
        test_stop_is_named_as_the_agent,
        test_oom_kill_is_marked,
        test_without_the_probes_nothing_is_guessed,
    ])
