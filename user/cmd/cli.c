// SPDX-License-Identifier: MIT
/* Helpers every subcommand uses: error messages and loading the configuration. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"

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
