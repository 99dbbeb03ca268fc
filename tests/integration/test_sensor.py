"""The foundation: `revenant run` sees zombies, port collisions and listeners as they happen."""
import json
import os
import pwd
import signal
import socket
import subprocess

from harness import ZOMBIE_PARENT, Agent, BIN, end, free_port, run_as, run_tests, spawn, tell

LISTENER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(sys.argv[3]))
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("ready", flush=True)
sys.stdin.readline()
s.close()
print("closed", flush=True)
sys.stdin.readline()
"""

# Tries bind() (and optionally listen()) and reports the errno.
LOSER = r"""
import os, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("bound", flush=True)
except OSError as e:
    print("errno", e.errno, flush=True)
sys.stdin.readline()
"""


def test_zombies_before_and_after_start():
    parent = spawn(ZOMBIE_PARENT)
    agent = None
    try:
        early = int(tell(parent, "fork")[0])
        agent = Agent({"monitoring": {"zombie_grace_ms": 200}}, "zombie").start()
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == early,
                             what="zombie made before the agent")
        assert z["ppid"] == parent.pid, z
        assert z["comm"] == "python3" and z["parent_comm"] == "python3", z
        assert z["existing"] is True, z

        n = len(agent.events)
        late = int(tell(parent, "fork")[0])
        z2 = agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == late,
                              what="zombie made after the agent started", since=n)
        assert z2["ppid"] == parent.pid and z2["age_ms"] >= 200, z2
        assert "existing" not in z2, z2

        assert tell(parent, "reap") == ["reaped"]
        for pid in (early, late):
            r = agent.wait_event(lambda e, pid=pid: e["type"] == "zombie_reaped" and e["pid"] == pid,
                                 what="zombie_reaped %d" % pid)
            assert r["age_ms"] >= 200, r
        assert agent.stop() == 0
    finally:
        end(parent)
        if agent:
            agent.close()


def test_reload_shorter_grace_applies_to_new_zombies():
    """A SIGHUP that lowers zombie_grace_ms: a zombie born after it is reported at the new grace,
    not queued behind an older zombie's longer deadline."""
    parent = spawn(ZOMBIE_PARENT)
    agent = Agent({"monitoring": {"zombie_grace_ms": 20000}}, "regrace").start()
    try:
        old = int(tell(parent, "fork")[0])
        agent.config["monitoring"]["zombie_grace_ms"] = 200
        with open(agent.config_path, "w") as f:
            json.dump(agent.config, f)
        n = len(agent.events)
        agent.proc.send_signal(signal.SIGHUP)
        r = agent.wait_event(lambda e: e["type"] == "agent_reload", what="agent_reload", since=n)
        assert r["ok"] is True, r
        new = int(tell(parent, "fork")[0])
        z = agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == new, timeout=5,
                             what="the new zombie at the new grace", since=n)
        assert 200 <= z["age_ms"] < 5000, z
        # the older exit keeps the grace it was given: not reported yet
        assert not [e for e in agent.events if e["type"] == "zombie" and e["pid"] == old]
        assert tell(parent, "reap") == ["reaped"]
        agent.wait_event(lambda e: e["type"] == "zombie_reaped" and e["pid"] == new,
                         what="zombie_reaped of the new zombie")
    finally:
        end(parent)
        agent.close()


def test_reload_turns_monitoring_on():
    """An agent started with monitoring.enabled false reports no zombie; after a reload that
    turns it on, a new zombie is reported (the kernel side watches exits again)."""
    parent = spawn(ZOMBIE_PARENT)
    agent = Agent({"monitoring": {"enabled": False, "zombie_grace_ms": 200}}, "monon").start()
    try:
        quiet = int(tell(parent, "fork")[0])
        agent.config["monitoring"]["enabled"] = True
        with open(agent.config_path, "w") as f:
            json.dump(agent.config, f)
        n = len(agent.events)
        agent.proc.send_signal(signal.SIGHUP)
        r = agent.wait_event(lambda e: e["type"] == "agent_reload", what="agent_reload", since=n)
        assert r["ok"] is True, r
        new = int(tell(parent, "fork")[0])
        agent.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == new, timeout=5,
                         what="a zombie once monitoring is on", since=n)
        # the exit made while monitoring was off was never watched
        assert not [e for e in agent.events if e.get("pid") == quiet and e["type"] == "zombie"]
    finally:
        end(parent)
        agent.close()


