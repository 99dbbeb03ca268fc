/* SPDX-License-Identifier: MIT */
/* The kernel sensor: mounts tracefs/bpffs when absent, loads and attaches bpf/zombie, bpf/ports
 * and bpf/cause, pins the listeners map, and feeds ring-buffer records to one callback from the
 * loop. */
#ifndef REVENANT_SENSOR_H
#define REVENANT_SENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"

typedef void (*sensor_record_cb)(void *ctx, const void *rec, size_t len);
typedef void (*sensor_lost_cb)(void *ctx, uint64_t lost);

struct sensor;

struct sensor_opts {
	const char *pin_dir; /* e.g. /sys/fs/bpf/revenant */
	sensor_record_cb on_record;
	sensor_lost_cb on_lost; /* called after a batch when the kernel's drop count grew */
	void *ctx;
};

/* mounted: filled with "tracefs", "bpffs" for what had to be mounted (comma separated). Errors
 * return NULL with errno set and a message (what failed, why, what to do) in err. */
struct sensor *sensor_start(struct loop *l, const struct sensor_opts *o, char *mounted,
			    size_t mounted_len, char *err, size_t errlen);
int sensor_listeners_fd(const struct sensor *s);
int sensor_owners_fd(const struct sensor *s);
/* The services' process trees (tgid -> tag), for hosts without a cgroup of ours. */
int sensor_tree_fd(const struct sensor *s);
/* The exit causes (pid -> struct cause_val) of bpf/cause, -1 when they are not recorded. */
int sensor_causes_fd(const struct sensor *s);
void sensor_stop(struct sensor *s);

/* Mount tracefs at /sys/kernel/tracing and bpffs at /sys/fs/bpf when they are not there. */
int sensor_ensure_mounts(char *mounted, size_t len, char *err, size_t errlen);

/* Route libbpf's messages to stderr: warnings always, debug only when verbose. */
void sensor_set_verbose(int verbose);

#endif
