// SPDX-License-Identifier: MIT
/* Unit tests of user/lib/safefs.c: path components that stay in their directory, the walk that
 * follows a symlink only where root alone could have planted it, the owner and mode checks of a
 * directory the agent writes in, and the open of files in it (no symlink, regular files only,
 * the agent's own in a shared directory, fresh ones through O_EXCL). Owner cases need root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/safefs.h"

#define NOBODY 65534

static char top[PATH_MAX];
static char err[1024];

static int setup(void **state)
{
	(void)state;
	snprintf(top, sizeof(top), "/tmp/revenant-test-safefs-XXXXXX");
	return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *at(const char *rel)
{
	static char buf[4][PATH_MAX + 64];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", top, rel);
	return buf[i];
}

static void mkfile(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void expect_err(int rc, int want, const char *needle)
{
	if (rc != want || !strstr(err, needle))
		fail_msg("got %d (%s), want %d with \"%s\"", rc, err, want, needle);
}

static void components(void **state)
{
	char buf[64], dir[64], name[32];

	(void)state;
	assert_true(path_component_ok("a"));
	assert_true(path_component_ok("...")); /* odd, but it stays inside */
	assert_true(path_component_ok("my_svc-1.log"));
	assert_false(path_component_ok(""));
	assert_false(path_component_ok("."));
	assert_false(path_component_ok(".."));
	assert_false(path_component_ok("a/b"));
	assert_false(path_component_ok("/"));
	assert_false(path_component_ok(NULL));
	memset(buf, 'x', sizeof(buf));
	buf[sizeof(buf) - 1] = 0;
	assert_true(path_component_ok(buf));

	assert_int_equal(path_child(buf, sizeof(buf), "/sys/fs/cgroup/revenant-1", "web"), 0);
	assert_string_equal(buf, "/sys/fs/cgroup/revenant-1/web");
	assert_int_equal(path_child(buf, sizeof(buf), "/", "x"), 0);
	assert_string_equal(buf, "/x");
	assert_int_equal(path_child(buf, sizeof(buf), "/sys/fs/cgroup/revenant-1", ".."), -EINVAL);
	assert_int_equal(path_child(buf, sizeof(buf), "/a", "b/../../c"), -EINVAL);
	assert_int_equal(path_child(buf, 8, "/abcdef", "g"), -ENAMETOOLONG);

	assert_int_equal(
	    path_split("/run/revenant/control.sock", dir, sizeof(dir), name, sizeof(name)), 0);
	assert_string_equal(dir, "/run/revenant");
	assert_string_equal(name, "control.sock");
	assert_int_equal(path_split("/x", dir, sizeof(dir), name, sizeof(name)), 0);
	assert_string_equal(dir, "/");
	assert_int_equal(path_split("x", dir, sizeof(dir), name, sizeof(name)), 0);
	assert_string_equal(dir, ".");
	assert_int_equal(path_split("/a/..", dir, sizeof(dir), name, sizeof(name)), -EINVAL);
	assert_int_equal(path_split("/a/", dir, sizeof(dir), name, sizeof(name)), -EINVAL);
}

