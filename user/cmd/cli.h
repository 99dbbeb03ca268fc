/* SPDX-License-Identifier: MIT */
/* What every subcommand shares: exit codes, option parsing helpers, error printing. */
#ifndef REVENANT_CLI_H
#define REVENANT_CLI_H

#include <stdbool.h>

#include "lib/config.h"

enum rev_exit {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_NO_AGENT = 3,
	EXIT_NOT_PERMITTED = 4,
};

/* printf to stderr prefixed "revenant: ", newline added. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Load -c FILE (or the default): on failure prints the error and returns EXIT_USAGE. */
int cli_load_config(const char *path, struct rev_config *cfg);

/* "needs root" message for cmd; returns EXIT_NOT_PERMITTED. */
int cli_need_root(const char *cmd);

#endif