def test_exit_reaped_in_time_is_not_a_zombie():
    agent = Agent({"monitoring": {"zombie_grace_ms": 300}}, "nozombie").start()
    try:
        parent = spawn(ZOMBIE_PARENT)
        kid = int(tell(parent, "fork")[0])
        assert tell(parent, "reap") == ["reaped"]
        end(parent)
        # The parent's own exit is reaped by us (Popen.wait); then both exits are settled: the
        # agent's log must show neither as a zombie once a later marker event arrives.
        marker = socket.socket()
        marker.bind(("127.0.0.1", free_port()))
        marker.listen()
        port = marker.getsockname()[1]
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port,
                         what="marker listen")
        marker.close()
        agent.wait_event(lambda e: e["type"] == "port_release" and e["port"] == port,
                         what="marker release")
        assert not [e for e in agent.events if e["type"] == "zombie" and e["pid"] in (kid, parent.pid)]
    finally:
        agent.close()


def collision(owner_addr, loser_addr, v6only=0, owner_first=False):
    port = free_port()
    owner = agent = loser = None
    try:
        if owner_first:
            owner = spawn(LISTENER, owner_addr, port, v6only)
        agent = Agent(name="collide").start()
        if not owner_first:
            owner = spawn(LISTENER, owner_addr, port, v6only)
            agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port,
                             what="owner's port_listen")
        loser = spawn(LOSER, loser_addr, port)
        assert tell(loser) == ["errno", "98"], "bind should fail with EADDRINUSE"
        e = agent.wait_event(lambda e: e["type"] == "port_collision" and e["port"] == port,
                             what="port_collision")
        assert e["pid"] == loser.pid and e["comm"] == "python3", e
        assert e["addr"] == loser_addr and e["proto"] == "tcp" and e["syscall"] == "bind", e
        assert e["owner_pid"] == owner.pid and e["owner_comm"] == "python3", e
        return e
    finally:
        for p in (loser, owner):
            if p:
                end(p)
        if agent:
            agent.close()


def test_collision_ipv4_owner_listening_before_agent():
    collision("127.0.0.1", "127.0.0.1", owner_first=True)


def test_collision_ipv4_wildcard_owner():
    collision("0.0.0.0", "127.0.0.1")


def test_collision_ipv6_exact():
    e = collision("::1", "::1", v6only=1)
    assert e["family"] == "ipv6", e


def test_collision_ipv6_wildcard_blocks_ipv4():
    e = collision("::", "127.0.0.1", v6only=0)
    assert e["family"] == "ipv4", e


def test_collision_on_listen():
    """Two SO_REUSEADDR sockets may bind one port; the second listen() is the collision."""
    code = r"""
import os, socket, sys
port = int(sys.argv[1])
a = socket.socket(); a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
b = socket.socket(); b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(("127.0.0.1", port)); b.bind(("127.0.0.1", port))
a.listen()
print("ready", flush=True)
sys.stdin.readline()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        b.listen(); msg = "listened"
    except OSError as e:
        msg = "errno %d" % e.errno
    os.write(w, msg.encode()); os._exit(0)
os.waitpid(pid, 0)
print(pid, os.read(r, 100).decode(), flush=True)
sys.stdin.readline()
"""
    port = free_port()
    agent = Agent(name="listen").start()
    p = None
    try:
        p = spawn(code, port)
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port)
        kid, *res = tell(p)
        kid = int(kid)
        assert res == ["errno", "98"], res
        e = agent.wait_event(lambda e: e["type"] == "port_collision" and e["port"] == port)
        assert e["syscall"] == "listen" and e["pid"] == kid and e["owner_pid"] == p.pid, e
    finally:
        if p:
            end(p)
        agent.close()


def test_collision_udp():
    """UDP owners are not in the listeners map: the agent names them from a socket snapshot."""
    code = r"""
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
sys.stdin.readline()
"""
    port = free_port()
    agent = Agent(name="udp").start()
    owner = None
    try:
        owner = spawn(code, port)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            raise AssertionError("the second UDP bind should fail")
        except OSError as err:
            assert err.errno == 98, err
        finally:
            u.close()
        e = agent.wait_event(lambda e: e["type"] == "port_collision" and e["port"] == port)
        assert e["proto"] == "udp" and e["pid"] == os.getpid(), e
        assert e["owner_pid"] == owner.pid, e
    finally:
        if owner:
            end(owner)
        agent.close()


