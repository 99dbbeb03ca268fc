// SPDX-License-Identifier: MIT
/* revenant: parses the command name and hands the rest of the command line to its module. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "cmd/cli.h"
#include "cmd/ctl.h"
#include "cmd/logs.h"
#include "cmd/tail.h"
#include "cmd/scan.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"run", cmd_run, "run the agent in the foreground (BPF sensor, services, event log)"},
	{"tail", cmd_tail, "read or follow the event log, across rotated gzip segments"},
	{"logs", cmd_logs, "read or follow a service's output, across rotated gzip segments"},
	{"scan", cmd_scan, "who owns which port now (also: revenant --scan)"},
	{"zombies", cmd_zombies, "the zombie processes that exist now"},
	{"status", cmd_status, "services, pids, ports, health and restarts of the running agent"},
	{"start", cmd_start, "start a service (through the agent)"},
	{"stop", cmd_stop, "stop a service, or --all (through the agent)"},
	{"restart", cmd_restart, "restart a service (through the agent)"},
	{"verify", cmd_verify, "exit 0 when no managed process runs and configured ports are free"},
	{"cleanup", cmd_cleanup, "nudge zombies' parents, stop what a dead agent left behind"},
	{"kill-port", cmd_kill_port, "stop the owner of a port (managed, or --force)"},
	{"reload", cmd_reload, "apply a changed config: start added, stop removed, restart changed"},
	{"port", cmd_port, "print a service's current port (for scripts)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: revenant COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'revenant COMMAND --help' describes a command. Exit codes: 0 ok, 1 failed,\n"
		   "2 usage or config error, 3 agent not running, 4 not permitted.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("revenant %s\n", REVENANT_VERSION);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--scan"))
		return cmd_scan(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	cli_err("unknown command '%s'", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
