// SPDX-License-Identifier: MIT
/* `revenant run`: owns the agent's lifetime. Loads the config, opens the event log, starts the
 * sensor, seeds listeners and zombies from a snapshot, then turns kernel records into events. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "cmd/cli.h"
#include "agent/control.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "agent/metrics.h"
#include "lib/ports.h"
#include "agent/sensor.h"
#include "lib/snapshot.h"
#include "lib/state.h"
#include "agent/supervisor.h"
#include "lib/util.h"
#include "agent/web.h"
#include "agent/zombie.h"

/* sched_process_free runs an RCU grace period after the reap: a reap record this much later than
 * the deadline still counts as reaped in time. */
#define REAP_SLACK_NS (50ull * 1000000ull)
#define ZOMBIE_RECHECKS 5
#define PF_EXITING_FLAG 0x4
#define OWNER_SNAP_TTL_NS (250ull * 1000000ull)
#define ZOMBIE_TABLE_MAX (1u << 18) /* exited, unreaped processes tracked at once: ~40 MiB at worst */

struct agent {
	struct rev_config cfg;
	struct loop *loop;
	struct evlog *log;
	struct sensor *sensor;
	struct snap_pins *pins;
	struct supervisor *sup;
	struct control *ctl;
	struct metrics *metrics;
	struct web *web;
	uint32_t host_netns;
	bool stopping;
	char pin_dir[256];
	struct ztrack *zt;
	struct loop_timer ztimer;
	int sigfd;
	int lockfd;
	int verbose;
	const char *stop_reason;
	uint64_t ztable_full; /* exits not tracked because the table was full */
	/* The last fd snapshot taken to name a collision's owner: a burst of collisions (a crash
	 * loop on a taken UDP port) shares one walk instead of stalling the loop with many. */
	struct snap owner_snap;
	uint64_t owner_snap_ns;
};

static void arm_zombie_timer(struct agent *a)
{
	uint64_t d = ztrack_next_deadline(a->zt);

	if (d)
		loop_timer_at(a->loop, &a->ztimer, d);
	else
		loop_timer_cancel(a->loop, &a->ztimer);
}

/* act: apply the service's zombie_policy. Not when the parent had its chance (a nudge) or has
 * already reaped it (found late, at the reap). */
static void emit_zombie(struct agent *a, struct zrec *z, uint64_t now, bool act)
{
	const char *service = NULL, *action;
	cJSON *e;

	if (!act) {
		action = "report";
		service = sup_service_of(a->sup, z->ppid);
	} else {
		action = sup_on_zombie(a->sup, z, &service);
	}
	e = ev_new("zombie", 0);
	ev_add_num(e, "pid", z->pid);
	ev_add_num(e, "ppid", z->ppid);
	ev_add_str(e, "comm", z->comm);
	ev_add_str(e, "parent_comm", z->parent_comm);
	ev_add_num(e, "age_ms", (double)((now - z->exit_ns) / 1000000));
	ev_add_str(e, "service", service);
	ev_add_str(e, "action", action);
	if (z->seeded)
		ev_add_bool(e, "existing", true);
	evlog_emit(a->log, e);
	if (!strcmp(action, "nudge")) {
		/* Watch it once more: reaped after the nudge, or reported as persisting. */
		struct zrec again = *z;

		again.nudged = again.announced = true;
		again.deadline_ns = now + (uint64_t)a->cfg.monitoring.zombie_grace_ms * 1000000ull;
		ztrack_forget(a->zt, z->pid);
		ztrack_exit(a->zt, &again);
	}
}

/* reaped_ns: when it was reaped (a kernel timestamp, or now when we only know it is gone). */
static void emit_reaped(struct agent *a, const struct zrec *z, uint64_t reaped_ns)
{
	cJSON *e = ev_new("zombie_reaped", reaped_ns);

	ev_add_num(e, "pid", z->pid);
	ev_add_num(e, "ppid", z->ppid);
	ev_add_str(e, "comm", z->comm);
	ev_add_num(e, "age_ms", (double)((reaped_ns - z->exit_ns) / 1000000));
	ev_add_str(e, "service", sup_service_of(a->sup, z->ppid));
	evlog_emit(a->log, e);
}

