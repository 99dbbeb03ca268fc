// SPDX-License-Identifier: MIT
/* `revenant scan` and `revenant zombies`. Sources, best first: the running agent's pinned listeners
 * map (plus its pinned iterators when a socket may be shared or UDP is asked for), BPF iterators
 * loaded for this call, and (not root) a /proc walk that cannot see every owner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <cjson/cJSON.h>

#include "cmd/cli.h"
#include "cmd/scan.h"
#include "lib/agentrec.h"
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

/* rows[0..sorted) are in ascending sk order (made from the sorted snapshot, or sorted since): a
 * binary search there. Rows added after are of other sockets (each source lists a socket once). */
static int cmp_row_sk(const void *a, const void *b)
{
	const struct scan_row *x = a, *y = b;

	return (x->sk > y->sk) - (x->sk < y->sk);
}

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
					snprintf(row->comm, sizeof(row->comm), "%.*s", REV_COMM_LEN,
						 sorted[k].comm);
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
		/* Among the snapshot's rows only: the map holds each socket once, so the rows this
		 * loop adds never match another entry (searching them made this loop quadratic). */
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
			snprintf(row->comm, sizeof(row->comm), "%.*s", REV_COMM_LEN, l->v.comm);
		}
	}
	/* Sockets in the tables that no visible process holds (kernel sockets, hidden owners). */
	if (out->n > 1) /* qsort's base may not be NULL, even for nothing to sort */
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

/* getpwuid() reads /etc/passwd on every call: remember the last answer (rows share a few uids). */
static void user_name(uint32_t uid, char *buf, size_t len)
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
	snprintf(buf, len, "%s", last);
}

/* Integers as raw JSON: cJSON prints a number with "%1.15g" and reads it back with sscanf to
 * check it round-trips, which was a third of a 1000-row answer; these are exact integers. */
static void add_int(cJSON *o, const char *name, unsigned long long v)
{
	char num[24];

	snprintf(num, sizeof(num), "%llu", v);
	cJSON_AddRawToObject(o, name, num);
}

static cJSON *row_json(const struct scan_row *row)
{
	cJSON *o = cJSON_CreateObject(), *h;
	char addr[64], user[64], num[24];

	addr_format(addr, sizeof(addr), row->family, row->addr);
	cJSON_AddStringToObject(o, "proto", proto_name(row->proto));
	cJSON_AddStringToObject(o, "family", family_name(row->family));
	cJSON_AddStringToObject(o, "addr", addr);
	add_int(o, "port", row->port);
	cJSON_AddStringToObject(o, "state", state_name(row));
	if (row->pid) {
		add_int(o, "pid", (unsigned)row->pid);
		cJSON_AddStringToObject(o, "comm", row->comm);
	} else {
		cJSON_AddNullToObject(o, "pid");
		cJSON_AddNullToObject(o, "comm");
	}
	add_int(o, "uid", row->uid);
	user_name(row->uid, user, sizeof(user));
	cJSON_AddStringToObject(o, "user", user);
	if (row->service[0])
		cJSON_AddStringToObject(o, "service", row->service);
	else
		cJSON_AddNullToObject(o, "service");
	h = cJSON_AddArrayToObject(o, "holders");
	for (size_t k = 0; k < row->n_holders; k++) {
		snprintf(num, sizeof(num), "%u", (unsigned)row->holders[k]);
		cJSON_AddItemToArray(h, cJSON_CreateRaw(num));
	}
	add_int(o, "netns", row->netns);
	if (row->ino)
		add_int(o, "inode", row->ino);
	return o;
}

int scan_json_write(FILE *f, const struct scan_rows *r)
{
	char buf[2048];

	/* One row at a time into one buffer: a thousand rows never become a thousand-object tree
	 * (on this VM, faulting in that much fresh heap was a third of the whole call). */
	fputc('[', f);
	for (size_t i = 0; i < r->n; i++) {
		cJSON *o = row_json(&r->rows[i]);

		if (i)
			fputc(',', f);
		if (o && cJSON_PrintPreallocated(o, buf, sizeof(buf), false)) {
			fputs(buf, f);
		} else {
			char *s = o ? cJSON_PrintUnformatted(o) : NULL;

			if (!s) {
				cJSON_Delete(o);
				return -ENOMEM;
			}
			fputs(s, f);
			free(s);
		}
		cJSON_Delete(o);
	}
	fputc(']', f);
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
		char addr[64], where[96], pid[16], user[64], holders[128] = "", netns[24];
		size_t hl = 0;

		addr_format(addr, sizeof(addr), row->family, row->addr);
		snprintf(where, sizeof(where), row->family == REV_AF_INET6 ? "[%s]:%u" : "%s:%u", addr,
			 row->port);
		snprintf(pid, sizeof(pid), row->pid ? "%d" : "-", row->pid);
		user_name(row->uid, user, sizeof(user));
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

/* --- sources --- */

static uint32_t self_netns(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) ? 0 : (uint32_t)st.st_ino;
}

