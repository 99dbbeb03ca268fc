"""The control protocol at scale (issue 11, finding 8): with 1000 services, `status --json` has
every one of them (a reply far over one 64 KiB message, sent in chunks) and answers within 100 ms.
Its own file: starting and stopping 1000 services takes minutes under ASan."""
import json
import statistics
import time

from harness import BIN, Agent, run_tests, run_as

# The 100 ms budget is the release build's; under ASan+UBSan (scripts/dev's second stage)
# everything runs 2-4 times slower.
with open(BIN, "rb") as _f:
    SANITIZED = b"__asan_init" in _f.read()
STATUS_BUDGET_S = 0.4 if SANITIZED else 0.1


def status_json(agent, timeout=10):
    r = run_as(["status", "--json", "-c", agent.config_path], timeout=timeout)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def test_status_with_1000_services():
    """1000 services: status --json has all of them (the reply is far over one 64 KiB message)
    and answers within 100 ms (the median of 10 calls, process start included)."""
    n = 1000
    services = {"s%04d" % i: {"command": "exec sleep 1000", "auto_restart": False}
                for i in range(n)}
    agent = Agent({"services": services}, "svc1000")
    try:
        agent.start()
        deadline = time.monotonic() + 240
        while True:
            agent.read_new()
            started = sum(1 for e in agent.events if e["type"] == "service_start")
            if started >= n:
                break
            assert time.monotonic() < deadline, "only %d services started" % started
            agent.ino.wait(min(1.0, deadline - time.monotonic()))
        times = []
        r = run_as(["status", "--json", "-c", agent.config_path])
        print("status --json with %d services: %d bytes" % (n, len(r.stdout)))
        for _ in range(10):
            t0 = time.monotonic()
            st = status_json(agent)
            times.append(time.monotonic() - t0)
            assert len(st["services"]) == n, len(st["services"])
            assert all(v["state"] == "running" for v in st["services"].values())
        med = statistics.median(times)
        print("status --json with %d services: median %.1f ms, worst %.1f ms"
              % (n, med * 1000, max(times) * 1000))
        assert med < STATUS_BUDGET_S, "status took %.0f ms (median), budget %.0f ms" % (
            med * 1000, STATUS_BUDGET_S * 1000)
        assert agent.stop(timeout=240) == 0
    finally:
        agent.close()


if __name__ == "__main__":
    run_tests([test_status_with_1000_services])
