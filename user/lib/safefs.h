/* SPDX-License-Identifier: MIT */
/* Files in directories other users may reach. Paths are walked one component at a time (openat,
 * O_NOFOLLOW), a symlink is followed only where root alone could have put it, a directory is
 * checked for owner and mode before the agent writes in it, and a file is used only when it is a
 * regular file (and, in a directory others share, the agent's own). systemd's chase() in small. */
#ifndef REVENANT_SAFEFS_H
#define REVENANT_SAFEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A directory the agent writes in, opened and checked. */
struct sdir {
	int fd;
	bool shared;	 /* sticky and writable by others: only files of the agent's own are used */
	char path[4096]; /* as given, for messages */
};

/* sdir_open() flags */
#define SDIR_CREATE 0x1 /* create missing directories (with the mode given) */

/* name is one path component that stays inside its directory: not empty, not "." or "..", no
 * '/', at most 255 bytes. */
bool path_component_ok(const char *name);
/* dir "/" name into buf, only when name is such a component. 0, -EINVAL or -ENAMETOOLONG. */
int path_child(char *buf, size_t len, const char *dir, const char *name);
/* The directory part and the last component of path ("/a/b" -> "/a", "b"). 0 or -errno. */
int path_split(const char *path, char *dir, size_t dlen, char *name, size_t nlen);

/* Opens the directory path. Symlinks on the way are followed only in directories no one but
 * root can write (or, in a sticky one, when root owns the link). The directory itself must be
 * root's and not writable by others unless sticky (d->shared). 0 or -errno with err filled:
 * -EPERM (not safe), -ELOOP, -ENOTDIR, or what the file system said. */
int sdir_open(struct sdir *d, const char *path, unsigned flags, mode_t mode, char *err,
	      size_t errlen);
/* The agent's runtime directory (the control socket's): created 0700; when it exists and holds
 * nothing but the names in own (NULL-terminated) and sockets, it is the agent's alone and is
 * tightened to 0700 whatever its mode was. Otherwise checked as sdir_open() does. */
int sdir_open_own(struct sdir *d, const char *path, const char *const *own, char *err,
		  size_t errlen);
void sdir_close(struct sdir *d);

/* sdir_file() flags; the access mode comes from `flags & O_ACCMODE` plus O_APPEND. */
#define SFILE_CREATE  0x1 /* create when missing (O_EXCL, so never through a planted name) */
#define SFILE_FRESH   0x2 /* always a new file: whatever has the name is removed first */
#define SFILE_DEVNULL 0x4 /* /dev/null is accepted as well as a regular file */

/* Opens name in d with O_NOFOLLOW|O_CLOEXEC|O_NONBLOCK (a FIFO cannot block the caller). Refuses
 * a symlink, anything but a regular file, and in a shared directory a file that is not root's or
 * has other names (hard links). *removed (may be NULL) is set when SFILE_FRESH removed something
 * another user had put there. Returns the fd or -errno with err filled. */
int sdir_file(const struct sdir *d, const char *name, int oflags, unsigned flags, mode_t mode,
	      bool *removed, char *err, size_t errlen);

/* The same for a path: sdir_open() of its directory (SDIR_* flags in dflags) then sdir_file().
 * Returns the fd or -errno with err filled. */
int safe_open(const char *path, int oflags, unsigned flags, unsigned dflags, mode_t mode, char *err,
	      size_t errlen);

/* A file to read (env_file, state.json): symlinks followed as sdir_open() does, opened
 * O_NONBLOCK|O_NOFOLLOW, then it must be a regular file of at most max_bytes; owner_root also
 * wants it root's. Returns the fd or -errno with err filled (-EFBIG when too large). */
int safe_open_read(const char *path, size_t max_bytes, bool owner_root, char *err, size_t errlen);

/* Reads fd to the end, at most max bytes (-EFBIG past that). *buf is malloc'd and
 * NUL-terminated. Returns the length or -errno. */
ssize_t safe_read_all(int fd, size_t max, char **buf);

/* "a FIFO", "a directory", ... for messages about what st is. */
const char *file_kind(mode_t mode);

#endif
