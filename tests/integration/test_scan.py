"""`revenant scan` / `--scan` and `revenant zombies` against real processes: owners, shared sockets,
UDP, IPv6, network namespaces, the agent's map versus one-shot iterators, the non-root fallback."""
import json
import os
import pwd
import random
import re
import socket
import subprocess
import sys
import time

from harness import ZOMBIE_PARENT, Agent, BIN, end, free_port, run_as, run_tests, spawn, tell

# Holds one socket: tcp listener or udp bound, on ADDR PORT; with FORK=1 a child shares it.
# Prints "ready PID KIDPID" (KIDPID 0 without a child). The child leaves when the parent's pipe
# closes, so it never outlives its parent.
HOLDER = r"""
import os, socket, sys
kind, addr, port, fork = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((addr, port))
if kind == "tcp":
    s.listen()
kid = 0
if fork:
    r, w = os.pipe()
    kid = os.fork()
    if kid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
print("ready", os.getpid(), kid, flush=True)
sys.stdin.readline()
"""

# A TCP listener that closes on request: bind to PORT (0: the kernel picks; "none": no bind(),
# listen() picks), then "ready PID PORT"; on a line, close and say "closed".
CLOSER = r"""
import os, socket, sys
s = socket.socket()
if sys.argv[1] != "none":
    s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", os.getpid(), s.getsockname()[1], flush=True)
sys.stdin.readline()
s.close()
print("closed", flush=True)
sys.stdin.readline()
"""

# Listens, hands the socket to a child with SCM_RIGHTS, closes its own fd (unless argv[2] is
# "keep") and lives on: the child is the only holder (or both hold it). Prints
# "ready SENDER_PID CHILD_PID PORT".
HANDOVER = r"""
import array, os, socket, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
got_r, got_w = os.pipe()    # the child says it has the socket
hold_r, hold_w = os.pipe()  # the child leaves when the parent is gone (EOF)
kid = os.fork()
if kid == 0:
    os.close(got_r)
    os.close(hold_w)
    msg, anc, flags, addr = b.recvmsg(1, socket.CMSG_LEN(4))
    fd = array.array("i", anc[0][2][:4])[0]
    os.write(got_w, b"x")
    os.read(hold_r, 1)
    os._exit(0)
os.close(got_w)
os.close(hold_r)
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [s.fileno()]))])
os.read(got_r, 1)
if sys.argv[2:] != ["keep"]:
    s.close()
print("ready", os.getpid(), kid, sys.argv[1], flush=True)
sys.stdin.readline()
"""

# A supervised service: listens on $PORT and keeps one zombie child it never reaps.
SERVICE = r"""
import os, signal, socket
s = socket.socket()
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
kid = os.fork()
if kid == 0:
    os._exit(0)
os.waitid(os.P_PID, kid, os.WEXITED | os.WNOWAIT)
print("zombie", kid, flush=True)
while True:
    signal.pause()
"""


def rev(*args, user=None, check=None):
    r = run_as(args, user=user)
    if check is not None and r.returncode != check:
        raise AssertionError("revenant %s exited %d, expected %d\nstdout:%s\nstderr:%s" %
                             (" ".join(args), r.returncode, check, r.stdout, r.stderr))
    return r


def scan_json(*args, **kw):
    r = rev("scan", "--json", *args, **kw)
    rows = json.loads(r.stdout)
    assert isinstance(rows, list), r.stdout
    return rows, r


def host_netns():
    return os.stat("/proc/self/ns/net").st_ino


