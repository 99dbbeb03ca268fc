"""`cmake --install` as a packager and a user run it (DESTDIR, --prefix), the host config it
installs, and the man pages it ships: rendered with `man -l`, and checked against the binary's
own --help (every command and option) and the config parser's key tables (every key)."""
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile

from harness import BIN, SRC, run_tests

BUILD = os.path.dirname(os.path.abspath(BIN))
RO_INSTALL = os.path.join(SRC, "tests", "integration", "ro_host_install")


def install(*args, env=None):
    r = subprocess.run([RO_INSTALL, BUILD, *args], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, "cmake --install %s failed:\n%s%s" % (args, r.stdout, r.stderr)
    return r


def unit_dir():
    r = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "/usr/lib/systemd/system"


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def test_destdir_package_layout():
    """DESTDIR + --prefix /usr (what the package does): everything lands under DESTDIR, in the
    places Debian and systemd look; the host config is what the issue asks for and the installed
    binary accepts it."""
    dest = tempfile.mkdtemp(prefix="revenant-destdir-")
    try:
        install("--prefix", "/usr", env=dict(os.environ, DESTDIR=dest))
        want = {
            "usr/bin/revenant",
            "etc/revenant/revenant.json",
            unit_dir().lstrip("/") + "/revenant.service",
            "usr/share/man/man8/revenant.8.gz",
            "usr/share/man/man5/revenant.json.5.gz",
            "usr/share/bash-completion/completions/revenant",
            "usr/share/revenant/prometheus/revenant.rules.yml",
            "usr/share/revenant/kubernetes/daemonset.yaml",
            "usr/share/doc/revenant/copyright",
            "usr/share/doc/revenant/changelog.gz",
        }
        assert files_under(dest) == want, files_under(dest) ^ want
        cfg = json.load(open(os.path.join(dest, "etc/revenant/revenant.json")))
        assert cfg["services"] == {}, cfg
        assert cfg["monitoring"]["enabled"] is True, cfg
        assert cfg["log"]["path"].startswith("/var/log/revenant/"), cfg
        assert cfg["control"]["socket"].startswith("/run/revenant/"), cfg
        unit = open(os.path.join(dest, unit_dir().lstrip("/"), "revenant.service")).read()
        assert "ExecStart=/usr/bin/revenant run -c /etc/revenant/revenant.json\n" in unit, unit
        revenant = os.path.join(dest, "usr/bin/revenant")
        assert os.access(revenant, os.X_OK)
        r = subprocess.run([revenant, "verify", "-c", os.path.join(dest, "etc/revenant",
                                                                   "revenant.json")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        version = subprocess.run([revenant, "--version"], capture_output=True,
                                 text=True).stdout.split()[1]
        changelog = gzip.open(os.path.join(dest, "usr/share/doc/revenant/changelog.gz")).read()
        assert changelog.decode().startswith("revenant (%s) " % version), changelog[:80]
    finally:
        shutil.rmtree(dest, True)


def test_prefix_keeps_everything_inside():
    """--prefix elsewhere (no DESTDIR): every installed file is under the prefix, the config
    in <prefix>/etc, and the unit points at both."""
    prefix = tempfile.mkdtemp(prefix="revenant-prefix-")
    try:
        install("--prefix", prefix)
        manifest = open(os.path.join(BUILD, "install_manifest.txt")).read().split()
        assert manifest and all(p.startswith(prefix + "/") for p in manifest), manifest
        assert os.path.exists(os.path.join(prefix, "etc/revenant/revenant.json"))
        unit = open(os.path.join(prefix, "lib/systemd/system/revenant.service")).read()
        assert ("ExecStart=%s/bin/revenant run -c %s/etc/revenant/revenant.json\n" %
                (prefix, prefix)) in unit, unit
        assert os.path.exists(os.path.join(prefix, "share/bash-completion/completions/revenant"))
    finally:
        shutil.rmtree(prefix, True)


def render(page):
    """The man page as `man -l` renders it, wide, without hyphenation or justification."""
    path = os.path.join(BUILD, "man", page + ".gz")
    assert os.path.exists(path), "%s not built (is scdoc installed?)" % path
    env = dict(os.environ, MANWIDTH="200", LANG="C.UTF-8", MAN_KEEP_FORMATTING="")
    r = subprocess.run(["man", "--nh", "--nj", "-l", path], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    assert "\b" not in r.stdout
    return r.stdout


def sections(text):
    """{SECTION NAME: body} of a rendered page (headings start at column 0)."""
    out, name = {}, None
    for line in text.split("\n"):
        if re.match(r"^[A-Z][A-Z ]+$", line):
            name = line.strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def test_revenant_8_covers_the_binary():
    """revenant(8) has every command `revenant --help` lists, every option each command's --help
    shows (in the command's entry or COMMON OPTIONS), and every exit code."""
    text = render("revenant.8")
    sec = sections(text)
    for s in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "COMMON OPTIONS", "EXIT STATUS",
              "FILES", "SEE ALSO"):
        assert s in sec, (s, list(sec))
    top = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    commands = re.findall(r"^  ([a-z][a-z-]+) ", top.split("commands:")[1], re.M)
    assert len(commands) >= 11, commands
    # Split COMMANDS into entries: an entry starts with the command name at the entry indent.
    entries, cur = {}, None
    for line in sec["COMMANDS"].split("\n"):
        m = re.match(r"^       ([a-z][a-z-]+)( |$)", line)
        if m and m.group(1) in commands:
            cur = m.group(1)
            entries.setdefault(cur, "")
        if cur:
            entries[cur] += line + "\n"
    missing = [c for c in commands if c not in entries]
    assert not missing, "commands missing from revenant(8): %s" % missing
    for c in commands:
        helptext = subprocess.run([BIN, c, "--help"], capture_output=True, text=True).stdout
        opts = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z-]*)", helptext))
        undocumented = [o for o in sorted(opts)
                        if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), entries[c])
                        and not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o),
                                          sec["COMMON OPTIONS"])]
        assert not undocumented, "revenant %s: %s not in revenant(8)" % (c, undocumented)
    for flag in ("--scan", "--version", "--help"):
        assert flag in text, flag
    codes = re.findall(r"^       ([0-9])$", sec["EXIT STATUS"], re.M)
    assert codes == ["0", "1", "2", "3", "4"], codes


