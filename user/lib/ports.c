// SPDX-License-Identifier: MIT
/* Port ownership from the kernel's point of view: the pinned listeners map the probes maintain,
 * seeded at start-up from the iterators, and the conflict rules that name the owner of a port. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "lib/config.h"
#include "lib/ports.h"
#include "lib/util.h"


static bool is_any(const struct sock_ident *s)
{
	static const uint8_t zero[REV_ADDR_LEN];

	return !memcmp(s->addr, zero, s->family == REV_AF_INET6 ? 16 : 4);
}

/* ::ffff:a.b.c.d: the v4 address in *v4 */
static bool v4_mapped(const struct sock_ident *s, const uint8_t **v4)
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (s->family != REV_AF_INET6 || memcmp(s->addr, prefix, 12))
		return false;
	*v4 = s->addr + 12;
	return true;
}

static int cross_family(const struct sock_ident *v6, const struct sock_ident *v4)
{
	const uint8_t *mapped;

	if (is_any(v6))
		return v6->v6only ? 0 : 1;
	if (v4_mapped(v6, &mapped))
		return is_any(v4) || !memcmp(mapped, v4->addr, 4) ? 1 : 0;
	return 0;
}

int ports_conflict(const struct sock_ident *held, const struct sock_ident *want)
{
	if (held->netns != want->netns || held->proto != want->proto || held->port != want->port)
		return 0;
	if (held->family == want->family) {
		if (!memcmp(held->addr, want->addr, want->family == REV_AF_INET6 ? 16 : 4))
			return 3;
		return is_any(held) || is_any(want) ? 2 : 0;
	}
	return held->family == REV_AF_INET6 ? cross_family(held, want) : cross_family(want, held);
}

void ports_ident_of_key(const struct listener_key *k, uint8_t v6only, struct sock_ident *id)
{
	memcpy(id->addr, k->addr, sizeof(id->addr));
	id->netns = k->netns;
	id->port = k->port;
	id->family = k->family;
	id->proto = k->proto;
	id->v6only = v6only;
}

void ports_ident_of_snap(const struct snap_sock *s, struct sock_ident *id)
{
	memcpy(id->addr, s->addr, sizeof(id->addr));
	id->netns = s->netns;
	id->port = s->port;
	id->family = s->family;
	id->proto = s->proto;
	id->v6only = s->v6only;
}

