// SPDX-License-Identifier: MIT
/* The status page and its API. Owns the ring of recent event lines (fed by the event log's tap),
 * each service's short history for the page's timelines, the event-stream clients and the control
 * token. The JSON comes from the code the commands use (sup_status, lib/rows.c), so the page and
 * `status`/`scan`/`zombies --json` cannot disagree. Everything answers inside the loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/web.h"
#include "lib/rows.h"
#include "lib/snapshot.h"
#include "lib/state.h"
#include "lib/util.h"

/* Every answer of the page's routes: nothing but this origin, no framing, no referrer. */
#define SECURITY_HEADERS                                                                           \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "       \
	"img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "                \
	"frame-ancestors 'none'\r\n"                                                               \
	"Referrer-Policy: no-referrer\r\n"                                                         \
	"X-Frame-Options: DENY\r\n"                                                                \
	"Cross-Origin-Resource-Policy: same-origin\r\n"
#define JSON "application/json"
#define TEXT "text/plain; charset=utf-8"

struct ring_ent {
	char *line;
	size_t len;
};

struct history {
	char *items[WEB_TIMELINE]; /* compact event objects, oldest at head */
	int head, n;
	char *last_exit; /* the last service_exit, whole */
};

struct sse {
	struct web *w;
	struct http_conn *c;
	uint64_t sent_to; /* the next event id it needs */
	struct sse *prev, *next;
};

struct web {
	struct httpd *h;
	struct supervisor *sup;
	const struct rev_config *cfg;
	struct evlog *log;
	int listeners_fd;
	char pin_dir[256];
	char token_path[REV_PATH_BUF];
	char token[128]; /* "" while control is off */
	struct ring_ent ring[WEB_RING];
	uint64_t next_id;     /* the id the next event gets; ids start at 1 */
	struct history *hist; /* one per configured service, in config order */
	struct sse *streams;
	struct loop *loop;
	struct loop_timer fanout; /* armed while a stream client is behind */
};

/* ---- the ring and the histories, fed by the log's tap ---- */

static uint64_t oldest_id(const struct web *w)
{
	return w->next_id > WEB_RING ? w->next_id - WEB_RING : 1;
}

static bool lifecycle(const char *line, size_t len)
{
	static const char *const types[] = {
	    "\"type\":\"service_start\"",    "\"type\":\"service_exit\"",
	    "\"type\":\"service_restart\"",  "\"type\":\"service_give_up\"",
	    "\"type\":\"health\"",	     "\"type\":\"port_migrated\"",
	    "\"type\":\"service_leftover\"",
	};

	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (memmem(line, len, types[i], strlen(types[i])))
			return true;
	return false;
}

/* A service's lifecycle events, compact (no service name, no command) for its timeline. */
static void remember(struct web *w, const char *line, size_t len)
{
	cJSON *e = cJSON_ParseWithLength(line, len);
	const cJSON *svc = cJSON_GetObjectItemCaseSensitive(e, "service");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
	const struct service_config *c;
	struct history *h;
	char *s;

	if (!cJSON_IsString(svc) || !cJSON_IsString(type) ||
	    !(c = config_service(w->cfg, svc->valuestring))) {
		cJSON_Delete(e);
		return;
	}
	h = &w->hist[c - w->cfg->services];
	if (!strcmp(type->valuestring, "service_exit")) {
		free(h->last_exit);
		h->last_exit = strndup(line, len);
	}
	cJSON_DeleteItemFromObjectCaseSensitive(e, "service");
	cJSON_DeleteItemFromObjectCaseSensitive(e, "command");
	s = cJSON_PrintUnformatted(e);
	cJSON_Delete(e);
	if (!s)
		return;
	if (h->n == WEB_TIMELINE) {
		free(h->items[h->head]);
		h->items[h->head] = s;
		h->head = (h->head + 1) % WEB_TIMELINE;
	} else {
		h->items[(h->head + h->n++) % WEB_TIMELINE] = s;
	}
}

