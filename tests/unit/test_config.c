// SPDX-License-Identifier: MIT
/* Unit tests of user/config.c: every class of config error a user can make must be rejected with a
 * message naming the file and the key (or line:col), and a valid config must come out complete. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"

#define PATH "/tmp/x/revenant.json"

static char err[2048];

/* Parse text that must fail; returns the message after checking the return code, that the
 * message is one line and that it names the file. The config must come back zeroed. */
static const char *parse_fail(const char *text)
{
	struct rev_config cfg;
	int ret;

	memset(err, 0, sizeof(err));
	ret = config_parse(text, PATH, &cfg, err, sizeof(err));
	if (ret != -EINVAL)
		fail_msg("expected -EINVAL for %s, got %d (%s)", text, ret, err);
	assert_null(strchr(err, '\n'));
	assert_true(strncmp(err, PATH, strlen(PATH)) == 0);
	assert_null(cfg.services);
	assert_null(cfg.dir);
	config_free(&cfg);
	return err;
}

/* Every needle must be in the message. */
static void expect_err(const char *text, ...)
{
	const char *msg = parse_fail(text), *needle;
	va_list ap;

	va_start(ap, text);
	while ((needle = va_arg(ap, const char *)))
		if (!strstr(msg, needle))
			fail_msg("message \"%s\" lacks \"%s\" (config %s)", msg, needle, text);
	va_end(ap);
}

#define EXPECT_ERR(text, ...) expect_err(text, __VA_ARGS__, (const char *)NULL)

static void parse_ok(const char *text, struct rev_config *cfg)
{
	int ret = config_parse(text, PATH, cfg, err, sizeof(err));

	if (ret)
		fail_msg("config_parse: %d: %s", ret, err);
}

/* A service with `body` spliced into it, for the many per-key checks. */
static const char *svc(const char *body)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "{\"services\": {\"backend\": {\"command\": \"run\", %s}}}",
		 body);
	return buf;
}

static void test_empty_object_defaults(void **state)
{
	struct rev_config cfg;

	(void)state;
	parse_ok("{}", &cfg);
	assert_string_equal(cfg.path, PATH);
	assert_string_equal(cfg.dir, "/tmp/x");
	assert_int_equal(cfg.n_services, 0);
	assert_true(cfg.monitoring.enabled);
	assert_int_equal(cfg.monitoring.zombie_grace_ms, 1000);
	assert_true(cfg.monitoring.auto_resolve_conflicts);
	assert_string_equal(cfg.conflict.strategy, "intelligent");
	assert_true(cfg.conflict.allow_port_migration);
	assert_true(cfg.conflict.preserve_external_processes);
	assert_string_equal(cfg.log.path, "/tmp/x/logs/events.jsonl");
	assert_int_equal(cfg.log.max_bytes, 10485760);
	assert_int_equal(cfg.log.keep, 5);
	assert_true(cfg.log.compress);
	assert_string_equal(cfg.control.socket, "/run/revenant/control.sock");
	assert_string_equal(cfg.metrics.listen, "127.0.0.1:9464");
	config_free(&cfg);
}

static void test_service_defaults(void **state)
{
	struct rev_config cfg;
	const struct service_config *s;

	(void)state;
	parse_ok("{\"services\": {\"worker\": {\"command\": \"sleep 100\"}}}", &cfg);
	assert_int_equal(cfg.n_services, 1);
	s = &cfg.services[0];
	assert_string_equal(s->name, "worker");
	assert_string_equal(s->command, "sleep 100");
	assert_string_equal(s->cwd, "/tmp/x");
	assert_string_equal(s->log_file, "/tmp/x/logs/worker.log");
	assert_string_equal(s->stderr_file, s->log_file); /* one file for both streams */
	assert_int_equal(s->log_max_bytes, 10485760);
	assert_int_equal(s->log_keep, 5);
	assert_true(s->log_timestamps);
	assert_null(s->env_file);
	assert_int_equal(s->n_env, 0);
	assert_int_equal(s->port, 0);
	assert_int_equal(s->n_alt, 0);
	assert_true(s->auto_restart);
	assert_int_equal(s->max_restarts, 3);
	assert_false(s->critical);
	assert_int_equal(s->n_deps, 0);
	assert_false(s->health.enabled);
	assert_int_equal(s->stop_signal, SIGTERM);
	assert_int_equal(s->stop_timeout_ms, 5000);
	assert_int_equal(s->zombie_policy, ZOMBIE_NUDGE);
	config_free(&cfg);
}

