"""The Debian package: `cpack -G DEB` from the build dir gives revenant_<version>_<arch>.deb whose
Depends name the package of every shared library the binary needs; extracted with dpkg-deb -x,
its binary runs (--version, scan, verify -c); lintian reports no errors."""
import os
import re
import shutil
import subprocess
import tempfile

from harness import BIN, run_tests

BUILD = os.path.dirname(os.path.abspath(BIN))


def sh(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=kw.pop("timeout", 300),
                       **kw)
    assert r.returncode == 0, "%s failed (%d):\n%s%s" % (" ".join(args), r.returncode,
                                                         r.stdout, r.stderr)
    return r.stdout


def soname_packages(binary):
    """{soname: package} for the binary's NEEDED entries, from dpkg -S of where ldd found them."""
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", sh("readelf", "-d", binary))
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", sh("ldd", binary), re.M))
    out = {}
    for so in needed:
        # Merged /usr: dpkg knows the path its package shipped, /lib or /usr/lib.
        path = where[so]
        alt = path[4:] if path.startswith("/usr/") else "/usr" + path
        for p in (path, alt):
            r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            if r.returncode == 0:
                out[so] = r.stdout.split(":")[0]
                break
        assert so in out, "no package owns %s" % path
    return out


def test_deb_builds_installs_and_passes_lintian():
    out = tempfile.mkdtemp(prefix="revenant-deb-")
    try:
        sh("cpack", "-G", "DEB", "-B", out, cwd=BUILD)
        version = sh(BIN, "--version").split()[1]
        arch = sh("dpkg", "--print-architecture").strip()
        deb = os.path.join(out, "revenant_%s_%s.deb" % (version, arch))
        assert os.path.exists(deb), os.listdir(out)

        # Depends: the package of every library the binary links (dpkg-shlibdeps' versions).
        depends = sh("dpkg-deb", "-f", deb, "Depends").strip()
        dep_names = {d.split()[0] for d in depends.split(", ")}
        needed = soname_packages(BIN)
        for so, pkg in needed.items():
            assert pkg in dep_names, "%s (%s) missing from Depends: %s" % (pkg, so, depends)
        for pkg in ("libcjson1", "zlib1g", "libc6"):
            assert pkg in dep_names, depends
        # libbpf and libelf are linked statically when their archives are installed
        # (REVENANT_STATIC_DEPS): then no package of theirs may be asked for either.
        if "libbpf.so.1" not in needed:
            for pkg in ("libbpf1", "libelf1"):
                assert pkg not in dep_names, "%s is linked in, yet Depends: %s" % (pkg, depends)
        else:
            assert "libbpf1" in dep_names, depends
            # libelf.so.1 is libbpf's, not the binary's: it comes with libbpf1's own Depends.
            if "libelf.so.1" not in needed:
                assert "libelf1" in sh("dpkg-query", "-W", "-f", "${Depends}", "libbpf1")
        assert sh("dpkg-deb", "-f", deb, "Package").strip() == "revenant"
        assert "/etc/revenant/revenant.json" in sh("dpkg-deb", "-I", deb, "conffiles")

        root = os.path.join(out, "root")
        sh("dpkg-deb", "-x", deb, root)
        revenant = os.path.join(root, "usr", "bin", "revenant")
        assert sh(revenant, "--version").strip() == "revenant " + version
        # A temporary config (the packaged one points at /run and /var/log of this host).
        cfg = os.path.join(out, "revenant.json")
        with open(cfg, "w") as f:
            f.write('{"log": {"path": "%s/events.jsonl"}, "control": {"socket": '
                    '"%s/control.sock"}, "metrics": {"listen": ""}}' % (out, out))
        r = subprocess.run([revenant, "scan", "--json", "-c", cfg], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("["), r.stdout[:200] + r.stderr
        r = subprocess.run([revenant, "verify", "-c", cfg], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        # The packaged config is accepted by the packaged binary too.
        sh(revenant, "verify", "-c", os.path.join(root, "etc", "revenant", "revenant.json"))

        r = subprocess.run(["lintian", "--no-cfg", "--display-info", deb], capture_output=True,
                           text=True, timeout=600)
        tags = [l for l in r.stdout.split("\n") if re.match(r"^[EWIP]: ", l)]
        print("lintian:", *(tags or ["(no tags)"]), sep="\n  ")
        errors = [t for t in tags if t.startswith("E: ")]
        assert not errors and r.returncode == 0, r.stdout + r.stderr
    finally:
        shutil.rmtree(out, True)


if __name__ == "__main__":
    run_tests([test_deb_builds_installs_and_passes_lintian])