def comm_of(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


class Holder:
    """A helper process holding a socket (optionally shared with a forked child)."""

    def __init__(self, kind, addr, port, fork=False, netns=None):
        self.port = port
        if netns:
            code = [sys.executable, "-c", HOLDER, kind, addr, str(port), "1" if fork else "0"]
            self.p = subprocess.Popen(["ip", "netns", "exec", netns, *code],
                                      stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
            line = self.p.stdout.readline().split()
            if not line or line[0] != "ready":
                end(self.p)
                raise AssertionError("netns helper did not get ready: %r" % line)
            self.p.info = line[1:]
        else:
            self.p = spawn(HOLDER, kind, addr, port, "1" if fork else "0")
        self.pid, self.kid = int(self.p.info[0]), int(self.p.info[1])

    def close(self):
        # The child first, while its parent has not reaped it: its pid cannot be reused meanwhile.
        if self.kid:
            try:
                os.kill(self.kid, 9)
            except ProcessLookupError:
                pass
        end(self.p)


class Netns:
    """A network namespace of our own, with loopback up; deleted on close."""

    def __init__(self):
        self.name = "revenant-test-%08x" % random.getrandbits(32)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"],
                           check=True)
        except Exception:
            self.close()
            raise

    def close(self):
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


def rows_for(rows, port, proto=None):
    return [r for r in rows if r["port"] == port and (proto is None or r["proto"] == proto)]


def one_row(rows, port, proto="tcp"):
    mine = rows_for(rows, port, proto)
    assert len(mine) == 1, (port, rows)
    return mine[0]


def no_agent_config():
    """A config whose control socket has no agent: forces the iterator path."""
    return Agent(name="noagent")


def test_owners_in_several_processes():
    holders = []
    try:
        for _ in range(3):
            holders.append(Holder("tcp", "127.0.0.1", free_port()))
        ports = [str(h.port) for h in holders]
        rows, r = scan_json(*ports, check=0)
        assert len(rows) == 3, rows
        for h in holders:
            row = one_row(rows, h.port)
            assert row["pid"] == h.pid, row
            assert row["comm"] == comm_of(h.pid), row
            assert row["holders"] == [h.pid], row
            assert row["addr"] == "127.0.0.1" and row["family"] == "ipv4", row
            assert row["state"] == "listen" and row["proto"] == "tcp", row
            assert row["uid"] == 0 and row["user"] == "root", row
            assert row["netns"] == host_netns() and row["service"] is None, row

        t = rev("scan", *ports, check=0)
        lines = t.stdout.splitlines()
        assert lines[0].split()[:4] == ["PROTO", "ADDRESS", "STATE", "PID"], t.stdout
        assert len(lines) == 4, t.stdout
        for h in holders:
            line = [l.split() for l in lines if ("127.0.0.1:%d" % h.port) in l]
            assert len(line) == 1, t.stdout
            proto, where, state, pid, comm, user, svc, hold, netns = line[0]
            assert (proto, state, pid, comm, user, svc, hold, netns) == (
                "tcp", "listen", str(h.pid), comm_of(h.pid), "root", "-", str(h.pid), "host"), line
    finally:
        for h in holders:
            h.close()


def test_shared_socket_after_fork():
    h = Holder("tcp", "127.0.0.1", free_port(), fork=True)
    try:
        row = one_row(scan_json(str(h.port), check=0)[0], h.port)
        assert row["holders"] == sorted([h.pid, h.kid]), (row, h.pid, h.kid)
        # without the agent, nobody saw listen(): the owner is the lowest holder
        assert row["pid"] == min(h.pid, h.kid), row
        t = rev("scan", str(h.port), check=0)
        assert ",".join(map(str, sorted([h.pid, h.kid]))) in t.stdout, t.stdout
    finally:
        h.close()


def test_udp_and_ipv6_wildcard():
    port_u, port_6 = free_port(), free_port()
    u = h6 = None
    try:
        u = Holder("udp", "127.0.0.1", port_u)
        h6 = Holder("tcp", "::", port_6)
        rows, _ = scan_json(str(port_u), str(port_6), check=0)
        ru = one_row(rows, port_u, "udp")
        assert (ru["proto"], ru["family"], ru["addr"], ru["state"], ru["pid"]) == (
            "udp", "ipv4", "127.0.0.1", "bound", u.pid), ru
        assert not rows_for(rows, port_u, "tcp"), rows
        r6 = one_row(rows, port_6, "tcp")
        assert (r6["proto"], r6["family"], r6["addr"], r6["state"], r6["pid"]) == (
            "tcp", "ipv6", "::", "listen", h6.pid), r6
        # protocol filters
        rows, _ = scan_json("--udp", str(port_u), str(port_6), check=0)
        assert [(r["proto"], r["port"]) for r in rows] == [("udp", port_u)], rows
        rows, _ = scan_json("--tcp", str(port_u), str(port_6), check=0)
        assert [(r["proto"], r["port"]) for r in rows] == [("tcp", port_6)], rows
        t = rev("scan", str(port_6), check=0)
        assert "[::]:%d" % port_6 in t.stdout, t.stdout
        t = rev("scan", str(port_u), check=0)
        assert "127.0.0.1:%d" % port_u in t.stdout and " bound " in t.stdout, t.stdout
    finally:
        for h in (u, h6):
            if h:
                h.close()


def test_network_namespace_is_a_separate_row():
    port = free_port()
    ns = inside = outside = None
    try:
        ns = Netns()
        inside = Holder("tcp", "127.0.0.1", port, netns=ns.name)
        outside = Holder("tcp", "127.0.0.1", port)  # no collision: another namespace
        rows, _ = scan_json(str(port), check=0)
        mine = rows_for(rows, port)
        assert len(mine) == 2, rows
        by_pid = {r["pid"]: r for r in mine}
        assert set(by_pid) == {inside.pid, outside.pid}, mine
        assert by_pid[outside.pid]["netns"] == host_netns(), mine
        assert by_pid[inside.pid]["netns"] != host_netns(), mine
        assert by_pid[inside.pid]["netns"] == os.stat("/run/netns/" + ns.name).st_ino, mine
        assert by_pid[inside.pid]["holders"] == [inside.pid], mine
        t = rev("scan", str(port), check=0)
        lines = [l.split() for l in t.stdout.splitlines()[1:]]
        assert sorted(l[-1] for l in lines) == sorted(
            ["host", str(by_pid[inside.pid]["netns"])]), t.stdout
    finally:
        for h in (inside, outside):
            if h:
                h.close()
        if ns:
            ns.close()


def key_of(r):
    return (r["proto"], r["family"], r["addr"], r["port"], r["netns"])


def test_agent_and_iterators_agree():
    """The agent's map and one-shot iterators give the same rows for our sockets."""
    agent = noagent = ns = None
    helpers = []
    try:
        noagent = no_agent_config()
        agent = Agent(name="scanagent").start()
        ns = Netns()
        plain = Holder("tcp", "127.0.0.1", free_port())
        helpers.append(plain)
        shared = Holder("tcp", "0.0.0.0", free_port(), fork=True)
        helpers.append(shared)
        helpers.append(Holder("udp", "127.0.0.1", free_port()))
        helpers.append(Holder("tcp", "::", free_port()))
        helpers.append(Holder("tcp", "127.0.0.1", free_port(), netns=ns.name))
        ports = [str(h.port) for h in helpers]

        for extra in ((), ("--tcp",)):
            a_rows, a = scan_json("-v", "-c", agent.config_path, *extra, *ports, check=0)
            i_rows, i = scan_json("-v", "-c", noagent.config_path, *extra, *ports, check=0)
            assert "listeners map" in a.stderr, a.stderr
            assert "BPF iterators" in i.stderr, i.stderr
            assert "listeners map" not in i.stderr, i.stderr
            want = len(helpers) - (1 if extra else 0)
            assert len(a_rows) == want and len(i_rows) == want, (a_rows, i_rows)
            a_by, i_by = {key_of(r): r for r in a_rows}, {key_of(r): r for r in i_rows}
            assert set(a_by) == set(i_by), (a_rows, i_rows)
            for k, ar in a_by.items():
                ir = i_by[k]
                assert ar["state"] == ir["state"] and ar["holders"] == ir["holders"], (ar, ir)
                if len(ar["holders"]) == 1:
                    assert ar["pid"] == ir["pid"] == ar["holders"][0], (ar, ir)
            # a shared socket: the map knows who called listen(); the iterators take the lowest
            s_a = one_row(a_rows, shared.port)
            s_i = one_row(i_rows, shared.port)
            assert s_a["holders"] == sorted([shared.pid, shared.kid]), s_a
            assert s_a["pid"] == shared.pid, s_a
            assert s_i["pid"] == min(shared.pid, shared.kid), s_i
            assert one_row(a_rows, plain.port)["pid"] == plain.pid
        # the table form through the agent, too
        t = rev("scan", "-c", agent.config_path, str(plain.port), check=0)
        assert ("127.0.0.1:%d" % plain.port) in t.stdout and str(plain.pid) in t.stdout, t.stdout
    finally:
        for h in helpers:
            h.close()
        if ns:
            ns.close()
        for a in (agent, noagent):
            if a:
                a.close()


def test_listener_before_agent_is_seeded():
    h = Holder("tcp", "127.0.0.1", free_port())
    agent = None
    try:
        agent = Agent(name="seed").start()
        rows, r = scan_json("-v", "--tcp", "-c", agent.config_path, str(h.port), check=0)
        assert "listeners map" in r.stderr, r.stderr
        row = one_row(rows, h.port)
        assert row["pid"] == h.pid and row["holders"] == [h.pid], row
        # it is in the map itself, not only found by an fd walk
        pin = agent.events[0]["pin"]
        dump = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pin + "/listeners"],
                              capture_output=True, text=True, check=True)
        entries = [e["formatted"] for e in json.loads(dump.stdout)
                   if e["formatted"]["key"]["port"] == h.port]
        assert len(entries) == 1, dump.stdout[:2000]
        assert entries[0]["value"]["pid"] == h.pid, entries
        assert entries[0]["value"]["confirmed"] == 1, entries
    finally:
        h.close()
        if agent:
            agent.close()


