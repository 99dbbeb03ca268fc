/* SPDX-License-Identifier: MIT */
/* Port ownership: reading the pinned listeners map, seeding it from a snapshot, and deciding which
 * socket a failed bind()/listen() collided with (Linux's address-conflict rules, v4 and v6). */
#ifndef REVENANT_PORTS_H
#define REVENANT_PORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ports_rec.h"
#include "lib/snapshot.h"

struct sock_ident {
	uint8_t addr[REV_ADDR_LEN];
	uint32_t netns;
	uint16_t port;
	uint8_t family;
	uint8_t proto;
	uint8_t v6only;
};

struct listener {
	struct listener_key k;
	struct listener_val v;
};

/* How strongly a socket that wants `want` collides with one that holds `held`: 0 not at all,
 * 1 across families (dual-stack wildcard), 2 through a wildcard address, 3 the same address. */
int ports_conflict(const struct sock_ident *held, const struct sock_ident *want);

/* Who holds an address, as Linux decides a bind() conflict. */
struct port_owner {
	pid_t pid; /* 0: a holder nobody can name (PID 1 here, or a socket no process holds) */
	char comm[REV_COMM_LEN + 1];
};

/* Who holds what `want` asks for: the listeners map `ls` first (TCP listeners, bound UDP sockets
 * when binds are tracked); where it names nobody (TCP bound but not listening, UDP when binds are
 * not tracked, an entry seeded without an owner), the snapshot `s` (may be NULL).
 * `loser` is the pid whose bind()/listen() failed (0: none): after a failed listen() its own
 * bound socket holds the address too, and is not the owner. true when something holds it. */
bool ports_owner(const struct listener *ls, size_t n, const struct snap *s,
		 const struct sock_ident *want, pid_t loser, struct port_owner *out);

/* Index of the best owner in ls for want (confirmed listeners first), or -1. */
int ports_best_listener(const struct listener *ls, size_t n, const struct sock_ident *want);
/* Index of the best holder row in a snapshot, or -1. */
int ports_best_snap(const struct snap_sock *ss, size_t n, const struct sock_ident *want);

/* Every entry of the listeners map (fd, or open the pin path when fd < 0). 0 or -errno. */
int ports_read_map(int fd, struct listener **out, size_t *n);

/* Put the TCP listeners of a snapshot into the map, never over an entry the probes made; with
 * bound_fd >= 0 (binds are tracked) also bound UDP and TCP sockets, whose keys go in bound_fd
 * for the release hook. hints (may be NULL): the probes' counters of owners by tgid, counted up
 * for each owner added. Returns how many were added. */
int ports_seed(int map_fd, int owners_fd, uint32_t *hints, int bound_fd, const struct snap *s);

/* The agent's note to readers (REV_META_* flags), written under the meta key; read back from the
 * entries of a map read (0 when absent). */
int ports_write_meta(int map_fd, uint8_t flags);
uint8_t ports_meta_flags(const struct listener *ls, size_t n);

void ports_ident_of_key(const struct listener_key *k, uint8_t v6only, struct sock_ident *id);
void ports_ident_of_snap(const struct snap_sock *s, struct sock_ident *id);

/* /sys/fs/bpf/revenant for the default control socket; a per-socket directory otherwise, so
 * agents run for tests beside the host's agent do not share pins. */
void ports_pin_dir(const char *control_socket, char *buf, size_t len);

#endif
