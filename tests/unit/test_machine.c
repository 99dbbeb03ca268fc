// SPDX-License-Identifier: MIT
/* The supervisor as behaviour: services driven through their table by the inputs the agent gives
 * (start, exits, timers, control requests, collision and zombie decisions), with the mechanism
 * (fork, signals, the listeners map) replaced by fakes. Assertions are on the resulting states,
 * on what was signalled and on the events logged, in order. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/supervisor.h"
#include "lib/loop.h"
#include "lib/util.h"

#define FAKE_PID0 5000000 /* above any pid_max: no real process is ever confused with these */
#define MAX_LOG 256

struct fake {
	struct loop *loop;
	struct rev_config cfg;
	struct supervisor *sup;
	char dir[64];
	pid_t next_pid;
	/* what the supervisor did */
	struct {
		enum ev_type type;
		char service[32];
		long long a, b; /* per type: restart attempt/delay, migrated from/to, start pid/port */
		int reason;	/* restart reason, zombie action */
		char text[160]; /* give-up reason, owner_comm, killed_by.comm */
		bool known, agent, oom; /* service_exit.killed_by, oom */
	} log[MAX_LOG];
	int n_log;
	struct {
		pid_t pid;
		int sig;
		enum sig_scope scope;
	} sigs[64];
	int n_sigs;
	/* the listeners map: a squatter on each of these ports */
	int held[128];
	int n_held;
	int rest; /* processes of a service left besides its main one */
	int done_code;
	bool done;
	/* what the kernel recorded for the next reaped main process (exit_cause) */
	struct exit_cause cause;
	bool have_cause;
	int replies;
	bool last_reply_ok;
};

static struct fake F;

static void on_event(void *ctx, const struct event *e)
{
	struct fake *f = ctx;
	typeof(f->log[0]) *l = &f->log[f->n_log < MAX_LOG ? f->n_log++ : MAX_LOG - 1];

	memset(l, 0, sizeof(*l));
	l->type = e->type;
	switch (e->type) {
	case EV_SERVICE_START:
		snprintf(l->service, sizeof(l->service), "%s", e->service_start.service);
		l->a = e->service_start.pid;
		l->b = e->service_start.port;
		break;
	case EV_SERVICE_EXIT:
		snprintf(l->service, sizeof(l->service), "%s", e->service_exit.service);
		l->a = e->service_exit.code;
		l->b = e->service_exit.killed_by.pid;
		l->known = e->service_exit.killed_by.known;
		l->agent = e->service_exit.killed_by.agent;
		l->oom = e->service_exit.oom;
		snprintf(l->text, sizeof(l->text), "%s",
			 e->service_exit.killed_by.comm ? e->service_exit.killed_by.comm : "");
		break;
	case EV_SERVICE_RESTART:
		snprintf(l->service, sizeof(l->service), "%s", e->service_restart.service);
		l->a = e->service_restart.attempt;
		l->b = e->service_restart.delay_ms;
		l->reason = e->service_restart.reason;
		break;
	case EV_SERVICE_GIVE_UP:
		snprintf(l->service, sizeof(l->service), "%s", e->service_give_up.service);
		snprintf(l->text, sizeof(l->text), "%s", e->service_give_up.reason);
		break;
	case EV_PORT_MIGRATED:
		snprintf(l->service, sizeof(l->service), "%s", e->port_migrated.service);
		l->a = e->port_migrated.from;
		l->b = e->port_migrated.to;
		snprintf(l->text, sizeof(l->text), "%s",
			 e->port_migrated.owner_comm ? e->port_migrated.owner_comm : "(null)");
		break;
	default:
		break;
	}
}

static void on_done(void *ctx, int code)
{
	struct fake *f = ctx;

	f->done = true;
	f->done_code = code;
}

static int fake_spawn(void *ctx, const struct service_config *c, int port,
		      const struct svc_port *peers, size_t n_peers, struct svc_proc *out, char *warn,
		      size_t warnlen)
{
	struct fake *f = ctx;

	(void)c;
	(void)port;
	(void)peers;
	(void)n_peers;
	(void)warnlen;
	warn[0] = 0;
	out->pid = f->next_pid++;
	out->pgid = 0; /* no group: nothing real is ever signalled */
	out->pidfd = -1;
	return 0;
}