/* DESIGN.md's example, grown to the whole development stack it came from. */
static const char *full_config =
    "{\n"
    "  \"services\": {\n"
    "    \"backend\": { \"command\": \"uvicorn app:app --port {port}\", \"cwd\": \".\",\n"
    "                 \"env\": {\"PYTHONUNBUFFERED\": \"1\", \"MODE\": \"dev=1\"},\n"
    "                 \"env_file\": \".env.development\",\n"
    "                 \"port\": 12001, \"alternative_ports\": [8000, 8001, 8002],\n"
    "                 \"auto_restart\": true, \"max_restarts\": 3, \"critical\": true,\n"
    "                 \"depends_on\": [\"memory\"],\n"
    "                 \"health\": { \"http\": \"/health\", \"interval_ms\": 5000,\n"
    "                             \"timeout_ms\": 1000 },\n"
    "                 \"stop_signal\": \"SIGTERM\", \"stop_timeout_ms\": 5000,\n"
    "                 \"zombie_policy\": \"nudge\" },\n"
    "    \"frontend\": { \"command\": \"npm run dev\", \"cwd\": \"../frontend\", \"port\": 12000,\n"
    "                  \"depends_on\": [\"backend\"], \"stop_signal\": \"INT\",\n"
    "                  \"health\": {\"tcp\": true, \"failures\": 5, \"grace_ms\": 10000},\n"
    "                  \"zombie_policy\": \"restart_parent\", \"log_file\": \"/var/log/fe.log\" "
    "},\n"
    "    \"memory\": { \"command\": \"python -m memory\", \"port\": 8001, \"stop_signal\": 9,\n"
    "                \"auto_restart\": false, \"max_restarts\": 0, \"zombie_policy\": \"report\" "
    "},\n"
    "    \"engines\": { \"command\": \"python -m engines\", \"port\": 8002,\n"
    "                 \"stop_signal\": \"SIGKILL\", \"log_file\": \"out/engines.log\" }\n"
    "  },\n"
    "  \"monitoring\": { \"enabled\": true, \"zombie_grace_ms\": 1000,\n"
    "                  \"auto_resolve_conflicts\": false },\n"
    "  \"conflict_resolution\": { \"strategy\": \"migrate\", \"allow_port_migration\": false,\n"
    "                           \"preserve_external_processes\": true },\n"
    "  \"log\": { \"path\": \"var/log/events.jsonl\", \"max_bytes\": 1048576, \"keep\": 2,\n"
    "           \"compress\": false },\n"
    "  \"control\": { \"socket\": \"run/control.sock\" },\n"
    "  \"metrics\": { \"listen\": \"127.0.0.1:9464\" }\n"
    "}\n";

static void test_full_config(void **state)
{
	struct rev_config cfg;
	const struct service_config *b, *f, *m, *e;

	(void)state;
	parse_ok(full_config, &cfg);
	assert_int_equal(cfg.n_services, 4);
	/* file order is kept */
	assert_string_equal(cfg.services[0].name, "backend");
	assert_string_equal(cfg.services[3].name, "engines");

	b = config_service(&cfg, "backend");
	assert_non_null(b);
	assert_ptr_equal(b, &cfg.services[0]);
	assert_string_equal(b->command, "uvicorn app:app --port {port}");
	assert_string_equal(b->cwd, "/tmp/x");
	assert_string_equal(b->env_file, "/tmp/x/.env.development");
	assert_int_equal(b->n_env, 2);
	assert_string_equal(b->env[0], "PYTHONUNBUFFERED=1");
	assert_string_equal(b->env[1], "MODE=dev=1");
	assert_int_equal(b->port, 12001);
	assert_int_equal(b->n_alt, 3);
	assert_int_equal(b->alt_ports[0], 8000);
	assert_int_equal(b->alt_ports[1], 8001);
	assert_int_equal(b->alt_ports[2], 8002);
	assert_true(b->auto_restart);
	assert_int_equal(b->max_restarts, 3);
	assert_true(b->critical);
	assert_int_equal(b->n_deps, 1);
	assert_string_equal(b->depends_on[0], "memory");
	assert_true(b->health.enabled);
	assert_string_equal(b->health.http, "/health");
	assert_false(b->health.tcp);
	assert_int_equal(b->health.interval_ms, 5000);
	assert_int_equal(b->health.timeout_ms, 1000);
	assert_int_equal(b->health.failures, 3);
	assert_int_equal(b->health.grace_ms, 0);
	assert_int_equal(b->stop_signal, SIGTERM);
	assert_int_equal(b->stop_timeout_ms, 5000);
	assert_int_equal(b->zombie_policy, ZOMBIE_NUDGE);
	/* default log file: next to the event log, wherever that was moved */
	assert_string_equal(b->log_file, "/tmp/x/var/log/backend.log");

	f = config_service(&cfg, "frontend");
	assert_non_null(f);
	assert_string_equal(f->cwd, "/tmp/frontend");
	assert_int_equal(f->stop_signal, SIGINT);
	assert_true(f->health.enabled);
	assert_true(f->health.tcp);
	assert_null(f->health.http);
	assert_int_equal(f->health.failures, 5);
	assert_int_equal(f->health.grace_ms, 10000);
	assert_int_equal(f->zombie_policy, ZOMBIE_RESTART_PARENT);
	assert_string_equal(f->log_file, "/var/log/fe.log");
	assert_false(f->critical);

	m = config_service(&cfg, "memory");
	assert_non_null(m);
	assert_int_equal(m->stop_signal, 9);
	assert_false(m->auto_restart);
	assert_int_equal(m->max_restarts, 0);
	assert_int_equal(m->zombie_policy, ZOMBIE_REPORT);

	e = config_service(&cfg, "engines");
	assert_non_null(e);
	assert_int_equal(e->stop_signal, SIGKILL);
	assert_string_equal(e->log_file, "/tmp/x/out/engines.log");

	assert_null(config_service(&cfg, "nope"));
	assert_null(config_service(&cfg, NULL));

	assert_false(cfg.monitoring.auto_resolve_conflicts);
	assert_string_equal(cfg.conflict.strategy, "migrate");
	assert_false(cfg.conflict.allow_port_migration);
	assert_string_equal(cfg.log.path, "/tmp/x/var/log/events.jsonl");
	assert_int_equal(cfg.log.max_bytes, 1048576);
	assert_int_equal(cfg.log.keep, 2);
	assert_false(cfg.log.compress);
	assert_string_equal(cfg.control.socket, "/tmp/x/run/control.sock");
	assert_string_equal(cfg.metrics.listen, "127.0.0.1:9464");
	config_free(&cfg);
}

/* The lead's config/revenant.json, when present, must always parse. */
static void test_shipped_config(void **state)
{
	char path[PATH_MAX], *slash;
	struct rev_config cfg;
	int ret;

	(void)state;
	snprintf(path, sizeof(path), "%s", __FILE__);
	slash = strrchr(path, '/');
	snprintf(slash ? slash : path, sizeof(path) - (slash ? slash - path : 0), "%s",
		 slash ? "/../../config/revenant.json" : "../../config/revenant.json");
	if (access(path, R_OK)) {
		skip();
		return;
	}
	ret = config_load(path, &cfg, err, sizeof(err));
	if (ret)
		fail_msg("%s", err);
	config_free(&cfg);
}

