/* SPDX-License-Identifier: MIT */
/* Records of bpf/ports.bpf.c: the pinned listeners map (TCP listeners; with bind tracking also
 * bound UDP and TCP sockets) and the listen/release/collision events. */
#ifndef REVENANT_PORTS_REC_H
#define REVENANT_PORTS_REC_H

#include "event.h"

#define REV_MAX_LISTENERS 65536
#define REV_MAX_OWNERS 16384
#define REV_MAX_TREE 65536 /* processes in the services' trees (no-cgroup hosts) */
/* Counters of `owners` entries by tgid modulo this (a power of two), kept beside the map: an exit
 * or fork looks up `owners` only when its counter is not 0 (a hash look-up by pid is a cache miss,
 * ~0.4 us here, on every exit of the host). */
#define REV_OWNER_HINTS 4096
#define REV_LISTENERS_PIN "listeners" /* under the pin directory, /sys/fs/bpf/revenant */


/* One entry per listening (or, with bind tracking, bound) socket: SO_REUSEPORT siblings and the
 * same port in different network namespaces are separate entries, so `sk` (the kernel address of
 * the socket) is part of the key. An entry with proto 0 is not a socket: see REV_META_*. */
struct listener_key {
	__u64 sk;
	__u8 addr[REV_ADDR_LEN];
	__u32 netns;
	__u16 port; /* host order */
	__u8 family;
	__u8 proto;
};
_Static_assert(sizeof(struct listener_key) == 32, "listener_key layout");

struct listener_val {
	__u64 ts_ns;
	__u32 pid;
	__u32 uid;
	char comm[REV_COMM_LEN];
	__u8 confirmed; /* listen() returned 0 (or seeded from a snapshot) */
	__u8 v6only;
	__u8 shared; /* its owner forked, died or closed a shared fd of it: others may hold it */
	__u8 state;  /* REV_TCP_LISTEN, or REV_TCP_CLOSE: bound (UDP, or TCP not listening) */
	__u32 ino;   /* the socket's inode (socket:[ino]; sockfs numbers are 32-bit) */
};
_Static_assert(sizeof(struct listener_val) == 40, "listener_val layout");

/* The agent's note to readers of the map, under the key with sk 0 and proto 0: v.confirmed holds
 * these flags, v.pid the agent's pid. */
#define REV_META_TRACKS_BINDS 0x1 /* every bind() since start-up is in the map until its socket
				   * is released (cgroup/sock_release): bound sockets need no walk */

struct port_event {
	__u32 type; /* REV_EV_LISTEN, REV_EV_RELEASE or REV_EV_COLLISION */
	__u32 pid;
	__u64 ts_ns;
	__u8 addr[REV_ADDR_LEN];
	__u32 netns;
	__u32 uid;
	__u32 ppid;
	__u16 port;
	__u8 family;
	__u8 proto;
	__u8 syscall; /* enum rev_syscall, for collisions */
	__u8 v6only;
	__u8 pad[6];
	char comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct port_event) == 72, "port_event layout");

#endif
