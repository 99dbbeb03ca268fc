// SPDX-License-Identifier: MIT
/* Helpers every subcommand uses: error messages, loading the configuration, and printing text
 * from files others could write without letting it drive the terminal. */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "lib/agentrec.h"

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("revenant: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_load_config(const char *path, struct rev_config *cfg)
{
	char err[1024];

	if (!path)
		path = config_default_path();
	if (config_load(path, cfg, err, sizeof(err))) {
		cli_err("%s", err);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int cli_need_root(const char *cmd)
{
	cli_err("%s needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run it with sudo", cmd);
	return EXIT_NOT_PERMITTED;
}

static int from_record(const struct agent_rec *r, struct rev_config *cfg, bool need_file)
{
	char err[1024];

	if (need_file) {
		if (config_load(r->config, cfg, err, sizeof(err))) {
			cli_err("%s (the config of the running agent, pid %d; give -c FILE)", err,
				r->pid);
			return EXIT_USAGE;
		}
		/* What the agent runs with, even if the file changed since. */
		free(cfg->control.socket);
		free(cfg->log.path);
	} else {
		memset(cfg, 0, sizeof(*cfg));
		cfg->path = strdup(r->config);
	}
	cfg->control.socket = strdup(r->control);
	cfg->log.path = strdup(r->log);
	if (!cfg->path || !cfg->control.socket || !cfg->log.path) {
		config_free(cfg);
		cli_err("out of memory");
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

bool cli_find_agent(struct rev_config *cfg)
{
	struct agent_rec r;

	return agentrec_find(&r) == 0 && from_record(&r, cfg, false) == EXIT_OK;
}

int cli_load_target(const char *path, struct rev_config *cfg, bool need_file, bool *from_agent)
{
	struct agent_rec r;
	bool found = !path && agentrec_find(&r) == 0;

	if (from_agent)
		*from_agent = found;
	if (found)
		return from_record(&r, cfg, need_file);
	if (!path && access(config_default_path(), F_OK)) {
		/* Nothing to go on: say where we looked rather than "cannot read" a fallback. */
		cli_err("no running agent found (no live record at %s) and no config at %s or %s: "
			"start one (sudo revenant run -c FILE) or give -c FILE",
			agentrec_path(), CONFIG_DEFAULT_PATH, CONFIG_FALLBACK_PATH);
		return EXIT_USAGE;
	}
	return cli_load_config(path, cfg);
}

/* Length of the valid UTF-8 sequence at s (n bytes left) that is no control character (C0, DEL,
 * C1), else 0. */
static int printable_utf8(const unsigned char *s, size_t left)
{
	static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
	unsigned cp;
	size_t n;

	if (s[0] < 0x80)
		n = 1;
	else if ((s[0] & 0xe0) == 0xc0)
		n = 2;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4;
	else
		return 0;
	if (n > left)
		return 0;
	cp = n == 1 ? s[0] : s[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp > 0x10ffff || cp < min_cp[n] ||
	    (cp >= 0xd800 && cp < 0xe000))
		return 0;
	return n;
}

void cli_put_clean(FILE *f, const char *s, size_t len, bool tabs)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	int n;

	while (p < end) {
		n = printable_utf8(p, end - p);
		if (n)
			fwrite(p, 1, n, f);
		else
			fputc(tabs && *p == '\t' ? '\t' : '?', f);
		p += n ? n : 1;
	}
}
