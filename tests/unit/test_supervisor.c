// SPDX-License-Identifier: MIT
/* The supervisor's pure logic: the state machine table (every state x event), restart back-off,
 * port choice, dependency order and cycles, and the HTTP status line the health probe reads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lib/config.h"
#include "agent/health.h"
#include "agent/supervisor.h"

#define PATH "/tmp/x/revenant.json"

/* ---- the state machine ---- */

/* The whole table, written out: this is the documentation of what each state does with each
 * event. NULL means the event is ignored in that state. */
/* clang-format off */
static const char *const expected_action[SVC_NSTATES][SVC_NEVENTS] = {
	[SVC_STOPPED] = {
		[SE_START] = "start",
		/* a stop that restarts is complete: start again, after the restart's back-off */
		[SE_RESUME] = "resume",
	},
	[SVC_WAITING] = {
		[SE_STOP] = "cancel",
		[SE_DEPS_READY] = "try_start",
		/* what it waits for gave up: it fails too */
		[SE_DEP_FAILED] = "dep_failed",
	},
	[SVC_CLEARING] = {
		/* the leftover's stop (with its escalation) runs on; the service stays down after */
		[SE_STOP] = "clearing_stop",
		/* a start after that stop: come back up once the leftover is gone */
		[SE_START] = "clearing_start",
		[SE_CLEARED] = "cleared",
		[SE_TIMER] = "clear_timer",
	},
	[SVC_STARTING] = {
		[SE_STOP] = "stop",
		[SE_HEALTHY] = "running",
		[SE_UNHEALTHY] = "restart_unhealthy",
		[SE_EXIT] = "exited",
		[SE_COLLISION] = "collision",
		/* `revenant restart`, zombie_policy restart_parent */
		[SE_RESTART] = "restart",
	},
	[SVC_RUNNING] = {
		[SE_STOP] = "stop",
		[SE_UNHEALTHY] = "restart_unhealthy",
		[SE_EXIT] = "exited",
		[SE_COLLISION] = "collision",
		[SE_RESTART] = "restart",
	},
	[SVC_STOPPING] = {
		/* a stop cancels the restart that may follow; a start asks for one */
		[SE_STOP] = "stopping_stop",
		[SE_START] = "stopping_start",
		[SE_CLEARED] = "release_done",
		[SE_EXIT] = "stopped_exit",
		[SE_TIMER] = "stop_timer",
		/* stop --force, a second SIGTERM: SIGKILL now */
		[SE_KILL] = "kill",
	},
	[SVC_BACKOFF] = {
		[SE_STOP] = "cancel",
		[SE_TIMER] = "try_start",
	},
	[SVC_FAILED] = {
		[SE_START] = "start",
	},
};
/* clang-format on */


static void action_table_matrix(void **state)
{
	int handled = 0;

	(void)state;
	for (int s = 0; s < SVC_NSTATES; s++) {
		for (int e = 0; e < SVC_NEVENTS; e++) {
			const char *want = expected_action[s][e];
			const char *got = sup_action_name((enum svc_state)s, (enum svc_event)e);

			if (!want && !got)
				continue;
			if (!want || !got || strcmp(want, got))
				fail_msg("%s + %s: expected %s, table runs %s",
					 svc_state_name((enum svc_state)s),
					 svc_event_name((enum svc_event)e),
					 want ? want : "(ignored)", got ? got : "(ignored)");
			handled++;
		}
	}
	assert_int_equal(handled, 29); /* 29 of the 104 pairs do something */
}

static void action_table_bounds(void **state)
{
	(void)state;
	assert_null(sup_action_name(SVC_NSTATES, SE_START));
	assert_null(sup_action_name(SVC_STOPPED, SVC_NEVENTS));
	assert_null(sup_action_name(SVC_NSTATES, SVC_NEVENTS));
}

/* Every state the service can leave by some event, except FAILED and STOPPED, can be stopped. */
static void every_live_state_handles_stop(void **state)
{
	(void)state;
	for (int s = 0; s < SVC_NSTATES; s++) {
		if (s == SVC_STOPPED || s == SVC_FAILED || s == SVC_STOPPING)
			continue;
		if (!sup_action_name((enum svc_state)s, SE_STOP))
			fail_msg("%s ignores STOP", svc_state_name((enum svc_state)s));
	}
}

