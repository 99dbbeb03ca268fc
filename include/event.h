/* SPDX-License-Identifier: MIT */
/* Record layout shared by every BPF program and the agent: the event types that travel through
 * the one ring buffer, and the sizes vmlinux.h does not define for us. */
#ifndef REVENANT_EVENT_H
#define REVENANT_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h> /* BPF programs get these types from vmlinux.h */
#endif

#define REV_COMM_LEN 16
#define REV_ADDR_LEN 16 /* an IPv6 address; IPv4 uses the first 4 bytes */

#define REV_AF_INET 2
#define REV_AF_INET6 10
#define REV_PROTO_TCP 6
#define REV_PROTO_UDP 17
#define REV_EADDRINUSE 98
/* TCP states as the kernel numbers them (include/net/tcp_states.h); UDP sockets report CLOSE. */
#define REV_TCP_CLOSE 7
#define REV_TCP_LISTEN 10

/* Every ring-buffer record starts with `__u32 type` so the consumer can dispatch on it. */
enum rev_event_type {
	REV_EV_EXIT = 1,	/* a thread group died; may become a zombie */
	REV_EV_REAP = 2,	/* a thread-group leader was freed (reaped) */
	REV_EV_LISTEN = 3,	/* a TCP socket entered LISTEN (confirmed by listen() returning 0) */
	REV_EV_RELEASE = 4,	/* a confirmed TCP listener left LISTEN */
	REV_EV_COLLISION = 5,	/* bind() or listen() failed with EADDRINUSE */
};

enum rev_syscall {
	REV_SYS_BIND = 1,
	REV_SYS_LISTEN = 2,
};

#endif