def test_closed_listener_leaves_the_agents_answer():
    """Every listener the agent saw close is gone from its answer, whatever port it had: one the
    caller chose, one the kernel chose at bind(port 0), one listen() chose without bind()."""
    agent = Agent(name="release").start()
    try:
        for how in (str(free_port()), "0", "none"):
            p = spawn(CLOSER, how)
            try:
                pid, port = int(p.info[0]), int(p.info[1])
                rows, r = scan_json("--tcp", "-c", agent.config_path, str(port), check=0)
                row = one_row(rows, port)
                assert row["pid"] == pid and row["addr"] in ("127.0.0.1", "0.0.0.0"), (how, row)
                assert not rows_for(scan_json("--tcp", "-c", agent.config_path)[0], 0), how
                agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port,
                                 what="port_listen of %s (bind %s)" % (port, how))
                assert tell(p) == ["closed"]
                # close() ran the state tracepoint synchronously: the map is already right
                rows, r = scan_json("--tcp", "-c", agent.config_path, str(port))
                assert r.returncode == 1 and rows == [], (how, port, rows)
                agent.wait_event(lambda e: e["type"] == "port_release" and e["port"] == port,
                                 what="port_release of %s (bind %s)" % (port, how))
            finally:
                end(p)
    finally:
        agent.close()