static void state_names(void **state)
{
	static const char *const want[SVC_NSTATES] = {
	    [SVC_STOPPED] = "stopped",	 [SVC_WAITING] = "waiting", [SVC_CLEARING] = "clearing",
	    [SVC_STARTING] = "starting", [SVC_RUNNING] = "running", [SVC_STOPPING] = "stopping",
	    [SVC_BACKOFF] = "backoff",	 [SVC_FAILED] = "failed",
	};

	(void)state;
	for (int s = 0; s < SVC_NSTATES; s++)
		assert_string_equal(svc_state_name((enum svc_state)s), want[s]);
	assert_string_equal(svc_state_name(SVC_NSTATES), "?");
}

/* ---- back-off ---- */

static void backoff_doubles_then_caps(void **state)
{
	static const unsigned want[] = {250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(sup_backoff_ms((int)i + 1, 250, 30000), want[i]);
	assert_int_equal(sup_backoff_ms(100, 250, 30000), 30000);
	assert_int_equal(sup_backoff_ms(INT_MAX, 250, 30000), 30000);
	/* a nonsense attempt number still gives the base delay, never 0 */
	assert_int_equal(sup_backoff_ms(0, 250, 30000), 250);
	assert_int_equal(sup_backoff_ms(-5, 250, 30000), 250);
}

/* A crash that happens once is restarted at once; the back-off starts at the second in a row. */
static void restart_delay_first_is_immediate(void **state)
{
	(void)state;
	assert_int_equal(sup_restart_delay_ms(1, 250, 30000), 0);
	assert_int_equal(sup_restart_delay_ms(2, 250, 30000), 250);
	assert_int_equal(sup_restart_delay_ms(3, 250, 30000), 500);
	assert_int_equal(sup_restart_delay_ms(4, 100, 300), 300);
	assert_int_equal(sup_restart_delay_ms(1000, 250, 30000), 30000);
	assert_int_equal(sup_restart_delay_ms(0, 250, 30000), 0);
	assert_int_equal(sup_backoff_ms(40, 4000000000u, 4100000000u), 4100000000u);
}

static void backoff_monotonic(void **state)
{
	unsigned prev = 0;

	(void)state;
	for (int a = 1; a <= 1000; a++) {
		unsigned ms = sup_backoff_ms(a, 250, 30000);

		assert_true(ms >= prev);
		assert_true(ms >= 250 && ms <= 30000);
		prev = ms;
	}
}

/* ---- port choice ---- */

static char err[2048];

static void parse_ok(const char *text, struct rev_config *cfg)
{
	if (config_parse(text, PATH, cfg, err, sizeof(err)))
		fail_msg("config_parse: %s", err);
}

/* backend 12001 (alternatives 8000-8002), memory 8001: 8001 is memory's own port. */
#define STACK(conflict)                                                                            \
	"{\"services\": {"                                                                         \
	"  \"backend\": {\"command\": \"b\", \"port\": 12001,"                                     \
	"                \"alternative_ports\": [8000, 8001, 8002]},"                              \
	"  \"memory\": {\"command\": \"m\", \"port\": 8001}"                                       \
	"}" conflict "}"

static int service_idx(const struct rev_config *cfg, const char *name)
{
	const struct service_config *sc = config_service(cfg, name);

	assert_non_null(sc);
	return (int)(sc - cfg->services);
}

static int choose(const char *text, const struct port_probe *p, size_t n, char *reason, size_t len)
{
	struct rev_config cfg;
	int port;

	parse_ok(text, &cfg);
	port = sup_choose_port(&cfg, service_idx(&cfg, "backend"), p, n, reason, len);
	config_free(&cfg);
	return port;
}

static void port_free_is_own(void **state)
{
	struct port_probe p[] = {{.port = 12001}, {.port = 8000}, {.port = 8002}};
	char reason[256] = "stale";

	(void)state;
	assert_int_equal(choose(STACK(""), p, 3, reason, sizeof(reason)), 12001);
	assert_string_equal(reason, "");
	/* no probe for the port at all: nobody was seen on it */
	assert_int_equal(choose(STACK(""), NULL, 0, reason, sizeof(reason)), 12001);
}

static void port_held_by_own_leftover(void **state)
{
	struct port_probe p[] = {{.port = 12001, .owner = 4242, .own = true}, {.port = 8000}};
	char reason[256];

	(void)state;
	assert_int_equal(choose(STACK(""), p, 2, reason, sizeof(reason)), 12001);
	assert_string_equal(reason, "");
	/* ours is replaced, never migrated away from, whatever the migration settings */
	assert_int_equal(choose(STACK(", \"conflict_resolution\": {\"strategy\": \"fail\"}"), p, 2,
				reason, sizeof(reason)),
			 12001);
}

static void port_foreign_migrates_to_first_free(void **state)
{
	struct port_probe p[] = {
	    {.port = 12001, .owner = 4242},
	    {.port = 8000},
	    {.port = 8002},
	};
	char reason[256];

	(void)state;
	assert_int_equal(choose(STACK(""), p, 3, reason, sizeof(reason)), 8000);
	assert_int_equal(choose(STACK(", \"conflict_resolution\": {\"strategy\": \"migrate\"}"), p,
				3, reason, sizeof(reason)),
			 8000);
	/* the first alternative is busy too: the next free one */
	p[1].owner = 777;
	assert_int_equal(choose(STACK(""), p, 3, reason, sizeof(reason)), 8002);
}

static void port_skips_other_services_port(void **state)
{
	/* 8001 is free right now (memory is not up yet) but it is memory's configured port */
	struct port_probe p[] = {
	    {.port = 12001, .owner = 4242},
	    {.port = 8000, .owner = 777},
	    {.port = 8001},
	    {.port = 8002},
	};
	char reason[256];

	(void)state;
	assert_int_equal(choose(STACK(""), p, 4, reason, sizeof(reason)), 8002);
}

static void port_all_alternatives_busy(void **state)
{
	struct port_probe p[] = {
	    {.port = 12001, .owner = 4242},
	    {.port = 8000, .owner = 777},
	    {.port = 8001},
	    {.port = 8002, .owner = 778},
	};
	char reason[256];

	(void)state;
	assert_int_equal(choose(STACK(""), p, 4, reason, sizeof(reason)), -1);
	if (!strstr(reason, "4242") || !strstr(reason, "12001"))
		fail_msg("reason does not name the owner and port: %s", reason);
	/* a small buffer is truncated, not overrun */
	{
		char small[8];

		assert_int_equal(choose(STACK(""), p, 4, small, sizeof(small)), -1);
		assert_true(strlen(small) < sizeof(small));
	}
}

static void port_no_alternatives(void **state)
{
	struct port_probe p[] = {{.port = 8001, .owner = 4242}};
	struct rev_config cfg;
	char reason[256];

	(void)state;
	parse_ok(STACK(""), &cfg);
	assert_int_equal(
	    sup_choose_port(&cfg, service_idx(&cfg, "memory"), p, 1, reason, sizeof(reason)), -1);
	assert_non_null(strstr(reason, "4242"));
	config_free(&cfg);
}

static void port_migration_off(void **state)
{
	static const char *const off[] = {
	    STACK(", \"conflict_resolution\": {\"allow_port_migration\": false}"),
	    STACK(", \"conflict_resolution\": {\"strategy\": \"fail\"}"),
	    STACK(", \"conflict_resolution\": {\"strategy\": \"migrate\", "
		  "\"allow_port_migration\": false}"),
	};
	struct port_probe p[] = {{.port = 12001, .owner = 4242}, {.port = 8000}, {.port = 8002}};
	char reason[256];

	(void)state;
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		assert_int_equal(choose(off[i], p, 3, reason, sizeof(reason)), -1);
		if (!strstr(reason, "allow_port_migration") || !strstr(reason, "4242"))
			fail_msg("config %zu: reason lacks allow_port_migration or the owner: %s",
				 i, reason);
	}
}

