/* SPDX-License-Identifier: MIT */
/* What every subcommand shares: exit codes, option parsing helpers, error printing. */
#ifndef REVENANT_CLI_H
#define REVENANT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

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

/* What a command works on: -c FILE when given; else the running agent's, found through the
 * host's agent record (its control socket and log; its config file parsed only when need_file:
 * the command uses services' settings), with *from_agent set (from_agent may be NULL); else the
 * default file. Prints the error and returns EXIT_USAGE on a bad file. */
int cli_load_target(const char *path, struct rev_config *cfg, bool need_file, bool *from_agent);
/* The running agent's control socket, log and config path into cfg (nothing parsed); false when
 * no live agent has a record. */
bool cli_find_agent(struct rev_config *cfg);
/* Writes s[0..len) with every control character (C0, DEL, C1 in UTF-8 — U+009B is a CSI) and
 * every invalid UTF-8 byte replaced by '?', tabs kept when tabs is true: names and lines come
 * from processes and from files others could write, and must not drive the terminal. */
void cli_put_clean(FILE *f, const char *s, size_t len, bool tabs);

/* "needs root" message for cmd; returns EXIT_NOT_PERMITTED. */
int cli_need_root(const char *cmd);

#endif