static void test_paths(void **state)
{
	char cwd[PATH_MAX], want[PATH_MAX + 64], *real;
	struct rev_config cfg;

	(void)state;
	/* a relative file that does not exist: its directory is worked out from the cwd */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	real = realpath(cwd, NULL);
	assert_non_null(real);
	assert_int_equal(config_parse("{}", "no/such/dir/../r.json", &cfg, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/no/such", strcmp(real, "/") ? real : "");
	assert_string_equal(cfg.dir, want);
	assert_string_equal(cfg.path, "no/such/dir/../r.json");
	config_free(&cfg);

	/* a bare file name lives in the cwd */
	assert_int_equal(config_parse("{}", "revenant.json", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.dir, real);
	config_free(&cfg);
	free(real);

	/* the root directory has no "//" in what is derived from it */
	assert_int_equal(config_parse("{\"services\": {\"a\": {\"command\": \"x\"}}}", "/r.json",
				      &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.dir, "/");
	assert_string_equal(cfg.log.path, "/logs/events.jsonl");
	assert_string_equal(cfg.services[0].cwd, "/");
	assert_string_equal(cfg.services[0].log_file, "/logs/a.log");
	config_free(&cfg);

	/* "." and ".." in the user's paths are cleaned; absolute paths stay */
	parse_ok(svc("\"cwd\": \"./a/../b/\", \"env_file\": \"/etc//app.env\", "
		     "\"log_file\": \"../../../../l.log\""),
		 &cfg);
	assert_string_equal(cfg.services[0].cwd, "/tmp/x/b");
	assert_string_equal(cfg.services[0].env_file, "/etc/app.env");
	assert_string_equal(cfg.services[0].log_file, "/l.log");
	config_free(&cfg);
}

static void test_malformed_json(void **state)
{
	(void)state;
	EXPECT_ERR("{\n  \"services\": {,}\n}", PATH ":2:16:", "malformed JSON near ',}'");
	EXPECT_ERR("{\"a\": 1,}", PATH ":1:9:", "malformed JSON near '}'", "trailing comma");
	EXPECT_ERR("{\n\t\"services\": {\"a\": tru}}",
		   PATH ":2:20:", "malformed JSON near 'tru}}'");
	EXPECT_ERR("{\"services\": {}} x", PATH ":1:18:", "malformed JSON near 'x'");
	EXPECT_ERR("{\"services\": {", PATH ":1:15:", "malformed JSON", "end of file");
	EXPECT_ERR("{ // a comment\n}", PATH ":1:3:", "near '// a comment'", "no comments");
	EXPECT_ERR("{'services': {}}", PATH ":1:2:", "double quotes");
	/* columns count characters, not bytes */
	EXPECT_ERR("{\"é\": x}", PATH ":1:7:", "near 'x}'");
	EXPECT_ERR("", PATH ":1:1:", "malformed JSON", "empty");
	EXPECT_ERR(" \n\t\n", PATH ":1:1:", "malformed JSON", "empty");
}

static void test_top_level(void **state)
{
	(void)state;
	EXPECT_ERR("[]", "top level must be an object", "got array");
	EXPECT_ERR("\"services\"", "top level must be an object", "got string");
	EXPECT_ERR("42", "top level must be an object", "got number");
	EXPECT_ERR("{\"service\": {}}",
		   PATH ": service: unknown key (known: services, monitoring, "
			"conflict_resolution, log, control, metrics)",
		   "did you mean \"services\"");
	EXPECT_ERR("{\"services\": {}, \"services\": {}}", "services: key given twice");
	/* keys are case-sensitive (cJSON's own lookups are not) */
	EXPECT_ERR("{\"Services\": {}}", "Services: unknown key");
}

static void test_unknown_keys(void **state)
{
	(void)state;
	EXPECT_ERR(svc("\"colour\": \"red\""), PATH
		   ": services.backend.colour: unknown key (known: command, cwd, env, env_file, "
		   "port, alternative_ports, auto_restart, max_restarts, critical, depends_on, "
		   "health, stop_signal, stop_timeout_ms, zombie_policy, log_file, kill_mode, user, "
		   "group, umask, no_new_privileges, restart_delay_ms, restart_delay_max_ms, part_of, "
		   "stderr_file, log_max_bytes, log_keep, log_timestamps)");
	EXPECT_ERR(svc("\"prot\": 1"), "services.backend.prot: unknown key",
		   "did you mean \"port\"");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"htpp\": \"/\"}"),
		   "services.backend.health.htpp: unknown key (known: http, tcp, interval_ms",
		   "did you mean \"http\"");
	EXPECT_ERR("{\"monitoring\": {\"zombie_grace\": 1}}",
		   "monitoring.zombie_grace: unknown key (known: enabled, zombie_grace_ms, "
		   "auto_resolve_conflicts)");
	EXPECT_ERR("{\"conflict_resolution\": {\"x\": 1}}",
		   "conflict_resolution.x: unknown key (known: strategy");
	EXPECT_ERR("{\"log\": {\"size\": 1}}",
		   "log.size: unknown key (known: path, max_bytes, keep, compress)");
	EXPECT_ERR("{\"control\": {\"port\": 1}}", "control.port: unknown key (known: socket)");
	EXPECT_ERR("{\"metrics\": {\"port\": 1}}",
		   "metrics.port: unknown key (known: listen, control, token_file)");
	EXPECT_ERR(svc("\"port\": 1, \"port\": 2"), "services.backend.port: key given twice");
}

static void test_wrong_types(void **state)
{
	(void)state;
	EXPECT_ERR(svc("\"port\": \"12001\""),
		   PATH ": services.backend.port: expected an integer, got string");
	EXPECT_ERR(svc("\"port\": 12001.5"), "services.backend.port: expected an integer",
		   "12001.5");
	EXPECT_ERR(svc("\"port\": null"), "services.backend.port: expected an integer, got null");
	EXPECT_ERR(svc("\"auto_restart\": \"yes\""),
		   "services.backend.auto_restart: expected a boolean, got string");
	EXPECT_ERR(svc("\"critical\": 1"),
		   "services.backend.critical: expected a boolean, got number");
	EXPECT_ERR(svc("\"cwd\": 5"), "services.backend.cwd: expected a string, got number");
	EXPECT_ERR(svc("\"env\": [\"A=1\"]"),
		   "services.backend.env: expected an object, got array");
	EXPECT_ERR(svc("\"env\": {\"N\": 1}"),
		   "services.backend.env.N: expected a string, got number", "quote it");
	EXPECT_ERR(svc("\"env\": {\"B\": true}"), "services.backend.env.B: expected a string",
		   "boolean");
	EXPECT_ERR(svc("\"alternative_ports\": 8000"),
		   "services.backend.alternative_ports: expected an array, got number");
	EXPECT_ERR(svc("\"alternative_ports\": [8000, \"8001\"]"),
		   "services.backend.alternative_ports[1]: expected an integer, got string");
	EXPECT_ERR(svc("\"depends_on\": \"db\""),
		   "services.backend.depends_on: expected an array, got string");
	EXPECT_ERR(svc("\"depends_on\": [1]"),
		   "services.backend.depends_on[0]: expected a string, got number");
	EXPECT_ERR(svc("\"log_timestamps\": \"yes\""),
		   "services.backend.log_timestamps: expected a boolean, got string");
	EXPECT_ERR(svc("\"stderr_file\": \"\""), "services.backend.stderr_file: empty path");
	EXPECT_ERR(svc("\"health\": \"/health\""),
		   "services.backend.health: expected an object, got string");
	EXPECT_ERR(svc("\"stop_signal\": true"), "services.backend.stop_signal: expected a signal");
	EXPECT_ERR(svc("\"stop_signal\": 9.5"),
		   "services.backend.stop_signal: expected an integer");
	EXPECT_ERR(svc("\"zombie_policy\": 1"),
		   "services.backend.zombie_policy: expected a string, got number");
	EXPECT_ERR(svc("\"log_file\": false"), "services.backend.log_file: expected a string");
	EXPECT_ERR("{\"services\": []}", "services: expected an object, got array");
	EXPECT_ERR("{\"services\": {\"a\": \"run\"}}",
		   "services.a: expected an object, got string");
	EXPECT_ERR("{\"monitoring\": true}", "monitoring: expected an object, got boolean");
	EXPECT_ERR("{\"monitoring\": {\"enabled\": 1}}",
		   "monitoring.enabled: expected a boolean, got number");
	EXPECT_ERR("{\"log\": {\"max_bytes\": \"10MB\"}}",
		   "log.max_bytes: expected an integer, got string");
	EXPECT_ERR("{\"log\": {\"compress\": \"gzip\"}}", "log.compress: expected a boolean");
	EXPECT_ERR("{\"control\": {\"socket\": 1}}", "control.socket: expected a string");
	EXPECT_ERR("{\"metrics\": {\"listen\": 9464}}",
		   "metrics.listen: expected a string, got number");
	EXPECT_ERR("{\"conflict_resolution\": {\"allow_port_migration\": \"no\"}}",
		   "conflict_resolution.allow_port_migration: expected a boolean");
}

static void test_out_of_range(void **state)
{
	(void)state;
	EXPECT_ERR(svc("\"port\": 70000"),
		   PATH ": services.backend.port: 70000 is out of range 1..65535");
	EXPECT_ERR(svc("\"port\": 0"), "services.backend.port: 0 is out of range 1..65535");
	EXPECT_ERR(svc("\"port\": -1"), "services.backend.port: -1 is out of range 1..65535");
	EXPECT_ERR(svc("\"port\": 1e300"), "services.backend.port:", "out of range 1..65535");
	EXPECT_ERR(svc("\"alternative_ports\": [8000, 70000]"),
		   "services.backend.alternative_ports[1]: 70000 is out of range 1..65535");
	EXPECT_ERR(svc("\"max_restarts\": 1001"),
		   "services.backend.max_restarts: 1001 is out of range -1..1000");
	EXPECT_ERR(svc("\"stop_timeout_ms\": -1"),
		   "services.backend.stop_timeout_ms: -1 is out of range 0..3600000");
	EXPECT_ERR(svc("\"stop_signal\": 65"),
		   "services.backend.stop_signal: 65 is out of range 1..64");
	EXPECT_ERR(svc("\"stop_signal\": 0"),
		   "services.backend.stop_signal: 0 is out of range 1..64");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"tcp\": true, \"interval_ms\": 99}"),
		   "services.backend.health.interval_ms: 99 is out of range 100..3600000");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"tcp\": true, \"timeout_ms\": 600001}"),
		   "services.backend.health.timeout_ms: 600001 is out of range 10..600000");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"tcp\": true, \"failures\": 0}"),
		   "services.backend.health.failures: 0 is out of range 1..100");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"tcp\": true, \"grace_ms\": 3600001}"),
		   "services.backend.health.grace_ms: 3600001 is out of range 0..3600000");
	EXPECT_ERR("{\"monitoring\": {\"zombie_grace_ms\": -5}}",
		   "monitoring.zombie_grace_ms: -5 is out of range 0..3600000");
	EXPECT_ERR("{\"log\": {\"max_bytes\": 4095}}",
		   "log.max_bytes: 4095 is out of range 4096..1099511627776");
	EXPECT_ERR("{\"log\": {\"max_bytes\": 1099511627777}}",
		   "log.max_bytes: 1099511627777 is out of range");
	EXPECT_ERR("{\"log\": {\"keep\": 1001}}", "log.keep: 1001 is out of range 0..1000");
	EXPECT_ERR(svc("\"log_max_bytes\": 4095"),
		   "services.backend.log_max_bytes: 4095 is out of range 4096..1099511627776 (or 0: "
		   "never rotate)");
	EXPECT_ERR(svc("\"log_max_bytes\": -1"), "services.backend.log_max_bytes: -1 is out of range");
	EXPECT_ERR(svc("\"log_keep\": 1001"),
		   "services.backend.log_keep: 1001 is out of range 0..1000");
}

