"""Podman for the container suites: a containers.conf of their own (runc: crun refuses this
machine's hybrid cgroups; ulimits podman can set here), and the image of the binary under test,
built once per binary (tagged by its hash) with deploy/container/build-image."""
import hashlib
import os
import shutil
import subprocess
import tempfile

from harness import BIN, SRC

CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
"""


class Podman:
    def __init__(self):
        if not shutil.which("podman") or not shutil.which("runc"):
            raise AssertionError("podman and runc are needed (scripts/dev setup all)")
        self.dir = tempfile.mkdtemp(prefix="revenant-podman-")
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            f.write(CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=conf)

    def __call__(self, *args, check=True, timeout=300, input=None):
        # From a directory of our own: kube play builds an image from ./NAME/Containerfile
        # when one is there, and the build dir has a `revenant`.
        r = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env,
                           timeout=timeout, input=input, cwd=self.dir)
        if check and r.returncode != 0:
            raise AssertionError("podman %s failed (%d):\n%s%s" % (" ".join(args),
                                                                   r.returncode, r.stdout,
                                                                   r.stderr))
        return r

    def image(self):
        """localhost/revenant:test-<hash of the binary>: built when missing; the test images of
        other binaries are removed then (unless a container still uses them)."""
        with open(BIN, "rb") as f:
            tag = "localhost/revenant:test-" + hashlib.sha256(f.read()).hexdigest()[:12]
        if self("image", "exists", tag, check=False).returncode == 0:
            return tag
        old = self("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/revenant",
                   check=False).stdout.split()
        r = subprocess.run([os.path.join(SRC, "deploy", "container", "build-image"), BIN, tag],
                           capture_output=True, text=True, env=self.env, timeout=600)
        if r.returncode != 0:
            raise AssertionError("build-image failed:\n" + r.stdout + r.stderr)
        for t in old:
            if t.startswith("localhost/revenant:test-") and t != tag:
                self("rmi", t, check=False)
        return tag

    def close(self):
        shutil.rmtree(self.dir, True)
