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
#include "lib/ports.h"
#include "lib/snapshot.h"

struct scan_row {
	uint64_t sk;
	uint64_t ino;
	uint8_t addr[REV_ADDR_LEN];
	uint32_t netns;
	uint16_t port;
	uint8_t family;
	uint8_t proto;
	uint8_t state; /* TCP state number; 10 = listen */
	uint8_t v6only;
	pid_t pid; /* the owner: who called listen(), else the lowest holder; 0 = none visible */
	uint32_t uid;
	char comm[REV_COMM_LEN + 1];
	pid_t *holders; /* every process with an fd on the socket, ascending */
	size_t n_holders;
	char service[65];
};

struct scan_rows {
	struct scan_row *rows;
	size_t n;
};

/* Merge map entries (may be NULL) and snapshot rows into one row per socket, sorted by proto,
 * port, family, address. 0 or -ENOMEM. */
int scan_merge(const struct listener *ls, size_t n_ls, const struct snap_sock *ss, size_t n_ss,
	       struct scan_rows *out);
void scan_rows_free(struct scan_rows *r);

/* The full answer from the map and the table iterators alone: each table row becomes a row held
 * by its map entry's owner when the map is certain of it (an entry for the same socket, never
 * forked, passed or orphaned: not shared); *n_ls keeps only the bound TCP sockets no table lists.
 * 0, or -EAGAIN when some socket cannot be attributed so (the fd tables must be walked), or
 * -ENOMEM. ls is reordered. */
int scan_attribute(struct listener *ls, size_t *n_ls, struct snap *tables, uint32_t here);

/* Keep rows whose port is in ports (n_ports 0 keeps all) and whose proto is allowed. */
void scan_filter(struct scan_rows *r, const int *ports, size_t n_ports, bool tcp, bool udp);

/* Output: a table, or a JSON array (DESIGN.md's fields). The returned string is malloc'd. */
char *scan_table(const struct scan_rows *r, uint32_t host_netns);
char *scan_json(const struct scan_rows *r);
int scan_json_write(FILE *f, const struct scan_rows *r);

/* The rows, from the best source available (see the file comment). With udp false and an agent
 * running, TCP listeners come from its map alone. 0 or -errno (message printed). */
int scan_collect(const char *control_socket, bool udp, int verbose, struct scan_rows *rows);
/* Fill row->service from the agent's runtime state file. */
void scan_attribute_services(struct scan_rows *rows, const char *control_socket);
/* The agent for this control socket holds an exclusive flock on agent.lock while it runs. */
bool scan_agent_running(const char *control_socket);
/* The control socket to use: from -c FILE, else the default config if present, else the
 * default path. *rc is EXIT_USAGE when the given config is bad. */
const char *scan_control_socket(const char *config, struct rev_config *cfg, int *rc);

int cmd_scan(int argc, char **argv);
int cmd_zombies(int argc, char **argv);

#endif
