// SPDX-License-Identifier: MIT
/* `revenant logs NAME`: the last lines of a service's output, every line of every segment
 * (--all), or its files followed across rotations (-f); one stream (--stdout, --stderr) or both,
 * merged by time when they are in separate files. Needs read permission on the files, not the
 * agent or root. Owns the reading of the output-line format the agent writes (agent/output). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "agent/output.h"
#include "cmd/cli.h"
#include "cmd/logs.h"
#include "cmd/tail.h"
#include "lib/log.h"

void outline_parse(const char *line, size_t len, int file_stream, struct outline *o)
{
	char ts[OUT_TS_LEN + 1];
	const char *p = line + OUT_TS_LEN;

	*o = (struct outline){.stream = file_stream, .text = line, .len = len};
	if (len < OUT_PREFIX_LEN || line[OUT_TS_LEN] != ' ' || p[7] != ' ' ||
	    (p[8] != 'F' && p[8] != 'P') || p[9] != ' ')
		return;
	memcpy(ts, line, OUT_TS_LEN);
	ts[OUT_TS_LEN] = 0;
	if (ev_parse_ts(ts, &o->ts_ns))
		return;
	if (!memcmp(p + 1, "stdout", 6))
		o->stream = OUT_STDOUT;
	else if (!memcmp(p + 1, "stderr", 6))
		o->stream = OUT_STDERR;
	else
		return;
	o->stamped = true;
	o->partial = p[8] == 'P';
	o->text = line + OUT_PREFIX_LEN;
	o->len = len - OUT_PREFIX_LEN;
}

/* The text as a JSON string: invalid UTF-8 bytes and NULs (a service may print anything)
 * become U+FFFD, so the output is always valid JSON. */
static char *json_text(const char *s, size_t len)
{
	char *out = malloc(len * 3 + 1), *w = out;
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	if (!out)
		return NULL;
	while (p < end) {
		size_t n = *p < 0x80		 ? 1
			   : (*p & 0xe0) == 0xc0 ? 2
			   : (*p & 0xf0) == 0xe0 ? 3
			   : (*p & 0xf8) == 0xf0 ? 4
						 : 0;
		bool ok = n && *p && n <= (size_t)(end - p);

		for (size_t i = 1; ok && i < n; i++)
			ok = (p[i] & 0xc0) == 0x80;
		if (ok && n == 2)
			ok = *p >= 0xc2;
		if (ok && n == 3) {
			unsigned cp = (p[0] & 0x0f) << 12 | (p[1] & 0x3f) << 6 | (p[2] & 0x3f);

			ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
		}
		if (ok && n == 4) {
			unsigned cp = (p[0] & 0x07) << 18 | (p[1] & 0x3f) << 12 |
				      (p[2] & 0x3f) << 6 | (p[3] & 0x3f);

			ok = cp >= 0x10000 && cp <= 0x10ffff;
		}
		if (ok) {
			memcpy(w, p, n);
			w += n;
			p += n;
		} else {
			memcpy(w, "\xef\xbf\xbd", 3);
			w += 3;
			p++;
		}
	}
	*w = 0;
	return out;
}

static char *format_json(const struct outsrc *c, const struct outline *o)
{
	cJSON *obj = cJSON_CreateObject();
	char ts[40], *text = json_text(o->text, o->len), *s = NULL;

	if (!obj || !text)
		goto out;
	if (o->stamped) {
		ev_format_ts(ts, sizeof(ts), o->ts_ns);
		cJSON_AddStringToObject(obj, "ts", ts);
	} else {
		cJSON_AddNullToObject(obj, "ts");
	}
	if (c->tail_rows)
		cJSON_AddStringToObject(obj, "type", "output");
	cJSON_AddStringToObject(obj, "service", c->service);
	if (o->stream >= 0)
		cJSON_AddStringToObject(obj, "stream", out_stream_name(o->stream));
	else
		cJSON_AddNullToObject(obj, "stream");
	cJSON_AddStringToObject(obj, "line", text);
	if (o->partial)
		cJSON_AddBoolToObject(obj, "partial", true);
	s = cJSON_PrintUnformatted(obj);
	if (s) {
		size_t n = strlen(s);
		char *t = realloc(s, n + 2);

		if (t) {
			t[n] = '\n';
			t[n + 1] = 0;
		} else {
			free(s);
		}
		s = t;
	}
out:
	cJSON_Delete(obj);
	free(text);
	return s;
}

