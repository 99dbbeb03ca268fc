"""The OCI image (deploy/container/build-image, FROM scratch) run with podman and runc the way a
host runs it: host PID namespace and network, /sys/fs/bpf and /sys/kernel/tracing from the host.
The agent inside names the owners of ports and the parents of zombies of host processes, and
`revenant scan` on the host reads the pins it left in the host's bpffs."""
import io
import json
import os
import random
import re
import shutil
import subprocess
import tarfile
import urllib.request

from harness import (BIN, ZOMBIE_PARENT, Agent, end, free_port, run_tests, spawn, tell)
from podmanlib import Podman

# Binds PORT on 127.0.0.1 and expects EADDRINUSE (the agent sees the collision), then exits.
LOSER = r"""
import errno, os, socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    print("ready bound", flush=True)
except OSError as e:
    print("ready", errno.errorcode[e.errno], flush=True)
sys.stdin.readline()
"""

HOLDER = r"""
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
"""


def ldd_files(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    files = set()
    for line in out.split("\n"):
        m = re.match(r"^\s*\S+ => (/\S+)", line) or re.match(r"^\s*(/\S+) \(", line)
        if m:
            files.add(m.group(1).lstrip("/"))
    return files


def test_image_is_scratch_with_exactly_its_libraries():
    """The image holds the agent, the libraries ldd resolves for it, the loader and three small
    files of /etc: nothing else (no shell, no package manager). Prints its size."""
    p = Podman()
    cid = None
    try:
        tag = p.image()
        size = int(p("image", "inspect", "--format", "{{.Size}}", tag).stdout)
        layers = json.loads(p("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                              tag).stdout)
        print("image %s: %d bytes (%.1f MiB), %d layer" % (tag, size, size / 2**20,
                                                          len(layers)))
        assert len(layers) == 1, layers  # FROM scratch: our one layer
        cid = p("create", tag).stdout.strip()
        tar = subprocess.run(["podman", "export", cid], capture_output=True, env=p.env,
                             check=True, timeout=120).stdout
        files = {m.name.lstrip("./") for m in tarfile.open(fileobj=io.BytesIO(tar))
                 if m.isfile() and m.size > 0}
        want = {"usr/bin/revenant", "etc/revenant/revenant.json", "etc/passwd",
                "etc/group"} | ldd_files(BIN)
        assert files == want, "extra: %s, missing: %s" % (files - want, want - files)
    finally:
        if cid:
            p("rm", "-f", cid, check=False)
        p.close()


def run_agent(p, tag, extra, name):
    """`podman run` of the image in the foreground (SIGTERM to the client reaches the agent) on
    an Agent's config, its directory mounted at the same path so the control socket, lock, log
    and pin directory are the same paths for the host's `revenant` and for the container's."""
    metrics = free_port()
    a = Agent({"metrics": {"listen": "127.0.0.1:%d" % metrics}}, name=name)
    a.metrics_port = metrics
    a.container = "revenant-test-%s-%d" % (name, random.randint(0, 1 << 30))
    a.stderr = open(os.path.join(a.dir, "agent.stderr"), "w+")
    a.proc = subprocess.Popen(
        ["podman", "run", "--rm", "--name", a.container, "--runtime=runc", *extra,
         "-v", "/sys/fs/bpf:/sys/fs/bpf", "-v", "/sys/kernel/tracing:/sys/kernel/tracing",
         "-v", "%s:%s" % (a.dir, a.dir), tag, "run", "-c", a.config_path],
        stdout=a.stderr, stderr=a.stderr, env=p.env)
    return a


def collision_and_zombie(p, a):
    """The agent names a host process's port and its owner when another host process collides,
    and a host process's zombie with its parent."""
    start = a.wait_event(lambda e: e["type"] == "agent_start", timeout=60, what="agent_start")
    host_pid = int(p("inspect", "--format", "{{.State.Pid}}", a.container).stdout)
    # The host's PID namespace: the agent's own pid is its host pid.
    assert start["pid"] == host_pid, (start, host_pid)
    port = free_port()
    holder = spawn(HOLDER, port)
    loser = parent = None
    try:
        hpid = int(holder.info[0])
        a.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port and
                     e["pid"] == hpid, what="port_listen of the host process")
        loser = spawn(LOSER, port)
        assert loser.info == ["EADDRINUSE"], loser.info
        e = a.wait_event(lambda e: e["type"] == "port_collision" and e["port"] == port,
                         what="port_collision")
        assert e["owner_pid"] == hpid and e["owner_comm"] == "python3", e
        assert e["pid"] == loser.pid, e
        parent = spawn(ZOMBIE_PARENT)
        zpid = int(tell(parent, "fork")[0])
        z = a.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == zpid, what="zombie")
        assert z["ppid"] == parent.pid and z["parent_comm"] == "python3", z
        tell(parent, "reap")
        a.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == zpid,
                     what="zombie_reaped")
        return port, hpid, holder
    except BaseException:
        end(holder)
        raise
    finally:
        for h in (loser, parent):
            if h:
                end(h)