/* A zombie we announced is gone but its free record has not come: the kernel frees a reaped
 * task from an RCU callback, often after the next deadline. Say so now; the late record then
 * finds nothing in the table, so there is no second zombie_reaped. */
static void announce_gone(struct agent *a, const struct zrec *z, uint64_t now)
{
	if (z->announced)
		emit_reaped(a, z, now);
}

static void on_zombie_deadline(struct loop *l, void *ctx)
{
	struct agent *a = ctx;
	uint64_t now = mono_ns();
	struct zrec z;

	(void)l;
	while (ztrack_pop_due(a->zt, now, &z)) {
		/* One read at the deadline guards against a reap record lost in an overflow. */
		char st = proc_state(z.pid);

		if (!st) {
			announce_gone(a, &z, now);
			ztrack_forget(a->zt, z.pid);
			continue;
		}
		if (st != 'Z') {
			/* Still tearing down (a large address space can outlast the grace), or the
			 * pid already reused: look again a few times before letting go. */
			ztrack_forget(a->zt, z.pid);
			/* While do_exit runs (PF_EXITING) it is on its way: that wait is not counted. */
			if ((proc_flags(z.pid) & PF_EXITING_FLAG) || z.rechecks++ < ZOMBIE_RECHECKS) {
				z.deadline_ns = now + (uint64_t)a->cfg.monitoring.zombie_grace_ms *
							      1000000ull;
				ztrack_exit(a->zt, &z);
			} else {
				announce_gone(a, &z, now);
			}
			continue;
		}
		emit_zombie(a, &z, now, !z.nudged);
	}
	arm_zombie_timer(a);
}

static void on_exit_rec(struct agent *a, const struct exit_event *r)
{
	struct zrec z = {0};
	int rc;

	z.pid = r->pid;
	z.ppid = r->ppid;
	z.uid = r->uid;
	z.start_ns = r->start_ns;
	z.exit_ns = r->ts_ns;
	memcpy(z.comm, r->comm, sizeof(z.comm));
	memcpy(z.parent_comm, r->parent_comm, sizeof(z.parent_comm));
	z.comm[sizeof(z.comm) - 1] = z.parent_comm[sizeof(z.parent_comm) - 1] = 0;
	rc = ztrack_exit(a->zt, &z);
	if (rc == -ENOSPC)
		a->ztable_full++;
	if (rc == -ENOSPC && !(a->ztable_full & (a->ztable_full - 1))) {
		/* Never silent, never a flood: said at the 1st, 2nd, 4th, 8th... exit not tracked. */
		cJSON *e = ev_new("events_lost", 0);

		ev_add_num(e, "count", (double)a->ztable_full);
		ev_add_str(e, "reason", "zombie table full: exits not watched");
		evlog_emit(a->log, e);
	}
	if (!a->ztimer.armed)
		arm_zombie_timer(a);
	metrics_set_gauge_zombies(ztrack_count(a->zt));
}

static void on_reap_rec(struct agent *a, const struct exit_event *r)
{
	struct zrec z;
	int rc = ztrack_reap(a->zt, r->pid, r->start_ns, &z);
	uint64_t grace = (uint64_t)a->cfg.monitoring.zombie_grace_ms * 1000000ull;

	if (rc == 0 && !z.announced && r->ts_ns > z.exit_ns + grace + REAP_SLACK_NS) {
		/* A zombie for longer than the grace whose deadline we had not reached yet (the
		 * agent was behind its ring buffer): say so now rather than never. */
		emit_zombie(a, &z, r->ts_ns, false);
		rc = 1;
	}
	if (rc == 1 || (rc == 0 && z.announced))
		emit_reaped(a, &z, r->ts_ns);
	metrics_set_gauge_zombies(ztrack_count(a->zt));
}