/* logs: "TS STREAM TEXT" (raw lines as they are); tail: a row of the event table. */
static char *format_text(const struct outsrc *c, const struct outline *o)
{
	const char *stream = o->stream >= 0 ? out_stream_name(o->stream) : "output";
	char ts[40], *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (!f)
		return NULL;
	if (o->stamped)
		ev_format_ts(ts, sizeof(ts), o->ts_ns);
	else
		snprintf(ts, sizeof(ts), "-");
	if (c->tail_rows)
		fprintf(f, "%-27s  %-16s service=%s ", ts, stream, c->service);
	else if (o->stamped)
		fprintf(f, "%s %s ", ts, stream);
	cli_put_clean(f, o->text, o->len, true);
	if (o->partial)
		fputs(" [continued]", f);
	fputc('\n', f);
	if (fclose(f)) {
		free(s);
		return NULL;
	}
	return s;
}

void outsrc_line(struct lr_src *s, const char *line, size_t len)
{
	struct outsrc *c = s->ctx;
	struct outline o;

	outline_parse(line, len, c->file_stream, &o);
	if (o.stamped)
		c->last_ts = o.ts_ns;
	if ((c->want >= 0 && o.stream != c->want) || (c->since && c->last_ts < c->since))
		return;
	lr_emit(s, c->last_ts, c->json ? format_json(c, &o) : format_text(c, &o));
}

/* ---- the command ---- */

struct logs_opts {
	const char *cfg_path, *service;
	bool json, all, follow;
	long long limit;
	int want;
	uint64_t since;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: revenant logs [-c FILE] [-f] [-n N] [--all] [--since TIME]\n"
	    "                     [--stdout|--stderr] [--json] SERVICE\n"
	    "\n"
	    "Print the last lines a service wrote to its stdout and stderr, from its output\n"
	    "files (log_file, stderr_file of the config) and their rotated segments. Needs\n"
	    "read permission on them, not the agent.\n"
	    "\n"
	    "  -c, --config FILE   configuration (default %s, else %s)\n"
	    "  -n, --lines N       the last N lines (default 10), across rotations\n"
	    "  -a, --all           every line of every rotated segment, then of the live file\n"
	    "  -f, --follow        then print lines as they are written, across rotations,\n"
	    "                      until SIGINT or SIGTERM (exit 0)\n"
	    "  -s, --since TIME    only lines at or after TIME: RFC 3339\n"
	    "                      (2026-11-27T11:00:00Z) or a time ago (30s, 10m, 2h, 1d)\n"
	    "      --stdout        only what it wrote to stdout\n"
	    "      --stderr        only what it wrote to stderr\n"
	    "      --json          one {\"ts\", \"service\", \"stream\", \"line\"} object per "
	    "line\n"
	    "                      (\"partial\": true on a piece of a line cut at 64 KiB)\n"
	    "  -h, --help          this help\n"
	    "\n"
	    "Lines are shown as TIME STREAM TEXT; a piece of a line longer than 64 KiB ends in\n"
	    "\" [continued]\". With log_timestamps off the lines are shown as they were written.\n"
	    "Control characters are shown as '?' (tabs are kept); --json keeps them escaped.\n",
	    CONFIG_DEFAULT_PATH, CONFIG_FALLBACK_PATH);
}

