// SPDX-License-Identifier: MIT
/* Scan rows: one row per socket, merged from the agent's listeners map and iterator snapshots,
 * their JSON and table; and zombie rows' JSON. One implementation for `scan`, `zombies` and the
 * agent's status page, so the page and the commands cannot disagree. */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "event.h"
#include "lib/rows.h"
#include "lib/state.h"
#include "lib/util.h"

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

static int cmp_snap_sk(const void *a, const void *b)
{
	const struct snap_sock *x = a, *y = b;

	if (x->sk != y->sk)
		return x->sk < y->sk ? -1 : 1;
	return cmp_pid(&x->pid, &y->pid);
}

static int cmp_row(const void *a, const void *b)
{
	const struct scan_row *x = a, *y = b;
	int c;

	if (x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	c = memcmp(x->addr, y->addr, sizeof(x->addr));
	if (c)
		return c;
	if (x->netns != y->netns)
		return x->netns < y->netns ? -1 : 1;
	return (x->sk > y->sk) - (x->sk < y->sk);
}

static int cmp_row_sk(const void *a, const void *b)
{
	const struct scan_row *x = a, *y = b;

	return (x->sk > y->sk) - (x->sk < y->sk);
}

/* rows[0..sorted) are in ascending sk order (made from the sorted snapshot, or sorted since): a
 * binary search there. Rows added after are of other sockets (each source lists a socket once;
 * searching them too made the map's loop quadratic). */
static struct scan_row *find_sk(struct scan_rows *r, size_t sorted, uint64_t sk)
{
	size_t lo = 0, hi = sorted;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->rows[mid].sk < sk)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < sorted && r->rows[lo].sk == sk)
		return &r->rows[lo];
	return NULL;
}

