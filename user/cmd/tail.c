// SPDX-License-Identifier: MIT
/* `revenant tail`: the last events of the log, every event of every segment (--all), or the live
 * log followed across rotations (-f); with --service, one service's events, and with --output its
 * output lines in the same timeline. Needs read permission on the files, not the agent or root.
 * Owns the event-line parser and the event rows; the reading of rotated files is cmd/logread's. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/logs.h"
#include "cmd/tail.h"
#include "lib/events.h"
#include "lib/log.h"

#define BAD_LINES_SHOWN 10 /* a damaged file warns this often, then once with the count */

/* ---- the line reader ---- */

int evline_parse(const char *line, size_t len, struct evline *ev)
{
	const char *end = NULL;
	const cJSON *type, *ts;

	memset(ev, 0, sizeof(*ev));
	if (!len)
		return -EINVAL;
	ev->obj = cJSON_ParseWithLengthOpts(line, len, &end, false);
	if (!ev->obj)
		return -EINVAL;
	while (end && end < line + len && isspace((unsigned char)*end))
		end++;
	type = cJSON_GetObjectItemCaseSensitive(ev->obj, "type");
	ts = cJSON_GetObjectItemCaseSensitive(ev->obj, "ts");
	if (end != line + len || !cJSON_IsObject(ev->obj) || !cJSON_IsString(type) ||
	    !type->valuestring[0] || !cJSON_IsString(ts) ||
	    ev_parse_ts(ts->valuestring, &ev->ts_ns)) {
		evline_free(ev);
		return -EINVAL;
	}
	ev->type = type->valuestring;
	return 0;
}

void evline_free(struct evline *ev)
{
	cJSON_Delete(ev->obj);
	memset(ev, 0, sizeof(*ev));
}

int tail_parse_since(const char *s, uint64_t now_ns, uint64_t *since_ns)
{
	static const struct {
		char unit;
		uint64_t ns;
	} units[] = {
	    {'s', 1000000000ull},
	    {'m', 60000000000ull},
	    {'h', 3600000000000ull},
	    {'d', 86400000000000ull},
	};
	unsigned long long v = 0;
	const char *p = s;
	int ret = ev_parse_ts(s, since_ns);

	if (ret != -EINVAL)
		return ret;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (ULLONG_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (*p - '0');
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (p[0] != units[i].unit || p[1])
			continue;
		if (v > UINT64_MAX / units[i].ns)
			return -ERANGE;
		v *= units[i].ns;
		*since_ns = v < now_ns ? now_ns - v : 0;
		return 0;
	}
	return -EINVAL;
}

/* ---- the command ---- */

static void put_clean(FILE *f, const char *s)
{
	cli_put_clean(f, s, strlen(s), false);
}

static void put_value(FILE *f, const char *name, const cJSON *v)
{
	fputc(' ', f);
	put_clean(f, name); /* a type this build does not know: its names come from the file */
	fputc('=', f);
	if (cJSON_IsString(v)) {
		put_clean(f, v->valuestring);
	} else if (cJSON_IsObject(v)) {
		char *j = cJSON_PrintUnformatted(v); /* killed_by: compact, as stored */

		put_clean(f, j ? j : "{...}");
		free(j);
	}
	else if (cJSON_IsBool(v))
		fputs(cJSON_IsTrue(v) ? "true" : "false", f);
	else if (cJSON_IsNumber(v) && fabs(v->valuedouble) < 1e15 &&
		 v->valuedouble == (double)(long long)v->valuedouble)
		fprintf(f, "%lld", (long long)v->valuedouble); /* in range: no UB cast */
	else if (cJSON_IsNumber(v))
		fprintf(f, "%g", v->valuedouble);
	else
		fputs("...", f);
}

/* The salient fields in the order of the event's schema (lib/events.c): what a reader scans,
 * without the ones marked quiet there. A type this build does not know shows every field. */
char *tail_format_row(const struct evline *ev)
{
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ev->obj, "ts");
	const struct ev_schema *sc = ev_schema(ev_type_of(ev->type));
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (!f)
		return NULL;
	fprintf(f, "%-27s  ", ts->valuestring);
	put_clean(f, ev->type);
	fprintf(f, "%*s", strlen(ev->type) < 16 ? (int)(16 - strlen(ev->type)) : 1, "");
	for (size_t i = 0; sc && i < sc->n_fields; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev->obj, sc->fields[i].name);

		if (v && !cJSON_IsNull(v) && !(sc->fields[i].flags & EVF_QUIET) &&
		    !((sc->fields[i].flags & EVF_QUIET_FALSE) && cJSON_IsFalse(v)))
			put_value(f, sc->fields[i].name, v);
	}
	for (const cJSON *v = sc ? NULL : ev->obj->child; v; v = v->next)
		if (v->string && strcmp(v->string, "ts") && strcmp(v->string, "type") &&
		    !cJSON_IsNull(v))
			put_value(f, v->string, v);
	fputc('\n', f);
	if (fclose(f)) {
		free(s);
		return NULL;
	}
	return s;
}


