"""Shared by the benchmarks in bench/: find the binary, run one agent in its own temp dir, follow its
JSON-lines event log with inotify, read a process's CPU and memory from /proc, and summarise.

Stdlib only. Everything the benchmarks start is ended by pid; nothing is killed by name.
"""
import calendar
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

_libc = ctypes.CDLL(None, use_errno=True)
IN_MODIFY, IN_CREATE, IN_MOVED_TO = 0x2, 0x100, 0x80


def default_bin():
    return os.environ.get("REVENANT_BIN") or os.path.join(REPO_ROOT, "build", "revenant")


def check_bin(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        sys.exit("bench: no revenant binary at %s: build it (cmake -S . -B /tmp/b && make -C /tmp/b "
                 "revenant) and pass --bin or set REVENANT_BIN" % path)
    return os.path.abspath(path)


def need_root():
    if os.geteuid() != 0:
        sys.exit("bench: needs root (the agent loads BPF programs): run it with sudo")


def rfc3339_ns(ts):
    """'2025-11-27T11:45:00.123456Z' -> ns since the epoch (the agent writes UTC with microseconds)."""
    base, _, frac = ts.rstrip("Z").partition(".")
    sec = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return sec * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


def median(xs):
    s = sorted(xs)
    n = len(s)
    if not n:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def pct(xs, p):
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


class LogFollower:
    """Follows an append-only JSON-lines file: inotify on its directory wakes us, we read only the
    new bytes and stamp every complete line with CLOCK_REALTIME at the moment it was parsed."""

    def __init__(self, path):
        self.path = path
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        d = os.path.dirname(path) or "."
        if _libc.inotify_add_watch(self.fd, d.encode(), IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + d)
        self.f = None
        self.buf = b""
        self.events = []  # (seen_realtime_ns, event dict), in log order

    def _open(self):
        if self.f is None:
            try:
                self.f = open(self.path, "rb", buffering=0)
            except FileNotFoundError:
                return False
        return True

    def poll(self):
        """Read what was appended since the last call; returns the new (seen_ns, event) pairs."""
        if not self._open():
            return []
        new = []
        while True:
            chunk = self.f.read(1 << 20)
            if not chunk:
                break
            self.buf += chunk
        if b"\n" in self.buf:
            seen = time.time_ns()
            lines, _, self.buf = self.buf.rpartition(b"\n")
            for line in lines.split(b"\n"):
                if line:
                    new.append((seen, json.loads(line)))
        self.events.extend(new)
        return new

    def wait_for(self, pred, timeout, what="event", alive=None):
        """The first (seen_ns, event) read from now on (and not yet returned) matching pred."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.poll():
                if pred(item[1]):
                    return item
            if alive is not None and not alive():
                raise RuntimeError("the agent exited while waiting for %s" % what)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if r:
                try:
                    os.read(self.fd, 65536)
                except BlockingIOError:
                    pass

    def wait_until(self, cond, timeout, alive=None):
        """Read the log until cond() holds (True) or timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if cond():
                return True
            if alive is not None and not alive():
                raise RuntimeError("the agent exited")
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if r:
                try:
                    os.read(self.fd, 65536)
                except BlockingIOError:
                    pass

    def close(self):
        if self.f:
            self.f.close()
        os.close(self.fd)


class Agent:
    """A `revenant run` with its own temp dir, config (log.path, control.socket in that dir)."""

    def __init__(self, binary, config=None, name="bench", keep=False):
        self.bin = binary
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="revenant-%s-" % name)
        os.chmod(self.dir, 0o755)
        cfg = {"log": {"path": os.path.join(self.dir, "events.jsonl")},
               "control": {"socket": os.path.join(self.dir, "control.sock")}}
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        self.config = cfg
        self.config_path = os.path.join(self.dir, "revenant.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.log_path = cfg["log"]["path"]
        self.log = LogFollower(self.log_path)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=30, env=None):
        """env: variables added to ours for the agent (e.g. REVENANT_NO_EXIT_CAUSE=1)."""
        self.stderr = open(os.path.join(self.dir, "agent.stderr"), "w+")
        self.proc = subprocess.Popen([self.bin, "run", "-c", self.config_path],
                                     stdout=self.stderr, stderr=self.stderr,
                                     env=dict(os.environ, **env) if env else None)
        try:
            self.log.wait_for(lambda e: e["type"] == "agent_start" and e.get("pid") == self.proc.pid,
                              timeout, "agent_start", self.alive)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError("%s\nagent stderr:\n%s" % (exc, self.stderr_text())) from None
        return self

    def stderr_text(self):
        try:
            with open(os.path.join(self.dir, "agent.stderr")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self, timeout=30):
        """SIGTERM to our agent's pid; returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a benchmark stopped it
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self):
        self.stop()
        self.log.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def proc_cpu_ticks(pid):
    """utime + stime of pid, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rpartition(")")[2].split()
    return int(rest[11]) + int(rest[12])


def proc_cpu_ns(pid):
    """Time on CPU in ns from /proc/PID/schedstat (finer than the 10 ms ticks of stat), or None."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def proc_status_kib(pid, *keys):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        model = "?"
    listeners = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                listeners += sum(1 for line in f if line.split()[3:4] == ["0A"])
        except OSError:
            pass
    return {"kernel": os.uname().release, "cpus": os.cpu_count(), "cpu_model": model,
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "processes": sum(1 for d in os.listdir("/proc") if d.isdigit()),
            "tcp_listeners": listeners,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def spawner(tmpdir):
    """The C helper (bench/spawner.c): bench/spawner when built and up to date (make -C bench),
    else compiled into tmpdir with the same gcc line."""
    src = os.path.join(BENCH_DIR, "spawner.c")
    built = os.path.join(BENCH_DIR, "spawner")
    if os.path.exists(built) and os.path.getmtime(built) >= os.path.getmtime(src):
        return built
    out = os.path.join(tmpdir, "spawner")
    cc = os.environ.get("CC", "gcc")
    r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", out, src], capture_output=True,
                       text=True)
    if r.returncode:
        sys.exit("bench: cannot build %s with %s (run make -C %s):\n%s" % (src, cc, BENCH_DIR,
                                                                         r.stderr))
    return out