static void test_range_edges_accepted(void **state)
{
	struct rev_config cfg;

	(void)state;
	parse_ok("{\"services\": {\"a\": {\"command\": \"x\", \"port\": 65535, "
		 "\"alternative_ports\": [1], \"max_restarts\": 1000, \"stop_signal\": 64, "
		 "\"stop_timeout_ms\": 0}}, \"log\": {\"max_bytes\": 1099511627776, \"keep\": 0}}",
		 &cfg);
	assert_int_equal(cfg.services[0].port, 65535);
	assert_int_equal(cfg.services[0].alt_ports[0], 1);
	assert_int_equal(cfg.services[0].stop_signal, 64);
	assert_int_equal(cfg.log.max_bytes, 1LL << 40);
	assert_int_equal(cfg.log.keep, 0);
	config_free(&cfg);
	parse_ok(svc("\"log_max_bytes\": 0, \"log_keep\": 0, \"log_timestamps\": false, "
		     "\"stderr_file\": \"err.log\""),
		 &cfg);
	assert_int_equal(cfg.services[0].log_max_bytes, 0);
	assert_int_equal(cfg.services[0].log_keep, 0);
	assert_false(cfg.services[0].log_timestamps);
	assert_string_equal(cfg.services[0].stderr_file, "/tmp/x/err.log");
	config_free(&cfg);
	/* 1e3 is a whole number however it is written */
	parse_ok(svc("\"port\": 1e3"), &cfg);
	assert_int_equal(cfg.services[0].port, 1000);
	config_free(&cfg);
}