/* "id: N\ndata: LINE\n\n" appended to buf at *n (cap bytes); false when it does not fit. */
static bool sse_format(char *buf, size_t cap, size_t *n, uint64_t id, const char *line, size_t len)
{
	int w = snprintf(buf + *n, cap - *n, "id: %llu\ndata: ", (unsigned long long)id);

	if (w < 0 || *n + w + len + 2 > cap)
		return false;
	*n += w;
	memcpy(buf + *n, line, len);
	memcpy(buf + *n + len, "\n\n", 2);
	*n += len + 2;
	return true;
}

/* The stream clients get new events in turns of at most FANOUT_CHUNK clients, each turn its own
 * pass of the loop; a turn also ends as soon as anything else is ready in the loop (a kernel
 * record: a collision, an exit), so the agent's reactions wait for one send at most, never for
 * the sends to every client. Events since a client's last turn go out in one send. */
#define FANOUT_CHUNK 8
/* The first turn waits this long after an event: what a burst brings (a collision right after
 * the listen it collides with, an exit and the restart) goes out in one send per client, after
 * the agent has reacted to all of it. The page is still live to a human eye. */
#define FANOUT_DELAY_NS (10 * NS_PER_MS)

static void arm_fanout(struct web *w, uint64_t delay_ns)
{
	/* Never "past": the loop runs timers due before its pass began, so this one waits at least
	 * for the next pass and what is ready meanwhile goes first. */
	if (!w->fanout.armed)
		loop_timer_at(w->loop, &w->fanout, mono_ns() + delay_ns);
}

static void on_fanout(struct loop *l, void *ctx)
{
	struct web *w = ctx;
	uint64_t oldest = oldest_id(w), base = w->next_id;
	struct sse *turn[FANOUT_CHUNK];
	size_t offs[WEB_RING + 1], cap = 16384, n = 0;
	int k = 0;
	bool behind = false;
	char *buf;

	(void)l;
	for (struct sse *s = w->streams; s; s = s->next) {
		if (s->sent_to >= w->next_id)
			continue;
		if (k == FANOUT_CHUNK) {
			behind = true;
			break;
		}
		turn[k++] = s;
		if (s->sent_to < base)
			base = s->sent_to;
	}
	if (base < oldest)
		base = oldest;
	/* The furthest behind first: it is the one the ring may leave behind. */
	for (int i = 1; i < k; i++)
		for (int j = i; j > 0 && turn[j]->sent_to < turn[j - 1]->sent_to; j--) {
			struct sse *t = turn[j];

			turn[j] = turn[j - 1];
			turn[j - 1] = t;
		}
	buf = k ? malloc(cap) : NULL;
	for (uint64_t id = base; buf && id < w->next_id; id++) {
		const struct ring_ent *r = &w->ring[id % WEB_RING];

		offs[id - base] = n;
		while (r->line && !sse_format(buf, cap, &n, id, r->line, r->len)) {
			char *p = realloc(buf, cap * 2);

			if (!p) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = p;
			cap *= 2;
		}
	}
	for (int i = 0; buf && i < k; i++) {
		struct sse *s = turn[i];

		/* The rest in the next turn, after what is ready now — unless the ring is about to
		 * overtake it (a burst that keeps the loop busy must not cost it events). */
		if (i && loop_busy(w->loop) && w->next_id - s->sent_to < WEB_RING / 2) {
			behind = true;
			break;
		}

		if (s->sent_to < oldest) {
			/* More events came since its last turn than the ring holds: say so, as a
			 * resume from too far back does. */
			char gap[128];
			int g =
			    snprintf(gap, sizeof(gap),
				     "event: agent\ndata: {\"agent_pid\":%d,\"next_event_id\":%llu,"
				     "\"missed\":%llu}\n\n",
				     getpid(), (unsigned long long)w->next_id,
				     (unsigned long long)(oldest - s->sent_to));

			httpd_stream_write(s->c, gap, g);
			s->sent_to = oldest;
		}
		/* A client too far behind is dropped by httpd; it leaves our list from its close
		 * callback, from the loop, later. */
		httpd_stream_write(s->c, buf + offs[s->sent_to - base],
				   n - offs[s->sent_to - base]);
		s->sent_to = w->next_id;
	}
	free(buf);
	if (behind)
		arm_fanout(w, 0);
}