static void fake_signal(void *ctx, const struct svc_proc *p, int sig, enum sig_scope scope)
{
	struct fake *f = ctx;

	if (f->n_sigs < 64)
		f->sigs[f->n_sigs++] = (typeof(f->sigs[0])){p->pid, sig, scope};
	/* as bpf/cause records it: the agent (this process) sent it */
	f->cause = (struct exit_cause){.sig = sig, .sender_pid = getpid(), .comm = "revenant"};
	f->have_cause = true;
}

static int fake_exit_cause(void *ctx, const struct svc_proc *p, struct exit_cause *c)
{
	struct fake *f = ctx;

	(void)p;
	memset(c, 0, sizeof(*c));
	if (!f->have_cause)
		return -ENOENT;
	*c = f->cause;
	f->have_cause = false; /* taken */
	return 0;
}

static int fake_listeners(void *ctx, struct listener **ls, size_t *n)
{
	struct fake *f = ctx;

	*ls = calloc(f->n_held + 1, sizeof(**ls));
	if (!*ls)
		return -ENOMEM;
	for (int i = 0; i < f->n_held; i++) {
		struct listener *l = &(*ls)[i];

		l->k.sk = i + 1;
		l->k.port = f->held[i];
		l->k.family = REV_AF_INET;
		l->k.proto = REV_PROTO_TCP;
		l->v.pid = 4242; /* a squatter, not ours */
		l->v.confirmed = 1;
		memcpy(l->v.comm, "squatter", 9);
	}
	*n = f->n_held;
	return 0;
}

static int fake_count(void *ctx, const struct svc_proc *p)
{
	struct fake *f = ctx;

	(void)p;
	return f->rest;
}

static const struct sup_ops fake_ops = {fake_spawn,	  fake_signal, fake_count,
					fake_listeners, &F,	     fake_exit_cause};

/* The config text gets the test's own control directory (the state file goes there). */
static void start(const char *services, const char *extra)
{
	char text[8192], err[1024];
	struct sup_hooks h = {.event = on_event, .stack_done = on_done, .ctx = &F, .ops = &fake_ops};

	memset(&F, 0, sizeof(F));
	F.next_pid = FAKE_PID0;
	snprintf(F.dir, sizeof(F.dir), "/tmp/revenant-machine-XXXXXX");
	assert_non_null(mkdtemp(F.dir));
	snprintf(text, sizeof(text),
		 "{\"services\": {%s}, \"control\": {\"socket\": \"%s/control.sock\"}, "
		 "\"metrics\": {\"listen\": \"\"}%s}",
		 services, F.dir, extra ? extra : "");
	if (config_parse(text, "/tmp/revenant-machine.json", &F.cfg, err, sizeof(err)))
		fail_msg("config_parse: %s", err);
	F.loop = loop_new();
	assert_non_null(F.loop);
	F.sup = sup_new(F.loop, &F.cfg, &h);
	assert_non_null(F.sup);
}

static void finish(void)
{
	char path[REV_PATH_BUF];

	sup_free(F.sup);
	loop_free(F.loop);
	config_free(&F.cfg);
	snprintf(path, sizeof(path), "%s/state.json", F.dir);
	unlink(path);
	rmdir(F.dir);
}

static int count(enum ev_type t, const char *service)
{
	int n = 0;

	for (int i = 0; i < F.n_log; i++)
		n += F.log[i].type == t && (!service || !strcmp(F.log[i].service, service));
	return n;
}

/* Index of the k-th (0-based) event of type t for service, or -1. */
static int nth(enum ev_type t, const char *service, int k)
{
	for (int i = 0; i < F.n_log; i++)
		if (F.log[i].type == t && !strcmp(F.log[i].service, service) && k-- == 0)
			return i;
	return -1;
}

static void exit_code(const char *name, int code)
{
	pid_t pid = sup_pid_of(F.sup, name);

	assert_true(pid >= FAKE_PID0);
	assert_true(sup_on_reaped(F.sup, pid, code << 8));
}

static void on_reply(void *ctx, cJSON *resp)
{
	(void)ctx;
	F.replies++;
	F.last_reply_ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"));
	cJSON_Delete(resp);
}

static cJSON *request(const char *cmd, const char *service)
{
	cJSON *req = cJSON_CreateObject(), *resp;

	cJSON_AddStringToObject(req, "cmd", cmd);
	if (service)
		cJSON_AddStringToObject(req, "service", service);
	resp = sup_control(F.sup, req, on_reply, &F);
	cJSON_Delete(req);
	return resp;
}

