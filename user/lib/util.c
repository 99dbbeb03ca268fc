// SPDX-License-Identifier: MIT
/* Small helpers shared by the modules: directories, pidfds, /proc reads, names of things. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "event.h"
#include "lib/util.h"

int mkdir_p(const char *dir, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, dir, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int mkdir_p_parent(const char *path, mode_t mode)
{
	char buf[4096];
	char *slash;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	slash = strrchr(buf, '/');
	if (!slash || slash == buf)
		return 0;
	*slash = 0;
	return mkdir_p(buf, mode);
}

void addr_format(char *buf, size_t len, int family, const uint8_t *addr)
{
	if (!inet_ntop(family == REV_AF_INET6 ? AF_INET6 : AF_INET, addr, buf, len))
		snprintf(buf, len, "?");
}

const char *proto_name(int proto)
{
	return proto == REV_PROTO_UDP ? "udp" : proto == REV_PROTO_TCP ? "tcp" : "?";
}

const char *family_name(int family)
{
	return family == REV_AF_INET6 ? "ipv6" : "ipv4";
}

int pidfd_open_pid(pid_t pid)
{
	return syscall(SYS_pidfd_open, pid, 0);
}

int pidfd_signal(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) ? -errno : 0;
}

#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1UL << 2)
#endif

int pidfd_signal_group(int pidfd, pid_t pgid, int sig)
{
	if (!syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP))
		return 0;
	if (errno != EINVAL || pgid <= 1)
		return -errno;
	/* An older kernel: the number is the group's while its leader lives. */
	if (pidfd_signal(pidfd, 0))
		return -errno;
	return kill(-pgid, sig) ? -errno : 0;
}

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return n;
}

char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_small(path, buf, sizeof(buf)) <= 0)
		return 0;
	p = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
	return p && p[1] == ' ' ? p[2] : 0;
}

unsigned proc_flags(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_small(path, buf, sizeof(buf)) <= 0)
		return 0;
	p = strrchr(buf, ')');
	/* after ") ": state ppid pgrp session tty_nr tpgid flags */
	for (int field = 3; p && field <= 9; field++)
		p = strchr(p + 1, ' ');
	return p ? (unsigned)strtoul(p + 1, NULL, 10) : 0;
}

void proc_comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	int n;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	n = read_small(path, buf, len);
	if (n <= 0) {
		buf[0] = 0;
		return;
	}
	if (buf[n - 1] == '\n')
		buf[n - 1] = 0;
}

uid_t proc_uid(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d", pid);
	return stat(path, &st) ? (uid_t)-1 : st.st_uid;
}

static const struct {
	int sig;
	const char *name;
} signals[] = {
	{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},	{SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
	{SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"},	{SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
	{SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"},	{SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
	{SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"},	{SIGTERM, "SIGTERM"}, {SIGCHLD, "SIGCHLD"},
	{SIGCONT, "SIGCONT"}, {SIGSTOP, "SIGSTOP"},	{SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"},
	{SIGTTOU, "SIGTTOU"}, {SIGURG, "SIGURG"},	{SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
	{SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"}, {SIGIO, "SIGIO"},
	{SIGPWR, "SIGPWR"},   {SIGSYS, "SIGSYS"},
};

const char *signal_name(int sig, char *buf, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	snprintf(buf, len, "%d", sig);
	return buf;
}

int signal_from_name(const char *s)
{
	char *end;
	long n;

	if (!s || !*s)
		return -EINVAL;
	n = strtol(s, &end, 10);
	if (!*end)
		return n >= 1 && n <= 64 ? (int)n : -EINVAL;
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
		if (!strcasecmp(signals[i].name + 3, s))
			return signals[i].sig;
	return -EINVAL;
}

uint32_t fnv1a(uint32_t h, const void *data, size_t n)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

bool is_root(void)
{
	return geteuid() == 0;
}

static struct rlimit nofile_at_start;
static bool nofile_saved;

long nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (!nofile_saved) {
		nofile_at_start = rl;
		nofile_saved = true;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			return -errno;
	}
	return rl.rlim_cur > (rlim_t)0x7fffffff ? 0x7fffffff : (long)rl.rlim_cur;
}

void nofile_restore(void)
{
	struct rlimit rl;

	if (!nofile_saved || getrlimit(RLIMIT_NOFILE, &rl))
		return;
	rl.rlim_cur = nofile_at_start.rlim_cur;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static int spare_fd = -1;

int accept_spare_init(void)
{
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return spare_fd < 0 ? -errno : 0;
}

int accept_shed(int lfd, int flags)
{
	int fd = accept4(lfd, NULL, NULL, flags);

	if (fd >= 0)
		return fd;
	if (errno == EINTR || errno == ECONNABORTED)
		return -ECONNABORTED;
	if (errno != EMFILE && errno != ENFILE)
		return -errno;
	if (spare_fd < 0)
		return -EMFILE;
	/* One fd of headroom: take the connection off the queue and refuse it by closing it. */
	close(spare_fd);
	spare_fd = -1;
	fd = accept4(lfd, NULL, NULL, flags);
	if (fd >= 0)
		close(fd);
	accept_spare_init();
	if (fd < 0)
		return errno == EAGAIN ? -EAGAIN : -EMFILE;
	return -ECONNABORTED;
}

/* The initial PID namespace has a fixed inode number (PROC_PID_INIT_INO in the kernel). */
#define INIT_PID_NS_INO 0xEFFFFFFCu

bool in_init_pid_ns(void)
{
	struct stat st;

	/* Unknown (no /proc): say yes rather than warn about what cannot be checked. */
	return stat("/proc/self/ns/pid", &st) || st.st_ino == INIT_PID_NS_INO;
}