def rows_both_ways(name, start, flags=("--tcp",)):
    """Start an agent, then start() (returns our ports); then `scan --json --tcp -v PORT...`
    without an agent and through the agent's map (with --tcp its quick path): [(stderr, rows)] * 2."""
    agent = noagent = None
    out = []
    try:
        noagent = no_agent_config()
        agent = Agent(name=name).start()
        ports = start()
        for cfg in (noagent.config_path, agent.config_path):
            rows, r = scan_json(*flags, "-v", "-c", cfg, *map(str, ports), check=0)
            out.append((r.stderr, rows))
        return out
    finally:
        for a in (agent, noagent):
            if a:
                a.close()


def test_agent_names_every_holder_in_another_netns():
    """A socket shared after fork inside another netns: the table iterators see only our netns,
    so nothing there says the socket is shared; the holders must still be both processes."""
    ns = None
    held = []
    try:
        ns = Netns()

        def start():
            held.append(Holder("tcp", "127.0.0.1", free_port(), fork=True, netns=ns.name))
            return [held[0].port]
        for stderr, rows in rows_both_ways("nsfork", start):
            h = held[0]
            row = one_row(rows, h.port)
            assert row["holders"] == sorted([h.pid, h.kid]), (stderr, row)
            assert row["pid"] in (h.pid, h.kid), (stderr, row)
    finally:
        for h in held:
            h.close()
        if ns:
            ns.close()