int ports_best_listener(const struct listener *ls, size_t n, const struct sock_ident *want)
{
	int best = -1, best_score = 0;

	for (size_t i = 0; i < n; i++) {
		struct sock_ident id;
		int score;

		/* A TCP socket bound but not listening does not block a listen(): the snapshot
		 * ranks those. */
		if (ls[i].k.proto == REV_PROTO_TCP && ls[i].v.state &&
		    ls[i].v.state != REV_TCP_LISTEN)
			continue;
		ports_ident_of_key(&ls[i].k, ls[i].v.v6only, &id);
		score = ports_conflict(&id, want) * 2;
		if (!score)
			continue;
		score += ls[i].v.confirmed; /* a listen() still being validated ranks lower */
		if (score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

int ports_best_snap(const struct snap_sock *ss, size_t n, const struct sock_ident *want)
{
	int best = -1, best_score = 0;

	for (size_t i = 0; i < n; i++) {
		struct sock_ident id;
		int score;

		ports_ident_of_snap(&ss[i], &id);
		score = ports_conflict(&id, want) * 4;
		if (!score)
			continue;
		/* Listening beats merely bound; a row with a process beats a table-only row. */
		score += (ss[i].state == REV_TCP_LISTEN) * 2 + (ss[i].type == REV_SNAP_SOCK_FD);
		if (score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

bool ports_owner(const struct listener *ls, size_t n, const struct snap *s,
		 const struct sock_ident *want, pid_t loser, struct port_owner *out)
{
	bool held = false;
	int i;

	memset(out, 0, sizeof(*out));
	if ((i = ports_best_listener(ls, n, want)) >= 0) {
		held = true;
		out->pid = ls[i].v.pid;
		snprintf(out->comm, sizeof(out->comm), "%.*s", REV_COMM_LEN, ls[i].v.comm);
		if (out->pid)
			return true;
	}
	i = s ? ports_best_snap(s->socks, s->n_socks, want) : -1;
	if (i < 0 || (s->socks[i].pid == (uint32_t)loser && loser &&
		      s->socks[i].state != REV_TCP_LISTEN))
		return held;
	out->pid = s->socks[i].pid;
	snprintf(out->comm, sizeof(out->comm), "%.*s", REV_COMM_LEN, s->socks[i].comm);
	return true;
}

/* One syscall per 256 entries: a collision on a busy host must not stall the loop. */
static int read_batch(int fd, struct listener **out, size_t *n)
{
	enum { CHUNK = 256 };
	struct listener_key keys[CHUNK];
	struct listener_val vals[CHUNK];
	struct listener *ls = NULL;
	size_t cnt = 0, cap = 0;
	__u32 token = 0;
	bool first = true;
	int rc;

	for (;;) {
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		__u32 got = CHUNK;

		rc = bpf_map_lookup_batch(fd, first ? NULL : &token, &token, keys, vals, &got, &opts);
		rc = rc < 0 ? -errno : 0;
		if (rc && rc != -ENOENT)
			break;
		if (cnt + got > cap) {
			struct listener *p;

			cap = (cnt + got) * 2;
			p = realloc(ls, cap * sizeof(*p));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			ls = p;
		}
		for (__u32 i = 0; i < got; i++) {
			ls[cnt].k = keys[i];
			ls[cnt].v = vals[i];
			cnt++;
		}
		first = false;
		if (rc == -ENOENT) { /* that was the last batch */
			rc = 0;
			break;
		}
	}
	if (rc) {
		free(ls);
		return rc;
	}
	*out = ls;
	*n = cnt;
	return 0;
}

int ports_read_map(int fd, struct listener **out, size_t *n)
{
	struct listener_key key, next, *prev = NULL;
	struct listener *ls = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0;

	*out = NULL;
	*n = 0;
	if (fd < 0)
		return -EBADF;
	rc = read_batch(fd, out, n);
	if (rc != -EINVAL && rc != -ENOTSUP && rc != -EOPNOTSUPP)
		return rc;
	/* Kernels without batch look-ups: key by key. */
	rc = 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (cnt == cap) {
			struct listener *p;

			cap = cap ? cap * 2 : 64;
			p = realloc(ls, cap * sizeof(*p));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			ls = p;
		}
		key = next;
		prev = &key;
		ls[cnt].k = next;
		/* An entry deleted between the two calls is simply skipped. */
		if (bpf_map_lookup_elem(fd, &next, &ls[cnt].v) == 0)
			cnt++;
	}
	if (rc) {
		free(ls);
		return rc;
	}
	*out = ls;
	*n = cnt;
	return 0;
}

/* Is sk held through an fd by a process other than pid? */
static bool held_by_other(const struct snap *s, uint64_t sk, uint32_t pid)
{
	for (size_t i = 0; i < s->n_socks; i++)
		if (s->socks[i].sk == sk && s->socks[i].type == REV_SNAP_SOCK_FD &&
		    s->socks[i].pid != pid)
			return true;
	return false;
}

/* The map entry a snapshot row seeds, or false when the row is not one to seed. */
static bool seed_entry(const struct snap *s, const struct snap_sock *r, bool binds,
		       struct listener *l)
{
	bool listening = r->proto == REV_PROTO_TCP && r->state == REV_TCP_LISTEN;

	if (!listening && !(binds && r->port && (r->proto == REV_PROTO_UDP ||
						 r->state == REV_TCP_CLOSE)))
		return false;
	/* A socket in the tables that no process showed (a hidden owner, the kernel): recorded
	 * with pid 0, so the map alone answers for it. */
	if (r->type != REV_SNAP_SOCK_FD && held_by_other(s, r->sk, 0))
		return false;
	memset(l, 0, sizeof(*l));
	l->k.sk = r->sk;
	memcpy(l->k.addr, r->addr, sizeof(l->k.addr));
	l->k.netns = r->netns;
	l->k.port = r->port;
	l->k.family = r->family;
	l->k.proto = r->proto;
	l->v.pid = r->type == REV_SNAP_SOCK_FD ? r->pid : 0;
	l->v.uid = r->uid;
	memcpy(l->v.comm, r->comm, sizeof(l->v.comm));
	l->v.confirmed = 1;
	l->v.v6only = r->v6only;
	l->v.state = listening ? REV_TCP_LISTEN : REV_TCP_CLOSE;
	l->v.ino = (uint32_t)r->ino;
	l->v.shared = l->v.pid && held_by_other(s, r->sk, r->pid);
	return true;
}

int ports_seed(int map_fd, int owners_fd, uint32_t *hints, int bound_fd, const struct snap *s)
{
	int added = 0;

	for (size_t i = 0; i < s->n_socks; i++) {
		const struct snap_sock *r = &s->socks[i];
		struct listener l;
		__u64 sk = r->sk;

		if (!seed_entry(s, r, bound_fd >= 0, &l))
			continue;
		/* A bound socket is seeded only if its release can find it. */
		if (l.v.state != REV_TCP_LISTEN &&
		    bpf_map_update_elem(bound_fd, &sk, &l.k, BPF_NOEXIST))
			continue;
		/* Rows come in pid order: the first holder of a shared socket (the parent) wins. */
		if (bpf_map_update_elem(map_fd, &l.k, &l.v, BPF_NOEXIST) == 0 && l.v.pid) {
			uint32_t n = 0, tgid = r->pid;

			bpf_map_lookup_elem(owners_fd, &tgid, &n);
			n++;
			/* The probes look in the map only for a tgid whose counter is not 0. */
			if (bpf_map_update_elem(owners_fd, &tgid, &n, BPF_ANY) == 0 && n == 1 && hints)
				__atomic_fetch_add(&hints[tgid & (REV_OWNER_HINTS - 1)], 1,
						   __ATOMIC_SEQ_CST);
			added++;
		}
	}
	return added;
}

int ports_write_meta(int map_fd, uint8_t flags)
{
	struct listener_key k = {0};
	struct listener_val v = {.pid = (uint32_t)getpid(), .confirmed = flags};

	return bpf_map_update_elem(map_fd, &k, &v, BPF_ANY) ? -errno : 0;
}

uint8_t ports_meta_flags(const struct listener *ls, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!ls[i].k.proto && !ls[i].k.sk)
			return ls[i].v.confirmed;
	return 0;
}

void ports_pin_dir(const char *control_socket, char *buf, size_t len)
{
	uint32_t h;

	if (!control_socket || !strcmp(control_socket, CONFIG_DEFAULT_CONTROL_SOCKET)) {
		snprintf(buf, len, "%s/revenant", REV_PIN_ROOT);
		return;
	}
	h = fnv1a(FNV_SEED, control_socket, strlen(control_socket));
	snprintf(buf, len, "%s/revenant-%08x", REV_PIN_ROOT, h);
}
