/* SPDX-License-Identifier: MIT */
/* The kernel sensor: mounts tracefs/bpffs when absent, loads and attaches bpf/zombie, bpf/ports
 * and bpf/cause, pins the listeners map, and feeds ring-buffer records to one callback from the
 * loop. */
#ifndef REVENANT_SENSOR_H
#define REVENANT_SENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"
#include "snapshot_rec.h"

typedef void (*sensor_record_cb)(void *ctx, const void *rec, size_t len);
typedef void (*sensor_lost_cb)(void *ctx, uint64_t lost);

struct sensor;

/* Where the zombie grace runs: a bpf_timer per exit in the kernel (only zombies reach
 * userspace), or userspace's deadline tracker fed every exit and reap. */
enum zgrace_mode {
	ZGRACE_KERNEL,
	ZGRACE_USERSPACE,
};

struct sensor_opts {
	const char *pin_dir; /* e.g. /sys/fs/bpf/revenant */
	uint64_t grace_ns;   /* monitoring.zombie_grace_ms */
	bool watch_exits;    /* monitoring.enabled */
	sensor_record_cb on_record;
	sensor_lost_cb on_lost; /* called after a batch when the kernel's drop count grew */
	void *ctx;
};

/* mounted: filled with "tracefs", "bpffs" for what had to be mounted (comma separated). Errors
 * return NULL with errno set and a message (what failed, why, what to do) in err. */
struct sensor *sensor_start(struct loop *l, const struct sensor_opts *o, char *mounted,
			    size_t mounted_len, char *err, size_t errlen);
int sensor_listeners_fd(const struct sensor *s);
enum zgrace_mode sensor_zombie_mode(const struct sensor *s);
const char *zgrace_mode_name(enum zgrace_mode m);
/* A new grace for exits from now on (kernel mode; userspace's tracker has its own). */
void sensor_set_grace(struct sensor *s, uint64_t grace_ns);
/* monitoring.enabled (a reload): whether exits are watched at all. */
void sensor_set_watch_exits(struct sensor *s, bool on);
/* Kernel mode (ctx: the sensor): exits the kernel watches and zombies it reported, not yet
 * reaped. */
uint64_t sensor_unreaped(void *ctx);
/* Kernel mode: have the kernel report the free of these zombies (they predate the agent, so it
 * never armed a timer for them). Returns how many were added. */
int sensor_watch_reaps(struct sensor *s, const struct snap_zombie *zs, size_t n);
int sensor_owners_fd(const struct sensor *s);
/* The map of bound sockets' keys by socket, for seeding (-1 when binds are not tracked: the
 * release hook could not be attached). */
int sensor_bound_fd(const struct sensor *s);
/* The services' process trees (tgid -> tag), for hosts without a cgroup of ours. */
int sensor_tree_fd(const struct sensor *s);
/* The ports probes' switch for the process-tree map (see procs_new). */
uint32_t *sensor_tree_used(struct sensor *s);
/* The ports probes' counters of `owners` entries by tgid (REV_OWNER_HINTS of them). */
uint32_t *sensor_owner_hints(struct sensor *s);
/* The exit causes (pid -> struct cause_val) of bpf/cause, -1 when they are not recorded. */
int sensor_causes_fd(const struct sensor *s);
void sensor_stop(struct sensor *s);

/* Mount tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf when they are not there. */
int sensor_ensure_mounts(char *mounted, size_t len, char *err, size_t errlen);

/* Route libbpf's messages to stderr: warnings always, debug only when verbose. */
void sensor_set_verbose(int verbose);

#endif