#define SVC(name, more) "\"" name "\": {\"command\": \"true\"" more "}"

static void dependencies_start_first_and_stop_last(void **state)
{
	(void)state;
	start(SVC("web", ", \"depends_on\": [\"db\"]") ", " SVC("db", ""), NULL);
	sup_start_all(F.sup);
	assert_int_equal(sup_state_of(F.sup, "db"), SVC_RUNNING);
	assert_int_equal(sup_state_of(F.sup, "web"), SVC_RUNNING);
	assert_true(nth(EV_SERVICE_START, "db", 0) < nth(EV_SERVICE_START, "web", 0));

	/* shutdown: web is stopped first; db only once web is down */
	sup_shutdown(F.sup, false);
	assert_int_equal(sup_state_of(F.sup, "web"), SVC_STOPPING);
	assert_int_equal(sup_state_of(F.sup, "db"), SVC_RUNNING);
	assert_int_equal(F.n_sigs, 1);
	assert_int_equal(F.sigs[0].sig, SIGTERM);
	exit_code("web", 0);
	assert_int_equal(sup_state_of(F.sup, "web"), SVC_STOPPED);
	assert_int_equal(sup_state_of(F.sup, "db"), SVC_STOPPING);
	assert_false(F.done);
	exit_code("db", 0);
	assert_true(F.done);
	assert_int_equal(F.done_code, 0);
	finish();
}

static void crash_loop_backs_off_then_gives_up_and_fails_dependents(void **state)
{
	(void)state;
	start(SVC("db", ", \"max_restarts\": 2") ", " SVC("web", ", \"depends_on\": [\"db\"]"),
	      NULL);
	sup_start_all(F.sup);
	for (int attempt = 1; attempt <= 2; attempt++) {
		int i;

		exit_code("db", 1);
		assert_int_equal(sup_state_of(F.sup, "db"), SVC_BACKOFF);
		i = nth(EV_SERVICE_RESTART, "db", attempt - 1);
		assert_true(i >= 0);
		assert_int_equal(F.log[i].a, attempt);
		assert_int_equal(F.log[i].b, sup_restart_delay_ms(attempt, 250, 30000));
		assert_int_equal(F.log[i].reason, RESTART_EXIT);
		/* the exit is logged before the restart it caused */
		assert_true(nth(EV_SERVICE_EXIT, "db", attempt - 1) < i);
		assert_int_equal(sup_input(F.sup, "db", SE_TIMER), 0);
		assert_int_equal(sup_state_of(F.sup, "db"), SVC_RUNNING);
	}
	/* db gives up on its third exit in a row; a start of web later starts db again */
	request("stop", "web");
	exit_code("web", 0);
	exit_code("db", 1);
	assert_int_equal(sup_state_of(F.sup, "db"), SVC_FAILED);
	assert_int_equal(count(EV_SERVICE_GIVE_UP, "db"), 1);
	assert_non_null(strstr(F.log[nth(EV_SERVICE_GIVE_UP, "db", 0)].text, "max_restarts 2"));
	assert_null(request("start", "web")); /* like Requires=: starting web starts db */
	assert_int_equal(sup_state_of(F.sup, "web"), SVC_RUNNING);
	finish();
}

static void waiting_dependent_fails_with_its_dependency(void **state)
{
	int g;

	(void)state;
	start(SVC("db", ", \"port\": 30001, \"max_restarts\": 1") ", "
	      SVC("web", ", \"depends_on\": [\"db\"]"),
	      ", \"conflict_resolution\": {\"allow_port_migration\": false}");
	sup_start_all(F.sup);
	request("stop", "web");
	exit_code("web", 0);
	exit_code("db", 1); /* db crashes: back-off before its restart */
	assert_int_equal(sup_state_of(F.sup, "db"), SVC_BACKOFF);
	request("start", "web");
	assert_int_equal(sup_state_of(F.sup, "web"), SVC_WAITING);
	/* a squatter takes db's port during the back-off: db cannot start and gives up */
	F.held[F.n_held++] = 30001;
	sup_input(F.sup, "db", SE_TIMER);
	assert_int_equal(sup_state_of(F.sup, "db"), SVC_FAILED);
	assert_int_equal(sup_state_of(F.sup, "web"), SVC_FAILED);
	g = nth(EV_SERVICE_GIVE_UP, "web", 0);
	assert_true(g > nth(EV_SERVICE_GIVE_UP, "db", 0));
	assert_string_equal(F.log[g].text, "dependency db gave up");
	assert_non_null(strstr(F.log[nth(EV_SERVICE_GIVE_UP, "db", 0)].text, "4242"));
	assert_false(F.last_reply_ok); /* web's start is answered: it failed */
	finish();
}

