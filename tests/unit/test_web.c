// SPDX-License-Identifier: MIT
/* The status page's control token file (web_load_token): made 0600 with a fresh token when absent,
 * read back the same; refused when it is a symlink, readable by others, or not a usable token. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/web.h"

static char dir[64], path[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/revenant-test-web-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/sub/metrics.token", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void created_then_read_back(void **state)
{
	char tok[128], again[128], err[512];
	struct stat st;

	(void)state;
	assert_int_equal(web_load_token(path, tok, sizeof(tok), err, sizeof(err)), 0);
	assert_int_equal(strlen(tok), 64);
	for (const char *p = tok; *p; p++)
		assert_non_null(strchr("0123456789abcdef", *p));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_uid, geteuid());
	assert_int_equal(web_load_token(path, again, sizeof(again), err, sizeof(err)), 0);
	assert_string_equal(tok, again);
	/* a second file gets another token */
	unlink(path);
	assert_int_equal(web_load_token(path, again, sizeof(again), err, sizeof(err)), 0);
	assert_string_not_equal(tok, again);
}

static void refused(void **state)
{
	char tok[128] = "", err[512];

	(void)state;
	assert_int_equal(web_load_token(path, tok, sizeof(tok), err, sizeof(err)), 0);
	/* readable by others */
	assert_int_equal(chmod(path, 0644), 0);
	err[0] = 0;
	assert_int_equal(web_load_token(path, tok, sizeof(tok), err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "chmod 600"));
	/* a symlink, even to a good file */
	assert_int_equal(chmod(path, 0600), 0);
	{
		char link[PATH_MAX + 8];

		snprintf(link, sizeof(link), "%s.link", path);
		assert_int_equal(symlink(path, link), 0);
		assert_true(web_load_token(link, tok, sizeof(tok), err, sizeof(err)) < 0);
		assert_non_null(strstr(err, "symlink"));
	}
	/* too short, or not printable */
	write_file("short\n", 0600);
	assert_int_equal(web_load_token(path, tok, sizeof(tok), err, sizeof(err)), -EINVAL);
	write_file("0123456789abcdef\x01\n", 0600);
	assert_int_equal(web_load_token(path, tok, sizeof(tok), err, sizeof(err)), -EINVAL);
	/* a token of one's own, trailing newline and spaces ignored */
	write_file("my-own-token-of-some-length  \n", 0600);
	assert_int_equal(web_load_token(path, tok, sizeof(tok), err, sizeof(err)), 0);
	assert_string_equal(tok, "my-own-token-of-some-length");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(created_then_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