/* A kernel comm (REV_COMM_LEN bytes, NUL-terminated only when shorter) into a row's. */
static void copy_comm(char dst[REV_COMM_LEN + 1], const char *src)
{
	size_t n = strnlen(src, REV_COMM_LEN);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static struct scan_row *add_row(struct scan_rows *r, size_t *cap)
{
	if (r->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct scan_row *p = realloc(r->rows, ncap * sizeof(*p));

		if (!p)
			return NULL;
		r->rows = p;
		*cap = ncap;
	}
	memset(&r->rows[r->n], 0, sizeof(r->rows[0]));
	return &r->rows[r->n++];
}

static void row_from_snap(struct scan_row *row, const struct snap_sock *s)
{
	row->sk = s->sk;
	row->ino = s->ino;
	memcpy(row->addr, s->addr, sizeof(row->addr));
	row->netns = s->netns;
	row->port = s->port;
	row->family = s->family;
	row->proto = s->proto;
	row->state = s->state;
	row->v6only = s->v6only;
}

int scan_merge(const struct listener *ls, size_t n_ls, const struct snap_sock *ss, size_t n_ss,
	       struct scan_rows *out)
{
	struct snap_sock *sorted = NULL;
	size_t cap = 0, n_sorted;

	memset(out, 0, sizeof(*out));
	/* At most one row per snapshot row and per map entry: no growing (and copying) later. */
	cap = n_ss + n_ls;
	out->rows = cap ? malloc(cap * sizeof(*out->rows)) : NULL;
	if (cap && !out->rows)
		return -ENOMEM;
	if (n_ss) {
		sorted = malloc(n_ss * sizeof(*sorted));
		if (!sorted)
			return -ENOMEM;
		memcpy(sorted, ss, n_ss * sizeof(*sorted));
		qsort(sorted, n_ss, sizeof(*sorted), cmp_snap_sk);
	}
	/* One row per socket that some process holds through an fd: every holder listed. */
	for (size_t i = 0; i < n_ss;) {
		size_t j = i;
		struct scan_row *row;

		while (j < n_ss && sorted[j].sk == sorted[i].sk)
			j++;
		if (sorted[i].type == REV_SNAP_SOCK_FD || j - i > 1) {
			row = add_row(out, &cap);
			if (!row)
				goto nomem;
			row_from_snap(row, &sorted[i]);
			row->holders = calloc(j - i, sizeof(pid_t));
			if (!row->holders)
				goto nomem;
			for (size_t k = i; k < j; k++) {
				if (sorted[k].type != REV_SNAP_SOCK_FD)
					continue;
				if (row->n_holders && row->holders[row->n_holders - 1] == (pid_t)sorted[k].pid)
					continue; /* the same process holds it through several fds */
				if (!row->n_holders) {
					row->pid = sorted[k].pid;
					row->uid = sorted[k].uid;
					copy_comm(row->comm, sorted[k].comm);
				}
				row->holders[row->n_holders++] = sorted[k].pid;
			}
		}
		i = j;
	}
	/* The map knows who called listen(): that is the owner, also of sockets only it knows. */
	n_sorted = out->n;
	for (size_t i = 0; i < n_ls; i++) {
		const struct listener *l = &ls[i];
		struct scan_row *row;

		if (!l->k.proto)
			continue; /* the agent's note, not a socket */
		row = find_sk(out, n_sorted, l->k.sk);
		if (!row) {
			row = add_row(out, &cap);
			if (!row)
				goto nomem;
			row->sk = l->k.sk;
			memcpy(row->addr, l->k.addr, sizeof(row->addr));
			row->netns = l->k.netns;
			row->port = l->k.port;
			row->family = l->k.family;
			row->proto = l->k.proto;
			row->state = l->v.state ? l->v.state : REV_TCP_LISTEN;
			row->v6only = l->v.v6only;
			row->ino = l->v.ino;
		}
		if (!row->n_holders && l->v.pid) { /* pid 0: seeded from the tables, owner unseen */
			free(row->holders);
			row->holders = calloc(1, sizeof(pid_t));
			if (!row->holders)
				goto nomem;
			row->holders[row->n_holders++] = l->v.pid;
		}
		for (size_t k = 0; k < row->n_holders; k++) {
			if (row->holders[k] != (pid_t)l->v.pid)
				continue;
			row->pid = l->v.pid;
			row->uid = l->v.uid;
			copy_comm(row->comm, l->v.comm);
		}
	}
	/* Sockets in the tables that no visible process holds (kernel sockets, hidden owners): the
	 * rows so far sorted by socket for the search, when there are table rows to add. */
	if (n_ss && out->n > 1) /* qsort's base may not be NULL, even for nothing to sort */
		qsort(out->rows, out->n, sizeof(*out->rows), cmp_row_sk);
	n_sorted = out->n;
	for (size_t i = 0; i < n_ss; i++) {
		struct scan_row *row;

		if (sorted[i].type != REV_SNAP_SOCK_TABLE || find_sk(out, n_sorted, sorted[i].sk))
			continue;
		row = add_row(out, &cap);
		if (!row)
			goto nomem;
		row_from_snap(row, &sorted[i]);
		row->uid = sorted[i].uid;
	}
	free(sorted);
	if (out->n > 1)
		qsort(out->rows, out->n, sizeof(*out->rows), cmp_row);
	return 0;
nomem:
	free(sorted);
	scan_rows_free(out);
	return -ENOMEM;
}

void scan_rows_free(struct scan_rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->rows[i].holders);
	free(r->rows);
	memset(r, 0, sizeof(*r));
}

void scan_filter(struct scan_rows *r, const int *ports, size_t n_ports, bool tcp, bool udp)
{
	size_t w = 0;

	for (size_t i = 0; i < r->n; i++) {
		bool keep = (r->rows[i].proto == REV_PROTO_TCP ? tcp : udp);

		if (keep && n_ports) {
			keep = false;
			for (size_t k = 0; k < n_ports; k++)
				keep |= ports[k] == r->rows[i].port;
		}
		if (keep)
			r->rows[w++] = r->rows[i];
		else
			free(r->rows[i].holders);
	}
	r->n = w;
}

static const char *state_name(const struct scan_row *row)
{
	if (row->proto == REV_PROTO_UDP)
		return "bound";
	return row->state == REV_TCP_LISTEN ? "listen" : "bound";
}

/* getpwuid() reads /etc/passwd on every call: remember the last answer (rows share a few uids).
 * Valid until the next call. */