static void control_stop_waits_for_the_exit(void **state)
{
	(void)state;
	start(SVC("a", ""), NULL);
	sup_start_all(F.sup);
	assert_null(request("stop", "a")); /* deferred */
	assert_int_equal(sup_state_of(F.sup, "a"), SVC_STOPPING);
	assert_int_equal(F.replies, 0);
	exit_code("a", 0);
	assert_int_equal(sup_state_of(F.sup, "a"), SVC_STOPPED);
	assert_int_equal(F.replies, 1);
	assert_true(F.last_reply_ok);
	/* the stop timer escalates to SIGKILL when the process ignores the stop signal */
	assert_null(request("start", "a"));
	assert_int_equal(F.replies, 2);
	request("stop", "a");
	sup_input(F.sup, "a", SE_TIMER);
	assert_int_equal(F.sigs[F.n_sigs - 1].sig, SIGKILL);
	assert_int_equal(F.sigs[F.n_sigs - 1].scope, SCOPE_ALL);
	exit_code("a", 0);
	assert_int_equal(sup_state_of(F.sup, "a"), SVC_STOPPED);
	finish();
}

static void stop_all_force_kills_at_once(void **state)
{
	cJSON *req = cJSON_CreateObject();

	(void)state;
	start(SVC("a", "") ", " SVC("b", ""), NULL);
	sup_start_all(F.sup);
	cJSON_AddStringToObject(req, "cmd", "stop_all");
	cJSON_AddBoolToObject(req, "force", true);
	assert_null(sup_control(F.sup, req, on_reply, &F));
	cJSON_Delete(req);
	/* each got its stop signal, then SIGKILL without waiting for stop_timeout_ms */
	for (const char *name = "a"; name; name = !strcmp(name, "a") ? "b" : NULL) {
		pid_t pid = sup_pid_of(F.sup, name);
		bool term = false, kill9 = false;

		for (int i = 0; i < F.n_sigs; i++) {
			term |= F.sigs[i].pid == pid && F.sigs[i].sig == SIGTERM;
			kill9 |= F.sigs[i].pid == pid && F.sigs[i].sig == SIGKILL;
		}
		assert_true(term && kill9);
	}
	exit_code("a", 0);
	assert_int_equal(F.replies, 0);
	exit_code("b", 0);
	assert_int_equal(F.replies, 1);
	assert_false(F.done); /* stop --all: the agent stays */
	finish();
}

static void zombie_policy_restarts_count_and_give_up(void **state)
{
	struct sup_zombie d;

	(void)state;
	start(SVC("leaky", ", \"zombie_policy\": \"restart_parent\", \"max_restarts\": 3"), NULL);
	sup_start_all(F.sup);
	for (int attempt = 1; attempt <= 4; attempt++) {
		pid_t parent = sup_pid_of(F.sup, "leaky");

		sup_decide_zombie(F.sup, parent, &d);
		assert_int_equal(d.action, ACT_RESTART_PARENT);
		assert_string_equal(d.service, "leaky");
		sup_apply_zombie(F.sup, &d);
		assert_int_equal(sup_state_of(F.sup, "leaky"), SVC_STOPPING);
		exit_code("leaky", 0);
		if (attempt == 4)
			break;
		/* the first restart at once, then under back-off: waits its delay */
		if (attempt > 1) {
			assert_int_equal(sup_state_of(F.sup, "leaky"), SVC_BACKOFF);
			sup_input(F.sup, "leaky", SE_TIMER);
		}
		assert_int_equal(sup_state_of(F.sup, "leaky"), SVC_RUNNING);
	}
	assert_int_equal(count(EV_SERVICE_RESTART, "leaky"), 3);
	for (int k = 0; k < 3; k++) {
		int i = nth(EV_SERVICE_RESTART, "leaky", k);

		assert_int_equal(F.log[i].reason, RESTART_ZOMBIE_POLICY);
		assert_int_equal(F.log[i].a, k + 1);
		assert_int_equal(F.log[i].b, sup_restart_delay_ms(k + 1, 250, 30000));
	}
	assert_int_equal(sup_state_of(F.sup, "leaky"), SVC_FAILED);
	assert_int_equal(count(EV_SERVICE_GIVE_UP, "leaky"), 1);
	assert_true(nth(EV_SERVICE_GIVE_UP, "leaky", 0) > nth(EV_SERVICE_RESTART, "leaky", 2));
	finish();
}

