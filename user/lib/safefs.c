// SPDX-License-Identifier: MIT
/* Safe file access for a root agent: the path walk (symlinks followed only where root alone could
 * have planted them), the owner and mode checks of the directories it writes in, and the open of
 * files in them (O_NOFOLLOW, O_EXCL for new files, regular files only). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "lib/safefs.h"

#define MAX_LINKS 40
#define WALK_BUF  8192

bool path_component_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	return n > 0 && n <= 255 && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/');
}

int path_child(char *buf, size_t len, const char *dir, const char *name)
{
	int n;

	if (!path_component_ok(name))
		return -EINVAL;
	/* "/" + name, not "//name" */
	n = snprintf(buf, len, "%s/%s", strcmp(dir, "/") ? dir : "", name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int path_split(const char *path, char *dir, size_t dlen, char *name, size_t nlen)
{
	const char *slash = strrchr(path, '/');
	int n;

	if (!slash) {
		n = snprintf(dir, dlen, ".");
	} else if (slash == path) {
		n = snprintf(dir, dlen, "/");
	} else {
		n = snprintf(dir, dlen, "%.*s", (int)(slash - path), path);
	}
	if (n < 0 || (size_t)n >= dlen)
		return -ENAMETOOLONG;
	n = snprintf(name, nlen, "%s", slash ? slash + 1 : path);
	if (n < 0 || (size_t)n >= nlen)
		return -ENAMETOOLONG;
	return path_component_ok(name) ? 0 : -EINVAL;
}

const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "a regular file";
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFSOCK:
		return "a socket";
	case S_IFLNK:
		return "a symbolic link";
	default:
		return "not a regular file";
	}
}

