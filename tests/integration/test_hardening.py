"""Hardening (issue 11): a root agent that no config, local user, full disk or misbehaving file
can turn against its host. Service names are identifiers; files other users could plant are never
followed or written through; a process is a service's only by pid and start time; a full disk
loses nothing silently; no file the agent reads can block its loop. Files are planted by `nobody`
(in a sticky world-writable directory and in one nobody owns) and aimed at a root-only file that
must keep its content. Every wait is on the log, a pidfd, a process or the control socket, with a
deadline."""
import errno
import gzip
import json
import os
import pwd
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

from harness import Agent, end, free_port, pid_alive, run_tests, spawn, wait_exit
from test_supervisor import (LISTENER, http_get, make_agent, of, rev, status, svc, ts,
                             wait_healthy, wait_started)

NOBODY = pwd.getpwnam("nobody")


def as_nobody(*argv, stdin=None):
    """Run a command as nobody: what a local user without privileges can do."""
    r = subprocess.run(list(argv), user=NOBODY.pw_uid, group=NOBODY.pw_gid, input=stdin,
                       capture_output=True, text=True)
    assert r.returncode == 0, (argv, r.stderr)


def plant_link(agent, target, link, timeout=10):
    """nobody links link -> target, as an attacker would: again while the agent's own file of
    that name (a rotation in progress) is in the way."""
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(["ln", "-s", target, link], user=NOBODY.pw_uid, group=NOBODY.pw_gid,
                           capture_output=True, text=True)
        if r.returncode == 0:
            return
        assert "File exists" in r.stderr and time.monotonic() < deadline, r.stderr
        agent.ino.wait(0.2)


class Secret:
    """A root-only file (mode 0600 in a 0700 directory): a planted link aims at it, and it must
    keep its content."""

    def __init__(self, content="root-only secret\n"):
        self.dir = tempfile.mkdtemp(prefix="revenant-secret-")
        self.path = os.path.join(self.dir, "secret")
        self.content = content
        with open(self.path, "w") as f:
            f.write(content)
        os.chmod(self.path, 0o600)

    def intact(self):
        with open(self.path) as f:
            return f.read() == self.content

    def close(self):
        shutil.rmtree(self.dir, True)


def shared_dir(kind):
    """A directory as a local user finds it: "sticky" (root's, 1777, like /tmp), "nobody" (owned
    by nobody), "open" (root's, 0777, not sticky), "private" (root's, 0755)."""
    d = tempfile.mkdtemp(prefix="revenant-%s-" % kind)
    if kind == "sticky":
        os.chmod(d, 0o1777)
    elif kind == "nobody":
        os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chmod(d, 0o755)
    elif kind == "open":
        os.chmod(d, 0o777)
    else:
        os.chmod(d, 0o755)
    return d


def kill_started(agent):
    """An agent that should have refused: SIGKILL (a graceful stop would act on what it was
    tricked into), then each service it started, through a pidfd."""
    agent.proc.kill()
    agent.proc.wait()
    agent.read_new()
    for e in of(agent.events, "service_start"):
        try:
            fd = os.pidfd_open(e["pid"])
        except ProcessLookupError:
            continue
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)


def run_refused(agent, timeout=20):
    """Start the agent expecting it to refuse; returns (exit code, stderr)."""
    agent.start(wait=False)
    try:
        rc = agent.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_started(agent)
        raise AssertionError("the agent did not refuse:\n" + agent.stderr_text())
    return rc, agent.stderr_text()