bool scan_agent_running(const char *control_socket)
{
	char path[REV_PATH_BUF];
	int fd, rc;

	state_runtime_path(control_socket, REV_LOCK_FILE, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	rc = flock(fd, LOCK_SH | LOCK_NB);
	close(fd);
	return rc && errno == EWOULDBLOCK;
}

static int hex_addr(const char *hex, uint8_t *addr, int family)
{
	/* /proc/net prints each 32-bit word in host order */
	int words = family == REV_AF_INET6 ? 4 : 1;

	for (int w = 0; w < words; w++) {
		char part[9];
		uint32_t v;

		memcpy(part, hex + w * 8, 8);
		part[8] = 0;
		v = strtoul(part, NULL, 16);
		memcpy(addr + w * 4, &v, 4);
	}
	return 0;
}

static int proc_net(const char *file, int family, int proto, uint32_t netns, struct snap *s)
{
	char line[512];
	FILE *f = fopen(file, "re");

	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		char local[64], remote[64];
		unsigned st, uid;
		unsigned long long ino;
		struct snap_sock r = {0};
		char *colon;

		if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %u %*d %llu", local, remote, &st,
			   &uid, &ino) != 5)
			continue;
		colon = strchr(local, ':');
		if (!colon)
			continue;
		*colon = 0;
		r.port = strtoul(colon + 1, NULL, 16);
		if (!r.port || (proto == REV_PROTO_TCP && st != REV_TCP_LISTEN))
			continue;
		hex_addr(local, r.addr, family);
		r.type = REV_SNAP_SOCK_TABLE;
		r.family = family;
		r.proto = proto;
		r.state = proto == REV_PROTO_TCP ? st : 7;
		r.uid = uid;
		r.ino = ino;
		r.sk = ino; /* the inode identifies the socket in this source */
		r.netns = netns;
		if (snapshot_add_sock(s, &r)) {
			fclose(f);
			return -ENOMEM;
		}
	}
	fclose(f);
	return 0;
}

static int cmp_ino(const void *a, const void *b)
{
	const struct snap_sock *x = a, *y = b;

	return (x->ino > y->ino) - (x->ino < y->ino);
}

/* Not root: the sockets of this netns from /proc/net, their holders from the /proc/PID/fd links we
 * may read. Owners whose fds we cannot read stay unknown. */