static void directories(void **state)
{
	struct sdir d;
	int rc;

	(void)state;
	/* created on the way, with the mode given */
	rc = sdir_open(&d, at("logs/deep/er"), SDIR_CREATE, 0755, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_false(d.shared);
	sdir_close(&d);
	assert_int_equal(sdir_open(&d, at("missing"), 0, 0, err, sizeof(err)), -ENOENT);

	assert_int_equal(mkdir(at("open"), 0755), 0);
	assert_int_equal(chmod(at("open"), 0777), 0);
	expect_err(sdir_open(&d, at("open"), 0, 0, err, sizeof(err)), -EPERM,
		   "is writable by others (mode 0777) and not sticky");
	assert_int_equal(chmod(at("open"), 01777), 0);
	assert_int_equal(sdir_open(&d, at("open"), 0, 0, err, sizeof(err)), 0);
	assert_true(d.shared); /* like /tmp: usable, for files of our own */
	sdir_close(&d);
	assert_int_equal(chmod(at("open"), 0775), 0);
	expect_err(sdir_open(&d, at("open"), 0, 0, err, sizeof(err)), -EPERM, "writable by others");

	mkfile(at("file"), "x");
	expect_err(sdir_open(&d, at("file"), 0, 0, err, sizeof(err)), -ENOTDIR,
		   "is a regular file, not a directory");

	if (geteuid() == 0) {
		assert_int_equal(mkdir(at("theirs"), 0755), 0);
		assert_int_equal(chown(at("theirs"), NOBODY, NOBODY), 0);
		expect_err(sdir_open(&d, at("theirs"), 0, 0, err, sizeof(err)), -EPERM,
			   "belongs to uid 65534");
		/* a directory of root's made inside it is fine (we hold its fd); swapped for a
		 * link by its owner, it is not followed */
		assert_int_equal(
		    sdir_open(&d, at("theirs/sub"), SDIR_CREATE, 0755, err, sizeof(err)), 0);
		sdir_close(&d);
		assert_int_equal(rename(at("theirs/sub"), at("theirs/old")), 0);
		assert_int_equal(symlink(at("theirs/old"), at("theirs/sub")), 0);
		assert_int_equal(lchown(at("theirs/sub"), NOBODY, NOBODY), 0);
		expect_err(sdir_open(&d, at("theirs/sub"), SDIR_CREATE, 0755, err, sizeof(err)),
			   -EPERM, "not followed");
	}
}

/* A link is followed where root alone could have made it; never one another user could plant. */
static void symlinks(void **state)
{
	struct sdir d;

	(void)state;
	assert_int_equal(mkdir(at("real"), 0755), 0);
	assert_int_equal(symlink("real", at("rel")), 0);
	assert_int_equal(symlink(at("real"), at("abs")), 0);
	assert_int_equal(sdir_open(&d, at("rel"), 0, 0, err, sizeof(err)), 0);
	sdir_close(&d);
	assert_int_equal(sdir_open(&d, at("abs"), 0, 0, err, sizeof(err)), 0);
	sdir_close(&d);
	assert_int_equal(symlink("loop", at("loop")), 0);
	assert_int_equal(sdir_open(&d, at("loop"), 0, 0, err, sizeof(err)), -ELOOP);

	if (geteuid() != 0)
		return;
	/* in a sticky directory: root's own link is followed, nobody's is not */
	assert_int_equal(mkdir(at("tmp"), 0755), 0);
	assert_int_equal(chmod(at("tmp"), 01777), 0);
	assert_int_equal(symlink(at("real"), at("tmp/mine")), 0);
	assert_int_equal(sdir_open(&d, at("tmp/mine"), 0, 0, err, sizeof(err)), 0);
	sdir_close(&d);
	assert_int_equal(symlink(at("real"), at("tmp/theirs")), 0);
	assert_int_equal(lchown(at("tmp/theirs"), NOBODY, NOBODY), 0);
	expect_err(sdir_open(&d, at("tmp/theirs"), 0, 0, err, sizeof(err)), -EPERM,
		   "is a symbolic link (owner uid 65534) in a directory other users can write");
	/* in a directory another user owns: not even root's link (they could swap it) */
	assert_int_equal(mkdir(at("home"), 0755), 0);
	assert_int_equal(symlink(at("real"), at("home/logs")), 0);
	assert_int_equal(chown(at("home"), NOBODY, NOBODY), 0);
	expect_err(sdir_open(&d, at("home/logs"), 0, 0, err, sizeof(err)), -EPERM, "not followed");
}

static void files(void **state)
{
	struct sdir d;
	bool removed;
	int fd;

	(void)state;
	assert_int_equal(mkdir(at("shared"), 0755), 0);
	assert_int_equal(chmod(at("shared"), 01777), 0);
	assert_int_equal(sdir_open(&d, at("shared"), 0, 0, err, sizeof(err)), 0);
	assert_true(d.shared);
	mkfile(at("target"), "keep\n");

	/* created through O_EXCL, then opened again as the agent's own */
	fd = sdir_file(&d, "log", O_WRONLY | O_APPEND, SFILE_CREATE, 0644, NULL, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);
	fd = sdir_file(&d, "log", O_WRONLY | O_APPEND, SFILE_CREATE, 0644, NULL, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);

	assert_int_equal(symlink(at("target"), at("shared/link")), 0);
	expect_err(
	    sdir_file(&d, "link", O_WRONLY | O_APPEND, SFILE_CREATE, 0644, NULL, err, sizeof(err)),
	    -ELOOP, "is a symbolic link: not followed");
	/* a fresh file replaces whatever has the name, never writing through it */
	if (geteuid() == 0)
		assert_int_equal(lchown(at("shared/link"), NOBODY, NOBODY), 0);
	fd = sdir_file(&d, "link", O_WRONLY, SFILE_FRESH, 0600, &removed, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "new\n", 4), 4);
	close(fd);
	assert_int_equal(removed, geteuid() == 0);
	{
		char buf[16] = "";
		FILE *f = fopen(at("target"), "r");

		assert_non_null(f);
		assert_non_null(fgets(buf, sizeof(buf), f));
		fclose(f);
		assert_string_equal(buf, "keep\n");
	}

	assert_int_equal(mkfifo(at("shared/fifo"), 0600), 0);
	expect_err(
	    sdir_file(&d, "fifo", O_WRONLY | O_APPEND, SFILE_CREATE, 0644, NULL, err, sizeof(err)),
	    -ENXIO, "FIFO"); /* no reader: the open would block; O_NONBLOCK says so */
	expect_err(sdir_file(&d, "fifo", O_RDWR, 0, 0, NULL, err, sizeof(err)), -EINVAL,
		   "is a FIFO, not a regular file");
	assert_int_equal(mkdir(at("shared/dir"), 0755), 0);
	assert_true(sdir_file(&d, "dir", O_RDONLY, 0, 0, NULL, err, sizeof(err)) < 0);
	assert_int_equal(sdir_file(&d, "../target", O_RDONLY, 0, 0, NULL, err, sizeof(err)),
			 -EINVAL);

	if (geteuid() == 0) {
		/* someone else's file, or one with a second name, in a shared directory */
		mkfile(at("shared/planted"), "x");
		assert_int_equal(chown(at("shared/planted"), NOBODY, NOBODY), 0);
		expect_err(sdir_file(&d, "planted", O_WRONLY | O_APPEND, SFILE_CREATE, 0644, NULL,
				     err, sizeof(err)),
			   -EPERM, "belongs to uid 65534");
		assert_int_equal(link(at("target"), at("shared/hard")), 0);
		expect_err(sdir_file(&d, "hard", O_WRONLY | O_APPEND, 0, 0, NULL, err, sizeof(err)),
			   -EPERM, "has 2 names (hard links)");
	}
	sdir_close(&d);

	/* /dev/null only when asked for */
	assert_int_equal(sdir_open(&d, "/dev", 0, 0, err, sizeof(err)), 0);
	fd = sdir_file(&d, "null", O_WRONLY | O_APPEND, SFILE_DEVNULL, 0, NULL, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);
	expect_err(sdir_file(&d, "zero", O_WRONLY, SFILE_DEVNULL, 0, NULL, err, sizeof(err)),
		   -EINVAL, "is a character device");
	sdir_close(&d);
}