static void zombie_of_a_foreign_parent_is_reported(void **state)
{
	struct sup_zombie d;

	(void)state;
	start(SVC("a", ", \"zombie_policy\": \"nudge\""), NULL);
	sup_start_all(F.sup);
	sup_decide_zombie(F.sup, getpid(), &d);
	assert_int_equal(d.action, ACT_REPORT);
	assert_null(d.service);
	sup_decide_zombie(F.sup, sup_pid_of(F.sup, "a"), &d);
	assert_int_equal(d.action, ACT_NUDGE);
	finish();
}

static void collision_migrates_after_the_cause(void **state)
{
	struct port_event e = {.type = REV_EV_COLLISION, .port = 12001, .family = REV_AF_INET,
			       .proto = REV_PROTO_TCP};
	struct sup_collision d;
	int m, s2;

	(void)state;
	start(SVC("api", ", \"port\": 12001, \"alternative_ports\": [8000, 8001]"), NULL);
	sup_start_all(F.sup);
	F.held[F.n_held++] = 12001; /* a squatter took the port while api was down */
	F.held[F.n_held++] = 8000;
	e.pid = sup_pid_of(F.sup, "api");
	sup_decide_collision(F.sup, &e, 4242, "squatter", &d);
	assert_int_equal(d.action, ACT_MIGRATE);
	assert_int_equal(d.to, 8001);
	assert_string_equal(d.service, "api");
	assert_int_equal(count(EV_PORT_MIGRATED, NULL), 0); /* a decision has no side effects */
	assert_int_equal(F.n_sigs, 0);
	sup_apply_collision(F.sup, &d);
	m = nth(EV_PORT_MIGRATED, "api", 0);
	assert_true(m >= 0);
	assert_int_equal(F.log[m].a, 12001);
	assert_int_equal(F.log[m].b, 8001);
	assert_string_equal(F.log[m].text, "squatter");
	exit_code("api", 1);
	s2 = nth(EV_SERVICE_START, "api", 1);
	assert_true(s2 > m);
	assert_int_equal(F.log[s2].b, 8001);
	assert_int_equal(sup_state_of(F.sup, "api"), SVC_RUNNING);
	finish();
}

static void collision_on_a_foreign_port_is_only_reported(void **state)
{
	struct port_event e = {.type = REV_EV_COLLISION, .port = 9999, .family = REV_AF_INET,
			       .proto = REV_PROTO_TCP};
	struct sup_collision d;

	(void)state;
	start(SVC("api", ", \"port\": 12001, \"alternative_ports\": [8000]"), NULL);
	sup_start_all(F.sup);
	e.pid = sup_pid_of(F.sup, "api");
	sup_decide_collision(F.sup, &e, 4242, "squatter", &d);
	assert_int_equal(d.action, ACT_REPORT);
	assert_string_equal(d.service, "api");
	e.pid = getpid(); /* not one of ours */
	sup_decide_collision(F.sup, &e, 4242, "squatter", &d);
	assert_int_equal(d.action, ACT_REPORT);
	assert_null(d.service);
	finish();
}

/* More alternatives than any fixed probe array: every one is probed, none taken unseen. */
static void every_alternative_is_probed(void **state)
{
	char svc[4096];
	size_t n = 0;
	int m;

	(void)state;
	n += snprintf(svc + n, sizeof(svc) - n,
		      "\"api\": {\"command\": \"true\", \"port\": 20000, \"alternative_ports\": [");
	for (int i = 1; i <= 100; i++)
		n += snprintf(svc + n, sizeof(svc) - n, "%s%d", i > 1 ? ", " : "", 20000 + i);
	snprintf(svc + n, sizeof(svc) - n, "]}");
	start(svc, NULL);
	for (int i = 0; i <= 80; i++) /* the port and its first 80 alternatives are held */
		F.held[F.n_held++] = 20000 + i;
	sup_start_all(F.sup);
	m = nth(EV_PORT_MIGRATED, "api", 0);
	assert_true(m >= 0);
	assert_int_equal(F.log[m].b, 20081);
	assert_int_equal(F.log[nth(EV_SERVICE_START, "api", 0)].b, 20081);
	finish();
}