static void add_sock_fields(cJSON *e, int family, int proto, const uint8_t *addr, int port,
			    uint32_t netns)
{
	char buf[64];

	addr_format(buf, sizeof(buf), family, addr);
	ev_add_num(e, "port", port);
	ev_add_str(e, "proto", proto_name(proto));
	ev_add_str(e, "addr", buf);
	ev_add_str(e, "family", family_name(family));
	ev_add_num(e, "netns", netns);
}

/* Who holds the port a collision wanted: the listeners map first, then (UDP, or a TCP socket bound
 * but not listening) a socket snapshot. */
static void find_owner(struct agent *a, const struct port_event *r, uint32_t *pid, char *comm,
		       size_t comm_len)
{
	struct sock_ident want = {0};
	struct listener *ls;
	size_t n;
	int i;

	*pid = 0;
	comm[0] = 0;
	memcpy(want.addr, r->addr, sizeof(want.addr));
	want.netns = r->netns;
	want.port = r->port;
	want.family = r->family;
	want.proto = r->proto;
	want.v6only = r->v6only;
	if (r->proto == REV_PROTO_TCP &&
	    ports_read_map(sensor_listeners_fd(a->sensor), &ls, &n) == 0) {
		i = ports_best_listener(ls, n, &want);
		if (i >= 0) {
			*pid = ls[i].v.pid;
			snprintf(comm, comm_len, "%.*s", REV_COMM_LEN, ls[i].v.comm);
		}
		free(ls);
		if (*pid)
			return;
	}
	{
		struct snap *s = &a->owner_snap;
		char err[256];
		uint64_t now = mono_ns();
		bool fresh = a->owner_snap_ns && now - a->owner_snap_ns <= OWNER_SNAP_TTL_NS;

		i = fresh ? ports_best_snap(s->socks, s->n_socks, &want) : -1;
		/* Not in a snapshot older than the collision: the owner may be newer; look again. */
		if (i < 0 && !(fresh && r->ts_ns <= a->owner_snap_ns)) {
			snapshot_free(s);
			a->owner_snap_ns = 0;
			if (snapshot_take(s, SNAP_SOCK_FDS, a->pin_dir, err, sizeof(err)))
				return;
			a->owner_snap_ns = now;
			i = ports_best_snap(s->socks, s->n_socks, &want);
		}
		/* The loser's own socket also holds the port after a failed listen(): skip it. */
		if (i >= 0 && !(s->socks[i].pid == r->pid && r->syscall == REV_SYS_LISTEN &&
				s->socks[i].state != 10)) {
			*pid = s->socks[i].pid;
			snprintf(comm, comm_len, "%.*s", REV_COMM_LEN, s->socks[i].comm);
		}
	}
}