/* The runtime directory: tightened to 0700 when it holds nothing but the agent's files. */
static void own_directory(void **state)
{
	static const char *const own[] = {"agent.lock", "state.json", NULL};
	struct sdir d;
	struct stat st;

	(void)state;
	assert_int_equal(mkdir(at("run"), 0755), 0);
	mkfile(at("run/agent.lock"), "");
	assert_int_equal(sdir_open_own(&d, at("run"), own, err, sizeof(err)), 0);
	sdir_close(&d);
	assert_int_equal(stat(at("run"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	/* shared with other files (a config, logs): left as it is, since only root writes it */
	assert_int_equal(chmod(at("run"), 0755), 0);
	mkfile(at("run/revenant.json"), "{}");
	assert_int_equal(sdir_open_own(&d, at("run"), own, err, sizeof(err)), 0);
	sdir_close(&d);
	assert_int_equal(stat(at("run"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	/* ... and refused when others could write it */
	assert_int_equal(chmod(at("run"), 0777), 0);
	expect_err(sdir_open_own(&d, at("run"), own, err, sizeof(err)), -EPERM,
		   "writable by others");
	/* created: 0700 from the start */
	assert_int_equal(sdir_open_own(&d, at("new/run"), own, err, sizeof(err)), 0);
	sdir_close(&d);
	assert_int_equal(stat(at("new/run"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
}

static void reading(void **state)
{
	char *buf;
	int fd;

	(void)state;
	mkfile(at("env"), "A=1\n");
	fd = safe_open_read(at("env"), 16, false, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(safe_read_all(fd, 16, &buf), 4);
	assert_string_equal(buf, "A=1\n");
	free(buf);
	close(fd);
	expect_err(safe_open_read(at("env"), 3, false, err, sizeof(err)), -EFBIG,
		   "is 4 bytes, more than the 3 allowed");
	/* a link where only root writes is followed: .env -> .env.development */
	assert_int_equal(symlink("env", at("env.link")), 0);
	fd = safe_open_read(at("env.link"), 16, false, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);
	expect_err(safe_open_read("/dev/zero", 1 << 20, false, err, sizeof(err)), -EINVAL,
		   "/dev/zero is a character device, not a regular file");
	assert_int_equal(mkfifo(at("env.fifo"), 0600), 0);
	expect_err(safe_open_read(at("env.fifo"), 16, false, err, sizeof(err)), -EINVAL,
		   "is a FIFO");
	expect_err(safe_open_read(top, 16, false, err, sizeof(err)), -EINVAL, "is a directory");
	assert_int_equal(safe_open_read(at("none"), 16, false, err, sizeof(err)), -ENOENT);
	if (geteuid() == 0) {
		assert_int_equal(chown(at("env"), NOBODY, NOBODY), 0);
		expect_err(safe_open_read(at("env"), 16, true, err, sizeof(err)), -EPERM,
			   "belongs to uid 65534, not root");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(components),
	    cmocka_unit_test_setup_teardown(directories, setup, teardown),
	    cmocka_unit_test_setup_teardown(symlinks, setup, teardown),
	    cmocka_unit_test_setup_teardown(files, setup, teardown),
	    cmocka_unit_test_setup_teardown(own_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(reading, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
