/* SPDX-License-Identifier: MIT */
/* Snapshots from BPF iterators, loaded for one call: inet sockets and their holders, zombies. */
#ifndef REVENANT_SNAPSHOT_H
#define REVENANT_SNAPSHOT_H

#include <stddef.h>

#include "../include/snapshot.h"

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

/* 0 or -errno with a message in err. */
int snapshot_take(struct snap *s, unsigned what, char *err, size_t errlen);
void snapshot_free(struct snap *s);

#endif
