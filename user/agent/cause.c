// SPDX-License-Identifier: MIT
/* Exit causes, userspace side: the watched-pid entries of bpf/cause's map (added when a service's
 * main process starts, taken when it is reaped) and what they mean for service_exit. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <bpf/bpf.h>

#include "agent/cause.h"
#include "cause_rec.h"

int cause_watch(int fd, pid_t pid)
{
	struct cause_val v;
	__u32 key = pid;

	if (fd < 0)
		return 0;
	memset(&v, 0, sizeof(v));
	/* The parent and the child both watch (whichever runs first): the second must not wipe a
	 * cause the first already caught. */
	if (bpf_map_update_elem(fd, &key, &v, BPF_NOEXIST) && errno != EEXIST)
		return -errno;
	return 0;
}

int cause_take(int fd, pid_t pid, struct exit_cause *c)
{
	struct cause_val v;
	__u32 key = pid;

	memset(c, 0, sizeof(*c));
	if (fd < 0)
		return -ENOENT;
	/* One syscall where the kernel has it (5.14+ for hash maps), else two. */
	if (bpf_map_lookup_and_delete_elem(fd, &key, &v)) {
		if (errno == ENOENT || bpf_map_lookup_elem(fd, &key, &v))
			return -ENOENT;
		bpf_map_delete_elem(fd, &key);
	}
	if (v.sig) {
		c->sig = v.sig;
		c->sender_pid = v.sender_pid;
		c->sender_uid = v.sender_uid;
		c->kernel = v.kernel;
		snprintf(c->comm, sizeof(c->comm), "%.*s", REV_COMM_LEN, v.comm);
	}
	c->oom = v.oom;
	return 0;
}

void cause_describe(const struct exit_cause *c, int status, pid_t agent_pid,
		    struct ev_service_exit *e)
{
	bool signaled = WIFSIGNALED(status);

	memset(&e->killed_by, 0, sizeof(e->killed_by));
	e->core_dumped = signaled && WCOREDUMP(status);
	e->oom = signaled && c->oom;
	if (!signaled || !c->sig || c->sig != WTERMSIG(status))
		return;
	e->killed_by.known = true;
	e->killed_by.pid = c->sender_pid;
	e->killed_by.comm = c->sender_pid ? c->comm : NULL;
	e->killed_by.uid = c->sender_uid;
	e->killed_by.kernel = c->kernel;
	e->killed_by.agent = !c->kernel && c->sender_pid == agent_pid;
}
