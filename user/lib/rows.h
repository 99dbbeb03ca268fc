/* SPDX-License-Identifier: MIT */
/* Scan rows: who holds which socket, merged from the agent's listeners map and iterator snapshots
 * into one row per socket, and the JSON of `scan --json` and `zombies --json`. Shared by those
 * commands and the agent's status page (/api/ports, /api/zombies). */
#ifndef REVENANT_ROWS_H
#define REVENANT_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#include "lib/ports.h"
#include "lib/snapshot.h"
#include "lib/state.h"

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

/* Fill row->service from the agent's runtime state file. */
void scan_attribute_services(struct scan_rows *rows, const char *control_socket);

/* Rows from an agent's listeners map (map_fd). With udp false: TCP from the map, the kernel's fd
 * tables walked (iterators pinned in pin_dir) when a listener may have several holders (its owner
 * forked, died or passed it on) or lives in another netns. With udp true and binds tracked: the
 * map alone when the kernel's count of bound UDP sockets matches it and nothing is shared or
 * elsewhere, else the table iterators attributed from the map, and the fd walk only for a socket
 * the map cannot vouch for. *walked says whether the fd tables were read. 0 or -errno with a
 * message in err. */
int scan_rows_from_map(int map_fd, const char *pin_dir, bool udp, struct scan_rows *rows,
		       bool *walked, char *err, size_t errlen);

/* The JSON array of `zombies --json`: st (may be NULL) names the service of a zombie's parent;
 * ages_known false makes age_ms null where the source had none. */
cJSON *zombies_json(const struct snap_zombie *z, size_t n, const struct rt_state *st,
		    bool ages_known);

#endif