static const char *user_name(uint32_t uid)
{
	static uint32_t last_uid = (uint32_t)-1;
	static char last[64];

	if (uid != last_uid) {
		struct passwd *pw = getpwuid(uid);

		if (pw)
			snprintf(last, sizeof(last), "%s", pw->pw_name);
		else
			snprintf(last, sizeof(last), "%u", uid);
		last_uid = uid;
	}
	return last;
}

/* The JSON answer is written straight into a 64 KiB chunk, flushed to the stream when full: a
 * cJSON object per row (allocated, printed, freed), and then stdio's per-call work, were most of
 * a 2000-row answer's user time. Strings are escaped as cJSON escapes them (", \ and control
 * characters; other bytes as they are), so the bytes are the same as before. */
struct jw {
	FILE *f;
	size_t n;
	char b[65536];
};

/* Room for n more bytes (n is small: a field, never a whole row). */
static char *jw_room(struct jw *w, size_t n)
{
	if (w->n + n > sizeof(w->b)) {
		fwrite(w->b, 1, w->n, w->f);
		w->n = 0;
	}
	return w->b + w->n;
}

static void jw_mem(struct jw *w, const char *p, size_t n)
{
	memcpy(jw_room(w, n), p, n);
	w->n += n;
}

#define jw_lit(w, s) jw_mem((w), (s), sizeof(s) - 1)

static void jw_str(struct jw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	/* The short escapes, by character; 0 where a control character takes \u00XX. */
	static const char short_esc[0x20] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n',
					     ['\r'] = 'r', ['\t'] = 't'};
	size_t len = strlen(s);
	char *o = jw_room(w, 6 * len + 2), *start = o; /* the longest escape is 6 bytes */

	*o++ = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			*o++ = '\\';
			*o++ = (char)*p;
		} else if (*p >= 0x20) {
			*o++ = (char)*p;
		} else if (short_esc[*p]) {
			*o++ = '\\';
			*o++ = short_esc[*p];
		} else {
			memcpy(o, "\\u00", 4);
			o[4] = hex[*p >> 4];
			o[5] = hex[*p & 15];
			o += 6;
		}
	}
	*o++ = '"';
	w->n += (size_t)(o - start);
}

static void jw_uint(struct jw *w, unsigned long long v)
{
	char num[24], *p = num + sizeof(num);

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	jw_mem(w, p, (size_t)(num + sizeof(num) - p));
}

/* An address as inet_ntop writes it; IPv4 without a format string (one per row). */
static void jw_addr(struct jw *w, int family, const uint8_t *addr)
{
	char buf[64], *o = buf;

	if (family == REV_AF_INET6) {
		addr_format(buf, sizeof(buf), family, addr);
		jw_str(w, buf);
		return;
	}
	*o++ = '"';
	for (int i = 0; i < 4; i++) {
		if (i)
			*o++ = '.';
		if (addr[i] >= 100)
			*o++ = (char)('0' + addr[i] / 100);
		if (addr[i] >= 10)
			*o++ = (char)('0' + addr[i] / 10 % 10);
		*o++ = (char)('0' + addr[i] % 10);
	}
	*o++ = '"';
	jw_mem(w, buf, (size_t)(o - buf));
}

/* ,"name": then the value, or null */
#define jw_key(w, name) jw_lit((w), ",\"" name "\":")

static void jw_str_or_null(struct jw *w, const char *v)
{
	if (v)
		jw_str(w, v);
	else
		jw_lit(w, "null");
}

static void row_write(struct jw *w, const struct scan_row *row)
{
	jw_lit(w, "{\"proto\":");
	jw_str(w, proto_name(row->proto));
	jw_key(w, "family");
	jw_str(w, family_name(row->family));
	jw_key(w, "addr");
	jw_addr(w, row->family, row->addr);
	jw_key(w, "port");
	jw_uint(w, row->port);
	jw_key(w, "state");
	jw_str(w, state_name(row));
	jw_key(w, "pid");
	if (row->pid)
		jw_uint(w, (unsigned)row->pid);
	else
		jw_lit(w, "null");
	jw_key(w, "comm");
	jw_str_or_null(w, row->pid ? row->comm : NULL);
	jw_key(w, "uid");
	jw_uint(w, row->uid);
	jw_key(w, "user");
	jw_str(w, user_name(row->uid));
	jw_key(w, "service");
	jw_str_or_null(w, row->service[0] ? row->service : NULL);
	jw_key(w, "holders");
	jw_lit(w, "[");
	for (size_t k = 0; k < row->n_holders; k++) {
		if (k)
			jw_lit(w, ",");
		jw_uint(w, (unsigned)row->holders[k]);
	}
	jw_lit(w, "]");
	jw_key(w, "netns");
	jw_uint(w, row->netns);
	if (row->ino) {
		jw_key(w, "inode");
		jw_uint(w, row->ino);
	}
	jw_lit(w, "}");
}