static int proc_snapshot(struct snap *s)
{
	uint32_t netns = self_netns();
	size_t n_table;
	DIR *d;
	struct dirent *de;

	memset(s, 0, sizeof(*s));
	proc_net("/proc/net/tcp", REV_AF_INET, REV_PROTO_TCP, netns, s);
	proc_net("/proc/net/tcp6", REV_AF_INET6, REV_PROTO_TCP, netns, s);
	proc_net("/proc/net/udp", REV_AF_INET, REV_PROTO_UDP, netns, s);
	proc_net("/proc/net/udp6", REV_AF_INET6, REV_PROTO_UDP, netns, s);
	n_table = s->n_socks;
	if (n_table > 1)
		qsort(s->socks, n_table, sizeof(*s->socks), cmp_ino);
	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		char path[300], link[64];
		DIR *fd_dir;
		struct dirent *fe;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", pid);
		fd_dir = opendir(path);
		if (!fd_dir)
			continue;
		while ((fe = readdir(fd_dir))) {
			char fpath[600];
			ssize_t n;
			struct snap_sock key = {0}, *hit, row;

			snprintf(fpath, sizeof(fpath), "%s/%s", path, fe->d_name);
			n = readlink(fpath, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (strncmp(link, "socket:[", 8))
				continue;
			key.ino = strtoull(link + 8, NULL, 10);
			hit = bsearch(&key, s->socks, n_table, sizeof(*s->socks), cmp_ino);
			if (!hit)
				continue;
			row = *hit; /* a copy: appending may move the array hit points into */
			row.type = REV_SNAP_SOCK_FD;
			row.pid = pid;
			row.uid = proc_uid(pid);
			proc_comm(pid, row.comm, sizeof(row.comm));
			if (snapshot_add_sock(s, &row))
				break;
		}
		closedir(fd_dir);
	}
	closedir(d);
	return 0;
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

/* Through the agent: its map, and its pinned iterators for what the map cannot say alone. 0 with
 * *done true when answered; *done false to fall back to iterators of our own. */
static int from_agent(const char *pin_dir, const char *map_path, bool udp, int verbose,
		      struct scan_rows *rows, bool *done)
{
	struct listener *ls = NULL;
	struct snap s = {0};
	size_t n_ls = 0;
	const char *how = "";
	uint32_t here = self_netns();
	char err[512] = "";
	long udp_before = udp ? udp_in_use() : -1;
	int fd = bpf_obj_get(map_path), rc;

	*done = false;
	rc = fd < 0 ? -errno : ports_read_map(fd, &ls, &n_ls);
	if (fd >= 0)
		close(fd);
	if (rc) {
		cli_err("warning: cannot read the agent's map %s: %s; using iterators", map_path,
			strerror(-rc));
		return 0;
	}
	if (!udp) {
		/* The map names who called listen(), and holds the listeners no process showed at
		 * start-up too (seeded from the tables, pid 0). Only a socket whose owner forked,
		 * died or passed it on (the probes mark those), or in another netns (the tables
		 * are this netns's only), needs the kernel's fd tables for its holders. */
		bool walk = false;

		for (size_t i = 0; i < n_ls && !walk; i++)
			walk = ls[i].k.proto == REV_PROTO_TCP &&
			       (ls[i].v.shared || ls[i].k.netns != here);
		if (walk) {
			rc = snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES, pin_dir, err,
					   sizeof(err));
			drop_unseen_bound(ls, &n_ls, &s);
			how = " and its pinned fd iterator";
		}
	} else if ((ports_meta_flags(ls, n_ls) & REV_META_TRACKS_BINDS) && map_is_complete(ls, n_ls, udp_before)) {
		how = " alone (every bound socket is in it)";
	} else if (ports_meta_flags(ls, n_ls) & REV_META_TRACKS_BINDS) {
		/* Some socket is not in the map, or has other holders: the tables (a walk of the
		 * kernel's socket hashes, no fd tables) say which exist now, the map who holds them. */
		size_t n_all = n_ls;
		struct listener *all = malloc((n_ls ? n_ls : 1) * sizeof(*all));

		rc = all ? snapshot_take(&s, SNAP_SOCK_TABLES, pin_dir, err, sizeof(err)) : -ENOMEM;
		if (!rc) {
			memcpy(all, ls, n_ls * sizeof(*all));
			rc = scan_attribute(ls, &n_ls, &s, here);
			how = " and its pinned table iterators";
		}
		if (rc == -EAGAIN) {
			snapshot_free(&s);
			memcpy(ls, all, n_all * sizeof(*ls));
			n_ls = n_all;
			rc = snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES, pin_dir, err,
					   sizeof(err));
			drop_unseen_bound(ls, &n_ls, &s);
			how = " and its pinned fd iterator (a socket it could not attribute)";
		}
		free(all);
	} else {
		rc = snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES, pin_dir, err, sizeof(err));
		drop_unseen_bound(ls, &n_ls, &s);
		how = " and its pinned fd iterator (UDP)";
	}
	if (!rc) {
		if (verbose)
			cli_err("source: the agent's listeners map (%s)%s", map_path, how);
		rc = scan_merge(ls, n_ls, s.socks, s.n_socks, rows);
		*done = !rc;
	} else {
		cli_err("warning: %s; using iterators", err[0] ? err : strerror(-rc));
		rc = 0;
	}
	free(ls);
	snapshot_free(&s);
	return rc;
}

int scan_collect(const char *control_socket, bool udp, int verbose, struct scan_rows *rows)
{
	char pin_dir[256], map_path[320], err[512];
	struct snap s = {0};
	bool done = false;
	int rc = 0;

	if (!is_root()) {
		cli_err("warning: not root: reading /proc, which cannot name owners whose fds are "
			"unreadable (other users' processes, PID 1 here) nor other network namespaces; "
			"run with sudo for the kernel's answer");
		rc = proc_snapshot(&s);
		if (!rc)
			rc = scan_merge(NULL, 0, s.socks, s.n_socks, rows);
		snapshot_free(&s);
		return rc;
	}
	ports_pin_dir(control_socket, pin_dir, sizeof(pin_dir));
	snprintf(map_path, sizeof(map_path), "%s/%s", pin_dir, REV_LISTENERS_PIN);
	if (scan_agent_running(control_socket) && access(map_path, F_OK) == 0) {
		rc = from_agent(pin_dir, map_path, udp, verbose, rows, &done);
		if (rc || done)
			return rc;
	}
	if (verbose)
		cli_err("source: BPF iterators (no agent running for %s)", control_socket);
	rc = snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES, NULL, err, sizeof(err));
	if (rc) {
		cli_err("%s", err);
		return rc;
	}
	rc = scan_merge(NULL, 0, s.socks, s.n_socks, rows);
	snapshot_free(&s);
	return rc;
}