static void on_line(void *ctx, const char *line, size_t len)
{
	struct web *w = ctx;
	uint64_t id = w->next_id++;
	struct ring_ent *r = &w->ring[id % WEB_RING];

	free(r->line);
	r->line = strndup(line, len);
	r->len = r->line ? len : 0;
	if (lifecycle(line, len))
		remember(w, line, len);
	if (!w->streams)
		return;
	/* A burst can outrun the fan-out's delay (a thousand events in a few ms, or in one batch
	 * of the ring buffer, with no loop pass between): a stream the ring is about to overtake
	 * gets what it is owed now. */
	for (struct sse *s = w->streams; s; s = s->next)
		if (w->next_id - s->sent_to >= WEB_RING * 3 / 4) {
			on_fanout(w->loop, w);
			break;
		}
	arm_fanout(w, FANOUT_DELAY_NS);
}

/* ---- helpers ---- */

/* The value of name in a query string ("a=1&b=2"), copied into buf; false when absent. */
static bool query_param(const char *q, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t pl = amp ? (size_t)(amp - q) : strlen(q);

		if (pl > nl && !strncmp(q, name, nl) && q[nl] == '=') {
			snprintf(buf, len, "%.*s", (int)(pl - nl - 1), q + nl + 1);
			return true;
		}
		q = amp ? amp + 1 : NULL;
	}
	return false;
}

/* The page and the API are for this machine: a Host that is not an IP literal or localhost is a
 * page elsewhere that rebound its DNS name to us (a visitor's browser would carry its requests). */
static bool host_ok(struct http_conn *c, const struct http_req *req)
{
	if (!req->has_host || http_host_is_local(req->host))
		return true;
	httpd_respondf(c, 403, TEXT, SECURITY_HEADERS,
		       "Host %s refused: use an IP address or localhost\n", req->host);
	return false;
}

static void respond_json(struct http_conn *c, int status, cJSON *j)
{
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;

	cJSON_Delete(j);
	if (!s) {
		httpd_respondf(c, 500, TEXT, SECURITY_HEADERS, "out of memory\n");
		return;
	}
	httpd_respond(c, status, JSON, SECURITY_HEADERS, s, strlen(s));
	free(s);
}

static void respond_error(struct http_conn *c, int status, const char *msg)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddBoolToObject(j, "ok", false);
	cJSON_AddStringToObject(j, "error", msg);
	respond_json(c, status, j);
}

/* ---- routes ---- */

static void on_asset(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	(void)ctx;
	(void)body;
	if (!host_ok(c, req))
		return;
	for (size_t i = 0; i < web_n_assets; i++)
		if (!strcmp(web_assets[i].path, req->path)) {
			httpd_respond(c, 200, web_assets[i].ctype, SECURITY_HEADERS,
				      (const char *)web_assets[i].data, web_assets[i].len);
			return;
		}
	httpd_respondf(c, 404, TEXT, SECURITY_HEADERS, "nothing at %s\n", req->path);
}

/* What `status --json` prints: the services object of the control reply. */
static void on_status(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	struct web *w = ctx;
	cJSON *st, *out;

	(void)body;
	if (!host_ok(c, req))
		return;
	st = sup_status(w->sup);
	out = cJSON_CreateObject();
	if (!st || !out) {
		cJSON_Delete(st);
		cJSON_Delete(out);
		respond_error(c, 500, "out of memory");
		return;
	}
	/* what `status --json` prints: the services, and the event log's health */
	cJSON_AddItemToObject(out, "services",
			      cJSON_DetachItemFromObjectCaseSensitive(st, "services"));
	if (cJSON_GetObjectItemCaseSensitive(st, "log"))
		cJSON_AddItemToObject(out, "log", cJSON_DetachItemFromObjectCaseSensitive(st, "log"));
	cJSON_Delete(st);
	respond_json(c, 200, out);
}