int scan_json_write(FILE *f, const struct scan_rows *r)
{
	struct jw *w = malloc(sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->f = f;
	w->n = 0;
	jw_lit(w, "[");
	for (size_t i = 0; i < r->n; i++) {
		if (i)
			jw_lit(w, ",");
		row_write(w, &r->rows[i]);
	}
	jw_lit(w, "]");
	fwrite(w->b, 1, w->n, f);
	free(w);
	return ferror(f) ? -EIO : 0;
}

char *scan_json(const struct scan_rows *r)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	if (!f)
		return NULL;
	if (scan_json_write(f, r)) {
		fclose(f);
		free(s);
		return NULL;
	}
	fclose(f);
	return s;
}

struct strbuf {
	char *s;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->s && b->len + n < b->cap) {
			b->len += n;
			return;
		}
		b->cap = (b->cap + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (!b->s)
			return;
	}
}

char *scan_table(const struct scan_rows *r, uint32_t host_netns)
{
	struct strbuf b = {0};

	sb_printf(&b, "%-5s %-28s %-6s %-8s %-16s %-10s %-12s %-16s %s\n", "PROTO", "ADDRESS",
		  "STATE", "PID", "COMM", "USER", "SERVICE", "HOLDERS", "NETNS");
	for (size_t i = 0; i < r->n; i++) {
		const struct scan_row *row = &r->rows[i];
		char addr[64], where[96], pid[16], holders[128] = "", netns[24];
		const char *user = user_name(row->uid);
		size_t hl = 0;

		addr_format(addr, sizeof(addr), row->family, row->addr);
		snprintf(where, sizeof(where), row->family == REV_AF_INET6 ? "[%s]:%u" : "%s:%u", addr,
			 row->port);
		snprintf(pid, sizeof(pid), row->pid ? "%d" : "-", row->pid);
		for (size_t k = 0; k < row->n_holders && hl < sizeof(holders) - 12; k++)
			hl += snprintf(holders + hl, sizeof(holders) - hl, "%s%d", k ? "," : "",
				       row->holders[k]);
		if (!row->n_holders)
			snprintf(holders, sizeof(holders), "-");
		if (row->netns == host_netns)
			snprintf(netns, sizeof(netns), "host");
		else
			snprintf(netns, sizeof(netns), "%u", row->netns);
		sb_printf(&b, "%-5s %-28s %-6s %-8s %-16s %-10s %-12s %-16s %s\n",
			  proto_name(row->proto), where, state_name(row), pid,
			  row->pid ? row->comm : "?", user, row->service[0] ? row->service : "-",
			  holders, netns);
	}
	return b.s;
}

void scan_attribute_services(struct scan_rows *rows, const char *control_socket)
{
	char path[REV_PATH_BUF];
	struct rt_state st;

	state_runtime_path(control_socket, REV_STATE_FILE, path, sizeof(path));
	if (state_read(path, &st))
		return;
	for (size_t i = 0; i < rows->n; i++) {
		struct scan_row *row = &rows->rows[i];
		const char *svc = state_service_of(&st, row->pid);

		for (size_t k = 0; !svc && k < row->n_holders; k++)
			svc = state_service_of(&st, row->holders[k]);
		if (svc)
			snprintf(row->service, sizeof(row->service), "%s", svc);
	}
	state_free(&st);
}


static uint32_t self_netns(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) ? 0 : (uint32_t)st.st_ino;
}

static int cmp_listener_sk(const void *a, const void *b)
{
	const struct listener *x = a, *y = b;

	return (x->k.sk > y->k.sk) - (x->k.sk < y->k.sk);
}