struct scan_opts {
	const char *config;
	bool json, tcp, udp;
	int verbose;
	int *ports;
	size_t n_ports;
};

static void scan_usage(FILE *f)
{
	fprintf(f, "usage: revenant scan [-c FILE] [--json] [--tcp] [--udp] [-v] [PORT...]\n"
		   "       revenant --scan [...]\n"
		   "\n"
		   "Who owns which port, now: TCP listeners and bound UDP sockets of every network\n"
		   "namespace, with every process holding each socket. Answers from the running\n"
		   "agent's kernel map; without an agent from BPF iterators; not root, from /proc\n"
		   "(with a warning: some owners cannot be seen that way).\n"
		   "\n"
		   "  PORT...            only these ports; exit 1 when none of them is in use\n"
		   "  --json             a JSON array, one object per socket\n"
		   "  --tcp, --udp       only this protocol (default both)\n"
		   "  -c, --config FILE  find the agent through this config's control.socket\n"
		   "                     (default: the running agent, from %s)\n"
		   "  -v, --verbose      say which source answered\n"
		   "  -h, --help         this help\n",
		   agentrec_path());
}

static int parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v >= 1 && v <= 65535 ? (int)v : -1;
}

const char *scan_control_socket(const char *config, struct rev_config *cfg, int *rc)
{
	*rc = 0;
	/* -c; else the running agent (its record: no config to parse); else the default file, and
	 * without one the default socket (no agent: the iterators answer). */
	if (!config && cli_find_agent(cfg))
		return cfg->control.socket;
	if (config || access(config_default_path(), F_OK) == 0) {
		*rc = cli_load_config(config, cfg);
		return *rc ? NULL : cfg->control.socket;
	}
	return CONFIG_DEFAULT_CONTROL_SOCKET;
}

int cmd_scan(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
		{"tcp", no_argument, NULL, 't'},	  {"udp", no_argument, NULL, 'u'},
		{"verbose", no_argument, NULL, 'v'},	  {"help", no_argument, NULL, 'h'},
		{0},
	};
	struct scan_opts o = {0};
	struct rev_config cfg = {0};
	struct scan_rows rows = {0};
	const char *sock;
	char *out;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:jtuvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.tcp = true;
			break;
		case 'u':
			o.udp = true;
			break;
		case 'v':
			o.verbose++;
			break;
		case 'h':
			scan_usage(stdout);
			return EXIT_OK;
		default:
			scan_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!o.tcp && !o.udp)
		o.tcp = o.udp = true;
	o.ports = calloc(argc, sizeof(int));
	for (int i = optind; i < argc; i++) {
		int p = parse_port(argv[i]);

		if (p < 0) {
			cli_err("scan: '%s' is not a port (1..65535)", argv[i]);
			free(o.ports);
			return EXIT_USAGE;
		}
		o.ports[o.n_ports++] = p;
	}
	sock = scan_control_socket(o.config, &cfg, &rc);
	if (rc) {
		free(o.ports);
		return rc;
	}
	rc = scan_collect(sock, o.udp, o.verbose, &rows);
	if (rc) {
		free(o.ports);
		config_free(&cfg);
		return rc == -EPERM ? EXIT_NOT_PERMITTED : EXIT_FAILED;
	}
	scan_filter(&rows, o.ports, o.n_ports, o.tcp, o.udp);
	scan_attribute_services(&rows, sock);
	if (o.json) {
		scan_json_write(stdout, &rows);
		fputc('\n', stdout);
	} else {
		out = scan_table(&rows, self_netns());
		if (out)
			fputs(out, stdout);
		free(out);
	}
	rc = o.n_ports && !rows.n ? EXIT_FAILED : EXIT_OK;
	if (rc && !o.json)
		fprintf(stderr, "revenant: no socket holds %s\n",
			o.n_ports == 1 ? "that port" : "any of those ports");
	scan_rows_free(&rows);
	free(o.ports);
	config_free(&cfg);
	return rc;
}