def config_keys():
    """Every key path the config parser accepts, from its key tables in config.c."""
    src = open(os.path.join(SRC, "user", "lib", "config.c")).read()
    tables = dict(re.findall(r"static const char \*const (\w+)_keys\[\] = \{(.*?)\};", src,
                             re.S))
    prefix = {"top": "", "mon": "monitoring.", "cr": "conflict_resolution.", "log": "log.",
              "control": "control.", "metrics": "metrics.", "service": "services.NAME.",
              "health": "services.NAME.health."}
    assert set(tables) == set(prefix), "new key table in config.c: %s" % (set(tables) ^
                                                                           set(prefix))
    keys = []
    for t, body in tables.items():
        keys += [prefix[t] + k for k in re.findall(r'"([a-z_]+)"', body)]
    return keys


def test_revenant_json_5_covers_the_schema():
    """revenant.json(5) documents every key the parser accepts, by its full path."""
    text = render("revenant.json.5")
    keys = config_keys()
    assert len(keys) >= 35, keys
    top_level = {"services", "monitoring", "conflict_resolution", "log", "control", "metrics"}
    missing = [k for k in keys if k not in top_level and
               not re.search(r"^       %s \(" % re.escape(k), text, re.M)]
    assert not missing, "keys missing from revenant.json(5): %s" % missing
    for k in top_level:
        assert re.search(r"(?<![\w.])%s(?=[. ])" % k, text), k


if __name__ == "__main__":
    run_tests([test_destdir_package_layout, test_prefix_keeps_everything_inside,
               test_revenant_8_covers_the_binary, test_revenant_json_5_covers_the_schema])