/* What `scan --json --tcp` prints (`scan --json` with ?udp=1): rows from the listeners map. */
static void on_ports(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	struct web *w = ctx;
	struct scan_rows rows;
	char err[256], v[8];
	bool udp = query_param(req->query, "udp", v, sizeof(v)) && !strcmp(v, "1"), walked;
	char *s;

	(void)body;
	if (!host_ok(c, req))
		return;
	if (scan_rows_from_map(w->listeners_fd, w->pin_dir, udp, &rows, &walked, err,
			       sizeof(err))) {
		respond_error(c, 500, err);
		return;
	}
	scan_filter(&rows, NULL, 0, true, udp);
	scan_attribute_services(&rows, w->cfg->control.socket);
	s = scan_json(&rows);
	scan_rows_free(&rows);
	if (!s) {
		respond_error(c, 500, "out of memory");
		return;
	}
	httpd_respond(c, 200, JSON, SECURITY_HEADERS, s, strlen(s));
	free(s);
}

/* What `zombies --json` prints, from the agent's pinned task iterator. */
static void on_zombies(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	struct web *w = ctx;
	struct snap s;
	struct rt_state st = {0};
	char err[512], path[REV_PATH_BUF];
	bool have;

	(void)body;
	if (!host_ok(c, req))
		return;
	if (snapshot_take(&s, SNAP_ZOMBIES, w->pin_dir, err, sizeof(err))) {
		respond_error(c, 500, err);
		return;
	}
	state_runtime_path(w->cfg->control.socket, REV_STATE_FILE, path, sizeof(path));
	have = state_read(path, &st) == 0;
	respond_json(c, 200, zombies_json(s.zombies, s.n_zombies, have ? &st : NULL, true));
	state_free(&st);
	snapshot_free(&s);
}

/* Each service's recent lifecycle events (oldest first) and its last exit, for the timelines. The
 * items are kept as JSON text and written out as they are: no parsing on the loop per request. */
static void on_timeline(void *ctx, struct http_conn *c, const struct http_req *req,
			const char *body)
{
	struct web *w = ctx;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	(void)body;
	if (!host_ok(c, req))
		return;
	f = open_memstream(&out, &len);
	if (!f) {
		respond_error(c, 500, "out of memory");
		return;
	}
	fputs("{\"services\":{", f);
	for (int i = 0; i < w->cfg->n_services; i++) {
		const struct history *h = &w->hist[i];
		cJSON *name = cJSON_CreateString(w->cfg->services[i].name);
		char *key = name ? cJSON_PrintUnformatted(name) : NULL;

		cJSON_Delete(name);
		fprintf(f, "%s%s:{\"last_exit\":%s,\"events\":[", i ? "," : "", key ? key : "\"?\"",
			h->last_exit ? h->last_exit : "null");
		free(key);
		for (int k = 0; k < h->n; k++)
			fprintf(f, "%s%s", k ? "," : "", h->items[(h->head + k) % WEB_TIMELINE]);
		fputs("]}", f);
	}
	fputs("}}", f);
	if (fclose(f) || !out) {
		free(out);
		respond_error(c, 500, "out of memory");
		return;
	}
	httpd_respond(c, 200, JSON, SECURITY_HEADERS, out, len);
	free(out);
}

