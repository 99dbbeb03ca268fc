// SPDX-License-Identifier: MIT
/* Helpers every subcommand uses: error messages and loading the configuration. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "lib/agentrec.h"

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("revenant: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_load_config(const char *path, struct rev_config *cfg)
{
	char err[1024];

	if (!path)
		path = config_default_path();
	if (config_load(path, cfg, err, sizeof(err))) {
		cli_err("%s", err);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int cli_need_root(const char *cmd)
{
	cli_err("%s needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run it with sudo", cmd);
	return EXIT_NOT_PERMITTED;
}

static int from_record(const struct agent_rec *r, struct rev_config *cfg, bool need_file)
{
	char err[1024];

	if (need_file) {
		if (config_load(r->config, cfg, err, sizeof(err))) {
			cli_err("%s (the config of the running agent, pid %d; give -c FILE)", err,
				r->pid);
			return EXIT_USAGE;
		}
		/* What the agent runs with, even if the file changed since. */
		free(cfg->control.socket);
		free(cfg->log.path);
	} else {
		memset(cfg, 0, sizeof(*cfg));
		cfg->path = strdup(r->config);
	}
	cfg->control.socket = strdup(r->control);
	cfg->log.path = strdup(r->log);
	if (!cfg->path || !cfg->control.socket || !cfg->log.path) {
		config_free(cfg);
		cli_err("out of memory");
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

bool cli_find_agent(struct rev_config *cfg)
{
	struct agent_rec r;

	return agentrec_find(&r) == 0 && from_record(&r, cfg, false) == EXIT_OK;
}

int cli_load_target(const char *path, struct rev_config *cfg, bool need_file, bool *from_agent)
{
	struct agent_rec r;

	*from_agent = false;
	if (path || agentrec_find(&r))
		return cli_load_config(path, cfg);
	*from_agent = true;
	return from_record(&r, cfg, need_file);
}

int cli_find_agent_or_config(const char *path, struct rev_config *cfg)
{
	bool from_agent;

	return cli_load_target(path, cfg, false, &from_agent);
}
