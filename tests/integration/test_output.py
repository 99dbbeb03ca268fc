"""What a service said (issue 10): its stdout and stderr read by the agent through pipes, split into
whole lines, stamped and rotated (log_max_bytes, log_keep, gzip), read back with `revenant logs`
(-n across rotations, -f across rotations), `tail --service --output` as one timeline, a line over
64 KiB cut and marked, and a disk that is full: the agent stays responsive and counts the loss.
Real processes; every wait is for an event, a file change (inotify) or a process, with a deadline."""
import glob
import gzip
import json
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import time

from harness import Agent, BIN, run_tests

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (stdout|stderr) ([FP]) (.*)$")


def started(agent, name):
    return agent.wait_event(lambda e: e["type"] == "service_start" and e["service"] == name,
                            timeout=15, what="service_start of " + name)


def exited(agent, name):
    return agent.wait_event(lambda e: e["type"] == "service_exit" and e["service"] == name,
                            timeout=120, what="service_exit of " + name)


def output_files(path):
    return sorted(glob.glob(path + "*"))


def read_all_lines(path):
    """Every line of the kept files, oldest first (path.N.gz .. path.1.gz, then path)."""
    segs = [p for p in output_files(path) if re.search(r"\.\d+\.gz$", p)]
    segs.sort(key=lambda p: -int(p.rsplit(".", 2)[1]))
    lines = []
    for p in segs:
        with gzip.open(p, "rt") as f:
            lines += f.read().split("\n")[:-1]
    with open(path) as f:
        lines += f.read().split("\n")[:-1]
    return lines