struct tail {
	/* options */
	const char *cfg_path;
	bool json, all, follow, output;
	long long limit; /* the last N events; -1: all */
	char **types;
	size_t n_types;
	const char *service; /* --service: only its events */
	uint64_t since;	     /* 0: no --since */
	size_t bad;
};

static bool wanted(const struct tail *t, const struct evline *ev)
{
	if (t->since && ev->ts_ns < t->since)
		return false;
	if (t->service) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(ev->obj, "service");
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(ev->obj, "owner_service");

		if (!(cJSON_IsString(a) && !strcmp(a->valuestring, t->service)) &&
		    !(cJSON_IsString(b) && !strcmp(b->valuestring, t->service)))
			return false;
	}
	if (!t->n_types)
		return true;
	for (size_t i = 0; i < t->n_types; i++)
		if (!strcmp(t->types[i], ev->type))
			return true;
	return false;
}

/* One line of the event log: invalid ones are warned about and skipped in both output modes, so
 * --json output is always valid JSON lines. */
static void on_event_line(struct lr_src *s, const char *line, size_t len)
{
	struct tail *t = s->ctx;
	struct evline ev;
	char *out = NULL;

	if (evline_parse(line, len, &ev)) {
		if (!s->counting && ++t->bad <= BAD_LINES_SHOWN)
			cli_err("warning: %s:%zu: not an event (a damaged line?), skipped", s->where,
				s->lineno);
		return;
	}
	if (wanted(t, &ev)) {
		if (t->json && (out = malloc(len + 2))) {
			memcpy(out, line, len);
			out[len] = '\n';
			out[len + 1] = 0;
		} else if (!t->json) {
			out = tail_format_row(&ev);
		}
		lr_emit(s, ev.ts_ns, out);
	}
	evline_free(&ev);
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: revenant tail [-c FILE] [-f] [-n N] [--all] [--type T,...] [--since TIME]\n"
	    "                     [--service NAME [--output]] [--json]\n"
	    "\n"
	    "Print the last events of the event log (log.path of the config), as a table or\n"
	    "as the JSON lines stored. Needs read permission on the log, not the agent.\n"
	    "\n"
	    "  -c, --config FILE   configuration (default: the running agent's log, else %s,\n"
	    "                      else %s)\n"
	    "  -n, --lines N       the last N events (default 10; with --all: every one), across\n"
	    "                      rotations\n"
	    "  -a, --all           every event of every rotated segment (.N.gz .. .1.gz), then\n"
	    "                      of the live file: oldest first, each line once\n"
	    "  -f, --follow        then print events as they are written, across rotations,\n"
	    "                      until SIGINT or SIGTERM (exit 0)\n"
	    "  -t, --type T,...    only events of these types (e.g. zombie,port_collision)\n"
	    "  -s, --since TIME    only events at or after TIME: RFC 3339\n"
	    "                      (2026-11-27T11:00:00Z) or a time ago (30s, 10m, 2h, 1d)\n"
	    "  -S, --service NAME  only the events of service NAME (service or owner_service)\n"
	    "  -o, --output        with --service: its output lines too (from its log_file and\n"
	    "                      stderr_file), in one timeline with its events; --json gives\n"
	    "                      them as {\"ts\", \"type\": \"output\", \"service\", \"stream\",\n"
	    "                      \"line\"}\n"
	    "      --json          the JSON lines exactly as stored\n"
	    "  -h, --help          this help\n"
	    "\n"
	    "A line that is not a JSON event (a damaged file) is skipped with a warning on\n"
	    "stderr, in both output modes: --json output is always valid JSON lines.\n",
	    CONFIG_DEFAULT_PATH, CONFIG_FALLBACK_PATH);
}

static int add_types(struct tail *t, const char *arg)
{
	char *copy = strdup(arg), *save = NULL;
	char **v;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		v = realloc(t->types, (t->n_types + 1) * sizeof(*v));
		if (!v || !(s = strdup(s))) {
			if (v)
				t->types = v;
			ret = -ENOMEM;
			break;
		}
		t->types = v;
		t->types[t->n_types++] = s;
	}
	free(copy);
	return ret;
}

