/* SPDX-License-Identifier: MIT */
/* The live status page on metrics.listen: GET / (one page, its script and style embedded in the
 * binary), the JSON of status, scan and zombies (/api/status, /api/ports, /api/zombies), the event
 * stream (/api/events, Server-Sent Events with Last-Event-ID resume from a ring of recent events)
 * and, only with metrics.control and the token, start/stop/restart (POST /api/control). */
#ifndef REVENANT_WEB_H
#define REVENANT_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/httpd.h"
#include "agent/supervisor.h"
#include "lib/config.h"
#include "lib/log.h"

#define WEB_RING       1024	       /* events kept for replay and Last-Event-ID resume */
#define WEB_REPLAY     200	       /* replayed to a new stream without Last-Event-ID */
#define WEB_TIMELINE   32	       /* lifecycle events kept per service */
#define WEB_TOKEN_FILE "metrics.token" /* default, beside the control socket */

/* Files of web/, embedded at build time by web/embed.cmake: "/" is index.html. */
struct web_asset {
	const char *path;
	const char *ctype;
	const unsigned char *data;
	size_t len;
};
extern const struct web_asset web_assets[];
extern const size_t web_n_assets;

struct web_opts {
	struct loop *loop;
	struct supervisor *sup;
	const struct rev_config *cfg; /* control.socket (state file), metrics.control, token_file */
	struct evlog *log;	      /* tapped for the event stream */
	int listeners_fd;	      /* the sensor's listeners map */
	const char *pin_dir;	      /* the agent's pinned iterators */
};

struct web;

/* Registers the routes on h and taps the log. NULL with a message in err. A problem with the
 * token file is not fatal: control stays off and *warn says why (warn may be NULL). */
struct web *web_open(struct httpd *h, const struct web_opts *o, char *warn, size_t warnlen,
		     char *err, size_t errlen);
void web_close(struct web *w);

/* The token file: read when it exists (a regular file of root's, mode 0600 or stricter, not a
 * symlink), else created with a fresh random token. 0 or -errno with a message in err. */
int web_load_token(const char *path, char *token, size_t len, char *err, size_t errlen);

#endif