def wait_until(agent, pred, what, timeout=20, detail=lambda: ""):
    """pred() over the log directory, woken by its inotify watch, with a deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for %s %s\n%s" % (what, detail(),
                                                                      agent.stderr_text()))
        agent.ino.wait(min(left, 0.5))


def all_events(log):
    """Every event of the log at path log: its segments (gzip or not), then the live file."""
    out = []
    names = sorted((n for n in os.listdir(os.path.dirname(log))
                    if n.startswith(os.path.basename(log) + ".") and not n.endswith(".tmp")),
                   key=lambda n: -int(n.split(".")[2]) if n.split(".")[2].isdigit() else 0)
    for n in names + [os.path.basename(log)]:
        path = os.path.join(os.path.dirname(log), n)
        try:
            with (gzip.open if n.endswith(".gz") else open)(path, "rt",
                                                            errors="replace") as f:
                for x in f.read().split("\n")[:-1]:
                    try:
                        out.append(json.loads(x))
                    except ValueError:  # not an event: what a planted link let in
                        out.append({"type": "not an event", "text": x})
        except (FileNotFoundError, EOFError, gzip.BadGzipFile):
            pass  # renamed or being written meanwhile: the next wake-up reads it again
    return out


def start_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


# ---- 1. service names, cgroups ------------------------------------------------------------------

def test_dotdot_service_name_is_refused():
    """A service named ".." would make its cgroup <root>/revenant-PID/.., the root cgroup, and a
    stop would kill every process of the host: the name is refused at load, naming it."""
    agent = Agent({"services": {"..": {"command": "exec sleep 600"}}}, "dotdot")
    try:
        rc, err = run_refused(agent)
        assert rc == 2, (rc, err)
        assert "services...: invalid service name \"..\"" in err, err
        assert not of(agent.events, "service_start")
        # the class, not the instance: whatever leaves its directory or reads as an option
        for name in (".", "a/b", "../etc", "-rf", "a.b", "a\nb"):
            path = os.path.join(agent.dir, "bad.json")
            with open(path, "w") as f:
                json.dump({"services": {name: {"command": "true"}}}, f)
            r = rev("verify", "-c", path)
            assert r.returncode == 2 and "invalid service name" in r.stderr, (name, r.stderr)
            assert "services.%s" % name.replace("\n", "\\x0a") in r.stderr, (name, r.stderr)
    finally:
        agent.close()


def cgroup_root():
    for r in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.access(os.path.join(r, "cgroup.procs"), os.W_OK):
            return r
    return None


def remove_cgroup(path, timeout=5):
    """rmdir once the cgroup is empty: cgroup.events says "populated 0" (it wakes poll())."""
    if not os.path.isdir(path):
        return
    deadline = time.monotonic() + timeout
    with open(os.path.join(path, "cgroup.events")) as ev:
        while "populated 1" in ev.read() and time.monotonic() < deadline:
            select.select([], [], [ev], deadline - time.monotonic())
            ev.seek(0)
    os.rmdir(path)


def test_cgroup_the_agent_did_not_make_is_never_signalled():
    """The agent's mkdir of a service's cgroup finds one that exists (EEXIST): it is someone
    else's, so the service does not join it and a stop never signals what is in it. (Skipped
    where no cgroup v2 hierarchy is writable.)"""
    root = cgroup_root()
    if not root:
        return
    pa, pb = free_port(), free_port()
    agent = make_agent("cgroup", {"a": svc(pa), "b": svc(pb, depends_on=["a"])})
    gate = os.path.join(agent.dir, "gate")
    agent.config["services"]["a"]["env"] = {"GATE": gate}
    with open(agent.config_path, "w") as f:
        json.dump(agent.config, f)
    os.mkfifo(gate)
    victim = foreign = None
    try:
        agent.start()
        wait_started(agent, "a")  # a waits at its gate, so b has not started: no cgroup yet
        foreign = os.path.join(root, "revenant-%d" % agent.proc.pid, "b")
        os.mkdir(foreign)
        victim = subprocess.Popen(["sleep", "600"])
        with open(os.path.join(foreign, "cgroup.procs"), "w") as f:
            f.write(str(victim.pid))
        with open(gate, "w") as f:
            f.write("go\n")
        wait_healthy(agent, "b")
        w = of(agent.events, "service_warning", service="b")
        assert w and "existed before the agent made it" in w[0]["detail"], agent.events
        with open(os.path.join(foreign, "cgroup.procs")) as f:
            assert f.read().split() == [str(victim.pid)], "b joined a cgroup not its own"
        rev("stop", "-c", agent.config_path, "b", check=0)
        assert victim.poll() is None, "the stop of b signalled a process in a cgroup not its own"
        end(victim)
        remove_cgroup(foreign)
        assert agent.stop() == 0
    finally:
        if victim:
            end(victim)
        agent.close()
        if foreign:  # what a failed run left: the cgroup, then the agent's (it could not)
            for path in (foreign, os.path.dirname(foreign)):
                try:
                    remove_cgroup(path)
                except OSError:
                    pass


# ---- 2. files planted by other users ------------------------------------------------------------

def test_log_in_a_directory_of_another_user_is_refused():
    secret, d = Secret(), shared_dir("nobody")
    as_nobody("ln", "-s", secret.path, os.path.join(d, "events.jsonl"))
    agent = Agent({"log": {"path": os.path.join(d, "events.jsonl")}}, "logowner")
    try:
        rc, err = run_refused(agent)
        assert rc == 2 and "directory %s belongs to uid %d" % (d, NOBODY.pw_uid) in err, (rc, err)
        assert secret.intact(), "the agent wrote through a link nobody planted"
    finally:
        agent.close()
        secret.close()
        shutil.rmtree(d, True)


def test_world_writable_log_dir_is_refused():
    d = shared_dir("open")
    agent = Agent({"log": {"path": os.path.join(d, "events.jsonl")}}, "logopen")
    try:
        rc, err = run_refused(agent)
        assert rc == 2, (rc, err)
        assert "directory %s is writable by others (mode 0777) and not sticky" % d in err, err
        assert not os.path.exists(os.path.join(d, "events.jsonl"))
    finally:
        agent.close()
        shutil.rmtree(d, True)


def test_symlinked_log_in_a_sticky_dir_is_refused():
    secret, d = Secret(), shared_dir("sticky")
    log = os.path.join(d, "events.jsonl")
    as_nobody("ln", "-s", secret.path, log)
    agent = Agent({"log": {"path": log}}, "logsticky")
    try:
        rc, err = run_refused(agent)
        assert rc == 2 and "%s is a symbolic link: not followed" % log in err, (rc, err)
        assert secret.intact(), "the agent wrote through a link nobody planted"
    finally:
        agent.close()
        secret.close()
        shutil.rmtree(d, True)


def test_planted_rotation_files_are_never_written_through():
    """In a sticky log directory nobody plants the rotation's temporary (.new), the compressor's
    (.gz.tmp) and a pending segment, each a link to a root-only file: rotation and compression
    make fresh files, remove the links, and no root-only content reaches a segment."""
    new, gztmp, pending = Secret("new\n"), Secret("gz.tmp\n"), Secret("pending segment secret\n")
    d = shared_dir("sticky")
    log = os.path.join(d, "events.jsonl")
    agent = Agent({"log": {"path": log, "max_bytes": 4096, "keep": 1000, "compress": True}},
                  "rotplant")
    try:
        agent.start()
        plant_link(agent, new.path, log + ".new")
        plant_link(agent, gztmp.path, log + ".gz.tmp")
        plant_link(agent, pending.path, log + ".pending.99")
        port = free_port()
        for _ in range(40):  # port_listen + port_release: ~20 KB, a few rotations
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
            sock.close()
        # A rotation went through the planted .new (said in an agent_warning), and the
        # compressor through the planted .gz.tmp and pending segment (removed, said on
        # stderr). Other processes of the host keep making events, so the log never stands
        # still: what is checked does not need it to.
        def done():
            if not all(x.intact() for x in (new, gztmp, pending)):
                return True  # written through: said just below
            return (any("removed %s.new" % log in e["detail"]
                        for e in of(all_events(log), "agent_warning")) and
                    not os.path.lexists(log + ".pending.99") and
                    "removed %s.gz.tmp" % log in agent.stderr_text())
        wait_until(agent, done, "the rotation and the compressor",
                   detail=lambda: (sorted(os.listdir(d)), agent.stderr_text()))
        for s in (new, gztmp, pending):
            assert s.intact(), "a planted link was written through: %s" % s.path
        for n in os.listdir(d):
            try:
                st = os.lstat(os.path.join(d, n))
                assert stat.S_ISREG(st.st_mode) and st.st_uid == 0, (n, st)
                if n.endswith(".gz"):
                    with gzip.open(os.path.join(d, n), "rt") as f:
                        assert pending.content not in f.read(), "root-only content compressed"
            except FileNotFoundError:
                pass  # rotated or compressed meanwhile
        assert not of(all_events(log), "not an event")
        assert agent.stop() == 0
    finally:
        agent.close()
        for s in (new, gztmp, pending):
            s.close()
        shutil.rmtree(d, True)


def test_planted_state_files_are_never_trusted_or_written_through():
    """In a sticky runtime directory nobody plants state.json (claiming a live process of the
    test, with its true start time, as a leftover service) and links state.json.tmp to a
    root-only file: the agent neither kills that process nor writes the file."""
    secret, run_dir = Secret(), shared_dir("sticky")
    port = free_port()
    agent = make_agent("stateplant", {"a": svc(port)},
                       control={"socket": os.path.join(run_dir, "control.sock")})
    victim = subprocess.Popen(["sleep", "600"])
    try:
        forged = {"agent_pid": 999999999, "services": {"a": {
            "pid": victim.pid, "pgid": victim.pid, "start_ticks": start_ticks(victim.pid),
            "port": port, "restarts": 0, "state": "running", "health": "ok"}}}
        as_nobody("sh", "-c", "cat > %s/state.json" % run_dir, stdin=json.dumps(forged))
        as_nobody("ln", "-s", secret.path, os.path.join(run_dir, "state.json.tmp"))
        agent.start()
        wait_healthy(agent, "a")
        assert victim.poll() is None, "the agent killed a process a forged state file named"
        assert not of(agent.events, "service_leftover"), agent.events
        assert secret.intact(), "state.json.tmp was written through a link nobody planted"
        st = os.lstat(os.path.join(run_dir, "state.json"))
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
        with open(os.path.join(run_dir, "state.json")) as f:
            assert json.load(f)["services"]["a"]["pid"] == status(agent)["services"]["a"]["pid"]
        err = agent.stderr_text()
        assert "ignoring the state file" in err and "belongs to uid %d" % NOBODY.pw_uid in err, err
        assert "removed %s/state.json.tmp" % run_dir in err, err
        assert agent.stop() == 0
    finally:
        end(victim)
        agent.close()
        secret.close()
        shutil.rmtree(run_dir, True)


def test_planted_lock_link_is_refused():
    secret, run_dir = Secret(), shared_dir("sticky")
    as_nobody("ln", "-s", secret.path, os.path.join(run_dir, "agent.lock"))
    agent = Agent({"control": {"socket": os.path.join(run_dir, "control.sock")}}, "lockplant")
    try:
        rc, err = run_refused(agent)
        assert rc == 2 and "agent.lock is a symbolic link" in err, (rc, err)
        assert secret.intact(), "the agent truncated a file through a planted lock link"
    finally:
        agent.close()
        secret.close()
        shutil.rmtree(run_dir, True)


def test_runtime_dir_of_another_user_is_refused():
    run_dir = shared_dir("nobody")
    agent = Agent({"control": {"socket": os.path.join(run_dir, "control.sock")}}, "runowner")
    try:
        rc, err = run_refused(agent)
        assert rc == 2 and "directory %s belongs to uid %d" % (run_dir, NOBODY.pw_uid) in err, err
        assert "control.socket" in err, err
    finally:
        agent.close()
        shutil.rmtree(run_dir, True)


def test_control_dir_of_its_own_is_made_private():
    """A control directory that holds nothing but the agent's files is tightened to 0700 even
    when it existed (0755 here); one shared with other files (the test's, with the config) keeps
    its mode, as only root can write it."""
    run_dir = shared_dir("private")
    agent = Agent({"control": {"socket": os.path.join(run_dir, "control.sock")}}, "runown")
    plain = Agent(name="runshared")
    try:
        agent.start()
        assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700, oct(os.stat(run_dir).st_mode)
        plain.start()
        assert stat.S_IMODE(os.stat(plain.dir).st_mode) == 0o755
        assert agent.stop() == 0 and plain.stop() == 0
    finally:
        agent.close()
        plain.close()
        shutil.rmtree(run_dir, True)


def test_runtime_dir_turned_unsafe_while_running_is_said():
    """The runtime directory made writable by others while the agent runs: the state file is
    not written there any more, and an agent_warning says so (stderr says why)."""
    run_dir = shared_dir("private")
    port = free_port()
    agent = make_agent("rununsafe", {"a": svc(port)},
                       control={"socket": os.path.join(run_dir, "control.sock")})
    try:
        agent.start()
        wait_healthy(agent, "a")
        os.chmod(run_dir, 0o777)
        n = len(agent.events)
        rev("restart", "-c", agent.config_path, "a", check=0)
        w = agent.wait_event(lambda e: e["type"] == "agent_warning", since=n,
                             what="agent_warning about the state file")
        assert "cannot write %s/state.json" % run_dir in w["detail"], w
        assert "directory %s is writable by others" % run_dir in agent.stderr_text()
        assert not os.path.exists(os.path.join(run_dir, "state.json.tmp"))
        os.chmod(run_dir, 0o700)
        assert agent.stop() == 0
    finally:
        agent.close()
        shutil.rmtree(run_dir, True)


def test_planted_service_log_link_is_not_written_through():
    secret, d = Secret(), shared_dir("sticky")
    port = free_port()
    agent = make_agent("svclog", {"a": svc(port)}, log={"path": os.path.join(d, "events.jsonl")})
    as_nobody("ln", "-s", secret.path, os.path.join(d, "a.log"))
    try:
        agent.start()
        wait_healthy(agent, "a")  # it runs (it printed before it listened), output discarded
        assert secret.intact(), "the service's output went through a link nobody planted"
        w = of(agent.events, "service_warning", service="a")
        assert w and "log_file refused" in w[0]["detail"] and "symbolic link" in w[0]["detail"], w
        assert agent.stop() == 0
    finally:
        agent.close()
        secret.close()
        shutil.rmtree(d, True)


# ---- 4. pid identity ----------------------------------------------------------------------------

# A process of the test's, not a service: listens on a port and holds one zombie child.
HOLDER = r"""
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
kid = os.fork()
if kid == 0:
    os._exit(0)
os.waitid(os.P_PID, kid, os.WEXITED | os.WNOWAIT)
print("ready", kid, flush=True)
sys.stdin.read()
"""


def test_reused_pid_is_not_a_managed_service():
    """state.json names a live process with the wrong start time (its pid was reused): verify,
    cleanup and kill-port must not treat it as the service's."""
    port = free_port()
    agent = make_agent("reuse", {"a": svc(port)})  # never started: its config and runtime dir
    holder = spawn(HOLDER, port)
    try:
        state = os.path.join(agent.dir, "state.json")

        def record(ticks):
            with open(state, "w") as f:
                json.dump({"agent_pid": 999999999, "services": {"a": {
                    "pid": holder.pid, "pgid": holder.pid, "start_ticks": ticks, "port": port,
                    "restarts": 0, "state": "running", "health": "ok"}}}, f)
            os.chmod(state, 0o600)
        # the control: with its true start time it is the service's
        record(start_ticks(holder.pid))
        r = rev("verify", "--json", "-c", agent.config_path)
        assert "service a: pid %d is alive" % holder.pid in json.loads(r.stdout)["reasons"], r.stdout

        record(start_ticks(holder.pid) + 12345)
        r = rev("verify", "--json", "-c", agent.config_path)
        assert r.returncode == 1, r  # the port is held, by a process revenant does not manage
        assert not any("service a:" in x for x in json.loads(r.stdout)["reasons"]), r.stdout
        r = rev("cleanup", "--json", "-c", agent.config_path, check=0)
        assert json.loads(r.stdout)["actions"] == [], r.stdout
        r = rev("kill-port", "-c", agent.config_path, str(port))
        assert r.returncode == 1 and "does not manage" in r.stderr, (r.returncode, r.stderr)
        assert holder.poll() is None, "a process with a reused pid was signalled"
        with open("/proc/%s/stat" % holder.info[0]) as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z", "its zombie was reaped"
    finally:
        end(holder)
        agent.close()


# ---- 5. a full disk -----------------------------------------------------------------------------

COLLIDER = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for _ in range(n):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        pass
    s.close()
print("done", flush=True)
"""


def metrics(port):
    out = {}
    for line in http_get(port, "/metrics").split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    # the loop's wake-ups count the scrape itself: never equal between two scrapes
    out.pop("revenant_loop_wakeups_total", None)
    return out


def test_full_disk_loses_nothing_silently():
    """The log on a 200 KiB tmpfs, filled; 6000 collisions while it is full; then space again.
    Every event is either in the file or counted in the events_lost that is the first line
    after recovery; the failures are in metrics, status and on stderr; no partial line."""
    top = tempfile.mkdtemp(prefix="revenant-fulldisk-")
    os.chmod(top, 0o755)
    mnt = os.path.join(top, "log")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k,mode=0755", "tmpfs", mnt],
                   check=True)
    agent = holder = collider = None
    n = 6000
    try:
        port, mport = free_port(), free_port()
        log = os.path.join(mnt, "events.jsonl")
        agent = Agent({"log": {"path": log}, "metrics": {"listen": "127.0.0.1:%d" % mport}},
                      "fulldisk")
        agent.start()
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
        agent.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port,
                         what="the holder's port_listen")
        fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        finally:
            os.close(fd)
        before = metrics(mport)
        collider = spawn(COLLIDER, port, n)
        collider.stdin.write("go\n")
        collider.stdin.flush()
        assert collider.stdout.readline().strip() == "done"
        deadline = time.monotonic() + 60
        while metrics(mport).get('revenant_events_total{type="port_collision"}', 0) < n:
            assert time.monotonic() < deadline, "the agent did not see %d collisions" % n
            time.sleep(0.05)
        full = status(agent)["log"]
        # the queue is full (4096 lines or 1 MiB), the rest counted as lost
        assert full["write_errors"] > 0 and full["lines_queued"] > 3000, full
        assert full["lines_lost"] > 0, full
        assert "cannot write the event log %s: No space left on device" % log in \
            agent.stderr_text(), agent.stderr_text()
        m = metrics(mport)
        assert m["revenant_log_write_errors_total"] >= full["write_errors"] > \
            before["revenant_log_write_errors_total"], m
        # (other processes of the host make events too: the counters only grow meanwhile)
        assert m["revenant_log_lines_lost_total"] >= full["lines_lost"], m

        # space again (more than the kept lines need): the retry timer writes them, no emit
        os.unlink(os.path.join(mnt, "filler"))
        subprocess.run(["mount", "-o", "remount,size=16m", mnt], check=True)
        failed = lambda e: e["type"] == "events_lost" and e.get("reason") == "log write failed"
        agent.wait_event(lambda e: failed(e) and e["count"] > 0, timeout=30,
                         what="events_lost after recovery")
        # the kept lines follow it, in the same drain: all n collisions are accounted for
        wait_until(agent, lambda: agent.read_new() is not None and len(
            of(agent.events, "port_collision")) + sum(
                e["count"] for e in agent.events if failed(e)) >= n, "the kept lines")
        after = status(agent)["log"]
        assert after["lines_queued"] == 0, after
        # the file and the counters at one moment: the agent writes (or keeps, or counts as
        # lost) an event in the same loop turn it counts it, so a file read between two equal
        # scrapes holds exactly what they count (other processes of the host make events too)
        for _ in range(50):
            m1 = metrics(mport)
            with open(log, "rb") as f:
                data = f.read()
            if metrics(mport) == m1:
                break
        else:
            raise AssertionError("the agent never stood still for a scrape")
        assert data.endswith(b"\n"), "the log ends in a partial line"
        lines = [json.loads(x) for x in data.split(b"\n")[:-1]]  # every line is whole JSON
        # each episode of failures ends with its events_lost, the first line after recovery:
        # what precedes it was written before the episode began
        ends = [i for i, e in enumerate(lines) if failed(e)]
        assert ends, "no events_lost"
        for i in ends:
            assert ts(lines[i - 1]) <= ts({"ts": lines[i]["since"]}), (lines[i - 1], lines[i])
            assert lines[i]["error"] == "No space left on device", lines[i]
        lost = sum(lines[i]["count"] for i in ends)
        assert lost == after["lines_lost"] > 0, (lost, after)
        assert sum(lines[i]["delayed"] for i in ends) > 3000, [lines[i] for i in ends]
        counted = sum(v for k, v in m1.items() if k.startswith("revenant_events_total{"))
        assert counted == len(lines) + lost, (counted, len(lines), lost)
        assert len(of(lines, "port_collision")) + lost >= n, (len(lines), lost)
        print("full disk: %d events counted, %d lines in the file, %d lost (said in %d "
              "events_lost), %d failed writes" % (counted, len(lines), lost, len(ends),
                                                 after["write_errors"]))
        assert "is writable again" in agent.stderr_text(), agent.stderr_text()
        assert agent.stop() == 0
    finally:
        if collider:
            end(collider)
        if holder:
            holder.close()
        if agent:
            agent.close()
        subprocess.run(["umount", mnt])
        shutil.rmtree(top, True)


# ---- 6. nothing blocks the loop -----------------------------------------------------------------

def test_files_that_would_block_are_refused_and_the_agent_answers():
    """An env_file or log_file that became a FIFO, /dev/zero or a directory after the config was
    loaded: the service starts without it, a service_warning says why, and status answers. At
    load the same files are config errors (exit 2)."""
    port = free_port()
    agent = make_agent("block", {"a": svc(port, env_file="a.env")})
    env = os.path.join(agent.dir, "a.env")
    with open(env, "w") as f:
        f.write("GREETING=hello\n")
    try:
        agent.start()
        wait_healthy(agent, "a")
        cases = [("fifo", lambda: os.mkfifo(env), "is a FIFO, not a regular file"),
                 ("zero", lambda: os.symlink("/dev/zero", env), "is a character device"),
                 ("dir", lambda: os.mkdir(env), "is a directory")]
        for kind, make, want in cases:
            if os.path.isdir(env) and not os.path.islink(env):
                os.rmdir(env)
            else:
                os.unlink(env)
            make()
            n = len(agent.events)
            r = rev("restart", "-c", agent.config_path, "a", timeout=30)
            assert r.returncode == 0, (kind, r.stderr)
            w = agent.wait_event(lambda e: e["type"] == "service_warning", since=n,
                                 what="service_warning for the %s env_file" % kind)
            assert "cannot read env_file %s" % env in w["detail"] and want in w["detail"], w
            assert status(agent)["services"]["a"]["state"] == "running"
        # the service's log file turned into a FIFO: opened without blocking, refused
        os.rmdir(env)
        with open(env, "w") as f:
            f.write("GREETING=hello\n")
        logf = os.path.join(agent.dir, "a.log")
        os.unlink(logf)
        os.mkfifo(logf)
        n = len(agent.events)
        r = rev("restart", "-c", agent.config_path, "a", timeout=30)
        assert r.returncode == 0, r.stderr
        w = agent.wait_event(lambda e: e["type"] == "service_warning", since=n,
                             what="service_warning for the FIFO log_file")
        assert "log_file refused" in w["detail"] and "FIFO" in w["detail"], w
        assert status(agent)["services"]["a"]["state"] == "running"
        # the config itself replaced by a FIFO, then SIGHUP: the reload is refused, not waited
        os.rename(agent.config_path, agent.config_path + ".saved")
        os.mkfifo(agent.config_path)
        n = len(agent.events)
        agent.proc.send_signal(signal.SIGHUP)
        w = agent.wait_event(lambda e: e["type"] == "agent_reload", since=n, what="agent_reload")
        assert w["ok"] is False and "not a regular file" in w["detail"], w
        os.unlink(agent.config_path)  # (the CLI reads the config too)
        os.rename(agent.config_path + ".saved", agent.config_path)
        assert status(agent)["services"]["a"]["state"] == "running"
        assert agent.stop() == 0
        # at load: the config error names the key
        fifo = os.path.join(agent.dir, "fifo")
        os.mkfifo(fifo)
        os.unlink(logf)
        for key, target in (("env_file", "/dev/zero"), ("env_file", agent.dir),
                            ("env_file", fifo), ("log_file", fifo)):
            cfg = dict(agent.config)
            cfg["services"] = {"a": dict(agent.config["services"]["a"], **{key: target})}
            path = os.path.join(agent.dir, "bad.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = rev("run", "-c", path, timeout=30)
            assert r.returncode == 2 and "services.a.%s: %s is" % (key, target) in r.stderr, \
                (key, r.returncode, r.stderr)
        cfg = dict(agent.config, log={"path": fifo})
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = rev("run", "-c", path, timeout=30)
        assert r.returncode == 2 and "log.path: %s is a FIFO" % fifo in r.stderr, r.stderr
    finally:
        agent.close()


if __name__ == "__main__":
    run_tests([
        test_dotdot_service_name_is_refused,
        test_cgroup_the_agent_did_not_make_is_never_signalled,
        test_log_in_a_directory_of_another_user_is_refused,
        test_world_writable_log_dir_is_refused,
        test_symlinked_log_in_a_sticky_dir_is_refused,
        test_planted_rotation_files_are_never_written_through,
        test_planted_state_files_are_never_trusted_or_written_through,
        test_planted_lock_link_is_refused,
        test_runtime_dir_of_another_user_is_refused,
        test_control_dir_of_its_own_is_made_private,
        test_runtime_dir_turned_unsafe_while_running_is_said,
        test_planted_service_log_link_is_not_written_through,
        test_reused_pid_is_not_a_managed_service,
        test_full_disk_loses_nothing_silently,
        test_files_that_would_block_are_refused_and_the_agent_answers,
    ])