static int parse_args(struct logs_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"lines", required_argument, NULL, 'n'},
	    {"all", no_argument, NULL, 'a'},	      {"follow", no_argument, NULL, 'f'},
	    {"since", required_argument, NULL, 's'},  {"stdout", no_argument, NULL, 'O'},
	    {"stderr", no_argument, NULL, 'E'},	      {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},	      {0},
	};
	struct timespec now;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:n:afs:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->cfg_path = optarg;
			break;
		case 'n':
			errno = 0;
			o->limit = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || o->limit < 0) {
				cli_err("logs: -n wants a number of lines (0 or more), not '%s'",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'a':
			o->all = true;
			break;
		case 'f':
			o->follow = true;
			break;
		case 's':
			clock_gettime(CLOCK_REALTIME, &now);
			if (tail_parse_since(optarg,
					     (uint64_t)now.tv_sec * 1000000000ull + now.tv_nsec,
					     &o->since)) {
				cli_err("logs: --since '%s' is neither RFC 3339 "
					"(2026-11-27T11:00:00Z) nor a time ago (30s, 10m, 2h, 1d)",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'O':
		case 'E':
			if (o->want >= 0 && o->want != (c == 'E' ? OUT_STDERR : OUT_STDOUT)) {
				cli_err(
				    "logs: --stdout and --stderr exclude each other (give neither "
				    "for both)");
				return EXIT_USAGE;
			}
			o->want = c == 'E' ? OUT_STDERR : OUT_STDOUT;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		if (optind < argc - 1)
			cli_err("logs: one service at a time ('%s' is one too many)",
				argv[optind + 1]);
		else
			cli_err("logs: which service? (e.g. revenant logs backend)");
		usage(stderr);
		return EXIT_USAGE;
	}
	o->service = argv[optind];
	if (o->limit == -2)
		o->limit = o->all ? -1 : 10;
	if (o->limit > 1 << 20)
		o->limit = 1 << 20; /* a backlog larger than this is what --all is for */
	return 0;
}

void logs_sources(const struct service_config *sc, int want, struct outsrc *ctx, struct lr_src *src,
		  size_t *n)
{
	bool shared = !strcmp(sc->log_file, sc->stderr_file);

	*n = 0;
	for (int st = OUT_STDOUT; st <= OUT_STDERR; st++) {
		if (shared ? st == OUT_STDERR : want >= 0 && want != st)
			continue;
		ctx[*n].service = sc->name;
		ctx[*n].file_stream = shared ? -1 : st;
		ctx[*n].want = want;
		src[*n] = (struct lr_src){.path = st == OUT_STDOUT ? sc->log_file : sc->stderr_file,
					  .on_line = outsrc_line,
					  .ctx = &ctx[*n]};
		(*n)++;
	}
}

int cmd_logs(int argc, char **argv)
{
	struct logs_opts o = {.limit = -2, .want = -1};
	struct outsrc ctx[2] = {0};
	struct lr_src src[2];
	struct lr_set set;
	struct rev_config cfg = {0};
	const struct service_config *sc;
	char dir[4096];
	sigset_t mask;
	size_t n;
	int rc, err;

	rc = parse_args(&o, argc, argv);
	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	/* Without -c: the running agent's config (its record), else the default file. */
	rc = cli_load_target(o.cfg_path, &cfg, true, NULL);
	if (rc)
		return rc;
	sc = config_service(&cfg, o.service);
	if (!sc) {
		cli_err("logs: no service named '%s' in %s", o.service, cfg.path);
		config_free(&cfg);
		return EXIT_USAGE;
	}
	logs_sources(sc, o.want, ctx, src, &n);
	for (size_t i = 0; i < n; i++) {
		ctx[i].since = o.since;
		ctx[i].json = o.json;
	}
	lr_init(&set, src, n, o.limit);
	if (o.follow) {
		/* Blocked before anything is read: a Ctrl-C at any point ends following cleanly. */
		sigemptyset(&mask);
		sigaddset(&mask, SIGINT);
		sigaddset(&mask, SIGTERM);
		sigprocmask(SIG_BLOCK, &mask, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		err = lr_open(&src[i]);
		if (!err || (o.follow && err == -ENOENT &&
			     (evlog_dir(src[i].path, dir, sizeof(dir)), !access(dir, R_OK | X_OK))))
			continue; /* following a file the service has yet to write is waiting for it
				   */
		if (err == -ENOENT)
			cli_err("cannot read %s: %s (has service %s run under the agent? it is "
				"services.%s.%s in %s)",
				src[i].path, strerror(-err), sc->name, sc->name,
				ctx[i].file_stream == OUT_STDERR ? "stderr_file" : "log_file",
				cfg.path);
		else
			lr_open_error(src[i].path, err, cfg.path);
		rc = EXIT_FAILED;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		lr_read(&src[i], o.all);
	lr_flush(&set);
	rc = o.follow ? lr_follow(&set, &mask) : EXIT_OK;
out:
	lr_free(&set);
	config_free(&cfg);
	return rc;
}