/* preserve_external_processes false does not make revenant kill anything on its own: the
 * choice is the same, a migration. */
static void port_preserve_false_still_migrates(void **state)
{
	struct port_probe p[] = {{.port = 12001, .owner = 4242}, {.port = 8000}};
	char reason[256];

	(void)state;
	assert_int_equal(
	    choose(STACK(", \"conflict_resolution\": {\"preserve_external_processes\": false}"), p,
		   2, reason, sizeof(reason)),
	    8000);
}

/* ---- dependency order and cycles ---- */

static int pos_of(const int *order, int n, int idx)
{
	for (int i = 0; i < n; i++)
		if (order[i] == idx)
			return i;
	return -1;
}

/* order is a permutation of 0..n-1 and every dependency comes before its dependent */
static void check_order(const struct rev_config *cfg, const int *order)
{
	int n = cfg->n_services;

	for (int i = 0; i < n; i++)
		assert_int_not_equal(pos_of(order, n, i), -1);
	for (int i = 0; i < n; i++) {
		const struct service_config *sv = &cfg->services[i];

		for (int d = 0; d < sv->n_deps; d++) {
			int dep = service_idx(cfg, sv->depends_on[d]);

			if (pos_of(order, n, dep) >= pos_of(order, n, i))
				fail_msg("%s starts before its dependency %s", sv->name,
					 sv->depends_on[d]);
		}
	}
}

