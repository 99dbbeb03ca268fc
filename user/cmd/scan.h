/* SPDX-License-Identifier: MIT */
/* `revenant scan` and `revenant zombies`: who owns which port and which zombies exist, now. Rows
 * come from the agent's pinned map, else BPF iterators, else /proc; merging them is pure. */
#ifndef REVENANT_SCAN_H
#define REVENANT_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "lib/config.h"
#include "lib/rows.h"

/* The rows, from the best source available (see the file comment). With udp false and an agent
 * running, TCP listeners come from its map alone. 0 or -errno (message printed). */
int scan_collect(const char *control_socket, bool udp, int verbose, struct scan_rows *rows);
/* The agent for this control socket holds an exclusive flock on agent.lock while it runs. */
bool scan_agent_running(const char *control_socket);
/* The control socket to use: from -c FILE, else the default config if present, else the
 * default path. *rc is EXIT_USAGE when the given config is bad. */
const char *scan_control_socket(const char *config, struct rev_config *cfg, int *rc);

int cmd_scan(int argc, char **argv);
int cmd_zombies(int argc, char **argv);

#endif