static void on_port_rec(struct agent *a, const struct port_event *r)
{
	char comm[REV_COMM_LEN + 1];
	cJSON *e;

	snprintf(comm, sizeof(comm), "%.*s", REV_COMM_LEN, r->comm);
	if (r->type == REV_EV_COLLISION) {
		char owner_comm[REV_COMM_LEN + 1];
		const char *service = NULL, *owner_service = NULL, *action;
		uint32_t owner;

		find_owner(a, r, &owner, owner_comm, sizeof(owner_comm));
		action = a->sup ? sup_on_port(a->sup, r, owner, &service, &owner_service) : NULL;
		e = ev_new("port_collision", r->ts_ns);
		add_sock_fields(e, r->family, r->proto, r->addr, r->port, r->netns);
		ev_add_num(e, "pid", r->pid);
		ev_add_num(e, "ppid", r->ppid);
		ev_add_str(e, "comm", comm);
		ev_add_str(e, "service", service);
		if (owner) {
			ev_add_num(e, "owner_pid", owner);
			ev_add_str(e, "owner_comm", owner_comm);
		} else {
			cJSON_AddNullToObject(e, "owner_pid");
			cJSON_AddNullToObject(e, "owner_comm");
		}
		ev_add_str(e, "owner_service", owner_service);
		ev_add_str(e, "syscall", r->syscall == REV_SYS_LISTEN ? "listen" : "bind");
		ev_add_str(e, "action", action ? action : "report");
		evlog_emit(a->log, e);
		return;
	}
	e = ev_new(r->type == REV_EV_LISTEN ? "port_listen" : "port_release", r->ts_ns);
	add_sock_fields(e, r->family, r->proto, r->addr, r->port, r->netns);
	ev_add_num(e, "pid", r->pid);
	ev_add_str(e, "comm", comm);
	ev_add_str(e, "service", sup_service_of(a->sup, r->pid));
	evlog_emit(a->log, e);
	/* After the event: a stop waiting for this release may now finish and log its own, and a
	 * starting service may be probed at once. */
	if (a->sup) {
		const char *s1, *s2;

		sup_on_port(a->sup, r, 0, &s1, &s2);
	}
}

static void on_record(void *ctx, const void *rec, size_t len)
{
	struct agent *a = ctx;
	uint32_t type;

	if (len < sizeof(type))
		return;
	memcpy(&type, rec, sizeof(type));
	switch (type) {
	case REV_EV_EXIT:
		/* monitoring.enabled false: no zombie watch; ports stay watched for supervision */
		if (len >= sizeof(struct exit_event) && a->cfg.monitoring.enabled)
			on_exit_rec(a, rec);
		break;
	case REV_EV_REAP:
		if (len >= sizeof(struct exit_event))
			on_reap_rec(a, rec);
		break;
	case REV_EV_LISTEN:
	case REV_EV_RELEASE:
	case REV_EV_COLLISION:
		if (len >= sizeof(struct port_event))
			on_port_rec(a, rec);
		break;
	}
}

static void on_lost(void *ctx, uint64_t lost)
{
	struct agent *a = ctx;
	cJSON *e = ev_new("events_lost", 0);

	ev_add_num(e, "count", (double)lost);
	evlog_emit(a->log, e);
}

static void reload(struct agent *a);

static void on_signal(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct agent *a = ctx;
	struct signalfd_siginfo si;

	(void)events;
	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			/* First signal: graceful stop of the stack; a second one: no more waiting. */
			if (!a->stop_reason)
				a->stop_reason = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT";
			if (a->sup) {
				sup_stop_all(a->sup, a->stopping);
				a->stopping = true;
			} else {
				loop_stop(l, EXIT_OK);
			}
			break;
		case SIGHUP:
			reload(a);
			break;
		case SIGCHLD: {
			/* Services are ours to account for; orphans that re-parented to us (we are a
			 * subreaper) are reaped at once so none lingers as a zombie. */
			int status;
			pid_t pid;

			while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
				const struct zrec *z;

				if (a->sup && sup_on_reaped(a->sup, pid, status))
					continue;
				/* An orphan zombie we announced, reaped by us just now: its free record
				 * may come after we have exited, so say it here. */
				z = ztrack_find(a->zt, pid);
				if (z && (z->reported || z->announced)) {
					struct zrec copy = *z;

					copy.announced = true; /* in the table and reported: it was logged */
					ztrack_forget(a->zt, pid);
					announce_gone(a, &copy, mono_ns());
				}
			}
			break;
		}
		default:
			break;
		}
	}
}

/* SIGHUP: validate the file again; what can change live (grace period) is applied, the rest is
 * reported as needing a restart. A bad file changes nothing. */