def stop_and_check(p, a):
    code = a.stop(timeout=60)
    assert code == 0, "container exited %s\n%s" % (code, a.stderr_text())
    stop = a.wait_event(lambda e: e["type"] == "agent_stop", what="agent_stop")
    assert stop["reason"] == "SIGTERM", stop
    start = next(e for e in a.events if e["type"] == "agent_start")
    assert not os.path.exists(start["pin"]), "pins left in %s" % start["pin"]


def test_privileged_host_pid():
    p = Podman()
    a = None
    try:
        tag = p.image()
        a = run_agent(p, tag, ["--privileged", "--pid=host", "--net=host"], "priv")
        port, hpid, holder = collision_and_zombie(p, a)
        try:
            # Inside: scan answers from the agent's map.
            r = p("exec", a.container, "/usr/bin/revenant", "scan", "--json", "-c",
                  a.config_path, str(port))
            rows = json.loads(r.stdout)
            assert [(x["port"], x["pid"]) for x in rows] == [(port, hpid)], rows
            # The host: same control socket path, so the same lock and pin directory.
            r = subprocess.run([BIN, "scan", "--json", "-v", "-c", a.config_path, str(port)],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert "the agent's listeners map" in r.stderr, r.stderr
            rows = json.loads(r.stdout)
            assert [(x["port"], x["pid"], x["comm"]) for x in rows] == [
                (port, hpid, "python3")], rows
            body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % a.metrics_port,
                                          timeout=10).read().decode()
            assert 'revenant_events_total{type="port_collision"} 1' in body, body
        finally:
            end(holder)
        stop_and_check(p, a)
    finally:
        if a:
            p("rm", "-f", a.container, check=False)
            a.close()
            shutil.rmtree(a.dir, True)
        p.close()


def test_capabilities_without_privileged():
    """The DaemonSet's capability set is enough: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN,
    CAP_SYS_PTRACE, CAP_KILL, not --privileged."""
    p = Podman()
    a = None
    try:
        tag = p.image()
        a = run_agent(p, tag, ["--cap-add=BPF,PERFMON,SYS_ADMIN,SYS_PTRACE,KILL",
                               "--pid=host", "--net=host"], "caps")
        _, _, holder = collision_and_zombie(p, a)
        end(holder)
        caps = p("inspect", "--format", "{{.HostConfig.Privileged}} {{.EffectiveCaps}}",
                 a.container).stdout
        assert caps.startswith("false "), caps
        stop_and_check(p, a)
    finally:
        if a:
            p("rm", "-f", a.container, check=False)
            a.close()
            shutil.rmtree(a.dir, True)
        p.close()


if __name__ == "__main__":
    run_tests([test_image_is_scratch_with_exactly_its_libraries, test_privileged_host_pid,
               test_capabilities_without_privileged])