static void test_command(void **state)
{
	(void)state;
	EXPECT_ERR("{\"services\": {\"backend\": {\"port\": 12001}}}",
		   PATH ": services.backend.command: missing (every service needs a command)");
	EXPECT_ERR("{\"services\": {\"backend\": {}}}", "services.backend.command: missing");
	EXPECT_ERR("{\"services\": {\"backend\": {\"command\": \"\"}}}",
		   "services.backend.command: empty (every service needs a command)");
	EXPECT_ERR("{\"services\": {\"backend\": {\"command\": \"  \\t\"}}}",
		   "services.backend.command: empty");
	EXPECT_ERR("{\"services\": {\"backend\": {\"command\": 5}}}",
		   "services.backend.command: expected a string, got number");
	EXPECT_ERR("{\"services\": {\"backend\": {\"command\": \"serve --port {port}\"}}}",
		   "services.backend.command: uses {port} but the service has no \"port\"");
}

/* What the agent checks at load beyond the schema: an env_file, log_file or log.path that exists
 * must be a regular file (a FIFO would block the agent's loop, /dev/zero never end, a directory
 * read as nothing), an env_file at most 1 MiB. Commands that only talk to the agent do not care. */
static void expect_files_err(const char *text, const char *a, const char *b)
{
	struct rev_config cfg;

	parse_ok(text, &cfg);
	memset(err, 0, sizeof(err));
	assert_int_equal(config_check_files(&cfg, err, sizeof(err)), -EINVAL);
	if (!strstr(err, a) || (b && !strstr(err, b)))
		fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err, a, b ? b : "");
	assert_true(strncmp(err, PATH ": ", strlen(PATH) + 2) == 0);
	config_free(&cfg);
}

