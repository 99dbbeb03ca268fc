"""The event log under load: rotation into gzip segments loses and repeats nothing, `revenant tail`
reads it all back in order (--all, -n, --type, --since), `tail -f` follows it across rotations, and
a kill -9 of the agent mid-burst leaves only whole lines."""
import glob
import gzip
import json
import os
import pwd
import select
import signal
import subprocess
import time

from harness import Agent, BIN, end, run_tests, spawn, tell

# On each "go [N]": opens and closes a listening socket on a random free port N times (default
# argv[1]), each giving a port_listen and a port_release, and answers with the ports, in order. A
# batch runs at full speed. (Explicit ports: the sensor reports no port_release for a listener
# bound to port 0.)
BURST = r"""
import random, socket, sys
print("ready", flush=True)
for line in sys.stdin:
    n = int((line.split() + [sys.argv[1]])[1])
    ports = []
    while len(ports) < n:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", random.randint(20000, 60000)))
        except OSError:
            s.close()
            continue
        s.listen()
        ports.append(s.getsockname()[1])
        s.close()
    print(" ".join(map(str, ports)), flush=True)
"""

SMALL_LOG = 4096  # the smallest log.max_bytes the config accepts: a rotation every ~20 events


def small_log_agent(name, keep):
    """An agent whose log rotates every few events. Its agent_start is awaited through tail: the
    harness reads the live file by offset, which a rotation (other processes' port events on a
    busy host fill 4 KiB fast) invalidates."""
    agent = Agent({"log": {"max_bytes": SMALL_LOG, "keep": keep, "compress": True}}, name)
    return wait_started(agent.start(wait=False))


def wait_started(agent):
    wait_all(agent, lambda ls: any(json.loads(l)["type"] == "agent_start" and
                                   json.loads(l)["pid"] == agent.proc.pid for l in ls),
             "agent_start of pid %d" % agent.proc.pid)
    return agent


def burst_events(pid, ports):
    want = []
    for p in ports:
        want += [("port_listen", p), ("port_release", p)]
    return want


def lost(lines):
    """The kernel events the agent reported dropped (ring buffer full): a gap that is not the
    log's doing, named in a failure so that it is not mistaken for one."""
    return sum(e["count"] for e in map(json.loads, lines) if e["type"] == "events_lost")


def seen_burst(lines, pid):
    return [(e["type"], e["port"]) for e in map(json.loads, lines)
            if e.get("pid") == pid and e["type"] in ("port_listen", "port_release")]


