"""Prometheus and revenant: the shipped alert rules pass `promtool check rules` and their unit
tests; a running agent's /metrics passes `promtool check metrics`; the real Prometheus server
(Debian's) scrapes the agent on loopback, loads the rules, and answers revenant_service_up and
revenant_zombies through its HTTP API."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from harness import SRC, ZOMBIE_PARENT, Agent, end, free_port, run_tests, spawn, tell

RULES = os.path.join(SRC, "deploy", "prometheus", "revenant.rules.yml")
RULES_TEST = os.path.join(SRC, "deploy", "prometheus", "revenant.rules.test.yml")


def sh(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)
    assert r.returncode == 0, "%s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout + r.stderr


def get(url, timeout=5):
    return urllib.request.urlopen(url, timeout=timeout).read().decode()


def test_rules():
    assert "SUCCESS: 6 rules found" in sh("promtool", "check", "rules", RULES)
    assert "SUCCESS" in sh("promtool", "test", "rules", RULES_TEST,
                           cwd=os.path.dirname(RULES_TEST))


def test_scraped_by_prometheus():
    metrics = free_port()
    a = Agent({"services": {"web": {"command": "exec sleep 600"}},
               "monitoring": {"zombie_grace_ms": 200},
               "metrics": {"listen": "127.0.0.1:%d" % metrics}}, name="prom")
    parent = prom = None
    data = tempfile.mkdtemp(prefix="revenant-prometheus-")
    try:
        a.start()
        a.wait_event(lambda e: e["type"] == "service_start", what="service_start")
        # A zombie whose parent is ours, so revenant_zombies has a series.
        parent = spawn(ZOMBIE_PARENT)
        zpid = int(tell(parent, "fork")[0])
        a.wait_event(lambda e: e["type"] == "zombie" and e["pid"] == zpid, what="zombie")
        body = get("http://127.0.0.1:%d/metrics" % metrics)
        assert 'revenant_zombies{parent_comm="python3",service=""} 1' in body, body
        assert 'revenant_events_total{type="events_lost"} 0' in body, body
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
            r.stdout + r.stderr

        web = free_port()
        conf = os.path.join(data, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: revenant\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % (RULES, metrics))
        prom = subprocess.Popen(
            ["prometheus", "--config.file=" + conf, "--storage.tsdb.path=" + data + "/tsdb",
             "--web.listen-address=127.0.0.1:%d" % web, "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "log"), "w"), cwd=data)
        api = "http://127.0.0.1:%d/api/v1/" % web

        def query(q):
            return json.loads(get(api + "query?" + urllib.parse.urlencode({"query": q})))

        # Waiting for Prometheus to scrape: poll its API (the scrape is its event, not ours).
        deadline = time.monotonic() + 60
        up = None
        while True:
            assert prom.poll() is None, open(os.path.join(data, "log")).read()
            try:
                res = query("revenant_service_up")["data"]["result"]
                up = {r["metric"]["service"]: r["value"][1] for r in res}
                if up.get("web") == "1":
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "no scrape within 60 s: %r\n%s" % (
                up, open(os.path.join(data, "log")).read())
            time.sleep(0.2)
        res = query('revenant_zombies{parent_comm="python3"}')["data"]["result"]
        assert res and res[0]["value"][1] == "1", res
        target = json.loads(get(api + "targets"))["data"]["activeTargets"][0]
        assert target["health"] == "up" and target["labels"]["job"] == "revenant", target
        groups = json.loads(get(api + "rules"))["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert {"RevenantZombiesAccumulating", "RevenantServiceDown", "RevenantEventsLost",
                "RevenantServiceGaveUp", "RevenantPortCollisions"} <= set(rules), rules
        assert all(r["health"] != "err" for r in rules.values()), rules
        tell(parent, "reap")
    finally:
        if prom:
            prom.terminate()
            prom.wait(30)
        if parent:
            end(parent)
        a.close()
        shutil.rmtree(a.dir, True)
        shutil.rmtree(data, True)


if __name__ == "__main__":
    run_tests([test_rules, test_scraped_by_prometheus])