static void test_file_kinds(void **state)
{
	char d[] = "/tmp/revenant-test-kinds-XXXXXX", fifo[300], big[300], text[1024];
	struct rev_config cfg;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(d));
	snprintf(fifo, sizeof(fifo), "%s/fifo", d);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(text, sizeof(text), "{\"services\": {\"a\": {\"command\": \"x\", \"env_file\": \"%s\"}}}",
		 fifo);
	expect_files_err(text, "services.a.env_file: ", "is a FIFO, not a regular file");
	expect_files_err(svc("\"env_file\": \"/dev/zero\""),
			 "services.backend.env_file: /dev/zero is a character device", NULL);
	expect_files_err(svc("\"env_file\": \"/tmp\""),
			 "services.backend.env_file: /tmp is a directory", NULL);
	snprintf(big, sizeof(big), "%s/big.env", d);
	f = fopen(big, "w");
	assert_non_null(f);
	assert_int_equal(ftruncate(fileno(f), (1 << 20) + 1), 0);
	fclose(f);
	snprintf(text, sizeof(text), "{\"services\": {\"a\": {\"command\": \"x\", \"env_file\": \"%s\"}}}",
		 big);
	expect_files_err(text, "services.a.env_file: ", "more than the 1048576");
	snprintf(text, sizeof(text), "{\"log\": {\"path\": \"%s\"}}", fifo);
	expect_files_err(text, "log.path: ", "is a FIFO");
	expect_files_err(svc("\"log_file\": \"/dev/zero\""), "services.backend.log_file: ",
			 "character");
	/* missing is fine (a warning at start), and /dev/null discards a service's output */
	parse_ok(svc("\"env_file\": \"/nonexistent/.env\", \"log_file\": \"/dev/null\""), &cfg);
	assert_int_equal(config_check_files(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
	unlink(fifo);
	unlink(big);
	rmdir(d);
}

/* The grammar [A-Za-z0-9_][A-Za-z0-9_-]{0,63}: a name becomes a file and a cgroup directory, so
 * ".", "..", '/', '.' at all and a leading '-' are refused, naming services.NAME. */
static void test_service_names(void **state)
{
	static const char *const bad[] = {"..", ".", "a/b", "../x", "-x", "a.b", "bad name",
					  "tab\\tname", "é"};
	char big[256], name[80], want[160];
	struct rev_config cfg;

	(void)state;
	EXPECT_ERR("{\"services\": {\"bad name\": {\"command\": \"x\"}}}",
		   PATH ": services.bad name: invalid service name \"bad name\"", "letters, digits");
	EXPECT_ERR("{\"services\": {\"\": {\"command\": \"x\"}}}",
		   "services.: invalid service name \"\"");
	EXPECT_ERR("{\"services\": {\"..\": {\"command\": \"x\"}}}",
		   PATH ": services...: invalid service name \"..\"", "not starting with '-'");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(big, sizeof(big), "{\"services\": {\"%s\": {\"command\": \"x\"}}}", bad[i]);
		snprintf(want, sizeof(want), "invalid service name \"");
		EXPECT_ERR(big, want, "letters, digits");
	}
	/* control characters are shown escaped, never raw in a message */
	EXPECT_ERR("{\"services\": {\"a\\nb\": {\"command\": \"x\"}}}",
		   "services.a\\x0ab: invalid service name \"a\\x0ab\"");
	EXPECT_ERR("{\"services\": {\"a\": {\"command\": \"x\"}, \"a\": {\"command\": \"y\"}}}",
		   "services: service \"a\" is defined twice");

	memset(name, 'n', 64);
	name[64] = '\0';
	snprintf(big, sizeof(big), "{\"services\": {\"%s\": {\"command\": \"x\"}}}", name);
	parse_ok(big, &cfg);
	assert_string_equal(cfg.services[0].name, name);
	config_free(&cfg);
	name[64] = 'n';
	name[65] = '\0';
	snprintf(big, sizeof(big), "{\"services\": {\"%s\": {\"command\": \"x\"}}}", name);
	EXPECT_ERR(big, "invalid service name", "1 to 64");

	parse_ok("{\"services\": {\"My_svc-2\": {\"command\": \"x\"}, \"_x\": {\"command\": "
		 "\"x\"}, \"9\": {\"command\": \"x\"}}}",
		 &cfg);
	assert_string_equal(cfg.services[0].name, "My_svc-2");
	/* the default log file is NAME.log beside the event log, inside its directory */
	assert_string_equal(cfg.services[0].log_file, "/tmp/x/logs/My_svc-2.log");
	config_free(&cfg);
}

static void test_env(void **state)
{
	(void)state;
	EXPECT_ERR(svc("\"env\": {\"A=B\": \"1\"}"),
		   "services.backend.env.A=B:", "not a variable name");
	EXPECT_ERR(svc("\"env\": {\"\": \"1\"}"), "services.backend.env.:", "not a variable name");
	EXPECT_ERR(svc("\"env\": {\"A\": \"1\", \"A\": \"2\"}"),
		   "services.backend.env.A:", "given twice");
	EXPECT_ERR(svc("\"env_file\": \"\""), "services.backend.env_file: empty path");
	EXPECT_ERR(svc("\"cwd\": \"\""), "services.backend.cwd: empty path");
}

static void test_depends_on(void **state)
{
	(void)state;
	EXPECT_ERR("{\"services\": {\"backend\": {\"command\": \"x\"}, "
		   "\"frontend\": {\"command\": \"y\", \"depends_on\": [\"bakend\"]}}}",
		   PATH ": services.frontend.depends_on[0]: no service named \"bakend\"",
		   "services: backend, frontend");
	EXPECT_ERR("{\"services\": {\"a\": {\"command\": \"x\", \"depends_on\": [\"a\"]}}}",
		   "services.a.depends_on[0]: dependency cycle: a -> a", "cannot depend on itself");
	EXPECT_ERR("{\"services\": {\"a\": {\"command\": \"x\", \"depends_on\": [\"b\"]}, "
		   "\"b\": {\"command\": \"y\", \"depends_on\": [\"a\"]}}}",
		   "services.b.depends_on[0]: dependency cycle: a -> b -> a");
	EXPECT_ERR("{\"services\": {\"z\": {\"command\": \"x\"}, "
		   "\"a\": {\"command\": \"x\", \"depends_on\": [\"z\", \"b\"]}, "
		   "\"b\": {\"command\": \"y\", \"depends_on\": [\"c\"]}, "
		   "\"c\": {\"command\": \"y\", \"depends_on\": [\"z\", \"a\"]}}}",
		   "services.c.depends_on[1]: dependency cycle: a -> b -> c -> a",
		   "remove one of these dependencies");
	EXPECT_ERR("{\"services\": {\"a\": {\"command\": \"x\"}, "
		   "\"b\": {\"command\": \"y\", \"depends_on\": [\"a\", \"a\"]}}}",
		   "services.b.depends_on[1]: \"a\" is listed twice");
}

static void test_ports(void **state)
{
	(void)state;
	EXPECT_ERR(svc("\"port\": 8000, \"alternative_ports\": [8001, 8000]"),
		   PATH ": services.backend.alternative_ports[1]: port 8000 is listed twice");
	EXPECT_ERR(svc("\"port\": 8000, \"alternative_ports\": [8001, 8002, 8001]"),
		   "services.backend.alternative_ports[2]: port 8001 is listed twice",
		   "alternative_ports[0]");
	EXPECT_ERR("{\"services\": {\"backend\": {\"command\": \"x\", \"port\": 12001}, "
		   "\"frontend\": {\"command\": \"y\", \"port\": 12001}}}",
		   PATH ": services.frontend.port: 12001 is also the port of service \"backend\"",
		   "own port");
}