def test_listen_and_release():
    port = free_port()
    agent = Agent(name="listen").start()
    owner = None
    try:
        owner = spawn(LISTENER, "127.0.0.1", port, 0)
        e = agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port)
        assert e["pid"] == owner.pid and e["addr"] == "127.0.0.1" and e["proto"] == "tcp", e
        assert tell(owner) == ["closed"]
        r = agent.wait_event(lambda e: e["type"] == "port_release" and e["port"] == port)
        assert r["pid"] == owner.pid and r["comm"] == "python3", r
        # A failed listen() must not look like a listener coming and going.
        assert len([x for x in agent.events if x["type"] == "port_listen" and x["port"] == port]) == 1
    finally:
        if owner:
            end(owner)
        agent.close()


def test_sigterm_stops_cleanly():
    agent = Agent(name="term").start()
    try:
        pin = agent.events[0]["pin"]
        assert os.path.exists(pin + "/listeners"), pin
        assert agent.stop(signal.SIGTERM) == 0
        agent.read_new()
        assert agent.events[-1]["type"] == "agent_stop" and agent.events[-1]["reason"] == "SIGTERM"
        assert not os.path.exists(pin + "/listeners"), "pin left behind"
        agent2 = Agent(name="int").start()
        assert agent2.stop(signal.SIGINT) == 0
        agent2.read_new()
        assert agent2.events[-1]["reason"] == "SIGINT"
    finally:
        agent.close()


def test_second_agent_refused():
    agent = Agent(name="twice").start()
    try:
        r = subprocess.run([BIN, "run", "-c", agent.config_path], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and "already runs" in r.stderr, (r.returncode, r.stderr)
    finally:
        agent.close()


def test_not_root_exits_4():
    agent = Agent(name="nonroot")
    nobody = pwd.getpwnam("nobody")
    r = run_as(["run", "-c", agent.config_path], user=nobody, timeout=30)
    assert r.returncode == 4 and "root" in r.stderr, (r.returncode, r.stderr)
    agent.close()


def test_metrics_endpoint():
    port = free_port()
    agent = Agent({"metrics": {"listen": "127.0.0.1:%d" % port}}, "metrics").start()
    try:
        import urllib.request
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read()
        text = body.decode()
        assert 'revenant_events_total{type="agent_start"} 1' in text, text
        assert "# TYPE revenant_exited_unreaped gauge" in text, text
    finally:
        agent.close()


def test_bad_config_exits_2():
    agent = Agent(name="badcfg")
    with open(agent.config_path, "w") as f:
        f.write('{"monitoring": {"zombie_grace_ms": "soon"}}')
    r = subprocess.run([BIN, "run", "-c", agent.config_path], capture_output=True, text=True)
    assert r.returncode == 2, r
    assert agent.config_path in r.stderr and "monitoring.zombie_grace_ms" in r.stderr, r.stderr
    with open(agent.config_path, "w") as f:
        f.write('{"monitoring": {\n  "enabled": tru }}')
    r = subprocess.run([BIN, "run", "-c", agent.config_path], capture_output=True, text=True)
    assert r.returncode == 2 and (agent.config_path + ":2:") in r.stderr, r.stderr
    agent.close()


if __name__ == "__main__":
    run_tests([
        test_reload_shorter_grace_applies_to_new_zombies,
        test_reload_turns_monitoring_on,
        test_zombies_before_and_after_start,
        test_exit_reaped_in_time_is_not_a_zombie,
        test_collision_ipv4_owner_listening_before_agent,
        test_collision_ipv4_wildcard_owner,
        test_collision_ipv6_exact,
        test_collision_ipv6_wildcard_blocks_ipv4,
        test_collision_on_listen,
        test_collision_udp,
        test_listen_and_release,
        test_sigterm_stops_cleanly,
        test_second_agent_refused,
        test_not_root_exits_4,
        test_metrics_endpoint,
        test_bad_config_exits_2,
    ])