static bool owner_ok(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* Someone but us may create, remove or rename entries in this directory. */
static bool others_can_write(const struct stat *st)
{
	return !owner_ok(st->st_uid) || (st->st_mode & (S_IWGRP | S_IWOTH));
}

/* A link only root could have put there: in a directory only root writes, or root's own link
 * in a sticky directory of root's (the rule of fs.protected_symlinks, whatever the sysctl). */
static bool link_followable(const struct stat *dir, const struct stat *lnk)
{
	if (!others_can_write(dir))
		return true;
	return owner_ok(dir->st_uid) && (dir->st_mode & S_ISVTX) && owner_ok(lnk->st_uid);
}

struct walk {
	int dfd;	  /* O_PATH fd of the directory reached so far */
	struct stat dst;  /* its stat */
	char shown[4096]; /* the path resolved so far, for messages */
	char last[256];	  /* the final component, when the walk stops before it */
};

static void shown_push(struct walk *w, const char *comp)
{
	size_t n = strlen(w->shown);

	if (!strcmp(comp, "..")) {
		char *s = strrchr(w->shown, '/');

		if (s && s != w->shown)
			*s = 0;
		else
			snprintf(w->shown, sizeof(w->shown), "/");
		return;
	}
	snprintf(w->shown + n, sizeof(w->shown) - n, "%s%s", n && w->shown[n - 1] == '/' ? "" : "/",
		 comp);
}

static int walk_restart(struct walk *w, bool absolute, char *err, size_t errlen)
{
	int fd = absolute ? open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)
			  : open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &w->dst)) {
		int e = errno;

		snprintf(err, errlen, "cannot open %s: %s", absolute ? "/" : ".", strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	if (w->dfd >= 0)
		close(w->dfd);
	w->dfd = fd;
	if (absolute)
		snprintf(w->shown, sizeof(w->shown), "/");
	else if (!getcwd(w->shown, sizeof(w->shown)))
		snprintf(w->shown, sizeof(w->shown), ".");
	return 0;
}

/* Walks path. With to_dir, every component is a directory and w->dfd ends on the last one
 * (created when missing under SDIR_CREATE). Without, the walk stops before the final component,
 * left in w->last; follow_last then also follows a symlink there (by the same rule). */
static int walk(struct walk *w, const char *path, bool to_dir, bool create, bool follow_last,
		mode_t mode, char *err, size_t errlen)
{
	char *todo = malloc(WALK_BUF), *tmp = malloc(WALK_BUF), *p;
	int links = 0, rc = 0;

	w->dfd = -1;
	w->last[0] = 0;
	if (!todo || !tmp) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (!*path) {
		rc = -ENOENT;
		snprintf(err, errlen, "empty path");
		goto out;
	}
	snprintf(todo, WALK_BUF, "%s", path);
	rc = walk_restart(w, path[0] == '/', err, errlen);
	for (p = todo; !rc;) {
		char comp[256], *e;
		size_t n;
		bool last;
		struct stat st;
		int fd;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		e = strchrnul(p, '/');
		n = e - p;
		if (n >= sizeof(comp)) {
			rc = -ENAMETOOLONG;
			snprintf(err, errlen, "%s: a path component is too long", path);
			break;
		}
		memcpy(comp, p, n);
		comp[n] = 0;
		p = e;
		last = !p[strspn(p, "/")];
		if (!strcmp(comp, "."))
			continue;
		fd = openat(w->dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && last && !to_dir) {
			snprintf(w->last, sizeof(w->last), "%s", comp);
			break; /* the caller creates it */
		}
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(w->dfd, comp, mode) && errno != EEXIST) {
				rc = -errno;
				shown_push(w, comp);
				snprintf(err, errlen, "cannot create directory %s: %s", w->shown,
					 strerror(-rc));
				break;
			}
			fd = openat(w->dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0 || fstat(fd, &st)) {
			rc = -errno;
			shown_push(w, comp);
			snprintf(err, errlen, "cannot open %s: %s", w->shown, strerror(-rc));
			if (fd >= 0)
				close(fd);
			break;
		}
		if (S_ISLNK(st.st_mode) && (to_dir || !last || follow_last)) {
			char target[4096];
			ssize_t tn;

			shown_push(w, comp);
			if (!link_followable(&w->dst, &st)) {
				rc = -EPERM;
				snprintf(
				    err, errlen,
				    "%s is a symbolic link (owner uid %u) in a directory other "
				    "users can write: not followed (use the real path)",
				    w->shown, (unsigned)st.st_uid);
				close(fd);
				break;
			}
			tn = readlinkat(fd, "", target, sizeof(target) - 1);
			close(fd);
			if (tn < 0 || ++links > MAX_LINKS) {
				rc = tn < 0 ? -errno : -ELOOP;
				snprintf(err, errlen, "cannot follow %s: %s", w->shown,
					 strerror(-rc));
				break;
			}
			target[tn] = 0;
			if ((size_t)snprintf(tmp, WALK_BUF, "%s%s", target, p) >= WALK_BUF) {
				rc = -ENAMETOOLONG;
				snprintf(err, errlen, "%s: path too long after its links", path);
				break;
			}
			memcpy(todo, tmp, WALK_BUF);
			p = todo;
			if (target[0] == '/') {
				rc = walk_restart(w, true, err, errlen);
			} else {
				/* relative to the link's directory, which shown still ends in */
				char *s = strrchr(w->shown, '/');

				if (s && s != w->shown)
					*s = 0;
				else
					snprintf(w->shown, sizeof(w->shown), "/");
			}
			continue;
		}
		if (last && !to_dir) {
			close(fd);
			snprintf(w->last, sizeof(w->last), "%s", comp);
			break;
		}
		shown_push(w, comp);
		if (!S_ISDIR(st.st_mode)) {
			rc = -ENOTDIR;
			snprintf(err, errlen, "%s is %s, not a directory", w->shown,
				 file_kind(st.st_mode));
			close(fd);
			break;
		}
		close(w->dfd);
		w->dfd = fd;
		w->dst = st;
	}
	if (!rc && !to_dir && !w->last[0]) {
		rc = -EISDIR;
		snprintf(err, errlen, "%s names a directory, not a file", path);
	}
out:
	free(todo);
	free(tmp);
	if (rc && w->dfd >= 0) {
		close(w->dfd);
		w->dfd = -1;
	}
	return rc;
}

/* Nothing in the directory but the names in own and sockets: it is the agent's alone. */
static bool dir_is_own(int fd, const char *const *own)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool ok = own != NULL;
	struct dirent *de;
	DIR *d;

	if (dfd < 0)
		return false;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return false;
	}
	while (ok && (de = readdir(d))) {
		bool known =
		    !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || de->d_type == DT_SOCK;

		for (size_t i = 0; own[i] && !known; i++)
			known = !strcmp(de->d_name, own[i]);
		ok = known;
	}
	closedir(d);
	return ok;
}

