"""The agent under valgrind: a run with a supervised service, collisions, a zombie, listeners and
control requests, then SIGTERM, frees everything it allocated (issue 5: no leak). Memory errors
are the sanitizer build's job; valgrind cannot see what the kernel writes through bpf() batch
look-ups or the ring buffer, so its uninitialised-value checks are off here."""
import os
import shutil
import signal
import socket
import subprocess
import sys

from harness import Agent, BIN, free_port, run_tests

VALGRIND = shutil.which("valgrind")


def sanitized(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out or "libubsan" in out


def test_agent_run_frees_everything():
    port = free_port()
    agent = Agent({"services": {"web": {
        "command": "exec %s -m http.server {port} --bind 127.0.0.1" % sys.executable,
        "port": port, "health": {"tcp": True, "interval_ms": 200, "timeout_ms": 2000},
        "stop_timeout_ms": 3000}},
        "monitoring": {"zombie_grace_ms": 100}}, "valgrind")
    vlog = os.path.join(agent.dir, "valgrind.log")
    agent.proc = subprocess.Popen(
        [VALGRIND, "--quiet", "--leak-check=full", "--show-leak-kinds=definite,indirect",
         "--errors-for-leak-kinds=definite,indirect", "--undef-value-errors=no",
         "--error-exitcode=9", "--log-file=" + vlog, BIN, "run", "-c", agent.config_path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        agent.wait_event(lambda e: e["type"] == "agent_start", timeout=120, what="agent_start")
        agent.wait_event(lambda e: e["type"] == "health" and e["ok"], timeout=120,
                         what="web healthy")
        # A collision with the service's port, from us (a foreign process).
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            pass
        s.close()
        agent.wait_event(lambda e: e["type"] == "port_collision" and e["port"] == port,
                         timeout=60, what="port_collision")
        # A zombie of ours, reaped after the grace.
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == pid, timeout=60,
                         what="zombie")
        os.waitpid(pid, 0)
        r = agent.cli("status", "--json", "-c", agent.config_path, check=0)
        assert '"web"' in r.stdout, r.stdout
        assert agent.stop(signal.SIGTERM, timeout=120) == 0, open(vlog).read()
        text = open(vlog).read()
        assert "definitely lost" not in text and "indirectly lost" not in text, text
    finally:
        agent.close()


if __name__ == "__main__":
    if not VALGRIND or sanitized(BIN):
        print("valgrind missing, or the binary is built with sanitizers: nothing to check")
        print("0 passed, 0 failed, 1 skipped")
        sys.exit(77)
    run_tests([test_agent_run_frees_everything])
