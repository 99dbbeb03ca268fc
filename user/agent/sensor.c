// SPDX-License-Identifier: MIT
/* The kernel sensor: owns the zombie, ports and cause BPF objects, their links, the shared ring
 * buffer and the listeners map pin. Lifecycle as libbpf-bootstrap: open, load, pin, attach, ring buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/ports.h"
#include "agent/sensor.h"
#include "lib/util.h"
#include "zombie.skel.h"
#include "ports.skel.h"
#include "cause.skel.h"

#define TRACEFS_MAGIC_ 0x74726163

struct sensor {
	struct zombie_bpf *zombie;
	struct ports_bpf *ports;
	struct cause_bpf *cause; /* NULL: exit causes are not recorded (said on stderr) */
	struct ring_buffer *rb;
	struct loop *loop;
	struct sensor_opts o;
	char pin_path[256];
	uint64_t lost_seen;
};

static int verbosity;

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && verbosity < 2)
		return 0;
	if (level == LIBBPF_INFO && verbosity < 1)
		return 0;
	return vfprintf(stderr, fmt, args);
}

void sensor_set_verbose(int verbose)
{
	verbosity = verbose;
	libbpf_set_print(print_libbpf);
}

static bool is_fs(const char *path, long magic)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && sf.f_type == magic;
}

static void note(char *buf, size_t len, const char *what)
{
	size_t n = strlen(buf);

	snprintf(buf + n, len - n, "%s%s", n ? "," : "", what);
}

int sensor_ensure_mounts(char *mounted, size_t len, char *err, size_t errlen)
{
	if (mounted && len)
		mounted[0] = 0;
	if (!is_fs("/sys/kernel/tracing", TRACEFS_MAGIC_)) {
		if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL)) {
			snprintf(err, errlen,
				 "cannot mount tracefs at /sys/kernel/tracing: %s (the bind/listen "
				 "probes need it; run as root)",
				 strerror(errno));
			return -errno;
		}
		note(mounted, len, "tracefs");
	}
	if (!is_fs(REV_PIN_ROOT, REV_BPF_FS_MAGIC)) {
		mkdir(REV_PIN_ROOT, 0700);
		if (mount("bpf", REV_PIN_ROOT, "bpf", 0, "mode=0700")) {
			snprintf(err, errlen,
				 "cannot mount bpffs at %s: %s (the listeners map is pinned there; "
				 "run as root)",
				 REV_PIN_ROOT, strerror(errno));
			return -errno;
		}
		note(mounted, len, "bpffs");
	}
	return 0;
}

static uint64_t dropped(const struct sensor *s)
{
	/* Read through the skeletons' mmapped .bss: no syscall per wake-up. */
	return __atomic_load_n(&s->zombie->bss->rev_drops, __ATOMIC_RELAXED) +
	       __atomic_load_n(&s->ports->bss->rev_drops, __ATOMIC_RELAXED);
}

static int on_ring_record(void *ctx, void *data, size_t len)
{
	struct sensor *s = ctx;

	s->o.on_record(s->o.ctx, data, len);
	return 0;
}

static void on_ring_ready(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct sensor *s = ctx;
	uint64_t lost;

	(void)l;
	(void)fd;
	(void)events;
	ring_buffer__consume(s->rb);
	lost = dropped(s);
	if (lost > s->lost_seen) {
		if (s->o.on_lost)
			s->o.on_lost(s->o.ctx, lost - s->lost_seen);
		s->lost_seen = lost;
	}
}

static int fail(char *err, size_t errlen, const char *what, int rc)
{
	const char *hint = rc == -EPERM || rc == -EACCES
				   ? "run as root (needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"
				   : "run with -v for libbpf's messages";

	snprintf(err, errlen, "failed to %s: %s (%s)", what, strerror(-rc), hint);
	errno = -rc;
	return rc;
}

/* Exit causes are an addition: without them (an older kernel, REVENANT_NO_EXIT_CAUSE=1 to measure
 * their cost) service_exit has killed_by null and oom false, and the agent runs on. */
static void start_cause(struct sensor *s)
{
	const char *off = getenv("REVENANT_NO_EXIT_CAUSE");
	int rc;

	if (off && !strcmp(off, "1")) {
		fprintf(stderr, "revenant: REVENANT_NO_EXIT_CAUSE=1: exit causes (killed_by, oom) are "
				"not recorded\n");
		return;
	}
	s->cause = cause_bpf__open();
	rc = s->cause ? cause_bpf__load(s->cause) : -errno;
	if (rc && s->cause) {
		/* mark_victim took an int pid before 6.8: keep the signals, lose the OOM mark. */
		cause_bpf__destroy(s->cause);
		s->cause = cause_bpf__open();
		if (s->cause)
			bpf_program__set_autoload(s->cause->progs.on_oom_victim, false);
		rc = s->cause ? cause_bpf__load(s->cause) : -errno;
		if (!rc)
			fprintf(stderr, "revenant: warning: cannot load the mark_victim probe: OOM "
					"kills are not marked (oom is always false)\n");
	}
	if (!rc)
		rc = cause_bpf__attach(s->cause);
	if (rc) {
		fprintf(stderr,
			"revenant: warning: cannot load the exit-cause probes (signal_generate): %s; "
			"service_exit has killed_by null (run with -v for libbpf's messages)\n",
			strerror(-rc));
		cause_bpf__destroy(s->cause);
		s->cause = NULL;
	}
}