static struct listener *entry_of(struct listener *sorted, size_t n, const struct snap_sock *r)
{
	struct listener key = {.k.sk = r->sk};
	struct listener *l = bsearch(&key, sorted, n, sizeof(*sorted), cmp_listener_sk);

	/* The same socket (a freed one's address reused by another would differ here). */
	if (!l || l->k.proto != r->proto || l->k.port != r->port || l->k.family != r->family)
		return NULL;
	return l;
}

int scan_attribute(struct listener *ls, size_t *n_ls, struct snap *tables, uint32_t here)
{
	size_t n = *n_ls, kept = 0;
	bool *used = NULL;

	for (size_t i = 0; i < n; i++)
		if (ls[i].k.proto && ls[i].k.netns != here)
			return -EAGAIN; /* the tables show this netns only */
	if (n > 1)
		qsort(ls, n, sizeof(*ls), cmp_listener_sk);
	used = calloc(n ? n : 1, sizeof(*used));
	if (!used)
		return -ENOMEM;
	for (size_t i = 0; i < tables->n_socks; i++) {
		struct snap_sock *r = &tables->socks[i];
		struct listener *l = entry_of(ls, n, r);

		if (!l)
			goto walk; /* nobody recorded it: bound before tracking, or autobound */
		used[l - ls] = true;
		if (!l->v.pid)
			continue; /* seeded with no visible holder (PID 1's): a walk would not see it */
		if (l->v.shared)
			goto walk; /* forked, passed on or orphaned: its holders are in the fd tables */
		/* Held since bind()/listen() by the process that made it, which never let it go. */
		r->type = REV_SNAP_SOCK_FD;
		r->pid = l->v.pid;
		r->uid = l->v.uid;
		memcpy(r->comm, l->v.comm, sizeof(r->comm));
	}
	/* What the merge still needs from the map: bound TCP sockets, which no table lists. UDP and
	 * listener entries the tables did not show were closed since the map was read. */
	for (size_t i = 0; i < n; i++) {
		if (used[i] || !ls[i].k.proto || ls[i].k.proto != REV_PROTO_TCP ||
		    ls[i].v.state != REV_TCP_CLOSE)
			continue;
		if (ls[i].v.shared)
			goto walk;
		ls[kept++] = ls[i];
	}
	free(used);
	*n_ls = kept;
	return 0;
walk:
	free(used);
	return -EAGAIN;
}

/* Keep the map entries a full snapshot can use: listeners, and bound sockets it saw (a bound
 * entry it did not see is a socket closed since). */
static void drop_unseen_bound(struct listener *ls, size_t *n_ls, const struct snap *s)
{
	size_t kept = 0;

	for (size_t i = 0; i < *n_ls; i++) {
		bool keep = ls[i].k.proto && ls[i].v.state != REV_TCP_CLOSE;

		for (size_t k = 0; !keep && ls[i].k.proto && k < s->n_socks; k++)
			keep = s->socks[k].sk == ls[i].k.sk;
		if (keep)
			ls[kept++] = ls[i];
	}
	*n_ls = kept;
}

/* UDP sockets bound in this netns (the kernel counts them as it hashes them: explicit binds and
 * autobinds alike), from /proc/net/sockstat and sockstat6; -1 when unreadable. */
static long udp_in_use(void)
{
	static const char *const files[] = {"/proc/net/sockstat", "/proc/net/sockstat6"};
	static const char *const keys[] = {"UDP: inuse %ld", "UDP6: inuse %ld"};
	long total = 0;

	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char line[256];
		long n = -1;
		FILE *f = fopen(files[i], "re");

		while (f && n < 0 && fgets(line, sizeof(line), f))
			if (sscanf(line, keys[i], &n) != 1)
				n = -1;
		if (f)
			fclose(f);
		if (n < 0)
			return -1;
		total += n;
	}
	return total;
}

/* With binds tracked, the map alone is the full answer when nothing in it has other holders or
 * lives in another netns, and it holds every UDP socket the kernel has bound here (an autobound
 * one, bound by sendmsg() or connect(), is not recorded): the count, read before and after the
 * map, must match. */