static int open_dir(struct sdir *d, const char *path, unsigned flags, mode_t mode,
		    const char *const *own, char *err, size_t errlen)
{
	struct walk w;
	mode_t perm;
	int rc;

	d->fd = -1;
	d->shared = false;
	snprintf(d->path, sizeof(d->path), "%s", path);
	rc = walk(&w, path, true, flags & SDIR_CREATE, true, mode, err, errlen);
	if (rc)
		return rc;
	perm = w.dst.st_mode & 07777;
	if (!owner_ok(w.dst.st_uid)) {
		snprintf(err, errlen,
			 "directory %s belongs to uid %u, so another user can put files and links "
			 "in it: refusing to write there as root (use a directory of root's)",
			 w.shown, (unsigned)w.dst.st_uid);
		rc = -EPERM;
		goto out;
	}
	if (own && (perm & 077) && dir_is_own(w.dfd, own)) {
		/* The agent's own directory: nobody else needs to see into it. */
		perm = 0700;
	} else if ((perm & (S_IWGRP | S_IWOTH)) && !(perm & S_ISVTX)) {
		snprintf(
		    err, errlen,
		    "directory %s is writable by others (mode %04o) and not sticky, so another "
		    "user can replace what the agent writes there: refusing (chmod go-w %s, or "
		    "use another directory)",
		    w.shown, (unsigned)perm, w.shown);
		rc = -EPERM;
		goto out;
	}
	d->fd = openat(w.dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open directory %s: %s", w.shown, strerror(-rc));
		goto out;
	}
	if (perm != (w.dst.st_mode & 07777) && fchmod(d->fd, perm)) {
		rc = -errno;
		snprintf(err, errlen, "cannot make directory %s private (0700): %s", w.shown,
			 strerror(-rc));
		close(d->fd);
		d->fd = -1;
		goto out;
	}
	d->shared = (perm & (S_IWGRP | S_IWOTH)) != 0;
out:
	close(w.dfd);
	return rc;
}

int sdir_open(struct sdir *d, const char *path, unsigned flags, mode_t mode, char *err,
	      size_t errlen)
{
	return open_dir(d, path, flags, mode, NULL, err, errlen);
}

int sdir_open_own(struct sdir *d, const char *path, const char *const *own, char *err,
		  size_t errlen)
{
	return open_dir(d, path, SDIR_CREATE, 0700, own, err, errlen);
}

void sdir_close(struct sdir *d)
{
	if (d && d->fd >= 0)
		close(d->fd);
	if (d)
		d->fd = -1;
}

static int check_file(const struct sdir *d, const char *name, int fd, unsigned flags, bool fresh,
		      char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st)) {
		int e = errno;

		snprintf(err, errlen, "cannot stat %s/%s: %s", d->path, name, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode) &&
	    !((flags & SFILE_DEVNULL) && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3))) {
		snprintf(err, errlen, "%s/%s is %s, not a regular file: refusing to use it",
			 d->path, name, file_kind(st.st_mode));
		return -EINVAL;
	}
	if (!d->shared || fresh || !S_ISREG(st.st_mode))
		return 0;
	if (!owner_ok(st.st_uid)) {
		snprintf(err, errlen,
			 "%s/%s belongs to uid %u, in a directory other users can write: not the "
			 "agent's file, refusing to use it (remove it)",
			 d->path, name, (unsigned)st.st_uid);
		return -EPERM;
	}
	if (st.st_nlink > 1) {
		snprintf(err, errlen,
			 "%s/%s has %u names (hard links), in a directory other users can write: "
			 "refusing to use it (remove the other names)",
			 d->path, name, (unsigned)st.st_nlink);
		return -EPERM;
	}
	return 0;
}

