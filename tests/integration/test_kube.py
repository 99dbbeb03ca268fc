"""deploy/kubernetes/daemonset.yaml without a cluster: its pod template becomes a Pod and its
ConfigMap a --configmap for `podman kube play`, so the capabilities, hostPath mounts and host
network of the manifest are what podman runs. The test changes only what must be private to a
test: image tag, host paths (the run directory is mounted at the same path inside, so the host's
`revenant scan` finds the agent's lock and pins), control socket and metrics port."""
import json
import os
import random
import shutil
import subprocess
import tempfile
import urllib.request

import yaml

from harness import BIN, SRC, Agent, end, free_port, run_tests, spawn
from podmanlib import Podman

MANIFEST = os.path.join(SRC, "deploy", "kubernetes", "daemonset.yaml")
CAPS = {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_KILL"}

HOLDER = r"""
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
"""


def manifests():
    docs = [d for d in yaml.safe_load_all(open(MANIFEST)) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"}, kinds
    return kinds


def test_manifest_shape():
    """What a cluster would check first: the pieces refer to each other, the pod template has
    host PID, the capabilities, the mounts, probes and scrape annotations."""
    k = manifests()
    ns = k["Namespace"]["metadata"]["name"]
    for kind in ("ServiceAccount", "ConfigMap", "DaemonSet"):
        assert k[kind]["metadata"]["namespace"] == ns, kind
    ds = k["DaemonSet"]
    tpl = ds["spec"]["template"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()
    spec = tpl["spec"]
    assert spec["hostPID"] is True and spec["serviceAccountName"] == \
        k["ServiceAccount"]["metadata"]["name"]
    ann = tpl["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    c = spec["containers"][0]
    assert c["securityContext"].get("privileged") is False
    assert {"CAP_" + x for x in c["securityContext"]["capabilities"]["add"]} == CAPS
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/fs/bpf", "/sys/kernel/tracing", "/run/revenant", "/var/log/revenant",
            "/etc/revenant"} <= mounts, mounts
    cfg = json.loads(k["ConfigMap"]["data"]["revenant.json"])
    port = int(cfg["metrics"]["listen"].rsplit(":", 1)[1])
    assert ann["prometheus.io/port"] == str(port)
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/metrics", "port": port}, c[probe]
    # The ConfigMap's config is one the agent accepts.
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(cfg, f)
        f.flush()
        r = subprocess.run([BIN, "verify", "-c", f.name], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_kube_play_pod_template():
    p = Podman()
    metrics = free_port()
    a = Agent(name="kube")
    run_dir = os.path.join(a.dir, "run")
    os.mkdir(run_dir, 0o700)
    # The host-side config: the same control socket path as the pod's, for `revenant scan`.
    a.config["control"]["socket"] = os.path.join(run_dir, "control.sock")
    with open(a.config_path, "w") as f:
        json.dump(a.config, f)
    pod_name = "revenant-test-kube-%d" % random.randint(0, 1 << 30)
    pod_file = os.path.join(a.dir, "pod.yaml")
    holder = None
    played = False
    try:
        tag = p.image()
        k = manifests()
        cm = k["ConfigMap"]
        del cm["metadata"]["namespace"]
        cfg = json.loads(cm["data"]["revenant.json"])
        cfg["control"]["socket"] = a.config["control"]["socket"]
        cfg["metrics"]["listen"] = "127.0.0.1:%d" % metrics
        assert cfg["log"]["path"] == "/var/log/revenant/events.jsonl", cfg
        cm["data"]["revenant.json"] = json.dumps(cfg)
        tpl = k["DaemonSet"]["spec"]["template"]
        spec = tpl["spec"]
        c = spec["containers"][0]
        c["image"] = tag
        for probe in ("livenessProbe", "readinessProbe"):
            c[probe]["httpGet"]["port"] = metrics
        vols = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        vols["run"]["hostPath"]["path"] = run_dir
        mounts["run"]["mountPath"] = run_dir
        vols["log"]["hostPath"]["path"] = a.dir  # /var/log/revenant/events.jsonl = a.log_path
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod_name, "labels": tpl["metadata"]["labels"],
                            "annotations": tpl["metadata"]["annotations"]},
               "spec": spec}
        with open(pod_file, "w") as f:
            yaml.safe_dump(pod, f)
        cm_file = os.path.join(a.dir, "configmap.yaml")
        with open(cm_file, "w") as f:
            yaml.safe_dump(cm, f)

        p("kube", "play", "--build=false", "--configmap", cm_file, pod_file)
        played = True
        container = pod_name + "-revenant"
        start = a.wait_event(lambda e: e["type"] == "agent_start", timeout=60,
                             what="agent_start")
        info = json.loads(p("inspect", container).stdout)[0]
        hc = info["HostConfig"]
        assert hc["Privileged"] is False, hc["Privileged"]
        assert CAPS <= set(info["EffectiveCaps"]), info["EffectiveCaps"]
        assert hc["NetworkMode"] == "host", hc["NetworkMode"]
        dests = {m["Destination"]: m["Source"] for m in info["Mounts"]}
        for d, s in (("/sys/fs/bpf", "/sys/fs/bpf"),
                     ("/sys/kernel/tracing", "/sys/kernel/tracing"),
                     (run_dir, run_dir), ("/var/log/revenant", a.dir)):
            assert dests.get(d) == s, (d, dests)
        logs = p("logs", container).stderr + p("logs", container).stdout
        if hc["PidMode"] == "host":
            assert start["pid"] == info["State"]["Pid"], (start, info["State"]["Pid"])
            assert "not in the host's PID namespace" not in logs, logs
        else:
            # podman before 4.5 ignores hostPID in kube play (containers/podman#17168): the
            # agent runs in a pod PID namespace and says that it cannot confirm zombies.
            print("note: podman %s ran the pod with PidMode %r: hostPID not exercised here" %
                  (p("--version").stdout.split()[-1], hc["PidMode"]))
            assert "not in the host's PID namespace" in logs, logs

        # BPF works with these capabilities: a host process's port, named by the agent.
        port = free_port()
        holder = spawn(HOLDER, port)
        hpid = int(holder.info[0])
        a.wait_event(lambda e: e["type"] == "port_listen" and e["port"] == port and
                     e["pid"] == hpid and e["comm"] == "python3", what="port_listen")
        r = subprocess.run([BIN, "scan", "--json", "-v", "-c", a.config_path, str(port)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "the agent's listeners map" in r.stderr, r.stderr
        assert [(x["pid"], x["port"]) for x in json.loads(r.stdout)] == [(hpid, port)]
        # What the kubelet's probes would do (podman runs no probes without systemd).
        resp = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics, timeout=10)
        assert resp.status == 200 and b"revenant_events_total" in resp.read()

        # A pod stop is SIGTERM: the agent stops cleanly and removes its pins.
        p("pod", "stop", "--time", "30", pod_name)
        stop = a.wait_event(lambda e: e["type"] == "agent_stop", what="agent_stop")
        assert stop["reason"] == "SIGTERM", stop
        assert not os.path.exists(start["pin"]), start["pin"]
    finally:
        if holder:
            end(holder)
        if played:
            p("kube", "play", "--down", pod_file, check=False)
        p("pod", "rm", "-f", pod_name, check=False)
        a.close()
        shutil.rmtree(a.dir, True)
        p.close()


if __name__ == "__main__":
    run_tests([test_manifest_shape, test_kube_play_pod_template])
