// SPDX-License-Identifier: MIT
/* Runs the iterators of bpf/snapshot.bpf.c once and collects their fixed-size rows. The kernel walks
 * its own task and socket tables, so this sees owners that /proc hides (PID 1's fds here). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "snapshot.h"
#include "snapshot.skel.h"

struct buf {
	char *data;
	size_t len, cap;
};

static int read_iter(struct bpf_program *prog, struct buf *b)
{
	struct bpf_link *link = bpf_program__attach_iter(prog, NULL);
	int fd, rc = 0;

	if (!link)
		return -errno;
	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		ssize_t n;

		if (b->cap - b->len < 65536) {
			size_t ncap = b->cap ? b->cap * 2 : 1 << 20;
			char *p = realloc(b->data, ncap);

			if (!p) {
				rc = -ENOMEM;
				break;
			}
			b->data = p;
			b->cap = ncap;
		}
		n = read(fd, b->data + b->len, b->cap - b->len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		b->len += n;
	}
	close(fd);
out:
	bpf_link__destroy(link);
	return rc;
}

static int collect(struct snap *s, const struct buf *b)
{
	size_t off = 0;

	while (off + sizeof(__u32) <= b->len) {
		__u32 type;

		memcpy(&type, b->data + off, sizeof(type));
		if (type == REV_SNAP_ZOMBIE) {
			struct snap_zombie *z;

			if (off + sizeof(*z) > b->len)
				break;
			z = realloc(s->zombies, (s->n_zombies + 1) * sizeof(*z));
			if (!z)
				return -ENOMEM;
			s->zombies = z;
			memcpy(&z[s->n_zombies++], b->data + off, sizeof(*z));
			off += sizeof(*z);
		} else {
			struct snap_sock *k;

			if (off + sizeof(*k) > b->len)
				break;
			if (s->n_socks % 256 == 0) {
				k = realloc(s->socks, (s->n_socks + 256) * sizeof(*k));
				if (!k)
					return -ENOMEM;
				s->socks = k;
			}
			memcpy(&s->socks[s->n_socks++], b->data + off, sizeof(*k));
			off += sizeof(*k);
		}
	}
	return 0;
}

int snapshot_take(struct snap *s, unsigned what, char *err, size_t errlen)
{
	struct snapshot_bpf *skel;
	struct bpf_program *progs[4];
	struct buf b = {0};
	int rc, n = 0;

	memset(s, 0, sizeof(*s));
	skel = snapshot_bpf__open();
	if (!skel) {
		rc = -errno;
		snprintf(err, errlen, "failed to open the snapshot BPF object: %s", strerror(-rc));
		return rc;
	}
	/* Load only what was asked: verification is most of the cost of a one-shot call. */
	bpf_program__set_autoload(skel->progs.dump_socket_fds, what & SNAP_SOCK_FDS);
	bpf_program__set_autoload(skel->progs.dump_tcp, what & SNAP_SOCK_TABLES);
	bpf_program__set_autoload(skel->progs.dump_udp, what & SNAP_SOCK_TABLES);
	bpf_program__set_autoload(skel->progs.dump_zombies, what & SNAP_ZOMBIES);
	rc = snapshot_bpf__load(skel);
	if (rc) {
		snprintf(err, errlen, "failed to load the snapshot iterators: %s (%s)", strerror(-rc),
			 rc == -EPERM ? "run as root" : "the kernel needs BPF iterators, 5.8 or later");
		goto out;
	}
	if (what & SNAP_SOCK_FDS)
		progs[n++] = skel->progs.dump_socket_fds;
	if (what & SNAP_SOCK_TABLES) {
		progs[n++] = skel->progs.dump_tcp;
		progs[n++] = skel->progs.dump_udp;
	}
	if (what & SNAP_ZOMBIES)
		progs[n++] = skel->progs.dump_zombies;
	for (int i = 0; i < n && !rc; i++) {
		rc = read_iter(progs[i], &b);
		if (rc)
			snprintf(err, errlen, "failed to run iterator %s: %s",
				 bpf_program__name(progs[i]), strerror(-rc));
	}
	if (!rc)
		rc = collect(s, &b);
out:
	free(b.data);
	snapshot_bpf__destroy(skel);
	if (rc)
		snapshot_free(s);
	return rc;
}

void snapshot_free(struct snap *s)
{
	free(s->socks);
	free(s->zombies);
	memset(s, 0, sizeof(*s));
}