static void on_info(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	struct web *w = ctx;
	cJSON *j = cJSON_CreateObject();

	(void)body;
	if (!host_ok(c, req)) {
		cJSON_Delete(j);
		return;
	}
	cJSON_AddStringToObject(j, "version", REVENANT_VERSION);
	cJSON_AddNumberToObject(j, "agent_pid", getpid());
	cJSON_AddStringToObject(j, "config", w->cfg->path);
	cJSON_AddBoolToObject(j, "control", w->token[0] != 0);
	if (w->token[0])
		cJSON_AddStringToObject(j, "token_file", w->token_path);
	cJSON_AddNumberToObject(j, "first_event_id", (double)oldest_id(w));
	cJSON_AddNumberToObject(j, "next_event_id", (double)w->next_id);
	respond_json(c, 200, j);
}

static void stream_closed(void *ctx, struct http_conn *c)
{
	struct sse *s = ctx;

	(void)c;
	if (s->prev)
		s->prev->next = s->next;
	else
		s->w->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* Server-Sent Events: the ring first (after Last-Event-ID, else the last ?replay=N, default
 * WEB_REPLAY), then every event as it is logged. */
static void on_events(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	struct web *w = ctx;
	uint64_t from, oldest = oldest_id(w), missed = 0;
	size_t cap = 64 * 1024, n = 0;
	char v[24], *buf;
	unsigned long replay = WEB_REPLAY;
	struct sse *s;
	int rc;

	(void)body;
	if (!host_ok(c, req))
		return;
	if (req->method == HTTP_HEAD) {
		httpd_respond(c, 200, "text/event-stream; charset=utf-8", SECURITY_HEADERS, NULL,
			      0);
		return;
	}
	if (query_param(req->query, "replay", v, sizeof(v)))
		replay = strtoul(v, NULL, 10);
	if (replay > WEB_RING)
		replay = WEB_RING;
	from = w->next_id > replay ? w->next_id - replay : 1;
	if (from < oldest)
		from = oldest;
	if (req->has_last_event_id && req->last_event_id < w->next_id) {
		/* Resume: what came after the last one seen, as far as the ring reaches. */
		from = req->last_event_id + 1;
		if (from < oldest) {
			missed = oldest - from;
			from = oldest;
		}
	}
	/* (A Last-Event-ID from the future belongs to an earlier run of the agent: its ids started
	 * again at 1, so the client gets the usual replay and an "agent" event says so.) */
	s = calloc(1, sizeof(*s));
	buf = malloc(cap);
	if (!s || !buf) {
		free(s);
		free(buf);
		respond_error(c, 500, "out of memory");
		return;
	}
	rc = httpd_stream_start(c, "text/event-stream; charset=utf-8", SECURITY_HEADERS);
	if (rc == -EBUSY) {
		free(s);
		free(buf);
		respond_error(c, 503, "too many event streams at once");
		return;
	}
	if (rc) {
		free(s);
		free(buf);
		return;
	}
	n = snprintf(buf, cap,
		     "retry: 2000\n\nevent: agent\ndata: {\"agent_pid\":%d,\"next_event_id\":%llu,"
		     "\"missed\":%llu}\n\n",
		     getpid(), (unsigned long long)w->next_id, (unsigned long long)missed);
	for (uint64_t id = from; id < w->next_id; id++) {
		const struct ring_ent *r = &w->ring[id % WEB_RING];

		if (!r->line)
			continue;
		while (!sse_format(buf, cap, &n, id, r->line, r->len)) {
			char *p = realloc(buf, cap * 2);

			if (!p)
				break;
			buf = p;
			cap *= 2;
		}
	}
	s->w = w;
	s->c = c;
	s->sent_to = w->next_id;
	s->next = w->streams;
	if (w->streams)
		w->streams->prev = s;
	w->streams = s;
	httpd_on_close(c, stream_closed, s);
	httpd_stream_write(c, buf, n);
	free(buf);
}

static void reply_discard(void *ctx, cJSON *resp)
{
	(void)ctx;
	cJSON_Delete(resp); /* the outcome reaches the page through the event stream */
}

static bool token_ok(const struct web *w, const char *given)
{
	size_t a = strlen(w->token), b = strlen(given);
	unsigned char diff = a != b;

	/* Constant time over the real token's length: the answer's timing tells nothing. */
	for (size_t i = 0; i < a; i++)
		diff |= (unsigned char)w->token[i] ^ (unsigned char)(i < b ? given[i] : 0);
	return a && !diff;
}

/* POST {"cmd": "start"|"stop"|"restart", "service": NAME} with the token: 202 once the
 * supervisor took it (the outcome comes as events), or its refusal. */
static void on_control(void *ctx, struct http_conn *c, const struct http_req *req, const char *body)
{
	struct web *w = ctx;
	const cJSON *cmd, *svc;
	cJSON *j, *resp;
	char msg[4400];

	if (!host_ok(c, req))
		return;
	if (!w->token[0]) {
		respond_error(c, 403,
			      w->cfg->metrics.control
				  ? "control is off: the token file could not be used "
				    "(see the agent's stderr)"
				  : "read-only: set metrics.control to true in the config "
				    "to allow start/stop/restart here");
		return;
	}
	if (!token_ok(w, req->token)) {
		snprintf(msg, sizeof(msg),
			 "a valid token is needed in X-Revenant-Token (root can read it from %s)",
			 w->token_path);
		respond_error(c, 403, msg);
		return;
	}
	j = cJSON_ParseWithLength(body, req->content_length);
	cmd = cJSON_GetObjectItemCaseSensitive(j, "cmd");
	svc = cJSON_GetObjectItemCaseSensitive(j, "service");
	if (!cJSON_IsString(cmd) || !cJSON_IsString(svc) ||
	    (strcmp(cmd->valuestring, "start") && strcmp(cmd->valuestring, "stop") &&
	     strcmp(cmd->valuestring, "restart"))) {
		cJSON_Delete(j);
		respond_error(
		    c, 400,
		    "expected {\"cmd\": \"start\"|\"stop\"|\"restart\", \"service\": NAME}");
		return;
	}
	resp = sup_control(w->sup, j, reply_discard, w);
	if (!resp) {
		resp = cJSON_CreateObject();
		cJSON_AddBoolToObject(resp, "ok", true);
		cJSON_AddBoolToObject(resp, "accepted", true);
		cJSON_AddStringToObject(resp, "cmd", cmd->valuestring);
		cJSON_AddStringToObject(resp, "service", svc->valuestring);
		cJSON_Delete(j);
		respond_json(c, 202, resp);
		return;
	}
	cJSON_Delete(j);
	respond_json(c, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")) ? 200 : 409,
		     resp);
}

/* ---- the token ---- */

int web_load_token(const char *path, char *token, size_t len, char *err, size_t errlen)
{
	unsigned char rnd[32];
	char buf[256];
	struct stat st;
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		rc = mkdir_p_parent(path, 0700);
		if (rc) {
			snprintf(err, errlen, "cannot create the directory of %s: %s", path,
				 strerror(-rc));
			return rc;
		}
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
			snprintf(err, errlen, "no random bytes for a token: %s", strerror(errno));
			return -EIO;
		}
		for (size_t i = 0; i < sizeof(rnd) && 2 * i + 2 < len; i++)
			snprintf(token + 2 * i, 3, "%02x", rnd[i]);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot create %s: %s (metrics.token_file)", path,
				 strerror(errno));
			return rc;
		}
		rc = dprintf(fd, "%s\n", token) < 0 ? -errno : 0;
		if (close(fd) && !rc)
			rc = -errno;
		if (rc)
			snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen,
			 "cannot open %s: %s (metrics.token_file; a symlink is refused)", path,
			 strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077)) {
		close(fd);
		snprintf(err, errlen,
			 "%s must be a regular file of root's that nobody else can read or write "
			 "(chmod 600 %s, or remove it and the agent makes a new one)",
			 path, path);
		return -EPERM;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -EIO;
	}
	buf[n] = 0;
	buf[strcspn(buf, " \t\r\n")] = 0;
	if (strlen(buf) < 16 || strlen(buf) >= len) {
		snprintf(err, errlen, "%s: the token must be 16 to %zu characters on one line",
			 path, len - 1);
		return -EINVAL;
	}
	for (const char *p = buf; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f) {
			snprintf(err, errlen, "%s: the token must be printable ASCII", path);
			return -EINVAL;
		}
	snprintf(token, len, "%s", buf);
	return 0;
}

