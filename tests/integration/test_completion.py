"""The bash completion (deploy/bash-completion/revenant) driven by bash itself: COMP_WORDS and
COMP_CWORD set as readline would, _revenant called, COMPREPLY read back. Commands, options,
option values, service names from the running agent (and from the config when the agent cannot
be asked), ports that are listening now."""
import json
import os
import pwd
import shutil
import subprocess

from harness import BIN, SRC, Agent, bin_for, end, free_port, run_tests, spawn

COMPLETION = os.path.join(SRC, "deploy", "bash-completion", "revenant")

DRIVER = r"""
source "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_revenant
printf '%s\n' "${COMPREPLY[@]}"
"""

LISTENER = r"""
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
"""


def complete(*words, user=None, binary=None):
    """What completing the last word of `revenant WORDS...` offers (a set)."""
    kw = {}
    if user is not None:
        kw = {"user": user.pw_uid, "group": user.pw_gid}
    script = COMPLETION
    if user is not None:
        # beside the shared copy of the binary: the clone may sit where only root can enter
        script = os.path.join(os.path.dirname(bin_for(user)), "revenant.bash")
        shutil.copy(COMPLETION, script)
        os.chmod(script, 0o644)
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", script,
                        binary or BIN, *words], capture_output=True, text=True, timeout=60,
                       cwd="/", **kw)
    assert r.returncode == 0, r.stderr
    return set(filter(None, r.stdout.split("\n")))


def test_commands_and_options():
    top = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    commands = {line.split()[0] for line in top.split("commands:")[1].split("\n")
                if line.startswith("  ")}
    assert complete("") == commands | {"help"}, complete("")
    assert complete("st") == {"start", "status", "stop"}
    assert complete("--") == {"--scan", "--version", "--help"}
    assert complete("scan", "--") == {"--config", "--help", "--json", "--tcp", "--udp",
                                      "--verbose"}
    assert complete("stop", "--a") == {"--all"}
    assert complete("kill-port", "--s") == {"--signal"}
    assert "--follow" in complete("tail", "-c", "x.json", "--f")


def test_option_values():
    assert complete("tail", "--type", "zo") == {"zombie", "zombie_reaped"}
    assert complete("tail", "--type", "zombie,port_c") == {"zombie,port_collision"}
    assert complete("kill-port", "--signal", "SIGK") == {"SIGKILL"}
    # -c completes files.
    assert complete("status", "-c", os.path.join(SRC, "config", "revenant.js")) == {
        os.path.join(SRC, "config", "revenant.json")}


def test_services_and_ports_from_the_agent():
    """Root asks the running agent (status --json); a user who may not finds the names in the
    config. The config gains a service after the agent started: only the config path has it."""
    port = free_port()
    a = Agent({"services": {"web": {"command": "exec sleep 600"},
                            "db-1": {"command": "exec sleep 600"}}}, name="compl")
    holder = None
    try:
        a.start()
        a.wait_event(lambda e: e["type"] == "service_start" and e["service"] == "db-1",
                     what="db-1 started")
        cfg = dict(a.config)
        cfg["services"] = dict(cfg["services"], later={"command": "true"})
        with open(a.config_path, "w") as f:
            json.dump(cfg, f)
        assert complete("start", "-c", a.config_path, "") == {"web", "db-1"}
        assert complete("restart", "--config", a.config_path, "w") == {"web"}
        nobody = pwd.getpwnam("nobody")
        assert complete("stop", "-c", a.config_path, "", user=nobody,
                        binary=bin_for(nobody)) == {"web", "db-1", "later"}
        holder = spawn(LISTENER, port)
        offered = complete("kill-port", "-c", a.config_path, str(port)[:3])
        assert str(port) in offered, offered
        assert all(p.startswith(str(port)[:3]) for p in offered), offered
        assert str(port) in complete("scan", "-c", a.config_path, "")
    finally:
        if holder:
            end(holder)
        a.close()
        shutil.rmtree(a.dir, True)


if __name__ == "__main__":
    run_tests([test_commands_and_options, test_option_values,
               test_services_and_ports_from_the_agent])
