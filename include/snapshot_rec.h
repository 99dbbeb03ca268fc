/* SPDX-License-Identifier: MIT */
/* Rows written by the BPF iterators of bpf/snapshot.bpf.c: one per inet socket held by a task
 * (iter/task_file), one per socket in the tables (iter/tcp, iter/udp) and one per zombie (iter/task). */
#ifndef REVENANT_SNAPSHOT_REC_H
#define REVENANT_SNAPSHOT_REC_H

#include "event.h"

/* Iterator links the agent pins in its pin directory, so one-shot callers skip loading BPF. */
#define REV_SOCKETS_PIN "iter_sockets"
#define REV_TCP_PIN "iter_tcp"
#define REV_UDP_PIN "iter_udp"
#define REV_ZOMBIES_PIN "iter_zombies"

enum rev_snap_kind {
	REV_SNAP_SOCK_FD = 1,	 /* a task holds the socket through an fd */
	REV_SNAP_SOCK_TABLE = 2, /* the socket is in a TCP/UDP table (maybe held by nobody) */
	REV_SNAP_ZOMBIE = 3,
};

struct snap_sock {
	__u32 type; /* REV_SNAP_SOCK_FD or REV_SNAP_SOCK_TABLE */
	__u32 pid;
	__u64 sk;
	__u64 ino; /* socket inode: what /proc/PID/fd and ss call socket:[ino] */
	__u8 addr[REV_ADDR_LEN];
	__u32 netns;
	__u32 uid;
	__u32 fd;
	__u16 port;
	__u8 family;
	__u8 proto;
	__u8 state; /* REV_TCP_LISTEN, REV_TCP_CLOSE...; UDP sockets report REV_TCP_CLOSE */
	__u8 v6only;
	__u8 pad[6];
	char comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct snap_sock) == 80, "snap_sock layout");

struct snap_zombie {
	__u32 type; /* REV_SNAP_ZOMBIE */
	__u32 pid;
	__u64 start_ns;
	__u64 age_ns; /* time since the zombie last ran: an estimate of time since exit */
	__u32 ppid;
	__u32 uid;
	char comm[REV_COMM_LEN];
	char parent_comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct snap_zombie) == 64, "snap_zombie layout");

#endif