static void reload(struct agent *a)
{
	struct rev_config next;
	char err[1024];
	cJSON *e = ev_new("agent_reload", 0);

	ev_add_str(e, "config", a->cfg.path);
	if (config_load(a->cfg.path, &next, err, sizeof(err))) {
		ev_add_bool(e, "ok", false);
		ev_add_str(e, "detail", err);
		cli_err("reload: %s (keeping the running configuration)", err);
	} else {
		ev_add_bool(e, "ok", true);
		if (next.monitoring.zombie_grace_ms != a->cfg.monitoring.zombie_grace_ms) {
			a->cfg.monitoring.zombie_grace_ms = next.monitoring.zombie_grace_ms;
			ztrack_set_grace(a->zt, (uint64_t)next.monitoring.zombie_grace_ms * 1000000ull);
		}
		a->cfg.monitoring.auto_resolve_conflicts = next.monitoring.auto_resolve_conflicts;
		ev_add_str(e, "detail", "monitoring settings applied; services, log and control "
					"settings take effect at the next start of the agent");
		config_free(&next);
	}
	evlog_emit(a->log, e);
}

static void on_stack_done(void *ctx, int code)
{
	struct agent *a = ctx;

	if (code && !a->stop_reason)
		a->stop_reason = "critical service gave up";
	loop_stop(a->loop, code);
}

static void seed(struct agent *a)
{
	struct snap s;
	char err[256];
	uint64_t now = mono_ns();
	int added;

	if (snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES | SNAP_ZOMBIES, a->pin_dir, err,
			  sizeof(err))) {
		cli_err("warning: %s; listeners and zombies that predate the agent are not known", err);
		return;
	}
	added = ports_seed(sensor_listeners_fd(a->sensor), sensor_owners_fd(a->sensor), &s);
	for (size_t i = 0; i < s.n_zombies; i++) {
		const struct snap_zombie *sz = &s.zombies[i];
		struct zrec z = {0};
		uint64_t grace = (uint64_t)a->cfg.monitoring.zombie_grace_ms * 1000000ull;

		z.pid = sz->pid;
		z.ppid = sz->ppid;
		z.uid = sz->uid;
		z.start_ns = sz->start_ns;
		z.exit_ns = sz->age_ns < now ? now - sz->age_ns : 0;
		z.deadline_ns = z.exit_ns + grace > now ? z.exit_ns + grace : now;
		z.seeded = true;
		memcpy(z.comm, sz->comm, sizeof(z.comm));
		memcpy(z.parent_comm, sz->parent_comm, sizeof(z.parent_comm));
		ztrack_exit(a->zt, &z);
	}
	if (a->verbose)
		cli_err("seeded %d listeners and %zu zombies from the kernel", added, s.n_zombies);
	snapshot_free(&s);
	arm_zombie_timer(a);
}

/* One agent per control socket: the lock is the truth `scan` and a second `run` consult. */
static int take_lock(struct agent *a, char *err, size_t errlen)
{
	char path[4200];
	int rc;

	state_runtime_path(a->cfg.control.socket, REV_LOCK_FILE, path, sizeof(path));
	rc = mkdir_p_parent(path, 0700);
	if (rc) {
		snprintf(err, errlen, "cannot create the directory of %s: %s (check control.socket)",
			 path, strerror(-rc));
		return rc;
	}
	a->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (a->lockfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(a->lockfd, LOCK_EX | LOCK_NB)) {
		char pid[32] = "";
		ssize_t n = pread(a->lockfd, pid, sizeof(pid) - 1, 0);

		if (n > 0)
			pid[n] = 0;
		pid[strcspn(pid, "\n")] = 0;
		snprintf(err, errlen,
			 "another agent (pid %s) already runs for control socket %s: stop it first, "
			 "or give this one another control.socket",
			 pid[0] ? pid : "?", a->cfg.control.socket);
		return -EBUSY;
	}
	if (ftruncate(a->lockfd, 0) == 0)
		dprintf(a->lockfd, "%d\n", getpid());
	return 0;
}