class Follower:
    """A `revenant tail -f --json ...` whose output lines are awaited with deadlines."""

    def __init__(self, agent, *args):
        self.p = subprocess.Popen([BIN, "tail", "-c", agent.config_path, "-f", "--json", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""
        self.lines = []

    def _read(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], max(0.0, timeout))
        if not r:
            return
        data = os.read(self.p.stdout.fileno(), 1 << 16)
        if not data:
            raise AssertionError("tail -f exited (%s): %s" % (self.p.wait(), self.p.stderr.read()))
        self.buf += data
        *done, self.buf = self.buf.split(b"\n")
        self.lines += [d.decode() for d in done]

    def wait(self, pred, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for line in self.lines[checked:]:
                if pred(json.loads(line)):
                    return
            checked = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("tail -f: timed out waiting for %s; last lines:\n%s" %
                                     (what, "\n".join(self.lines[-10:])))
            self._read(left)

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        out, err = self.p.communicate(timeout=10)
        self.buf += out
        *done, self.buf = self.buf.split(b"\n")
        self.lines += [d.decode() for d in done]
        assert self.buf == b"", self.buf
        return self.p.returncode, err.decode()


def tail(agent, *args, check=0, user=None):
    r = agent.cli("tail", "-c", agent.config_path, *args, check=check, user=user)
    return r


def all_lines(agent):
    return tail(agent, "--all", "--json").stdout.splitlines()


def wait_all(agent, pred, what, timeout=30.0):
    """`tail --all --json` until pred(lines) holds; woken by the log directory changing."""
    deadline = time.monotonic() + timeout
    while True:
        lines = all_lines(agent) if os.path.exists(agent.log_path) else []
        if pred(lines):
            return lines
        if agent.proc.poll() is not None:
            raise AssertionError("agent exited (%s) while waiting for %s\n%s" %
                                 (agent.proc.returncode, what, agent.stderr_text()))
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for %s; last lines:\n%s\nstderr:\n%s" %
                                 (what, "\n".join(lines[-10:]), agent.stderr_text()))
        agent.ino.wait(min(left, 1.0))


def segments(agent):
    return sorted(glob.glob(agent.log_path + ".*"))


def check_segments(agent, keep):
    """Only .N.gz segments, N = 1..count without gaps, at most keep, each a whole gzip file of
    whole JSON lines. Returns how many."""
    segs = segments(agent)
    names = [os.path.basename(s)[len(os.path.basename(agent.log_path)) + 1:] for s in segs]
    assert all(n.endswith(".gz") for n in names), names
    idx = sorted(int(n[:-3]) for n in names)
    assert idx == list(range(1, len(idx) + 1)), names
    assert len(idx) <= keep, (len(idx), keep)
    for s in segs:
        with gzip.open(s, "rb") as f:
            data = f.read()
        assert data.endswith(b"\n"), s
        for line in data.splitlines():
            json.loads(line)
        assert len(data) <= SMALL_LOG, (s, len(data))
    return len(idx)


def test_follow_and_all_across_rotations():
    agent = small_log_agent("tail", 200)
    burst = f_all = f_new = None
    try:
        # One follower from the start of the log, one from its end; both following before
        # the burst begins (each has printed a line).
        f_all = Follower(agent, "--all")
        f_all.wait(lambda e: e["type"] == "agent_start", "agent_start")
        f_new = Follower(agent, "-n", "1")
        f_new.wait(lambda e: True, "its first line")

        burst = spawn(BURST, 200)
        ports = [int(p) for p in tell(burst)]
        want = burst_events(burst.pid, ports)
        last = want[-1]
        for f in (f_all, f_new):
            f.wait(lambda e: e.get("pid") == burst.pid and (e["type"], e["port"]) == last,
                   "the burst's last event")
        assert agent.stop() == 0
        for f in (f_all, f_new):
            f.wait(lambda e: e["type"] == "agent_stop", "agent_stop")

        everything = all_lines(agent)
        assert len(everything) == len(set(everything)), "a line was repeated"
        assert json.loads(everything[0])["type"] == "agent_start", everything[:3]
        assert json.loads(everything[-1])["type"] == "agent_stop"
        assert seen_burst(everything, burst.pid) == want, "%d kernel events lost" % lost(everything)
        nsegs = check_segments(agent, 200)
        assert nsegs >= 5, "expected several rotations, got %d segments" % nsegs

        for f, sig in ((f_all, signal.SIGTERM), (f_new, signal.SIGINT)):
            rc, err = f.stop(sig)
            assert rc == 0, (sig, rc, err)
            assert err == "", err  # no damaged line, no rotation it could not follow
        assert f_all.lines == everything
        start = everything.index(f_new.lines[0])
        assert f_new.lines == everything[start:]
    finally:
        for f in (f_all, f_new):
            if f and f.p.poll() is None:
                f.p.kill()
                f.p.wait()
        if burst:
            end(burst)
        agent.close()


def test_last_n_type_since_and_errors():
    agent = small_log_agent("tailn", 2)
    burst = None
    try:
        burst = spawn(BURST, 100)
        ports = [int(p) for p in tell(burst)]
        wait_all(agent, lambda ls: ("port_release", ports[-1]) in seen_burst(ls, burst.pid),
                 "the burst's last event")
        assert agent.stop() == 0
        assert check_segments(agent, 2) == 2

        everything = all_lines(agent)
        assert len(everything) == len(set(everything))
        # Only the newest events survive keep=2 (maybe none of the burst, on a host busy with
        # other port events): whatever did is a gapless, ordered tail of the burst.
        got = seen_burst(everything, burst.pid)
        want = burst_events(burst.pid, ports)
        assert len(got) <= len(want) and got == want[len(want) - len(got):], (
            "not a gapless, ordered tail of the burst (%d kernel events lost): got %d of %d, "
            "ending %s" % (lost(everything), len(got), len(want), got[-4:]))
        with open(agent.log_path) as f:
            live = f.read().splitlines()

        # The last N reach back into the segments when the live file holds fewer.
        assert tail(agent, "-n", "5", "--json").stdout.splitlines() == everything[-5:]
        assert tail(agent, "--json").stdout.splitlines() == everything[-10:]
        assert tail(agent, "-n", str(len(live) + 3), "--json").stdout.splitlines() == \
            everything[-(len(live) + 3):]
        assert tail(agent, "--all", "-n", "5", "--json").stdout.splitlines() == everything[-5:]
        assert tail(agent, "-n", "0", "--json").stdout == ""

        def of_types(*types):
            return [l for l in everything if json.loads(l)["type"] in types]

        assert tail(agent, "--all", "--json", "--type", "port_release").stdout.splitlines() == \
            of_types("port_release")
        assert tail(agent, "--all", "--json", "-t", "agent_stop,port_listen"
                    ).stdout.splitlines() == of_types("agent_stop", "port_listen")
        assert tail(agent, "--all", "--json", "--type", "agent_stop", "--type", "zombie"
                    ).stdout.splitlines() == of_types("agent_stop", "zombie")

        assert tail(agent, "--all", "--json", "--since", "1h").stdout.splitlines() == everything
        assert tail(agent, "--all", "--json", "--since",
                    "2000-01-01T00:00:00Z").stdout.splitlines() == everything
        assert tail(agent, "--all", "--json", "--since", "2999-01-01T00:00:00Z").stdout == ""
        stop_ts = json.loads(everything[-1])["ts"]
        assert tail(agent, "--all", "--json", "--since", stop_ts).stdout.splitlines() == \
            [l for l in everything if json.loads(l)["ts"] >= stop_ts]

        table = tail(agent, "-n", "3").stdout.splitlines()
        assert len(table) == 4 and table[0].split() == ["TIME", "TYPE", "DETAILS"], table
        assert table[-1].split()[:2] == [json.loads(live[-1])["ts"], "agent_stop"], table
        assert "reason=SIGTERM" in table[-1], table
        releases = of_types("port_release")
        if releases:
            row = tail(agent, "--all", "-n", "1", "--type", "port_release").stdout
            assert "port=%d" % json.loads(releases[-1])["port"] in row, row

        # Read permission is all it takes: no root, no agent.
        nobody = pwd.getpwnam("nobody")
        r = tail(agent, "--all", "--json", user=nobody.pw_uid)
        assert r.stdout.splitlines() == everything, r.stderr

        # A damaged line is skipped with a warning, in both modes.
        with open(agent.log_path, "a") as f:
            f.write('{"ts": "2026-11-27T11:00:00Z", "type": "port_listen", "po\n')
            f.write('{"ts":"2026-11-27T11:00:01.000000Z","type":"zombie","pid":7}\n')
        for mode in (("--json",), ()):
            r = tail(agent, "-n", "2", *mode)
            assert "%s:%d: not an event" % (agent.log_path, len(live) + 1) in r.stderr, r.stderr
            assert "agent_stop" in r.stdout and "zombie" in r.stdout, r.stdout

        r = tail(agent, "--bogus", check=2)
        assert "usage: revenant tail" in r.stderr, r.stderr
        r = tail(agent, "-n", "many", check=2)
        assert "-n" in r.stderr, r.stderr
        r = tail(agent, "--since", "yesterday", check=2)
        assert "RFC 3339" in r.stderr, r.stderr
        assert "usage: revenant tail" in tail(agent, "--help").stdout
        os.rename(agent.log_path, agent.log_path + ".moved")
        r = tail(agent, check=1)
        assert agent.log_path in r.stderr and "has the agent run?" in r.stderr, r.stderr
        assert agent.config_path in r.stderr, r.stderr
    finally:
        if burst:
            end(burst)
        agent.close()


def test_kill9_mid_burst_leaves_whole_lines():
    agent = small_log_agent("tailkill", 200)
    burst = None
    try:
        # Batches the agent keeps up with (no kernel events dropped), then a larger one in
        # flight: the agent is killed while it writes and rotates through it.
        burst = spawn(BURST, 100)
        ports = []
        for _ in range(3):
            ports += [int(p) for p in tell(burst)]
            wait_all(agent, lambda ls: ("port_release", ports[-1]) in seen_burst(ls, burst.pid),
                     "the batch's last event")
        whole = burst_events(burst.pid, ports)
        burst.stdin.write("go 1000\n")
        burst.stdin.flush()
        wait_all(agent, lambda ls: len(seen_burst(ls, burst.pid)) > len(whole),
                 "the first event of the batch in flight")
        agent.proc.kill()
        agent.proc.wait()
        in_flight = [int(p) for p in burst.stdout.readline().split()]

        with open(agent.log_path, "rb") as f:
            data = f.read()
        assert data == b"" or data.endswith(b"\n"), data[-200:]
        for line in data.splitlines():
            json.loads(line)
        # What the killed agent rotated is whole too: gzip segments are renamed into place only
        # when complete, and what the compressor had not reached is still plain text. Its
        # compressor outlives it and may still be renaming segments: tail reads a consistent
        # listing of them, and says so on stderr when it meets a damaged one.
        r = tail(agent, "--all", "--json")
        assert r.stderr == "", r.stderr
        for line in r.stdout.splitlines():
            json.loads(line)

        # A new agent on the same log picks up where the old one stopped; a clean stop leaves
        # every segment compressed and every line readable exactly once: the whole batches,
        # then as much of the one in flight as the killed agent wrote.
        wait_started(agent.start(wait=False))
        assert agent.stop() == 0
        check_segments(agent, 200)
        r = tail(agent, "--all", "--json")
        assert r.stderr == "", r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == len(set(lines)), "a line was repeated"
        got = seen_burst(lines, burst.pid)
        assert got[:len(whole)] == whole, "%d kernel events lost" % lost(lines)
        assert got[len(whole):] == burst_events(burst.pid, in_flight)[:len(got) - len(whole)]
    finally:
        if burst:
            end(burst)
        agent.close()


if __name__ == "__main__":
    run_tests([
        test_follow_and_all_across_rotations,
        test_last_n_type_since_and_errors,
        test_kill9_mid_burst_leaves_whole_lines,
    ])
