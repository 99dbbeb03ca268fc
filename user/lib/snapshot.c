// SPDX-License-Identifier: MIT
/* Runs the iterators of bpf/snapshot.bpf.c once and collects their fixed-size rows. The kernel walks
 * its own task and socket tables, so this sees owners that /proc hides (PID 1's fds here). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/snapshot.h"
#include "lib/util.h"
#include "snapshot.skel.h"

struct buf {
	char *data;
	size_t len, cap;
};

static int read_fd_all(int fd, struct buf *b)
{
	for (;;) {
		ssize_t n;

		if (b->cap - b->len < 65536) {
			size_t ncap = b->cap ? b->cap * 2 : 1 << 20;
			char *p = realloc(b->data, ncap);

			if (!p)
				return -ENOMEM;
			b->data = p;
			b->cap = ncap;
		}
		n = read(fd, b->data + b->len, b->cap - b->len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		b->len += n;
	}
}

int snapshot_read_pinned(const char *path, char **data, size_t *len)
{
	struct buf b = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	*data = NULL;
	*len = 0;
	if (fd < 0)
		return -errno;
	rc = read_fd_all(fd, &b);
	close(fd);
	if (rc) {
		free(b.data);
		return rc;
	}
	*data = b.data;
	*len = b.len;
	return 0;
}

static int read_iter(struct bpf_program *prog, struct buf *b)
{
	struct bpf_link *link = bpf_program__attach_iter(prog, NULL);
	int fd, rc;

	if (!link)
		return -errno;
	fd = bpf_iter_create(bpf_link__fd(link));
	rc = fd < 0 ? -errno : read_fd_all(fd, b);
	if (fd >= 0)
		close(fd);
	bpf_link__destroy(link);
	return rc;
}

/* Arrays grow in blocks of 256 rows: n is a multiple of 256 exactly when the block is full. */
int snapshot_add_sock(struct snap *s, const struct snap_sock *r)
{
	if (s->n_socks % 256 == 0) {
		struct snap_sock *p = realloc(s->socks, (s->n_socks + 256) * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->socks = p;
	}
	s->socks[s->n_socks++] = *r;
	return 0;
}

int snapshot_add_zombie(struct snap *s, const struct snap_zombie *z)
{
	if (s->n_zombies % 256 == 0) {
		struct snap_zombie *p = realloc(s->zombies, (s->n_zombies + 256) * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->zombies = p;
	}
	s->zombies[s->n_zombies++] = *z;
	return 0;
}

static int collect(struct snap *s, const struct buf *b)
{
	size_t off = 0;
	int rc = 0;

	while (!rc && off + sizeof(__u32) <= b->len) {
		struct snap_zombie z;
		struct snap_sock k;
		__u32 type;

		memcpy(&type, b->data + off, sizeof(type));
		if (type == REV_SNAP_ZOMBIE) {
			if (off + sizeof(z) > b->len)
				break;
			memcpy(&z, b->data + off, sizeof(z));
			rc = snapshot_add_zombie(s, &z);
			off += sizeof(z);
		} else {
			if (off + sizeof(k) > b->len)
				break;
			memcpy(&k, b->data + off, sizeof(k));
			rc = snapshot_add_sock(s, &k);
			off += sizeof(k);
		}
	}
	return rc;
}

struct iter_spec {
	unsigned what;
	const char *pin;
};

static const struct iter_spec specs[] = {
	{SNAP_SOCK_FDS, REV_SOCKETS_PIN},
	{SNAP_SOCK_TABLES, REV_TCP_PIN},
	{SNAP_SOCK_TABLES, REV_UDP_PIN},
	{SNAP_ZOMBIES, REV_ZOMBIES_PIN},
};
#define N_ITERS ARRAY_SIZE(specs)

static struct bpf_program *spec_prog(struct snapshot_bpf *skel, size_t i)
{
	struct bpf_program *progs[] = {skel->progs.dump_socket_fds, skel->progs.dump_tcp,
				       skel->progs.dump_udp, skel->progs.dump_zombies};

	return progs[i];
}

static struct snapshot_bpf *load(unsigned what, char *err, size_t errlen)
{
	struct snapshot_bpf *skel = snapshot_bpf__open();
	int rc;

	if (!skel) {
		snprintf(err, errlen, "failed to open the snapshot BPF object: %s", strerror(errno));
		return NULL;
	}
	/* Load only what was asked: verification is most of the cost of a one-shot call. */
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		bpf_program__set_autoload(spec_prog(skel, i), what & specs[i].what);
	rc = snapshot_bpf__load(skel);
	if (rc) {
		snprintf(err, errlen, "failed to load the snapshot iterators: %s (%s)", strerror(-rc),
			 rc == -EPERM ? "run as root" : "the kernel needs BPF iterators, 5.8 or later");
		snapshot_bpf__destroy(skel);
		errno = -rc;
		return NULL;
	}
	return skel;
}

struct snap_pins {
	struct snapshot_bpf *skel;
	struct bpf_link *links[N_ITERS];
	char paths[N_ITERS][512];
};

static bool pinned(const char *pin_dir, unsigned what)
{
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char path[512];

		if (!(what & specs[i].what))
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin_dir, specs[i].pin);
		if (access(path, F_OK))
			return false;
	}
	return true;
}

