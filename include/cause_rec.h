/* SPDX-License-Identifier: MIT */
/* Records of bpf/cause.bpf.c: why a service's main process died, kept in the kernel per pid from
 * the moment a fatal signal is sent (or the OOM killer picks it) until the agent reaps it. */
#ifndef REVENANT_CAUSE_REC_H
#define REVENANT_CAUSE_REC_H

#include "event.h"

/* Main processes watched at once: one per running service (and per restart in flight). */
#define REV_MAX_CAUSES 16384

/* Signals whose default action does not end the process (CHLD, CONT, STOP, TSTP, TTIN, TTOU,
 * URG, WINCH): never the cause of a death, and SIGCHLD is the one an exit storm sends. */
#define REV_SIG_NONFATAL_MASK                                                                      \
	((1u << 17) | (1u << 18) | (1u << 19) | (1u << 20) | (1u << 21) | (1u << 22) |             \
	 (1u << 23) | (1u << 28))

#define REV_SI_USER   0
#define REV_SI_QUEUE  (-1)
#define REV_SI_TKILL  (-6)
#define REV_SI_KERNEL 0x80

/* The value of the causes map, keyed by the watched process's pid (tgid). The agent inserts a
 * zeroed one when it starts the process; the kernel fills it; the agent reads and deletes it when
 * it reaps the process, so the cause never depends on the order of the ring buffer and SIGCHLD. */
struct cause_val {
	__u64 ts_ns;	  /* CLOCK_MONOTONIC when the signal was sent; 0: none recorded */
	__u32 sender_pid; /* tgid of the sender (kernel signals: the task the kernel ran for) */
	__u32 sender_uid; /* its real uid */
	__s32 si_code;	  /* SI_USER, SI_TKILL, SI_KERNEL, a fault code, ... */
	__u32 sig;	  /* the last fatal signal sent; 0: none */
	__u8 kernel;	  /* sent by the kernel itself (OOM killer, a fault, a timer), not kill() */
	__u8 oom;	  /* the OOM killer chose this process (mark_victim) */
	__u8 pad[6];
	char comm[REV_COMM_LEN]; /* the sender's comm */
};
_Static_assert(sizeof(struct cause_val) == 48, "cause_val layout");

#endif