static void diamond(const char *text)
{
	struct rev_config cfg;
	int order[4];

	parse_ok(text, &cfg);
	assert_int_equal(cfg.n_services, 4);
	assert_int_equal(config_start_order(&cfg, order), 0);
	check_order(&cfg, order);
	assert_int_equal(order[0], service_idx(&cfg, "a"));
	assert_int_equal(order[3], service_idx(&cfg, "d"));
	config_free(&cfg);
}

static void order_diamond(void **state)
{
	(void)state;
	diamond("{\"services\": {"
		"\"a\": {\"command\": \"x\"},"
		"\"b\": {\"command\": \"x\", \"depends_on\": [\"a\"]},"
		"\"c\": {\"command\": \"x\", \"depends_on\": [\"a\"]},"
		"\"d\": {\"command\": \"x\", \"depends_on\": [\"b\", \"c\"]}}}");
	/* the same graph with dependents first in the file */
	diamond("{\"services\": {"
		"\"d\": {\"command\": \"x\", \"depends_on\": [\"c\", \"b\"]},"
		"\"c\": {\"command\": \"x\", \"depends_on\": [\"a\"]},"
		"\"b\": {\"command\": \"x\", \"depends_on\": [\"a\"]},"
		"\"a\": {\"command\": \"x\"}}}");
}

static void order_chain_in_reverse_file_order(void **state)
{
	struct rev_config cfg;
	int order[4];

	(void)state;
	parse_ok("{\"services\": {"
		 "\"d\": {\"command\": \"x\", \"depends_on\": [\"c\"]},"
		 "\"c\": {\"command\": \"x\", \"depends_on\": [\"b\"]},"
		 "\"b\": {\"command\": \"x\", \"depends_on\": [\"a\"]},"
		 "\"a\": {\"command\": \"x\"}}}",
		 &cfg);
	assert_int_equal(config_start_order(&cfg, order), 0);
	assert_int_equal(order[0], service_idx(&cfg, "a"));
	assert_int_equal(order[1], service_idx(&cfg, "b"));
	assert_int_equal(order[2], service_idx(&cfg, "c"));
	assert_int_equal(order[3], service_idx(&cfg, "d"));
	config_free(&cfg);
}

