/* SPDX-License-Identifier: MIT */
/* Small helpers with no home of their own: paths, pidfds, /proc reads, address formatting. */
#ifndef REVENANT_UTIL_H
#define REVENANT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Where every pin of ours lives (bpffs; the agent mounts it when absent). */
#define REV_PIN_ROOT "/sys/fs/bpf"
#define REV_BPF_FS_MAGIC 0xcafe4a11

/* A path built from a directory (up to PATH_MAX) and a file name. */
#define REV_PATH_BUF 4200

#define NS_PER_MS 1000000ull
static inline uint64_t ms_to_ns(uint64_t ms)
{
	return ms * NS_PER_MS;
}

/* 32-bit FNV-1a of n bytes, continuing from h (start with FNV_SEED). */
#define FNV_SEED 2166136261u
uint32_t fnv1a(uint32_t h, const void *data, size_t n);

/* mkdir -p of the directory that will hold path. 0 or -errno. */
int mkdir_p_parent(const char *path, mode_t mode);
int mkdir_p(const char *dir, mode_t mode);

/* "127.0.0.1", "::", "::ffff:1.2.3.4" from the raw address bytes of a record. */
void addr_format(char *buf, size_t len, int family, const uint8_t *addr);
const char *proto_name(int proto);
const char *family_name(int family);

int pidfd_open_pid(pid_t pid);
int pidfd_signal(int pidfd, int sig);
/* The process group led by the process behind pidfd (its pgid is pgid): through the pidfd
 * (PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9+), else by number, and then only while the leader is
 * alive (a pgid is not reused while its leader lives). 0 or -errno (-ESRCH: the leader is gone,
 * nothing was signalled). */
int pidfd_signal_group(int pidfd, pid_t pgid, int sig);

/* The process's state letter from /proc/PID/stat ('Z' for a zombie) or 0 when gone. */
char proc_state(pid_t pid);
/* The flags field of /proc/PID/stat (PF_EXITING = 0x4 while do_exit runs), 0 when gone. */
unsigned proc_flags(pid_t pid);
/* comm of pid from /proc, "" when gone. */
void proc_comm(pid_t pid, char *buf, size_t len);
uid_t proc_uid(pid_t pid);

/* Name of signal (e.g. "SIGTERM"), or a number as text. */
const char *signal_name(int sig, char *buf, size_t len);
int signal_from_name(const char *s);

bool is_root(void);
/* True in the host's (initial) PID namespace, where the pids BPF reports are /proc's pids. */
bool in_init_pid_ns(void);

/* RLIMIT_NOFILE: raise the soft limit to the hard one (the agent holds an fd per service, client
 * and probe; 1024, systemd's default soft limit, is soon reached). Remembers the old soft limit
 * for nofile_restore(). Returns the new soft limit, or -errno. */
long nofile_raise(void);
/* In a child before exec: give back the soft limit the agent started with (programs that use
 * select() break with fds past 1024). Async-signal-safe. */
void nofile_restore(void);

/* accept4() that survives fd exhaustion: on EMFILE/ENFILE it frees the process's spare fd, accepts
 * the pending connection, closes it at once and takes the spare again, so the listening socket is
 * drained instead of staying readable (the classic busy loop). Returns the new fd; -EAGAIN when
 * nothing is pending; -ECONNABORTED when a connection was shed that way (call again); -EMFILE when
 * no spare could be used (the caller must stop watching the listener for a while). */
int accept_shed(int lfd, int flags);
/* Take the spare fd now, while fds are plentiful (idempotent). 0 or -errno. */
int accept_spare_init(void);

#endif