/* ---- life ---- */

struct web *web_open(struct httpd *h, const struct web_opts *o, char *warn, size_t warnlen,
		     char *err, size_t errlen)
{
	static const struct {
		const char *path;
		unsigned methods;
		httpd_handler fn;
	} routes[] = {
	    {"/api/status", HTTP_GET, on_status},     {"/api/ports", HTTP_GET, on_ports},
	    {"/api/zombies", HTTP_GET, on_zombies},   {"/api/events", HTTP_GET, on_events},
	    {"/api/timeline", HTTP_GET, on_timeline}, {"/api/info", HTTP_GET, on_info},
	    {"/api/control", HTTP_POST, on_control},
	};
	struct web *w = calloc(1, sizeof(*w));

	if (warn && warnlen)
		warn[0] = 0;
	if (!w ||
	    !(w->hist = calloc(o->cfg->n_services ? o->cfg->n_services : 1, sizeof(*w->hist)))) {
		free(w);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->h = h;
	w->loop = o->loop;
	loop_timer_init(&w->fanout, on_fanout, w);
	w->sup = o->sup;
	w->cfg = o->cfg;
	w->log = o->log;
	w->listeners_fd = o->listeners_fd;
	w->next_id = 1;
	snprintf(w->pin_dir, sizeof(w->pin_dir), "%s", o->pin_dir);
	if (o->cfg->metrics.token_file)
		snprintf(w->token_path, sizeof(w->token_path), "%s", o->cfg->metrics.token_file);
	else
		state_runtime_path(o->cfg->control.socket, WEB_TOKEN_FILE, w->token_path,
				   sizeof(w->token_path));
	if (o->cfg->metrics.control) {
		char msg[4600];

		if (web_load_token(w->token_path, w->token, sizeof(w->token), msg, sizeof(msg))) {
			w->token[0] = 0;
			if (warn)
				snprintf(warn, warnlen, "%s; the status page stays read-only", msg);
		}
	}
	for (size_t i = 0; i < web_n_assets; i++)
		if (httpd_route(h, web_assets[i].path, HTTP_GET, on_asset, w))
			goto full;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++)
		if (httpd_route(h, routes[i].path, routes[i].methods, routes[i].fn, w))
			goto full;
	evlog_set_tap(w->log, on_line, w);
	return w;
full:
	snprintf(err, errlen, "too many routes for the HTTP server");
	httpd_unroute(h, w);
	free(w->hist);
	free(w);
	return NULL;
}

void web_close(struct web *w)
{
	if (!w)
		return;
	evlog_set_tap(w->log, NULL, NULL);
	loop_timer_cancel(w->loop, &w->fanout);
	httpd_unroute(w->h, w);
	sup_cancel_reply(w->sup, w);
	/* Streams outlive nothing: httpd closes their connections, but not their callbacks' ctx. */
	for (struct sse *s = w->streams, *nx; s; s = nx) {
		nx = s->next;
		httpd_on_close(s->c, NULL, NULL);
		free(s);
	}
	for (size_t i = 0; i < WEB_RING; i++)
		free(w->ring[i].line);
	for (int i = 0; i < w->cfg->n_services; i++) {
		for (int k = 0; k < w->hist[i].n; k++)
			free(w->hist[i].items[(w->hist[i].head + k) % WEB_TIMELINE]);
		free(w->hist[i].last_exit);
	}
	free(w->hist);
	free(w);
}