/* --- zombies --- */

static int proc_zombies(struct snap *s)
{
	DIR *d = opendir("/proc");
	struct dirent *de;

	memset(s, 0, sizeof(*s));
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		struct snap_zombie z = {0};
		char path[64], buf[512], *q;
		int fd;
		ssize_t n;

		if (pid <= 0 || proc_state(pid) != 'Z')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		q = strrchr(buf, ')');
		z.type = REV_SNAP_ZOMBIE;
		z.pid = pid;
		z.ppid = q ? atoi(q + 4) : 0;
		z.uid = proc_uid(pid);
		proc_comm(pid, z.comm, sizeof(z.comm));
		proc_comm(z.ppid, z.parent_comm, sizeof(z.parent_comm));
		if (snapshot_add_zombie(s, &z))
			break;
	}
	closedir(d);
	return 0;
}

static void zombies_usage(FILE *f)
{
	fprintf(f, "usage: revenant zombies [-c FILE] [--json] [-v]\n"
		   "\n"
		   "Every zombie process on the host now: pid, parent, age, and the supervised\n"
		   "service it belongs to. From the kernel's task list (root), else /proc.\n"
		   "\n"
		   "  --json             a JSON array, one object per zombie\n"
		   "  -c, --config FILE  find the agent (for service names) through this config\n"
		   "                     (default: the running agent)\n"
		   "  -v, --verbose      say which source answered\n"
		   "  -h, --help         this help\n");
}

int cmd_zombies(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
		{"verbose", no_argument, NULL, 'v'},	  {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = NULL, *sock;
	struct rev_config cfg = {0};
	struct rt_state st = {0};
	bool json = false, have_state;
	int c, rc, verbose = 0;
	char err[512], pin_dir[256], path[REV_PATH_BUF];
	struct snap s;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:jvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			zombies_usage(stdout);
			return EXIT_OK;
		default:
			zombies_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("zombies: unexpected argument '%s'", argv[optind]);
		zombies_usage(stderr);
		return EXIT_USAGE;
	}
	sock = scan_control_socket(config, &cfg, &rc);
	if (rc)
		return rc;
	if (is_root()) {
		ports_pin_dir(sock, pin_dir, sizeof(pin_dir));
		rc = snapshot_take(&s, SNAP_ZOMBIES, scan_agent_running(sock) ? pin_dir : NULL, err,
				   sizeof(err));
		if (rc)
			cli_err("%s", err);
		else if (verbose)
			cli_err("source: the kernel's task list (BPF iterator)");
	} else {
		cli_err("warning: not root: reading /proc; ages are unknown");
		rc = proc_zombies(&s);
	}
	if (rc) {
		config_free(&cfg);
		return EXIT_FAILED;
	}
	state_runtime_path(sock, REV_STATE_FILE, path, sizeof(path));
	have_state = state_read(path, &st) == 0;
	if (json) {
		cJSON *arr = cJSON_CreateArray();
		char *out;

		for (size_t i = 0; i < s.n_zombies; i++) {
			const struct snap_zombie *z = &s.zombies[i];
			const char *svc = have_state ? state_service_of(&st, z->ppid) : NULL;
			cJSON *o = cJSON_CreateObject();

			cJSON_AddNumberToObject(o, "pid", z->pid);
			cJSON_AddNumberToObject(o, "ppid", z->ppid);
			cJSON_AddStringToObject(o, "comm", z->comm);
			cJSON_AddStringToObject(o, "parent_comm", z->parent_comm);
			if (z->age_ns || is_root())
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
		out = cJSON_PrintUnformatted(arr);
		if (out)
			printf("%s\n", out);
		free(out);
		cJSON_Delete(arr);
	} else {
		printf("%-8s %-8s %-16s %-16s %-10s %s\n", "PID", "PPID", "COMM", "PARENT", "AGE",
		       "SERVICE");
		for (size_t i = 0; i < s.n_zombies; i++) {
			const struct snap_zombie *z = &s.zombies[i];
			const char *svc = have_state ? state_service_of(&st, z->ppid) : NULL;
			char age[32];

			if (is_root())
				snprintf(age, sizeof(age), "%.1fs", z->age_ns / 1e9);
			else
				snprintf(age, sizeof(age), "?");
			printf("%-8d %-8d %-16s %-16s %-10s %s\n", z->pid, z->ppid, z->comm,
			       z->parent_comm, age, svc ? svc : "-");
		}
	}
	state_free(&st);
	snapshot_free(&s);
	config_free(&cfg);
	return EXIT_OK;
}