/* Without an agent, root's one-shot calls keep their iterators pinned in a directory named after
 * this build's BPF object: loading (libbpf parsing the kernel's BTF) costs ~100 ms, reading a
 * pin a few. A new build gets a new directory and removes the old ones. */
static bool cache_dir(char *buf, size_t len)
{
	struct statfs sf;
	size_t sz = 0;
	const unsigned char *elf = snapshot_bpf__elf_bytes(&sz);
	uint32_t h;
	DIR *d;
	struct dirent *de;

	if (!is_root() || statfs(REV_PIN_ROOT, &sf) || sf.f_type != REV_BPF_FS_MAGIC)
		return false;
	h = fnv1a(FNV_SEED, elf, sz);
	snprintf(buf, len, "%s/revenant-iter-%08x", REV_PIN_ROOT, h);
	if (access(buf, F_OK) == 0)
		return true;
	d = opendir(REV_PIN_ROOT);
	while (d && (de = readdir(d))) {
		char old[512];

		if (strncmp(de->d_name, "revenant-iter-", 14))
			continue;
		snprintf(old, sizeof(old), "%s/%s", REV_PIN_ROOT, de->d_name);
		for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
			char pin[600];

			snprintf(pin, sizeof(pin), "%s/%s", old, specs[i].pin);
			unlink(pin);
		}
		rmdir(old);
	}
	if (d)
		closedir(d);
	return mkdir(buf, 0700) == 0 || errno == EEXIST;
}

int snapshot_take(struct snap *s, unsigned what, const char *pin_dir, char *err, size_t errlen)
{
	struct snapshot_bpf *skel = NULL;
	struct buf b = {0};
	char cache[256];
	int rc = 0;

	memset(s, 0, sizeof(*s));
	if (!pin_dir && cache_dir(cache, sizeof(cache))) {
		if (!pinned(cache, what)) {
			struct snap_pins *p = snapshot_pin(cache, err, errlen);

			/* Leave the pins in place: they are the cache. */
			for (size_t i = 0; p && i < N_ITERS; i++)
				p->paths[i][0] = 0;
			snapshot_unpin(p);
		}
		pin_dir = cache;
	}
	if (pin_dir && pinned(pin_dir, what)) {
		for (size_t i = 0; i < N_ITERS && !rc; i++) {
			char path[512];
			int fd;

			if (!(what & specs[i].what))
				continue;
			snprintf(path, sizeof(path), "%s/%s", pin_dir, specs[i].pin);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			rc = fd < 0 ? -errno : read_fd_all(fd, &b);
			if (fd >= 0)
				close(fd);
			if (rc)
				snprintf(err, errlen, "failed to read iterator %s: %s", path,
					 strerror(-rc));
		}
	} else {
		skel = load(what, err, errlen);
		if (!skel) {
			rc = -errno;
			goto out;
		}
		for (size_t i = 0; i < N_ITERS && !rc; i++) {
			if (!(what & specs[i].what))
				continue;
			rc = read_iter(spec_prog(skel, i), &b);
			if (rc)
				snprintf(err, errlen, "failed to run iterator %s: %s",
					 bpf_program__name(spec_prog(skel, i)), strerror(-rc));
		}
	}
	if (!rc && (rc = collect(s, &b)))
		snprintf(err, errlen, "cannot keep the snapshot: %s", strerror(-rc));
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

struct snap_pins *snapshot_pin(const char *pin_dir, char *err, size_t errlen)
{
	struct snap_pins *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errlen, "cannot pin the iterators: out of memory");
		return NULL;
	}
	p->skel = load(SNAP_SOCK_FDS | SNAP_SOCK_TABLES | SNAP_ZOMBIES, err, errlen);
	if (!p->skel)
		goto fail;
	for (size_t i = 0; i < N_ITERS; i++) {
		snprintf(p->paths[i], sizeof(p->paths[i]), "%s/%s", pin_dir, specs[i].pin);
		unlink(p->paths[i]);
		p->links[i] = bpf_program__attach_iter(spec_prog(p->skel, i), NULL);
		if (!p->links[i] || bpf_link__pin(p->links[i], p->paths[i])) {
			snprintf(err, errlen, "failed to pin iterator %s: %s", p->paths[i],
				 strerror(errno));
			p->paths[i][0] = 0;
			goto fail;
		}
	}
	return p;
fail:
	snapshot_unpin(p);
	return NULL;
}

void snapshot_unpin(struct snap_pins *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < N_ITERS; i++) {
		if (p->paths[i][0])
			unlink(p->paths[i]);
		bpf_link__destroy(p->links[i]);
	}
	snapshot_bpf__destroy(p->skel);
	free(p);
}