int sdir_file(const struct sdir *d, const char *name, int oflags, unsigned flags, mode_t mode,
	      bool *removed, char *err, size_t errlen)
{
	int base = (oflags & (O_ACCMODE | O_APPEND)) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
	bool fresh = false;
	int fd = -1, rc;

	if (removed)
		*removed = false;
	if (!path_component_ok(name)) {
		snprintf(err, errlen, "%s: \"%s\" is not a file name", d->path, name);
		return -EINVAL;
	}
	for (int attempt = 0; attempt < 3 && fd < 0; attempt++) {
		if (flags & SFILE_FRESH) {
			struct stat st;

			fd = openat(d->fd, name, base | O_CREAT | O_EXCL, mode);
			fresh = fd >= 0;
			if (fd >= 0 || errno != EEXIST)
				break;
			/* The name is the agent's: what is there is a leftover of ours, or was
			 * planted. Either way it goes (unlink never follows a link). */
			if (!fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW)) {
				if (S_ISDIR(st.st_mode)) {
					errno = EISDIR;
					break;
				}
				if (removed && !owner_ok(st.st_uid))
					*removed = true;
			}
			if (unlinkat(d->fd, name, 0) && errno != ENOENT)
				break;
			continue;
		}
		fd = openat(d->fd, name, base);
		if (fd < 0 && errno == ENOENT && (flags & SFILE_CREATE)) {
			fd = openat(d->fd, name, base | O_CREAT | O_EXCL, mode);
			fresh = fd >= 0;
			if (fd < 0 && errno == EEXIST)
				continue; /* made meanwhile: open what is there, with the checks */
		}
		break;
	}
	if (fd < 0) {
		rc = -errno;
		if (rc == -ELOOP)
			snprintf(err, errlen,
				 "%s/%s is a symbolic link: not followed (the agent writes only "
				 "its own files; remove the link or give the real path)",
				 d->path, name);
		else if (rc == -ENXIO)
			snprintf(err, errlen,
				 "%s/%s is a FIFO or device with no reader, not a "
				 "regular file: refusing to use it",
				 d->path, name);
		else
			snprintf(err, errlen, "cannot open %s/%s: %s", d->path, name,
				 strerror(-rc));
		return rc;
	}
	rc = check_file(d, name, fd, flags, fresh, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

int safe_open(const char *path, int oflags, unsigned flags, unsigned dflags, mode_t mode, char *err,
	      size_t errlen)
{
	char dir[4096], name[256];
	struct sdir d;
	int fd;

	fd = path_split(path, dir, sizeof(dir), name, sizeof(name));
	if (fd) {
		snprintf(err, errlen, "%s: not a path to a file", path);
		return fd;
	}
	fd = sdir_open(&d, dir, dflags, 0755, err, errlen);
	if (fd)
		return fd;
	fd = sdir_file(&d, name, oflags, flags, mode, NULL, err, errlen);
	sdir_close(&d);
	return fd;
}

int safe_open_read(const char *path, size_t max_bytes, bool owner_root, char *err, size_t errlen)
{
	struct walk w;
	struct stat st;
	int fd, rc;

	rc = walk(&w, path, false, false, true, 0, err, errlen);
	if (rc)
		return rc;
	fd = openat(w.dfd, w.last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path,
			 rc == -ELOOP ? "it became a symbolic link" : strerror(-rc));
		goto out;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		snprintf(err, errlen, "cannot stat %s: %s", path, strerror(-rc));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s is %s, not a regular file", path, file_kind(st.st_mode));
	} else if ((size_t)st.st_size > max_bytes) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s is %lld bytes, more than the %zu allowed", path,
			 (long long)st.st_size, max_bytes);
	} else if (owner_root && !owner_ok(st.st_uid)) {
		rc = -EPERM;
		snprintf(err, errlen, "%s belongs to uid %u, not root: not the agent's file", path,
			 (unsigned)st.st_uid);
	}
	if (rc) {
		close(fd);
		goto out;
	}
	rc = fd;
out:
	close(w.dfd);
	return rc;
}

ssize_t safe_read_all(int fd, size_t max, char **buf)
{
	size_t len = 0, cap = 4096;
	char *b = malloc(cap), *nb;

	*buf = NULL;
	if (!b)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			if (cap > max + 1) {
				free(b);
				return -EFBIG;
			}
			nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
		}
		n = read(fd, b + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			free(b);
			return -e;
		}
		if (n == 0)
			break;
		len += n;
		if (len > max) {
			free(b);
			return -EFBIG;
		}
	}
	b[len] = 0;
	*buf = b;
	return len;
}