/* The status page on the metrics listener; without it the agent runs on, metrics included. */
static void open_web(struct agent *a)
{
	struct web_opts wo = {.loop = a->loop,
			      .sup = a->sup,
			      .cfg = &a->cfg,
			      .log = a->log,
			      .listeners_fd = sensor_listeners_fd(a->sensor),
			      .pin_dir = a->pin_dir};
	char err[1024], warn[5000];

	a->web = web_open(metrics_httpd(a->metrics), &wo, warn, sizeof(warn), err, sizeof(err));
	if (!a->web)
		cli_err("warning: %s; no status page", err);
	else if (warn[0])
		cli_err("warning: %s", warn);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: revenant run [-c FILE] [-v]\n"
		   "\n"
		   "Run the agent in the foreground: load the BPF sensor, start the configured\n"
		   "services, watch for zombies and port collisions, react and log events.\n"
		   "SIGTERM/SIGINT stop it gracefully (exit 0); SIGHUP reloads the config.\n"
		   "\n"
		   "  -c, --config FILE  configuration (default %s, else %s)\n"
		   "  -v, --verbose      say more (twice: libbpf debug output)\n"
		   "  -h, --help         this help\n",
		   CONFIG_DEFAULT_PATH, CONFIG_FALLBACK_PATH);
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct agent a = {.sigfd = -1, .lockfd = -1};
	const char *cfg_path = NULL;
	char err[1024], mounted[64] = "";
	struct evlog_opts lo = {0};
	struct sensor_opts so = {0};
	sigset_t mask;
	int c, rc = EXIT_FAILED;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cfg_path = optarg;
			break;
		case 'v':
			a.verbose++;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("run: unexpected argument '%s'", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	rc = cli_load_config(cfg_path, &a.cfg);
	if (rc)
		return rc;
	if (!is_root()) {
		config_free(&a.cfg);
		return cli_need_root("run");
	}
	rc = EXIT_FAILED;
	sensor_set_verbose(a.verbose);
	/* Before any fd is opened: every client, probe and service holds one. */
	if (nofile_raise() < 0)
		cli_err("warning: cannot raise RLIMIT_NOFILE to its hard limit: %m");

	if (take_lock(&a, err, sizeof(err))) {
		cli_err("%s", err);
		goto out;
	}
	lo.path = a.cfg.log.path;
	lo.max_bytes = a.cfg.log.max_bytes;
	lo.keep = a.cfg.log.keep;
	lo.compress = a.cfg.log.compress;
	lo.echo = a.verbose > 0;
	a.log = evlog_open(&lo, err, sizeof(err));
	if (!a.log) {
		cli_err("%s", err);
		goto out;
	}
	a.loop = loop_new();
	a.zt = ztrack_new((uint64_t)a.cfg.monitoring.zombie_grace_ms * 1000000ull,
			  ZOMBIE_TABLE_MAX);
	if (!a.loop || !a.zt) {
		cli_err("out of memory");
		goto out;
	}
	loop_timer_init(&a.ztimer, on_zombie_deadline, &a);
	if (evlog_attach_loop(a.log, a.loop))
		cli_err("warning: cannot watch the log compressor; it is checked at each rotation");
	{
		struct stat st;

		a.host_netns = stat("/proc/self/ns/net", &st) ? 0 : (uint32_t)st.st_ino;
	}

	/* Signals become a signalfd before anything can fork, so children inherit a known mask. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	a.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a.sigfd < 0 || loop_add_fd(a.loop, a.sigfd, EPOLLIN, on_signal, &a)) {
		cli_err("cannot watch signals: %s", strerror(errno));
		goto out;
	}

	ports_pin_dir(a.cfg.control.socket, a.pin_dir, sizeof(a.pin_dir));
	so.pin_dir = a.pin_dir;
	so.on_record = on_record;
	so.on_lost = on_lost;
	so.ctx = &a;
	a.sensor = sensor_start(a.loop, &so, mounted, sizeof(mounted), err, sizeof(err));
	if (!a.sensor) {
		cli_err("%s", err);
		rc = errno == EPERM || errno == EACCES ? EXIT_NOT_PERMITTED : EXIT_FAILED;
		goto out;
	}
	if (mounted[0])
		cli_err("mounted %s (it was not mounted)", mounted);
	/* Pinned iterators let `scan`, `zombies` and our own look-ups skip loading BPF each time. */
	a.pins = snapshot_pin(a.pin_dir, err, sizeof(err));
	if (!a.pins)
		cli_err("warning: %s; scan will load its own iterators", err);

	/* Seed before announcing: a `scan` that waited for agent_start must see older listeners. */
	seed(&a);
	{
		cJSON *e = ev_new("agent_start", 0);
		cJSON *m = cJSON_AddArrayToObject(e, "mounted");
		char *save = NULL;

		ev_add_str(e, "version", REVENANT_VERSION);
		ev_add_str(e, "config", a.cfg.path);
		ev_add_num(e, "pid", getpid());
		ev_add_str(e, "pin", a.pin_dir);
		for (char *t = strtok_r(mounted, ",", &save); t; t = strtok_r(NULL, ",", &save))
			cJSON_AddItemToArray(m, cJSON_CreateString(t));
		evlog_emit(a.log, e);
	}
	{
		struct sup_hooks h = {.log = a.log,
				      .listeners_fd = sensor_listeners_fd(a.sensor),
				      .host_netns = a.host_netns,
				      .stack_done = on_stack_done,
				      .ctx = &a};

		a.sup = sup_new(a.loop, &a.cfg, &h);
		if (!a.sup) {
			cli_err("cannot set up the supervisor: %s", strerror(errno));
			goto out;
		}
		a.ctl = control_open(a.loop, a.cfg.control.socket, a.sup, err, sizeof(err));
		if (!a.ctl) {
			cli_err("%s", err);
			goto out;
		}
		if (a.cfg.metrics.listen) {
			a.metrics = metrics_open(a.loop, a.cfg.metrics.listen, err, sizeof(err));
			if (a.metrics)
				metrics_set_services(a.metrics, sup_metrics, a.sup);
			else
				cli_err("warning: %s; running without metrics", err);
			if (a.metrics)
				open_web(&a);
		}
		sup_start_all(a.sup);
	}
	if (a.verbose)
		cli_err("agent running (pid %d), events in %s", getpid(), a.cfg.log.path);

	rc = loop_run(a.loop);
	if (rc < 0) {
		cli_err("event loop failed: %s", strerror(-rc));
		a.stop_reason = "error";
		rc = EXIT_FAILED;
	}
	control_close(a.ctl);
	a.ctl = NULL;
	web_close(a.web);
	a.web = NULL;
	metrics_close(a.metrics);
	a.metrics = NULL;
	snapshot_unpin(a.pins);
	a.pins = NULL;
	sensor_stop(a.sensor); /* drains the ring buffer first: nothing queued is lost */
	a.sensor = NULL;
	{
		cJSON *e = ev_new("agent_stop", 0);

		ev_add_str(e, "reason", a.stop_reason ? a.stop_reason : "error");
		evlog_emit(a.log, e);
	}
out:
	snapshot_free(&a.owner_snap);
	web_close(a.web);
	metrics_close(a.metrics);
	control_close(a.ctl);
	sup_free(a.sup);
	a.sup = NULL;
	snapshot_unpin(a.pins);
	sensor_stop(a.sensor);
	ztrack_free(a.zt);
	if (a.sigfd >= 0)
		close(a.sigfd);
	loop_free(a.loop);
	evlog_close(a.log);
	if (a.lockfd >= 0)
		close(a.lockfd);
	config_free(&a.cfg);
	return rc;
}