static void test_enums_and_checks(void **state)
{
	struct rev_config cfg;

	(void)state;
	EXPECT_ERR(svc("\"zombie_policy\": \"kill\""),
		   "services.backend.zombie_policy: unknown policy \"kill\"",
		   "\"report\", \"nudge\" or \"restart_parent\"");
	EXPECT_ERR("{\"conflict_resolution\": {\"strategy\": \"smart\"}}",
		   "conflict_resolution.strategy: unknown strategy \"smart\"",
		   "\"intelligent\", \"migrate\" or \"fail\"");
	EXPECT_ERR(svc("\"stop_signal\": \"SIGFOO\""),
		   "services.backend.stop_signal: unknown signal \"SIGFOO\"", "SIGTERM");
	EXPECT_ERR(svc("\"stop_signal\": \"\""), "services.backend.stop_signal: unknown signal");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {}"), "services.backend.health: no check given",
		   "\"http\"", "\"tcp\": true");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"tcp\": false}"),
		   "services.backend.health: no check given");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"http\": \"/h\", \"tcp\": true}"),
		   "services.backend.health: has both \"http\" and \"tcp\"");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"http\": \"health\"}"),
		   "services.backend.health.http: \"health\" must start with \"/\"");
	EXPECT_ERR(svc("\"port\": 1, \"health\": {\"http\": \"/a b\"}"),
		   "services.backend.health.http: contains a space");
	EXPECT_ERR(svc("\"health\": {\"tcp\": true}"),
		   "services.backend.health: a health check needs the service's \"port\"");
	EXPECT_ERR("{\"metrics\": {\"listen\": \"9464\"}}",
		   "metrics.listen: \"9464\" is not host:port", "\"\" to disable");
	EXPECT_ERR("{\"metrics\": {\"listen\": \"localhost:http\"}}",
		   "metrics.listen:", "not host:port");
	EXPECT_ERR("{\"metrics\": {\"listen\": \"::1:9464\"}}", "metrics.listen:", "not host:port");
	EXPECT_ERR("{\"metrics\": {\"listen\": \"h:70000\"}}", "metrics.listen:", "not host:port");
	EXPECT_ERR("{\"log\": {\"path\": \"\"}}", "log.path: empty path");

	/* sun_path holds 107 characters and a NUL */
	{
		char text[512], sock[200];

		memset(sock, 'a', 120);
		sock[0] = '/';
		sock[120] = '\0';
		snprintf(text, sizeof(text), "{\"control\": {\"socket\": \"%s\"}}", sock);
		EXPECT_ERR(text, "control.socket:", "longer than the 107");
	}

	parse_ok(svc("\"stop_signal\": \"TERM\""), &cfg);
	assert_int_equal(cfg.services[0].stop_signal, SIGTERM);
	config_free(&cfg);
	parse_ok(svc("\"stop_signal\": \"SIGHUP\""), &cfg);
	assert_int_equal(cfg.services[0].stop_signal, SIGHUP);
	config_free(&cfg);
	parse_ok("{\"metrics\": {\"listen\": \"\"}}", &cfg);
	assert_null(cfg.metrics.listen);
	assert_false(cfg.metrics.control); /* the status page is read-only by default */
	assert_null(cfg.metrics.token_file);
	config_free(&cfg);
	parse_ok("{\"metrics\": {\"control\": true, \"token_file\": \"run/tok\"}}", &cfg);
	assert_true(cfg.metrics.control);
	assert_string_equal(cfg.metrics.token_file, "/tmp/x/run/tok");
	config_free(&cfg);
	EXPECT_ERR("{\"metrics\": {\"control\": \"yes\"}}",
		   "metrics.control: expected a boolean, got string");
	EXPECT_ERR("{\"metrics\": {\"token_file\": \"\"}}", "metrics.token_file: empty path");
	EXPECT_ERR("{\"metrics\": {\"token_file\": 1}}",
		   "metrics.token_file: expected a string, got number");
	parse_ok("{\"metrics\": {\"listen\": \"[::1]:9100\"}, \"control\": {\"socket\": "
		 "\"/run/r.sock\"},"
		 "\"conflict_resolution\": {\"strategy\": \"fail\"}}",
		 &cfg);
	assert_string_equal(cfg.metrics.listen, "[::1]:9100");
	assert_string_equal(cfg.control.socket, "/run/r.sock");
	assert_string_equal(cfg.conflict.strategy, "fail");
	config_free(&cfg);
}

static int index_of(const struct rev_config *cfg, const int *order, const char *name)
{
	for (int i = 0; i < cfg->n_services; i++)
		if (!strcmp(cfg->services[order[i]].name, name))
			return i;
	return -1;
}

static void test_start_order(void **state)
{
	struct rev_config cfg;
	int order[8];

	(void)state;
	/* frontend -> backend -> {memory, engines}; logs depends on nothing */
	parse_ok("{\"services\": {"
		 "\"frontend\": {\"command\": \"f\", \"depends_on\": [\"backend\"]},"
		 "\"logs\": {\"command\": \"l\"},"
		 "\"backend\": {\"command\": \"b\", \"depends_on\": [\"memory\", \"engines\"]},"
		 "\"engines\": {\"command\": \"e\"},"
		 "\"memory\": {\"command\": \"m\"}}}",
		 &cfg);
	assert_int_equal(config_start_order(&cfg, order), 0);
	/* dependencies first, each in the order depends_on lists them, the rest in file order */
	assert_string_equal(cfg.services[order[0]].name, "memory");
	assert_string_equal(cfg.services[order[1]].name, "engines");
	assert_string_equal(cfg.services[order[2]].name, "backend");
	assert_string_equal(cfg.services[order[3]].name, "frontend");
	assert_string_equal(cfg.services[order[4]].name, "logs");
	assert_true(index_of(&cfg, order, "backend") < index_of(&cfg, order, "frontend"));

	/* a cycle built behind config_parse's back is still caught */
	free(cfg.services[3].depends_on);
	cfg.services[3].depends_on = malloc(sizeof(char *));
	assert_non_null(cfg.services[3].depends_on);
	cfg.services[3].depends_on[0] = strdup("frontend");
	cfg.services[3].n_deps = 1;
	assert_int_equal(config_start_order(&cfg, order), -ELOOP);
	config_free(&cfg);

	/* no dependencies: file order */
	parse_ok("{\"services\": {\"c\": {\"command\": \"x\"}, \"a\": {\"command\": \"x\"}, "
		 "\"b\": {\"command\": \"x\"}}}",
		 &cfg);
	assert_int_equal(config_start_order(&cfg, order), 0);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 2);
	config_free(&cfg);

	/* no services at all */
	parse_ok("{}", &cfg);
	assert_int_equal(config_start_order(&cfg, NULL), 0);
	config_free(&cfg);
}