def test_agent_names_the_holder_after_scm_rights():
    """A listener handed to another process with SCM_RIGHTS, the sender's fd closed: the holder
    (and so the owner) is the receiver, though the sender called listen() and lives on.
    The agent's sendmsg probe marks the socket shared when it is passed, so its answers (the full
    one and --tcp) walk the fd tables for it and name the receiver, as the iterators do."""
    procs = []

    def start():
        procs.append(spawn(HANDOVER, free_port()))
        return [int(procs[-1].info[2])]
    try:
        for name, flags in (("scm", ()), ("scmtcp", ("--tcp",))):
            for stderr, rows in rows_both_ways(name, start, flags=flags):
                sender, kid, port = map(int, procs[-1].info)
                row = one_row(rows, port)
                assert (row["pid"], row["holders"]) == (kid, [kid]), (flags, stderr, row, sender)
    finally:
        for p in procs:
            try:
                os.kill(int(p.info[1]), 9)  # the child first, while its parent keeps its pid
            except ProcessLookupError:
                pass
            end(p)


def test_service_attribution():
    """A supervised service's socket and zombie name the service, through the agent's state."""
    port = free_port()
    agent = Agent({"services": {"web": {"command": "exec %s svc.py" % sys.executable,
                                        "port": port, "zombie_policy": "report",
                                        "stop_timeout_ms": 2000}},
                   "monitoring": {"zombie_grace_ms": 60000}}, name="attr")
    with open(os.path.join(agent.dir, "svc.py"), "w") as f:
        f.write(SERVICE)
    try:
        agent.start()
        st = agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "web",
                              what="service_start web")
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port,
                         what="the service's port_listen")
        for extra in (("--tcp",), ()):
            rows, r = scan_json("-c", agent.config_path, *extra, str(port), check=0)
            row = one_row(rows, port)
            assert row["service"] == "web" and row["pid"] == st["pid"], (extra, row)
        t = rev("scan", "-c", agent.config_path, str(port), check=0)
        assert " web " in t.stdout, t.stdout
        # the same socket seen without the agent's state has no service
        noagent = no_agent_config()
        try:
            row = one_row(scan_json("-c", noagent.config_path, str(port), check=0)[0], port)
            assert row["service"] is None and row["pid"] == st["pid"], row
        finally:
            noagent.close()
        # its zombie: the parent is the service's main pid
        deadline = time.monotonic() + 10
        while True:
            zs = [z for z in json.loads(rev("zombies", "--json", "-c", agent.config_path,
                                            check=0).stdout) if z["ppid"] == st["pid"]]
            if zs or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polled until the deadline: the child exits right after listen()
        assert len(zs) == 1 and zs[0]["service"] == "web", zs
    finally:
        agent.close()


def test_exit_codes_and_flag_form():
    noagent = no_agent_config()
    h = Holder("tcp", "127.0.0.1", free_port())
    try:
        cfg = ("-c", noagent.config_path)
        free = free_port()
        r = rev("scan", *cfg, str(free), check=1)
        assert "no socket holds" in r.stderr, r.stderr
        rows, _ = scan_json(*cfg, str(free), check=1)
        assert rows == [], rows
        rev("scan", *cfg, str(h.port), check=0)
        rev("scan", *cfg, str(free), str(h.port), check=0)  # any one in use is success
        r = rev("--scan", *cfg, "--json", str(h.port), check=0)
        assert one_row(json.loads(r.stdout), h.port)["pid"] == h.pid, r.stdout
        r = rev("--scan", *cfg, str(h.port), check=0)
        assert ("127.0.0.1:%d" % h.port) in r.stdout, r.stdout
        for bad in ("notaport", "0", "65536", "-1x", "80x"):
            r = rev("scan", *cfg, bad)
            assert r.returncode == 2, (bad, r.returncode, r.stderr)
        r = rev("scan", "notaport", check=2)
        assert "notaport" in r.stderr, r.stderr
        r = rev("scan", "--bogus", check=2)
        assert "usage" in r.stderr, r.stderr
        r = rev("scan", "--help", check=0)
        assert "usage" in r.stdout, r.stdout
        rev("zombies", "extra", check=2)
        r = rev("zombies", "--help", check=0)
        assert "usage" in r.stdout, r.stdout
    finally:
        h.close()
        noagent.close()