static void critical_give_up_takes_the_stack_down(void **state)
{
	(void)state;
	start(SVC("core", ", \"critical\": true, \"max_restarts\": 0") ", " SVC("side", ""), NULL);
	sup_start_all(F.sup);
	exit_code("core", 1);
	assert_int_equal(sup_state_of(F.sup, "core"), SVC_FAILED);
	assert_int_equal(sup_state_of(F.sup, "side"), SVC_STOPPING);
	assert_false(F.done);
	exit_code("side", 0);
	assert_true(F.done);
	assert_int_equal(F.done_code, 1);
	finish();
}

/* service_exit names who killed the service: the agent for its own stop, another process by
 * pid and comm, nobody for an exit with a code (even after a handled signal); the OOM mark only
 * with a death by signal; status shows the last exit as that event said it. */
static void exit_causes_name_the_sender(void **state)
{
	cJSON *resp, *last;
	int i;

	(void)state;
	start(SVC("a", ", \"auto_restart\": false"), NULL);
	sup_start_all(F.sup);
	resp = request("status", NULL);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "services"),
						 "a"),
		"last_exit")));
	cJSON_Delete(resp);

	/* a stop: SIGTERM from the agent, and the process dies of it */
	request("stop", "a");
	assert_true(sup_on_reaped(F.sup, sup_pid_of(F.sup, "a"), SIGTERM));
	i = nth(EV_SERVICE_EXIT, "a", 0);
	assert_true(F.log[i].known && F.log[i].agent);
	assert_int_equal(F.log[i].b, getpid());
	resp = request("status", NULL);
	last = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "services"),
						 "a"),
		"last_exit");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(last, "signal")->valuestring,
			    "SIGTERM");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(last, "killed_by"), "agent")));
	cJSON_Delete(resp);

	/* SIGKILL from someone else, by the OOM killer's hand */
	request("start", "a");
	F.cause = (struct exit_cause){
		.sig = SIGKILL, .sender_pid = 4321, .comm = "bash", .kernel = true, .oom = true};
	F.have_cause = true;
	assert_true(sup_on_reaped(F.sup, sup_pid_of(F.sup, "a"), SIGKILL));
	i = nth(EV_SERVICE_EXIT, "a", 1);
	assert_true(F.log[i].known && !F.log[i].agent && F.log[i].oom);
	assert_int_equal(F.log[i].b, 4321);
	assert_string_equal(F.log[i].text, "bash");

	/* a handled SIGTERM and a clean exit: nobody killed it */
	request("start", "a");
	F.cause = (struct exit_cause){.sig = SIGTERM, .sender_pid = 4321, .comm = "bash"};
	F.have_cause = true;
	exit_code("a", 0);
	i = nth(EV_SERVICE_EXIT, "a", 2);
	assert_false(F.log[i].known || F.log[i].oom);
	/* a signal the kernel recorded is not the one it died of: unknown, not a guess */
	request("start", "a");
	F.cause = (struct exit_cause){.sig = SIGTERM, .sender_pid = 4321, .comm = "bash"};
	F.have_cause = true;
	assert_true(sup_on_reaped(F.sup, sup_pid_of(F.sup, "a"), SIGSEGV | 0x80));
	i = nth(EV_SERVICE_EXIT, "a", 3);
	assert_false(F.log[i].known);
	finish();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dependencies_start_first_and_stop_last),
		cmocka_unit_test(crash_loop_backs_off_then_gives_up_and_fails_dependents),
		cmocka_unit_test(waiting_dependent_fails_with_its_dependency),
		cmocka_unit_test(control_stop_waits_for_the_exit),
		cmocka_unit_test(stop_all_force_kills_at_once),
		cmocka_unit_test(zombie_policy_restarts_count_and_give_up),
		cmocka_unit_test(zombie_of_a_foreign_parent_is_reported),
		cmocka_unit_test(collision_migrates_after_the_cause),
		cmocka_unit_test(collision_on_a_foreign_port_is_only_reported),
		cmocka_unit_test(every_alternative_is_probed),
		cmocka_unit_test(critical_give_up_takes_the_stack_down),
		cmocka_unit_test(exit_causes_name_the_sender),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