struct sensor *sensor_start(struct loop *l, const struct sensor_opts *o, char *mounted,
			    size_t mounted_len, char *err, size_t errlen)
{
	struct sensor *s = calloc(1, sizeof(*s));
	int rc;

	if (!s) {
		fail(err, errlen, "allocate the sensor", -ENOMEM);
		return NULL;
	}
	s->loop = l;
	s->o = *o;
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		errno = ENOENT;
		snprintf(err, errlen,
			 "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): revenant needs a "
			 "kernel built with CONFIG_DEBUG_INFO_BTF=y");
		goto fail;
	}
	rc = sensor_ensure_mounts(mounted, mounted_len, err, errlen);
	if (rc)
		goto fail_errno;

	s->zombie = zombie_bpf__open();
	if (!s->zombie) {
		fail(err, errlen, "open the zombie BPF object", -errno);
		goto fail;
	}
	rc = zombie_bpf__load(s->zombie);
	if (rc) {
		fail(err, errlen, "load the zombie BPF programs", rc);
		goto fail;
	}
	s->ports = ports_bpf__open();
	if (!s->ports) {
		fail(err, errlen, "open the ports BPF object", -errno);
		goto fail;
	}
	/* One ring buffer and one consumer for both objects, so records stay in kernel order. */
	rc = bpf_map__reuse_fd(s->ports->maps.events, bpf_map__fd(s->zombie->maps.events));
	if (!rc)
		rc = ports_bpf__load(s->ports);
	if (rc) {
		fail(err, errlen, "load the ports BPF programs", rc);
		goto fail;
	}

	rc = mkdir_p(o->pin_dir, 0700);
	snprintf(s->pin_path, sizeof(s->pin_path), "%s/%s", o->pin_dir, REV_LISTENERS_PIN);
	unlink(s->pin_path); /* a pin left by a crashed agent describes a past nobody updates */
	if (!rc)
		rc = bpf_map__pin(s->ports->maps.listeners, s->pin_path);
	if (rc) {
		fail(err, errlen, "pin the listeners map", rc);
		snprintf(err + strlen(err), errlen - strlen(err), " at %s", s->pin_path);
		s->pin_path[0] = 0;
		goto fail;
	}

	rc = zombie_bpf__attach(s->zombie);
	if (rc) {
		fail(err, errlen, "attach the process exit/free tracepoints", rc);
		goto fail;
	}
	rc = ports_bpf__attach(s->ports);
	if (rc) {
		fail(err, errlen, "attach the bind/listen/inet_sock_set_state probes", rc);
		goto fail;
	}

	start_cause(s);

	s->rb = ring_buffer__new(bpf_map__fd(s->zombie->maps.events), on_ring_record, s, NULL);
	if (!s->rb) {
		fail(err, errlen, "create the ring buffer", -errno);
		goto fail;
	}
	rc = loop_add_fd(l, ring_buffer__epoll_fd(s->rb), EPOLLIN, on_ring_ready, s);
	if (rc) {
		fail(err, errlen, "watch the ring buffer", rc);
		goto fail;
	}
	return s;

fail_errno:
	errno = -rc;
fail:
	rc = errno;
	sensor_stop(s);
	errno = rc;
	return NULL;
}

int sensor_listeners_fd(const struct sensor *s)
{
	return bpf_map__fd(s->ports->maps.listeners);
}

int sensor_tree_fd(const struct sensor *s)
{
	return bpf_map__fd(s->ports->maps.service_tree);
}

int sensor_causes_fd(const struct sensor *s)
{
	return s->cause ? bpf_map__fd(s->cause->maps.causes) : -1;
}

int sensor_owners_fd(const struct sensor *s)
{
	return bpf_map__fd(s->ports->maps.owners);
}

void sensor_stop(struct sensor *s)
{
	if (!s)
		return;
	if (s->rb) {
		/* Deliver what the kernel already queued, then stop watching. */
		ring_buffer__consume(s->rb);
		loop_del_fd(s->loop, ring_buffer__epoll_fd(s->rb));
		ring_buffer__free(s->rb);
	}
	if (s->pin_path[0]) {
		unlink(s->pin_path);
		rmdir(s->o.pin_dir); /* only when empty: someone else's pins stay */
	}
	cause_bpf__destroy(s->cause);
	ports_bpf__destroy(s->ports);
	zombie_bpf__destroy(s->zombie);
	free(s);
}