def test_not_root_falls_back_to_proc():
    nobody = pwd.getpwnam("nobody")
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", free_port()))
        s.listen()
        port = s.getsockname()[1]
        rows, r = scan_json(str(port), user=nobody, check=0)
        assert "warning" in r.stderr and "/proc" in r.stderr, r.stderr
        row = one_row(rows, port)
        # the socket is in /proc/net/tcp, but root's fds are not readable by nobody
        assert row["pid"] is None and row["comm"] is None and row["holders"] == [], row
        assert row["uid"] == 0 and row["user"] == "root", row
        assert row["netns"] == host_netns() and row["state"] == "listen", row
        assert row["addr"] == "127.0.0.1", row
        # as root, the same socket is ours
        row = one_row(scan_json(str(port), check=0)[0], port)
        assert row["pid"] == os.getpid(), row
        r = rev("scan", str(port), user=nobody, check=0)
        assert ("127.0.0.1:%d" % port) in r.stdout and "/proc" in r.stderr, r
        rev("scan", str(free_port()), user=nobody, check=1)
    finally:
        s.close()


def check_zombie(rows, kid, parent):
    mine = [z for z in rows if z["pid"] == kid]
    assert len(mine) == 1, rows
    z = mine[0]
    assert z["ppid"] == parent.pid, z
    assert z["comm"] == comm_of(parent.pid), z  # a forked child keeps its parent's comm
    assert z["parent_comm"] == comm_of(parent.pid), z
    assert isinstance(z["age_ms"], (int, float)) and z["age_ms"] >= 0, z
    assert z["uid"] == 0 and z["service"] is None, z
    return z


def test_zombies_lists_a_zombie_with_its_parent():
    parent = spawn(ZOMBIE_PARENT)
    agent = noagent = None
    try:
        kid = int(tell(parent, "fork")[0])
        noagent = no_agent_config()
        r = rev("zombies", "--json", "-v", "-c", noagent.config_path, check=0)
        check_zombie(json.loads(r.stdout), kid, parent)
        r = rev("zombies", "-c", noagent.config_path, check=0)
        lines = r.stdout.splitlines()
        assert lines[0].split()[:4] == ["PID", "PPID", "COMM", "PARENT"], r.stdout
        mine = [l.split() for l in lines[1:] if l.split()[0] == str(kid)]
        assert len(mine) == 1 and mine[0][1] == str(parent.pid), r.stdout
        assert mine[0][4].endswith("s"), mine  # age, in seconds

        agent = Agent(name="zombies").start()
        r = rev("zombies", "--json", "-c", agent.config_path, check=0)
        check_zombie(json.loads(r.stdout), kid, parent)
        r = rev("zombies", "-c", agent.config_path, check=0)
        assert [l for l in r.stdout.splitlines() if l.split()[0] == str(kid)], r.stdout

        # as nobody: /proc, with a warning, no age
        nobody = pwd.getpwnam("nobody")
        r = rev("zombies", "--json", user=nobody, check=0)
        assert "warning" in r.stderr and "/proc" in r.stderr, r.stderr
        z = [z for z in json.loads(r.stdout) if z["pid"] == kid]
        assert len(z) == 1 and z[0]["ppid"] == parent.pid, r.stdout
        assert z[0]["age_ms"] is None and z[0]["parent_comm"] == comm_of(parent.pid), z

        # reaped: gone from the list
        assert tell(parent, "reap") == ["reaped"]
        r = rev("zombies", "--json", "-c", agent.config_path, check=0)
        assert not [z for z in json.loads(r.stdout) if z["pid"] == kid], r.stdout
    finally:
        end(parent)
        for a in (agent, noagent):
            if a:
                a.close()


# Takes a copy of fd FD of process PID with pidfd_getfd(2) and holds it: "ready PID NEWFD".
GETFD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pfd = os.pidfd_open(int(sys.argv[1]))
got = libc.syscall(438, pfd, int(sys.argv[2]), 0)  # SYS_pidfd_getfd
if got < 0:
    print("errno", ctypes.get_errno(), flush=True)
    sys.exit(1)