static void order_independent_keeps_file_order(void **state)
{
	struct rev_config cfg;
	int order[3];

	(void)state;
	parse_ok("{\"services\": {\"z\": {\"command\": \"x\"}, \"y\": {\"command\": \"x\"},"
		 "\"x\": {\"command\": \"x\"}}}",
		 &cfg);
	assert_int_equal(config_start_order(&cfg, order), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(order[i], i);
	config_free(&cfg);
}

static void cycle_rejected(const char *text, const char *needle)
{
	struct rev_config cfg;

	memset(err, 0, sizeof(err));
	assert_int_equal(config_parse(text, PATH, &cfg, err, sizeof(err)), -EINVAL);
	if (!strstr(err, "dependency cycle") || !strstr(err, needle))
		fail_msg("message \"%s\" lacks \"dependency cycle\" or \"%s\"", err, needle);
	assert_null(cfg.services);
	config_free(&cfg);
}

static void cycles_rejected_by_parse(void **state)
{
	(void)state;
	cycle_rejected("{\"services\": {"
		       "\"a\": {\"command\": \"x\", \"depends_on\": [\"c\"]},"
		       "\"b\": {\"command\": \"x\", \"depends_on\": [\"a\"]},"
		       "\"c\": {\"command\": \"x\", \"depends_on\": [\"b\"]}}}",
		       "a -> c -> b -> a");
	cycle_rejected("{\"services\": {"
		       "\"a\": {\"command\": \"x\", \"depends_on\": [\"b\"]},"
		       "\"b\": {\"command\": \"x\", \"depends_on\": [\"a\"]}}}",
		       "a -> b -> a");
	cycle_rejected("{\"services\": {\"a\": {\"command\": \"x\", \"depends_on\": [\"a\"]}}}",
		       "a -> a");
	/* a cycle below an acyclic root */
	cycle_rejected("{\"services\": {"
		       "\"root\": {\"command\": \"x\", \"depends_on\": [\"p\"]},"
		       "\"p\": {\"command\": \"x\", \"depends_on\": [\"q\"]},"
		       "\"q\": {\"command\": \"x\", \"depends_on\": [\"p\"]}}}",
		       "p -> q -> p");
}

/* config_start_order on its own (a config built by hand, past config_parse) reports -ELOOP. */
static void start_order_cycle_eloop(void **state)
{
	char *da[] = {"b"}, *db[] = {"a"};
	struct service_config sv[2] = {
	    {.name = "a", .depends_on = da, .n_deps = 1},
	    {.name = "b", .depends_on = db, .n_deps = 1},
	};
	struct rev_config cfg = {.services = sv, .n_services = 2};
	int order[2];

	(void)state;
	assert_int_equal(config_start_order(&cfg, order), -ELOOP);
	assert_int_equal(config_start_order(&cfg, NULL), -EINVAL);
	assert_int_equal(config_start_order(NULL, order), -EINVAL);
}

/* ---- the health probe's status line ---- */

static int status_of(const char *s)
{
	return probe_http_status(s, strlen(s));
}

static void http_status_line(void **state)
{
	(void)state;
	assert_int_equal(status_of("HTTP/1.1 200 OK\r\n"), 200);
	assert_int_equal(status_of("HTTP/1.0 302 Found"), 302);
	assert_int_equal(status_of("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"),
			 503);
	assert_int_equal(status_of("HTTP/1.1 204"), 204); /* exactly 12 bytes */
	assert_int_equal(status_of("HTTP/1.1 404 Not Found\r\n\r\n<html>"), 404);
	/* not HTTP/1.x, short, empty, garbage */
	assert_int_equal(status_of("HTTP/2 200"), -1);
	assert_int_equal(status_of("HTTP/2 200 OK\r\n"), -1);
	assert_int_equal(status_of("HTTP/1.1 20"), -1);
	assert_int_equal(status_of("HTTP/1.1"), -1);
	assert_int_equal(status_of(""), -1);
	assert_int_equal(probe_http_status("", 0), -1);
	assert_int_equal(status_of("SSH-2.0-OpenSSH_9.2p1\r\n"), -1);
	assert_int_equal(status_of("http/1.1 200 OK\r\n"), -1);
	assert_int_equal(status_of("HTTP/1.1 OK 200\r\n"), -1);
	assert_int_equal(status_of("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00"), -1);
}

/* The length is what counts: a status line cut short by the length is not read past it, even
 * when the buffer goes on (the probe's buffer is not NUL-terminated at the read length). */
static void http_status_respects_length(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\n";

	(void)state;
	assert_int_equal(probe_http_status(s, 11), -1);
	assert_int_equal(probe_http_status(s, 12), 200);
	/* a long response: only the start matters */
	{
		char big[1024];

		memset(big, 'x', sizeof(big));
		memcpy(big, "HTTP/1.1 301 Moved", 18);
		assert_int_equal(probe_http_status(big, sizeof(big)), 301);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(action_table_matrix),
	    cmocka_unit_test(action_table_bounds),
	    cmocka_unit_test(every_live_state_handles_stop),
	    cmocka_unit_test(state_names),
	    cmocka_unit_test(backoff_doubles_then_caps),
	    cmocka_unit_test(backoff_monotonic),
	    cmocka_unit_test(restart_delay_first_is_immediate),
	    cmocka_unit_test(port_free_is_own),
	    cmocka_unit_test(port_held_by_own_leftover),
	    cmocka_unit_test(port_foreign_migrates_to_first_free),
	    cmocka_unit_test(port_skips_other_services_port),
	    cmocka_unit_test(port_all_alternatives_busy),
	    cmocka_unit_test(port_no_alternatives),
	    cmocka_unit_test(port_migration_off),
	    cmocka_unit_test(port_preserve_false_still_migrates),
	    cmocka_unit_test(order_diamond),
	    cmocka_unit_test(order_chain_in_reverse_file_order),
	    cmocka_unit_test(order_independent_keeps_file_order),
	    cmocka_unit_test(cycles_rejected_by_parse),
	    cmocka_unit_test(start_order_cycle_eloop),
	    cmocka_unit_test(http_status_line),
	    cmocka_unit_test(http_status_respects_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