static int parse_args(struct tail *t, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"lines", required_argument, NULL, 'n'},
	    {"all", no_argument, NULL, 'a'},
	    {"follow", no_argument, NULL, 'f'},
	    {"type", required_argument, NULL, 't'},
	    {"since", required_argument, NULL, 's'},
	    {"service", required_argument, NULL, 'S'},
	    {"output", no_argument, NULL, 'o'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct timespec now;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:n:aft:s:S:oh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			t->cfg_path = optarg;
			break;
		case 'n':
			errno = 0;
			t->limit = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || t->limit < 0) {
				cli_err("tail: -n wants a number of events (0 or more), not '%s'",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'a':
			t->all = true;
			break;
		case 'f':
			t->follow = true;
			break;
		case 't':
			if (add_types(t, optarg)) {
				cli_err("out of memory");
				return EXIT_FAILED;
			}
			break;
		case 's':
			clock_gettime(CLOCK_REALTIME, &now);
			if (tail_parse_since(optarg,
					     (uint64_t)now.tv_sec * 1000000000ull + now.tv_nsec,
					     &t->since)) {
				cli_err("tail: --since '%s' is neither RFC 3339 "
					"(2026-11-27T11:00:00Z) nor a time ago (30s, 10m, 2h, 1d)",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'S':
			t->service = optarg;
			break;
		case 'o':
			t->output = true;
			break;
		case 'j':
			t->json = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("tail: unexpected argument '%s'", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (t->output && !t->service) {
		cli_err("tail: --output needs --service NAME (whose output?)");
		return EXIT_USAGE;
	}
	if (t->limit == -2)
		t->limit = t->all ? -1 : 10;
	if (t->limit > 1 << 20)
		t->limit = 1 << 20; /* a backlog larger than this is what --all is for */
	return 0;
}

/* Following a file the agent has yet to create is waiting for it. */
static bool may_wait(const struct tail *t, const char *path, int err)
{
	char dir[PATH_MAX];
	struct stat st;

	evlog_dir(path, dir, sizeof(dir));
	return t->follow && err == -ENOENT && !stat(dir, &st);
}

int cmd_tail(int argc, char **argv)
{
	struct tail t = {.limit = -2};
	struct outsrc octx[2] = {0};
	struct lr_src src[3];
	struct lr_set set;
	struct rev_config cfg = {0};
	const struct service_config *sc = NULL;
	sigset_t mask;
	size_t n = 1, no = 0;
	int rc, err;

	rc = parse_args(&t, argc, argv);
	if (rc)
		goto out_args;
	/* Without -c, the running agent's log (its record), else the default config's. */
	rc = cli_load_target(t.cfg_path, &cfg, true, NULL);
	if (rc)
		goto out_args;
	if (t.output && !(sc = config_service(&cfg, t.service))) {
		cli_err("tail: no service named '%s' in %s (--output reads its files)", t.service,
			cfg.path);
		rc = EXIT_USAGE;
		goto out_cfg;
	}
	src[0] = (struct lr_src){.path = cfg.log.path, .on_line = on_event_line, .ctx = &t};
	if (sc) {
		logs_sources(sc, -1, octx, src + 1, &no);
		for (size_t i = 0; i < no; i++) {
			octx[i].since = t.since;
			octx[i].json = t.json;
			octx[i].tail_rows = true;
		}
		n += no;
	}
	lr_init(&set, src, n, t.limit);
	if (t.follow) {
		/* Blocked before anything is read: a Ctrl-C at any point ends following cleanly. */
		sigemptyset(&mask);
		sigaddset(&mask, SIGINT);
		sigaddset(&mask, SIGTERM);
		sigprocmask(SIG_BLOCK, &mask, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		err = lr_open(&src[i]);
		/* A service that never ran has no output yet: its events alone are the timeline. */
		if (err && !may_wait(&t, src[i].path, err) && !(i > 0 && err == -ENOENT)) {
			lr_open_error(src[i].path, err, cfg.path);
			rc = EXIT_FAILED;
			goto out;
		}
	}
	if (!t.json)
		printf("%-27s  %-16s DETAILS\n", "TIME", "TYPE");
	for (size_t i = 0; i < n; i++)
		lr_read(&src[i], t.all);
	lr_flush(&set);
	rc = t.follow ? lr_follow(&set, &mask) : EXIT_OK;
	if (t.bad > BAD_LINES_SHOWN)
		cli_err("warning: %zu damaged lines skipped in all", t.bad);
out:
	lr_free(&set);
out_cfg:
	config_free(&cfg);
out_args:
	for (size_t i = 0; i < t.n_types; i++)
		free(t.types[i]);
	free(t.types);
	return rc < 0 ? EXIT_OK : rc;
}