print("ready", os.getpid(), got, flush=True)
sys.stdin.readline()
"""


def socket_fd(pid):
    """The fd of the one socket a Holder process has."""
    d = "/proc/%d/fd" % pid
    fds = [int(fd) for fd in os.listdir(d) if os.readlink(os.path.join(d, fd)).startswith("socket:")]
    assert len(fds) == 1, fds
    return fds[0]


def map_entries(agent, port):
    pin = agent.events[0]["pin"]
    dump = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pin + "/listeners"],
                          capture_output=True, text=True, check=True)
    return [e["formatted"] for e in json.loads(dump.stdout)
            if e["formatted"]["key"]["port"] == port and e["formatted"]["key"]["proto"]]


def test_bound_sockets_are_in_the_map_until_released():
    """A UDP bind() and a TCP bind() without listen() enter the agent's map with their owner and
    leave it when the socket is closed; the full answer (TCP and UDP) then comes from the map and
    the table iterators, without walking the fd tables."""
    agent = Agent(name="bound").start()
    u = t = None
    try:
        u = Holder("udp", "127.0.0.1", free_port())
        t = spawn(r"""
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
print("ready", os.getpid(), s.getsockname()[1], flush=True)
sys.stdin.readline()
""")
        t_pid, t_port = map(int, t.info)
        for port, pid, proto in ((u.port, u.pid, 17), (t_port, t_pid, 6)):
            es = map_entries(agent, port)
            assert len(es) == 1 and es[0]["value"]["pid"] == pid, es
            assert es[0]["key"]["proto"] == proto and es[0]["value"]["state"] == 7, es
        rows, r = scan_json("-v", "-c", agent.config_path, str(u.port), str(t_port), check=0)
        assert "listeners map" in r.stderr and "fd iterator" not in r.stderr, r.stderr
        ru, rt = one_row(rows, u.port, "udp"), one_row(rows, t_port, "tcp")
        assert (ru["pid"], ru["holders"], ru["state"]) == (u.pid, [u.pid], "bound"), ru
        assert (rt["pid"], rt["holders"], rt["state"]) == (t_pid, [t_pid], "bound"), rt
        assert ru["inode"] > 0, ru
        # the same rows as the iterators without an agent
        noagent = no_agent_config()
        try:
            i_rows, _ = scan_json("-c", noagent.config_path, str(u.port), str(t_port), check=0)
        finally:
            noagent.close()
        assert sorted(map(key_of, rows)) == sorted(map(key_of, i_rows)), (rows, i_rows)
        u.close()
        u = None
        end(t)
        t = None
        assert map_entries(agent, t_port) == [], map_entries(agent, t_port)
        for port in (t_port,):
            rows, r = scan_json("-c", agent.config_path, str(port))
            assert r.returncode == 1 and rows == [], rows
    finally:
        if u:
            u.close()
        if t:
            end(t)
        agent.close()


def test_autobound_udp_socket_is_found():
    """A UDP socket that never called bind() gets its port from sendto() (autobind): nothing
    records it, the kernel's count of bound UDP sockets tells the map is short, and the full
    answer still names its holder (found in the tables, then in the fd tables)."""
    agent = Agent(name="autobind").start()
    p = None
    try:
        p = spawn(r"""
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", ("127.0.0.1", 9))
print("ready", os.getpid(), s.getsockname()[1], flush=True)
sys.stdin.readline()
""")
        pid, port = map(int, p.info)
        assert map_entries(agent, port) == []
        rows, r = scan_json("-v", "-c", agent.config_path, str(port), check=0)
        assert "cannot attribute" in r.stderr, r.stderr
        row = one_row(rows, port, "udp")
        assert (row["pid"], row["holders"]) == (pid, [pid]), row
    finally:
        if p:
            end(p)
        agent.close()


def test_udp_closed_leaves_the_map():
    agent = Agent(name="udpclose").start()
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        assert [e["value"]["pid"] for e in map_entries(agent, port)] == [os.getpid()]
        s.close()  # the release hook runs in close(): the entry is gone when it returns
        assert map_entries(agent, port) == []
        rows, r = scan_json("-c", agent.config_path, str(port))
        assert r.returncode == 1 and rows == [], rows
    finally:
        agent.close()


def test_shared_udp_socket_walks_for_its_holders():
    agent = Agent(name="udpfork").start()
    h = None
    try:
        h = Holder("udp", "127.0.0.1", free_port(), fork=True)
        rows, r = scan_json("-v", "-c", agent.config_path, str(h.port), check=0)
        assert "fd iterator" in r.stderr, r.stderr
        row = one_row(rows, h.port, "udp")
        assert row["holders"] == sorted([h.pid, h.kid]) and row["pid"] == h.pid, row
    finally:
        if h:
            h.close()
        agent.close()


def test_scm_rights_and_pidfd_getfd_mark_the_socket_shared():
    """A listener passed with SCM_RIGHTS while the sender keeps its fd, or copied by another
    process with pidfd_getfd(): both processes hold it, and the agent's answers (full, and the
    --tcp quick path) list both, as the iterators do."""
    agent = Agent(name="handover").start()
    p = h = g = None
    try:
        p = spawn(HANDOVER, free_port(), "keep")
        sender, kid, port = map(int, p.info)
        for flags in ((), ("--tcp",)):
            row = one_row(scan_json("-c", agent.config_path, *flags, str(port), check=0)[0], port)
            assert row["holders"] == sorted([sender, kid]) and row["pid"] == sender, (flags, row)

        h = Holder("tcp", "127.0.0.1", free_port())
        g = spawn(GETFD, h.pid, socket_fd(h.pid))
        for flags in ((), ("--tcp",)):
            row = one_row(scan_json("-c", agent.config_path, *flags, str(h.port), check=0)[0],
                          h.port)
            assert row["holders"] == sorted([h.pid, g.pid]) and row["pid"] == h.pid, (flags, row)
    finally:
        if g:
            end(g)
        if h:
            h.close()
        if p:
            try:
                os.kill(int(p.info[1]), 9)  # the child first, while its parent keeps its pid
            except ProcessLookupError:
                pass
            end(p)
        agent.close()


SS_USERS = re.compile(r"pid=(\d+)")


def ss_rows():
    """{(proto, port): sorted pids} from `ss -ltnupH` (TCP listeners, unconnected UDP)."""
    out = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        w = line.split()
        if len(w) < 6:
            continue
        port = int(w[4].rsplit(":", 1)[1])
        rows.setdefault((w[0], port), set()).update(int(p) for p in SS_USERS.findall(line))
    return {k: sorted(v) for k, v in rows.items()}


def test_full_answer_through_the_agent_matches_ss():
    """Every holder `ss -ltnupH` names for our TCP listeners and UDP sockets, plain and shared,
    the agent's full answer names too."""
    agent = Agent(name="ss").start()
    hs = []
    try:
        for kind, fork in (("tcp", False), ("udp", False), ("tcp", True), ("udp", True)):
            hs.append(Holder(kind, "127.0.0.1", free_port(), fork=fork))
        rows, _ = scan_json("-c", agent.config_path, *[str(h.port) for h in hs], check=0)
        ss = ss_rows()
        for h, kind in zip(hs, ("tcp", "udp", "tcp", "udp")):
            row = one_row(rows, h.port, kind)
            assert row["holders"] == ss[(kind, h.port)], (row, ss.get((kind, h.port)))
    finally:
        for h in hs:
            h.close()
        agent.close()


if __name__ == "__main__":
    run_tests([
        test_owners_in_several_processes,
        test_shared_socket_after_fork,
        test_udp_and_ipv6_wildcard,
        test_network_namespace_is_a_separate_row,
        test_agent_and_iterators_agree,
        test_listener_before_agent_is_seeded,
        test_closed_listener_leaves_the_agents_answer,
        test_agent_names_every_holder_in_another_netns,
        test_agent_names_the_holder_after_scm_rights,
        test_service_attribution,
        test_exit_codes_and_flag_form,
        test_not_root_falls_back_to_proc,
        test_zombies_lists_a_zombie_with_its_parent,
        test_bound_sockets_are_in_the_map_until_released,
        test_udp_closed_leaves_the_map,
        test_autobound_udp_socket_is_found,
        test_shared_udp_socket_walks_for_its_holders,
        test_scm_rights_and_pidfd_getfd_mark_the_socket_shared,
        test_full_answer_through_the_agent_matches_ss,
    ])
