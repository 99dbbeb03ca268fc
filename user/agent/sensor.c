// SPDX-License-Identifier: MIT
/* The kernel sensor: owns the zombie, ports and cause BPF objects, their links, the shared ring
 * buffer and the listeners map pin. Lifecycle as libbpf-bootstrap: open, load, pin, attach, ring
 * buffer. It chooses at load where the zombie grace runs: in the kernel (bpf_timer) or userspace. */
#include <errno.h>
#include <fcntl.h>
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
#include "lib/safefs.h"
#include "agent/sensor.h"
#include "lib/util.h"
#include "zombie_rec.h"
#include "zombie.skel.h"
#include "ports.skel.h"
#include "cause.skel.h"

#define TRACEFS_MAGIC_ 0x74726163
#define CGROUP2_MAGIC_ 0x63677270
/* Ring buffer sizes (common.bpf.h says why). */
#define RING_EVERY_EXIT (4u << 20)
#define RING_KERNEL_GRACE (512u << 10)
#define CLOCK_RETRY_MS 100

struct sensor {
	struct zombie_bpf *zombie;
	enum zgrace_mode zmode;
	struct ports_bpf *ports;
	struct bpf_link *release_link; /* cgroup/sock_release on the cgroup v2 root */
	struct loop_timer clock_retry; /* until the kernel's grace timer is set up */
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

/* REVENANT_ZOMBIE_GRACE=kernel|userspace forces a path; unset (or "auto"): the kernel's when
 * this kernel accepts bpf_timer and the task kfuncs, else userspace's. */
static int wanted_mode(enum zgrace_mode *m, bool *forced, char *err, size_t errlen)
{
	const char *v = getenv("REVENANT_ZOMBIE_GRACE");

	*m = ZGRACE_KERNEL;
	*forced = v && *v && strcmp(v, "auto");
	if (!*forced)
		return 0;
	if (!strcmp(v, "userspace"))
		*m = ZGRACE_USERSPACE;
	else if (strcmp(v, "kernel")) {
		snprintf(err, errlen,
			 "REVENANT_ZOMBIE_GRACE='%s' is not one of kernel, userspace, auto (unset it "
			 "to let the agent choose)", v);
		return -EINVAL;
	}
	return 0;
}

/* REVENANT_ZOMBIE_SLOTS=N (a power of two up to REV_ZOMBIE_SLOTS): the kernel grace uses N slots
 * only, so that the tests can fill them and reach the overflow table. */
static uint32_t slot_mask(void)
{
	const char *v = getenv("REVENANT_ZOMBIE_SLOTS");
	char *end;
	unsigned long n;

	if (!v || !*v)
		return REV_ZOMBIE_SLOTS - 1;
	n = strtoul(v, &end, 10);
	if (*end || !n || n > REV_ZOMBIE_SLOTS || (n & (n - 1))) {
		fprintf(stderr, "revenant: warning: REVENANT_ZOMBIE_SLOTS='%s' is not a power of two "
			"from 1 to %d: using %d\n", v, REV_ZOMBIE_SLOTS, REV_ZOMBIE_SLOTS);
		return REV_ZOMBIE_SLOTS - 1;
	}
	return (uint32_t)n - 1;
}

static int try_zombie(struct sensor *s, enum zgrace_mode m)
{
	struct zombie_bpf *z = zombie_bpf__open();
	bool kernel = m == ZGRACE_KERNEL;
	int rc;

	if (!z)
		return -errno;
	bpf_program__set_autoload(z->progs.on_exit, !kernel);
	bpf_program__set_autoload(z->progs.on_free, !kernel);
	bpf_program__set_autoload(z->progs.on_exit_timed, kernel);
	bpf_program__set_autoload(z->progs.on_free_timed, kernel);
	bpf_program__set_autoload(z->progs.start_clock, kernel);
	bpf_map__set_max_entries(z->maps.events, kernel ? RING_KERNEL_GRACE : RING_EVERY_EXIT);
	z->data->zombie_grace_ns = s->o.grace_ns;
	z->data->watch_exits = s->o.watch_exits;
	z->rodata->slot_mask = slot_mask();
	rc = zombie_bpf__load(z);
	if (rc) {
		zombie_bpf__destroy(z);
		return rc;
	}
	s->zombie = z;
	s->zmode = m;
	return 0;
}

static int load_zombie(struct sensor *s, char *err, size_t errlen)
{
	enum zgrace_mode m;
	bool forced;
	int rc = wanted_mode(&m, &forced, err, errlen);

	if (rc) {
		errno = -rc;
		return rc;
	}
	rc = try_zombie(s, m);
	if (rc && m == ZGRACE_KERNEL && !forced) {
		fprintf(stderr,
			"revenant: the kernel refused the zombie grace timers (%s): exits are tracked "
			"in userspace (zombie_grace \"userspace\" in agent_start)\n",
			strerror(-rc));
		rc = try_zombie(s, ZGRACE_USERSPACE);
	}
	if (rc)
		fail(err, errlen,
		     m == ZGRACE_KERNEL && forced
			     ? "load the zombie BPF programs with the kernel grace "
			       "(REVENANT_ZOMBIE_GRACE=kernel)"
			     : "load the zombie BPF programs",
		     rc);
	return rc;
}

/* Kernel grace: set up the one timer (start_clock in bpf/zombie.bpf.c says why it may take more
 * than one try); exits wait in the kernel's table until it runs. */
static void start_clock(struct loop *l, void *ctx)
{
	struct sensor *s = ctx;
	LIBBPF_OPTS(bpf_test_run_opts, o);

	if (bpf_prog_test_run_opts(bpf_program__fd(s->zombie->progs.start_clock), &o) == 0 &&
	    o.retval == 1)
		return;
	loop_timer_after_ms(l, &s->clock_retry, CLOCK_RETRY_MS);
}

/* Bound sockets (UDP, TCP not listening) may enter the map only if they leave it with the socket:
 * that takes cgroup/sock_release on the root of the cgroup v2 hierarchy, which every socket
 * belongs to whether or not anything else uses v2. Without it, `scan` walks the fd tables for
 * them, as it always did. */
static void track_binds(struct sensor *s)
{
	static const char *const roots[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
	int err = -ENOENT;

	for (size_t i = 0; i < ARRAY_SIZE(roots) && !s->release_link; i++) {
		int fd;

		if (!is_fs(roots[i], CGROUP2_MAGIC_))
			continue;
		fd = open(roots[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		s->release_link = bpf_program__attach_cgroup(s->ports->progs.on_sock_release, fd);
		err = s->release_link ? 0 : -errno;
		close(fd);
	}
	if (!s->release_link) {
		fprintf(stderr,
			"revenant: warning: cannot attach the socket release hook to a cgroup v2 root "
			"(%s): bound UDP and TCP sockets stay out of the listeners map, and scan walks "
			"the fd tables for them\n",
			err == -ENOENT ? "no cgroup2 mount at /sys/fs/cgroup[/unified]" : strerror(-err));
		return;
	}
	__atomic_store_n(&s->ports->bss->track_binds, 1, __ATOMIC_RELAXED);
	ports_write_meta(bpf_map__fd(s->ports->maps.listeners), REV_META_TRACKS_BINDS);
}

int sensor_bound_fd(const struct sensor *s)
{
	return s->release_link ? bpf_map__fd(s->ports->maps.bound_socks) : -1;
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

	rc = load_zombie(s, err, errlen);
	if (rc)
		goto fail;
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

	/* The pins decide who owns a port (and so who kill-port signals): their directory must
	 * be root's alone, never one another user made first on a bpffs they can write. */
	{
		struct sdir d;

		rc = sdir_open(&d, o->pin_dir, SDIR_CREATE, 0700, err, errlen);
		sdir_close(&d);
		if (rc) {
			errno = -rc;
			goto fail;
		}
	}
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
	track_binds(s);
	loop_timer_init(&s->clock_retry, start_clock, s);
	if (s->zmode == ZGRACE_KERNEL)
		start_clock(l, s);

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

enum zgrace_mode sensor_zombie_mode(const struct sensor *s)
{
	return s->zmode;
}

const char *zgrace_mode_name(enum zgrace_mode m)
{
	return m == ZGRACE_KERNEL ? "kernel" : "userspace";
}

void sensor_set_grace(struct sensor *s, uint64_t grace_ns)
{
	/* Read by the exit program at each exit: exits from now on get the new grace. */
	__atomic_store_n(&s->zombie->data->zombie_grace_ns, grace_ns, __ATOMIC_RELAXED);
}

void sensor_set_watch_exits(struct sensor *s, bool on)
{
	__atomic_store_n(&s->zombie->data->watch_exits, on ? 1 : 0, __ATOMIC_RELAXED);
}

uint64_t sensor_unreaped(void *ctx)
{
	const struct sensor *s = ctx;
	int64_t n = __atomic_load_n(&s->zombie->bss->rev_pending, __ATOMIC_RELAXED);
	int ncpu = libbpf_num_possible_cpus();
	int64_t *per = ncpu > 0 ? calloc(ncpu, sizeof(*per)) : NULL;
	__u32 zero = 0;

	if (per && bpf_map_lookup_elem(bpf_map__fd(s->zombie->maps.pending_count), &zero, per) == 0)
		for (int i = 0; i < ncpu; i++)
			n += per[i];
	free(per);
	return n > 0 ? (uint64_t)n : 0;
}

int sensor_watch_reaps(struct sensor *s, const struct snap_zombie *zs, size_t n)
{
	int fd = bpf_map__fd(s->zombie->maps.pending), added = 0;
	uint64_t now = mono_ns();

	if (s->zmode != ZGRACE_KERNEL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		/* Looked at by the timer's sweeps from time to time, in case the free is lost. */
		struct zombie_pending v = {.exit_ns = now, .deadline_ns = now + REPORTED_CHECK_NS,
					   .start_ns = zs[i].start_ns, .ppid = zs[i].ppid,
					   .uid = zs[i].uid, .notify = 1};
		__u32 pid = zs[i].pid;

		memcpy(v.comm, zs[i].comm, sizeof(v.comm));
		memcpy(v.parent_comm, zs[i].parent_comm, sizeof(v.parent_comm));
		/* Counted first: the free looks in the overflow table only when it holds anything. */
		__atomic_fetch_add(&s->zombie->bss->rev_overflow, 1, __ATOMIC_RELAXED);
		if (bpf_map_update_elem(fd, &pid, &v, BPF_NOEXIST) != 0) {
			__atomic_fetch_add(&s->zombie->bss->rev_overflow, -1, __ATOMIC_RELAXED);
		} else {
			__atomic_fetch_add(&s->zombie->bss->rev_pending, 1, __ATOMIC_RELAXED);
			added++;
		}
	}
	return added;
}

int sensor_listeners_fd(const struct sensor *s)
{
	return bpf_map__fd(s->ports->maps.listeners);
}

uint32_t *sensor_tree_used(struct sensor *s)
{
	return &s->ports->bss->track_tree;
}

uint32_t *sensor_owner_hints(struct sensor *s)
{
	return s->ports->bss->owner_hint;
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
	loop_timer_cancel(s->loop, &s->clock_retry);
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
	bpf_link__destroy(s->release_link);
	cause_bpf__destroy(s->cause);
	ports_bpf__destroy(s->ports);
	zombie_bpf__destroy(s->zombie);
	free(s);
}
