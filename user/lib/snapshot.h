/* SPDX-License-Identifier: MIT */
/* Snapshots from BPF iterators, loaded for one call: inet sockets and their holders, zombies. */
#ifndef REVENANT_SNAPSHOT_H
#define REVENANT_SNAPSHOT_H

#include <stddef.h>

#include "snapshot_rec.h"

enum snap_what {
	SNAP_SOCK_FDS = 1 << 0,	  /* iter/task_file: sockets held through fds, every netns */
	SNAP_SOCK_TABLES = 1 << 1, /* iter/tcp + iter/udp: sockets in this netns's tables */
	SNAP_ZOMBIES = 1 << 2,	  /* iter/task */
};

struct snap {
	struct snap_sock *socks;
	size_t n_socks;
	struct snap_zombie *zombies;
	size_t n_zombies;
};

/* 0 or -errno with a message in err. With pin_dir, iterator links the agent pinned there are read
 * (no BPF load: a few ms cheaper); anything not pinned is loaded for this call. */
int snapshot_take(struct snap *s, unsigned what, const char *pin_dir, char *err, size_t errlen);
void snapshot_free(struct snap *s);

/* Append one row (the iterators' and the /proc fallback's). 0 or -ENOMEM. */
int snapshot_add_sock(struct snap *s, const struct snap_sock *r);
int snapshot_add_zombie(struct snap *s, const struct snap_zombie *z);

/* Read every byte of an iterator (a pinned link's path) into *buf. 0 or -errno. */
int snapshot_read_pinned(const char *path, char **buf, size_t *len);

/* For the agent: load the iterators once and pin their links in pin_dir. */
struct snap_pins;
struct snap_pins *snapshot_pin(const char *pin_dir, char *err, size_t errlen);
void snapshot_unpin(struct snap_pins *p);

#endif