def wait_until(agent, pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not pred():
        left = deadline - time.monotonic()
        assert left > 0, "timed out waiting for " + what
        agent.ino.wait(min(left, 1.0))


# Prints N numbered lines of 100 bytes (50 MB for 500,000), a 200 KiB line on stderr first.
PRINTER = r"""
import sys
n = int(sys.argv[1])
sys.stderr.write("L" * (200 * 1024) + "\n")
sys.stderr.flush()
out = sys.stdout
for i in range(n):
    out.write("%08d %s\n" % (i, "x" * 90))
out.flush()
"""


def test_rotation_keeps_whole_stamped_lines_and_logs_reads_them():
    n = 500000  # 50 MB of output
    agent = Agent({"services": {"printer": {
        "command": "exec %s -c '%s' %d" % (sys.executable, PRINTER, n),
        "auto_restart": False, "log_max_bytes": 1 << 20, "log_keep": 3}}}, "out-rot").start()
    path = os.path.join(agent.dir, "printer.log")
    try:
        started(agent, "printer")
        e = exited(agent, "printer")
        assert e["code"] == 0, e
        # The compressor works off the loop: done when no segment waits for it.
        wait_until(agent, lambda: not [p for p in output_files(path) if ".pending." in p],
                   "the compressor to finish")
        files = output_files(path)
        assert len(files) <= 4, files
        for p in files:
            assert os.path.getsize(p) <= 1 << 20, (p, os.path.getsize(p))

        lines = read_all_lines(path)
        kept = []
        for ln in lines:
            m = LINE.match(ln)
            assert m, "not a whole stamped line: %r" % ln[:120]
            if m.group(2) == "stdout":
                assert m.group(3) == "F" and re.match(r"^\d{8} x{90}$", m.group(4)), ln[:120]
                kept.append(int(m.group(4)[:8]))
        # The newest lines are kept, each once, in order, ending with the last one printed.
        assert kept == list(range(n - len(kept), n)), (kept[:3], kept[-3:])
        assert len(kept) > 3 * 7000, len(kept)  # 3 full segments and the live file

        r = agent.cli("logs", "-c", agent.config_path, "printer", "-n", "5", check=0)
        got = r.stdout.splitlines()
        assert [int(g.split()[2]) for g in got] == list(range(n - 5, n)), got
        assert all(g.split()[1] == "stdout" for g in got), got
        r = agent.cli("logs", "-c", agent.config_path, "printer", "-n", "3", "--json", check=0)
        objs = [json.loads(x) for x in r.stdout.splitlines()]
        assert [o["line"][:8] for o in objs] == ["%08d" % i for i in range(n - 3, n)], objs
        assert all(o["service"] == "printer" and o["stream"] == "stdout" for o in objs), objs
        # -n larger than the live file holds reaches back into the gzip segments.
        with open(path) as f:
            live = len(f.read().splitlines())
        r = agent.cli("logs", "-c", agent.config_path, "printer", "-n", str(live + 10), "--stdout",
                      check=0)
        nums = [int(g.split()[2]) for g in r.stdout.splitlines()]
        assert nums == list(range(n - live - 10, n)), (len(nums), nums[:2], nums[-2:])
        # The stderr line was older than everything kept: with keep 3 it rotated away.
        assert agent.cli("logs", "-c", agent.config_path, "printer", "--stderr", check=0
                         ).stdout == ""
    finally:
        agent.close()


def test_long_line_cut_and_marked_stderr_apart():
    agent = Agent({"services": {"long": {
        "command": "exec %s -c '%s' 3" % (sys.executable, PRINTER), "auto_restart": False,
        "stderr_file": "long.err"}}}, "out-cut").start()
    try:
        started(agent, "long")
        exited(agent, "long")
        with open(os.path.join(agent.dir, "long.err")) as f:
            recs = [LINE.match(x) for x in f.read().splitlines()]
        assert all(recs), recs
        # 200 KiB: three 64 KiB pieces marked P, the rest marked F, nothing lost
        assert [m.group(3) for m in recs] == ["P", "P", "P", "F"], [m.group(3) for m in recs]
        assert "".join(m.group(4) for m in recs) == "L" * (200 * 1024)
        assert all(m.group(2) == "stderr" for m in recs)
        with open(os.path.join(agent.dir, "long.log")) as f:
            assert [LINE.match(x).group(4)[:8] for x in f.read().splitlines()] == \
                ["00000000", "00000001", "00000002"]
        warn = agent.wait_event(lambda e: e["type"] == "service_warning" and
                                e["service"] == "long", what="the cut line's warning")
        assert "longer than 65536 bytes was cut" in warn["detail"], warn
        st = json.loads(agent.cli("status", "-c", agent.config_path, "--json", check=0).stdout)
        assert st["services"]["long"]["output"]["cut_lines"] == 1, st

        objs = [json.loads(x) for x in agent.cli("logs", "-c", agent.config_path, "long", "--all",
                                                  "--json", check=0).stdout.splitlines()]
        # both files, merged by time: the stderr line came first
        assert [o["stream"] for o in objs] == ["stderr"] * 4 + ["stdout"] * 3, objs
        assert [o.get("partial", False) for o in objs[:4]] == [True, True, True, False]
        assert objs[-1]["line"].startswith("00000002")
        # One timeline: the start, what it printed, then its exit.
        rows = [json.loads(x) for x in agent.cli(
            "tail", "-c", agent.config_path, "--service", "long", "--output", "--all", "--json",
            check=0).stdout.splitlines()]
        kinds = [r["type"] for r in rows if r["type"] in ("service_start", "output",
                                                          "service_exit")]
        assert kinds == ["service_start"] + ["output"] * 7 + ["service_exit"], kinds
        table = agent.cli("tail", "-c", agent.config_path, "--service", "long", "--output",
                          "-n", "2", check=0).stdout.splitlines()
        assert "stdout" in table[1] and "00000002" in table[1], table
        assert "service_exit" in table[2], table
        r = agent.cli("logs", "-c", agent.config_path, "nosuch", check=2)
        assert "no service named 'nosuch'" in r.stderr, r.stderr
    finally:
        agent.close()


def follower_lines(proc, deadline):
    """The lines a follower prints, as they come (raw reads: no buffer hides a line from select)."""
    buf = b""
    n = 0
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            n += 1
            yield line.decode()
        r, _, _ = select.select([proc.stdout], [], [], max(0, deadline - time.monotonic()))
        assert r, "the follower printed nothing more after %d lines" % n
        data = os.read(proc.stdout.fileno(), 65536)
        assert data, "the follower exited"
        buf += data


# Prints "ready", waits for a line on the gate fifo, then N numbered lines and "done".
GATED = r"""
import sys
gate, n = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
with open(gate) as f:
    f.readline()
for i in range(n):
    sys.stdout.write("%08d %s\n" % (i, "y" * 60))
print("done", flush=True)
sys.stdin.read()
"""


def test_follow_across_rotations_loses_and_repeats_nothing():
    n = 40000
    agent = Agent(name="out-follow")
    gate = os.path.join(agent.dir, "gate")
    os.mkfifo(gate)
    cfg = dict(agent.config)
    cfg["services"] = {"talker": {
        "command": "exec %s -c '%s' %s %d" % (sys.executable, GATED, gate, n),
        "auto_restart": False, "log_max_bytes": 65536, "log_keep": 1000}}
    with open(agent.config_path, "w") as f:
        json.dump(cfg, f)
    follower = None
    try:
        agent.start()
        started(agent, "talker")
        follower = subprocess.Popen([BIN, "logs", "-c", agent.config_path, "talker", "-f",
                                     "-n", "1", "--json"], stdout=subprocess.PIPE)
        lines = follower_lines(follower, time.monotonic() + 120)
        first = json.loads(next(lines))
        assert first["line"] == "ready", first
        with open(gate, "w") as g:
            g.write("go\n")
        got = []
        for line in lines:
            text = json.loads(line)["line"]
            if text == "done":
                break
            got.append(int(text[:8]))
        assert got == list(range(n)), "lost or repeated: %d lines, first bad at %s" % (
            len(got), next((i for i, v in enumerate(got) if v != i), None))
        rotated = [p for p in output_files(os.path.join(agent.dir, "talker.log"))
                   if re.search(r"\.(\d+\.gz|pending\.\d+)$", p)]
        assert len(rotated) >= 20, rotated  # it did follow across many rotations
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(10) == 0
    finally:
        if follower and follower.poll() is None:
            follower.kill()
            follower.wait()
        agent.close()


def control_status(sock_path):
    """One status request on the control socket; returns the seconds it took."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    t0 = time.monotonic()
    s.connect(sock_path)
    s.send(b'{"cmd":"status"}')
    resp = s.recv(1 << 20)
    dt = time.monotonic() - t0
    s.close()
    assert json.loads(resp)["ok"], resp
    return dt


# Floods stdout: 1 MiB writes of 100-byte lines, forever.
FLOOD = r"""
import os
chunk = ("z" * 99 + "\n").encode() * 10486
while True:
    os.write(1, chunk)
"""


def test_full_disk_drops_counted_agent_responsive():
    agent = Agent(name="out-full")
    full = os.path.join(agent.dir, "full")
    os.mkdir(full)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "revenant-test", full], check=True)
    try:
        cfg = dict(agent.config)
        cfg["services"] = {"flood": {"command": "exec %s -c '%s'" % (sys.executable, FLOOD),
                                     "log_file": "full/flood.log"}}
        with open(agent.config_path, "w") as f:
            json.dump(cfg, f)
        agent.start()
        started(agent, "flood")
        warn = agent.wait_event(lambda e: e["type"] == "service_warning" and
                                e["service"] == "flood" and "cannot write" in e["detail"],
                                timeout=30, what="the loss warning")
        assert "No space left on device" in warn["detail"], warn
        sock = agent.config["control"]["socket"]
        times = [control_status(sock) for _ in range(20)]
        assert max(times) < 0.1, "status took %.1f ms at worst while flooding" % (
            max(times) * 1000)
        cli = []
        for _ in range(5):
            t0 = time.monotonic()
            st = json.loads(agent.cli("status", "-c", agent.config_path, "--json",
                                      check=0).stdout)
            cli.append(time.monotonic() - t0)
        assert statistics.median(cli) < 0.1, cli
        lost1 = st["services"]["flood"]["output"]["lost_bytes"]
        wait_until(agent, lambda: json.loads(agent.cli(
            "status", "-c", agent.config_path, "--json", check=0).stdout
        )["services"]["flood"]["output"]["lost_bytes"] > lost1, "more losses counted", 30)
        agent.cli("stop", "-c", agent.config_path, "flood", check=0)
        assert agent.stop() == 0
        # The kept lines are whole: a full disk never leaves half a line.
        with open(os.path.join(full, "flood.log")) as f:
            data = f.read()
        assert len(data) > 900000 and data.endswith("\n"), len(data)
        assert all(LINE.match(x) for x in data.splitlines())
        agent.read_new()
        warns = [e for e in agent.events if e["type"] == "service_warning"]
        assert any("in all" in e["detail"] for e in warns), warns  # the total is told
    finally:
        agent.close()
        subprocess.run(["umount", full], check=False)


if __name__ == "__main__":
    run_tests([
        test_rotation_keeps_whole_stamped_lines_and_logs_reads_them,
        test_long_line_cut_and_marked_stderr_apart,
        test_follow_across_rotations_loses_and_repeats_nothing,
        test_full_disk_drops_counted_agent_responsive,
    ])