static void test_free_safe(void **state)
{
	struct rev_config cfg;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	config_free(&cfg);
	config_free(&cfg);
	config_free(NULL);

	parse_ok(full_config, &cfg);
	config_free(&cfg);
	assert_null(cfg.services);
	assert_int_equal(cfg.n_services, 0);
	assert_null(cfg.path);
	config_free(&cfg);

	/* after a failure the struct is zeroed already, and freeing it again is harmless */
	assert_int_equal(config_parse(svc("\"port\": 70000"), PATH, &cfg, err, sizeof(err)),
			 -EINVAL);
	assert_null(cfg.services);
	config_free(&cfg);
	config_free(&cfg);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_load(void **state)
{
	char dir[] = "/tmp/revenant-config-XXXXXX", path[PATH_MAX], link[PATH_MAX];
	char want[PATH_MAX + 64], *real;
	struct rev_config cfg;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	real = realpath(dir, NULL);
	assert_non_null(real);
	snprintf(path, sizeof(path), "%s/revenant.json", dir);
	write_file(path, full_config);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.dir, real);
	assert_int_equal(cfg.n_services, 4);
	snprintf(want, sizeof(want), "%s/.env.development", real);
	assert_string_equal(cfg.services[0].env_file, want);
	config_free(&cfg);

	/* through a symlinked directory: dir is the real one */
	snprintf(link, sizeof(link), "%s/alias", dir);
	assert_int_equal(symlink(real, link), 0);
	snprintf(path, sizeof(path), "%s/alias/revenant.json", dir);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.dir, real);
	config_free(&cfg);

	/* errors from the parser name the file as given */
	snprintf(path, sizeof(path), "%s/bad.json", dir);
	write_file(path, "{\n  \"services\": {\"a\": {\"command\": \"x\", \"port\": 70000}}\n}\n");
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "services.a.port: 70000 is out of range 1..65535"));
	config_free(&cfg);

	write_file(path, "");
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":1:1: malformed JSON"));
	unlink(path);

	/* a file with a NUL in it is not what the user meant */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{}\0{}", 5), 5);
	close(fd);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "NUL"));

	/* bigger than 16 MiB */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (17 << 20)), 0);
	close(fd);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "16 MiB"));
	unlink(path);

	snprintf(path, sizeof(path), "%s/missing.json", dir);
	assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	assert_non_null(strstr(err, want));
	assert_null(strchr(err, '\n'));
	config_free(&cfg);

	assert_int_equal(config_load(dir, &cfg, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "cannot read: Is a directory"));
	config_free(&cfg);

	unlink(link);
	snprintf(path, sizeof(path), "%s/revenant.json", dir);
	unlink(path);
	assert_int_equal(rmdir(dir), 0);
	free(real);
}

static void test_default_path(void **state)
{
	const char *p = config_default_path();

	(void)state;
	if (access(CONFIG_DEFAULT_PATH, F_OK) == 0)
		assert_string_equal(p, CONFIG_DEFAULT_PATH);
	else
		assert_string_equal(p, CONFIG_FALLBACK_PATH);
}

static void test_small_err_buffer(void **state)
{
	struct rev_config cfg;
	char small[16];

	(void)state;
	/* messages are truncated, never overflowed, and a NULL buffer is allowed */
	assert_int_equal(config_parse(svc("\"colour\": 1"), PATH, &cfg, small, sizeof(small)),
			 -EINVAL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(config_parse(svc("\"colour\": 1"), PATH, &cfg, NULL, 0), -EINVAL);
	assert_int_equal(config_parse("{", PATH, &cfg, NULL, 0), -EINVAL);
	assert_int_equal(config_load("/nonexistent/revenant.json", &cfg, NULL, 0), -ENOENT);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_object_defaults),
	    cmocka_unit_test(test_service_defaults),
	    cmocka_unit_test(test_full_config),
	    cmocka_unit_test(test_shipped_config),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_malformed_json),
	    cmocka_unit_test(test_top_level),
	    cmocka_unit_test(test_unknown_keys),
	    cmocka_unit_test(test_wrong_types),
	    cmocka_unit_test(test_out_of_range),
	    cmocka_unit_test(test_range_edges_accepted),
	    cmocka_unit_test(test_command),
	    cmocka_unit_test(test_service_names),
	    cmocka_unit_test(test_file_kinds),
	    cmocka_unit_test(test_env),
	    cmocka_unit_test(test_depends_on),
	    cmocka_unit_test(test_ports),
	    cmocka_unit_test(test_enums_and_checks),
	    cmocka_unit_test(test_start_order),
	    cmocka_unit_test(test_free_safe),
	    cmocka_unit_test(test_load),
	    cmocka_unit_test(test_default_path),
	    cmocka_unit_test(test_small_err_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