static bool map_is_complete(const struct listener *ls, size_t n, long before)
{
	uint32_t here = self_netns();
	long udp = 0;

	for (size_t i = 0; i < n; i++) {
		if (!ls[i].k.proto)
			continue;
		if (ls[i].v.shared || ls[i].k.netns != here)
			return false;
		udp += ls[i].k.proto == REV_PROTO_UDP;
	}
	return before >= 0 && udp == before && udp_in_use() == before;
}

int scan_rows_from_map(int map_fd, const char *pin_dir, bool udp, struct scan_rows *rows,
		       bool *walked, char *err, size_t errlen)
{
	struct listener *ls = NULL, *all = NULL;
	struct snap s = {0};
	size_t n_ls = 0, n_all;
	uint32_t here = self_netns();
	long udp_before = udp ? udp_in_use() : -1;
	uint8_t meta;
	bool walk = false;
	int rc;

	*walked = false;
	memset(rows, 0, sizeof(*rows));
	rc = ports_read_map(map_fd, &ls, &n_ls);
	if (rc) {
		snprintf(err, errlen, "cannot read the listeners map: %s", strerror(-rc));
		return rc;
	}
	meta = ports_meta_flags(ls, n_ls);
	if (!udp) {
		/* The map names who called listen(), and holds the listeners no process showed at
		 * start-up too (seeded from the tables, pid 0). Only a socket whose owner forked,
		 * died or passed it on (the probes mark those), or in another netns (the tables are
		 * this netns's only), needs the kernel's fd tables for its holders. */
		for (size_t i = 0; i < n_ls && !walk; i++)
			walk = ls[i].k.proto == REV_PROTO_TCP &&
			       (ls[i].v.shared || ls[i].k.netns != here);
	} else if (!(meta & REV_META_TRACKS_BINDS)) {
		walk = true; /* UDP sockets are not in the map: only the fd tables know them */
	} else if (!map_is_complete(ls, n_ls, udp_before)) {
		/* Some socket is not in the map, or has other holders: the tables (a walk of the
		 * kernel's socket hashes, no fd tables) say which exist now, the map who holds
		 * them; the fd tables only when that is not enough. */
		n_all = n_ls;
		all = malloc((n_ls ? n_ls : 1) * sizeof(*all));
		rc = all ? snapshot_take(&s, SNAP_SOCK_TABLES, pin_dir, err, errlen) : -ENOMEM;
		if (!rc) {
			memcpy(all, ls, n_ls * sizeof(*all));
			rc = scan_attribute(ls, &n_ls, &s, here);
		}
		if (rc == -EAGAIN) {
			snapshot_free(&s);
			memcpy(ls, all, n_all * sizeof(*ls));
			n_ls = n_all;
			walk = true;
			rc = 0;
		} else if (rc == -ENOMEM) {
			snprintf(err, errlen, "out of memory");
		}
		free(all);
	}
	if (!rc && walk) {
		rc = snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES, pin_dir, err, errlen);
		if (!rc)
			drop_unseen_bound(ls, &n_ls, &s);
		*walked = !rc;
	}
	if (!rc) {
		rc = scan_merge(ls, n_ls, s.socks, s.n_socks, rows);
		if (rc)
			snprintf(err, errlen, "out of memory");
	}
	free(ls);
	snapshot_free(&s);
	return rc;
}

cJSON *zombies_json(const struct snap_zombie *zs, size_t n, const struct rt_state *st,
		    bool ages_known)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < n; i++) {
		const struct snap_zombie *z = &zs[i];
		const char *svc = st ? state_service_of(st, z->ppid) : NULL;
		cJSON *o = cJSON_CreateObject();

		if (!o) {
			cJSON_Delete(arr);
			return NULL;
		}
		cJSON_AddNumberToObject(o, "pid", z->pid);
		cJSON_AddNumberToObject(o, "ppid", z->ppid);
		cJSON_AddStringToObject(o, "comm", z->comm);
		cJSON_AddStringToObject(o, "parent_comm", z->parent_comm);
		if (z->age_ns || ages_known)
			cJSON_AddNumberToObject(o, "age_ms", (double)(z->age_ns / NS_PER_MS));
		else
			cJSON_AddNullToObject(o, "age_ms");
		cJSON_AddNumberToObject(o, "uid", z->uid);
		if (svc)
			cJSON_AddStringToObject(o, "service", svc);
		else
			cJSON_AddNullToObject(o, "service");
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}
