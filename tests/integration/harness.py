"""Integration-test harness: runs the real revenant binary as root against real processes.

Waits are on events (inotify on the event log, pidfds, sockets) with deadlines, never fixed
sleeps. Tests end only processes they started, by pid.
"""
import atexit
import ctypes
import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

BIN = os.environ.get("REVENANT_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "revenant")
SRC = os.environ.get("REVENANT_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")

_libc = ctypes.CDLL(None, use_errno=True)
_shared_bin = None


def bin_for(user=None):
    """The binary to run as `user`: BIN for root, else one copy in a directory anybody may
    enter (the clone, and so BIN, may sit in a directory only root can enter)."""
    global _shared_bin
    uid = getattr(user, "pw_uid", user)
    if uid in (None, 0):
        return BIN
    if _shared_bin is None:
        d = tempfile.mkdtemp(prefix="revenant-bin-")
        os.chmod(d, 0o755)
        path = os.path.join(d, "revenant")
        shutil.copy(BIN, path)
        os.chmod(path, 0o755)
        atexit.register(shutil.rmtree, d, True)
        _shared_bin = path
    return _shared_bin


def run_as(args, user=None, timeout=60, **kw):
    """Run revenant with args, as `user` (a pwd entry or a uid; None: root)."""
    if user is not None:
        uid = getattr(user, "pw_uid", user)
        kw["user"] = uid
        kw["group"] = getattr(user, "pw_gid", None) or __import__("pwd").getpwuid(uid).pw_gid
    return subprocess.run([bin_for(user), *args], capture_output=True, text=True,
                          timeout=timeout, **kw)
IN_MODIFY, IN_CREATE, IN_MOVED_TO, IN_CLOSE_WRITE = 0x2, 0x100, 0x80, 0x8


class Inotify:
    """Wakes a waiter when a file in a directory changes (the event log being appended)."""

    def __init__(self, directory):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = _libc.inotify_add_watch(self.fd, directory.encode(),
                                     IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + directory)

    def wait(self, timeout):
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if r:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass

    def close(self):
        os.close(self.fd)


def free_port(kind=socket.SOCK_STREAM, lo=20000, hi=None):
    """A random high port free for TCP and UDP on v4 and v6 loopback/wildcard right now, below
    the kernel's ephemeral range: a client socket of any other test on the host may take a port
    of that range at any moment, and a service that binds it later would collide."""
    if hi is None:
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                hi = int(f.read().split()[0]) - 1
        except (OSError, ValueError, IndexError):
            hi = 32767
        if hi <= lo + 1000:
            hi = 60000
    for _ in range(200):
        port = random.randint(lo, hi)
        ok = True
        for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(fam, typ)
                try:
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((addr, port))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return port
    raise RuntimeError("no free port found")


class Agent:
    """A `revenant run` with its own temp dir, config, log and control socket."""

    def __init__(self, config=None, name="t"):
        self.dir = tempfile.mkdtemp(prefix="revenant-%s-" % name)
        os.chmod(self.dir, 0o755)
        cfg = {"log": {"path": "events.jsonl"},
               "control": {"socket": os.path.join(self.dir, "control.sock")},
               "metrics": {"listen": ""}}
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        self.config = cfg
        self.config_path = os.path.join(self.dir, "revenant.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(self.dir, cfg["log"]["path"])
        self.proc = None
        self.offset = 0
        self._log, self._pending = None, b""
        self.events = []
        log_dir = os.path.dirname(self.log_path)
        self.ino = Inotify(log_dir if os.path.isdir(log_dir) else self.dir)

    def start(self, extra=(), wait=True, env=None, preexec_fn=None):
        """preexec_fn runs in the agent's process before exec (e.g. to lower an rlimit)."""
        self.stderr = open(os.path.join(self.dir, "agent.stderr"), "w+")
        self.proc = subprocess.Popen([BIN, "run", "-c", self.config_path, *extra],
                                     stdout=self.stderr, stderr=self.stderr,
                                     env=dict(os.environ, **env) if env else None,
                                     preexec_fn=preexec_fn)
        if wait:
            self.wait_event(lambda e: e["type"] == "agent_start" and e.get("pid") == self.proc.pid,
                            timeout=20, what="agent_start")
        return self

    def read_new(self):
        """Events appended since the last call. After a rotation the file being read is
        finished before the one now at log_path is begun; a file rotated out entirely between
        two calls is not read (the segments have it)."""
        new = []
        while True:
            if self._log is None:
                try:
                    self._log = open(self.log_path, "rb")
                except FileNotFoundError:
                    break
                self._log.seek(self.offset)
            data = self._pending + self._log.read()
            end = data.rfind(b"\n")  # -1: not one whole line yet
            self._pending = data[end + 1:]
            self.offset += end + 1
            new += [json.loads(line) for line in data[:max(end, 0)].split(b"\n") if line]
            try:
                rotated = os.stat(self.log_path).st_ino != os.fstat(self._log.fileno()).st_ino
            except FileNotFoundError:
                rotated = False
            if not rotated:
                break
            new += [json.loads(line) for line in
                    (self._pending + self._log.read()).split(b"\n") if line]
            self._log.close()
            self._log, self._pending, self.offset = None, b"", 0
        self.events.extend(new)
        return new

    def wait_event(self, pred, timeout=10.0, what="event", since=0):
        """The first event (from index `since` of everything seen) matching pred."""
        deadline = time.monotonic() + timeout
        while True:
            self.read_new()
            for e in self.events[since:]:
                if pred(e):
                    return e
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("agent exited (%s) while waiting for %s\n%s" %
                                     (self.proc.returncode, what, self.stderr_text()))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for %s; events:\n%s\nstderr:\n%s" % (
                    what, "\n".join(json.dumps(e) for e in self.events[-30:]), self.stderr_text()))
            self.ino.wait(min(left, 1.0))

    def stderr_text(self):
        try:
            with open(os.path.join(self.dir, "agent.stderr")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def cli(self, *args, check=None, timeout=60, user=None):
        r = run_as(args, user=user, timeout=timeout)
        if check is not None and r.returncode != check:
            raise AssertionError("revenant %s exited %d, expected %d\nstdout:%s\nstderr:%s" %
                                 (" ".join(args), r.returncode, check, r.stdout, r.stderr))
        return r

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("agent did not stop within %ss after %s" % (timeout, sig))

    def close(self):
        try:
            self.stop()
        except AssertionError:
            pass
        if self._log is not None:
            self._log.close()
            self._log = None
        self.ino.close()
        self.remove_pins()

    def agent_running(self):
        """Some agent holds this config's lock (agent.lock beside the control socket)."""
        import fcntl
        lock = os.path.join(os.path.dirname(self.config["control"]["socket"]), "agent.lock")
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def remove_pins(self):
        """An agent killed with -9 leaves its pins (kernel memory) behind: a test that did that
        removes them, only ever inside this agent's own pin directory."""
        for e in self.events:
            pin = e.get("pin") if e.get("type") == "agent_start" else None
            if not pin or not os.path.basename(pin).startswith("revenant-"):
                continue
            if self.proc is not None and self.proc.poll() is None:
                continue
            if self.agent_running():
                continue  # another agent on this config (a restart) owns them now
            try:
                for name in os.listdir(pin):
                    os.unlink(os.path.join(pin, name))
                os.rmdir(pin)
            except FileNotFoundError:
                pass


# A parent that makes one zombie per "fork" line and reaps them all on "reap".
ZOMBIE_PARENT = r"""
import os, sys
kids = []
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "fork":
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        # The child is a zombie once it has exited: wait for that without reaping it.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        kids.append(pid)
        print(pid, flush=True)
    elif cmd == "reap":
        for k in kids:
            os.waitpid(k, 0)
        kids = []
        print("reaped", flush=True)
"""


def spawn(code, *args):
    """A python child running `code`; it prints 'ready [WORDS]' when set up.
    Returns the Popen, with .info = the words after 'ready'."""
    p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                         stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if not line or line[0] != "ready":
        p.kill()
        p.wait()
        raise AssertionError("helper did not get ready: %r" % line)
    p.info = line[1:]
    return p


def tell(p, line="go"):
    """Send a line to a helper's stdin and read its one-line answer."""
    p.stdin.write(line + "\n")
    p.stdin.flush()
    return p.stdout.readline().split()


def end(p):
    """End a helper process we started, by its pid only."""
    if p.poll() is None:
        p.kill()
    p.wait()


def run_tests(tests):
    if os.geteuid() != 0:
        print("integration tests need root")
        print("0 passed, 0 failed, %d skipped" % len(tests))
        sys.exit(77)
    passed = failed = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
            passed += 1
            print("PASS %s (%.2fs)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.2fs)" % (t.__name__, time.monotonic() - start), flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def pid_alive(pid):
    """True while pid exists (a zombie counts: it is not reaped yet)."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def group_alive(pgid):
    """True while any process is in process group pgid."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_exit(pid, timeout):
    """Wait on a pidfd until pid has exited (zombie or gone); False at the deadline."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


def port_bindable(port, addr="127.0.0.1"):
    """True when a TCP socket (SO_REUSEADDR, as servers use) can bind addr:port now."""
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()
