// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Exit causes: who sent a fatal signal to a watched process, and whether the OOM killer chose it.
 * Filtered in the kernel: only pids in the causes map (the services' main processes, maintained by
 * the agent) are recorded, and only signals that can end a process, so SIGCHLD of an exit storm
 * costs one comparison. No ring buffer: the agent reads the cause when it reaps the process. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "cause_rec.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* include/trace/events/signal.h: what __send_signal_locked() did with the signal. */
#define TRACE_SIGNAL_DELIVERED 0
#define TRACE_SIGNAL_LOSE_INFO 4

/* SEND_SIG_NOINFO and SEND_SIG_PRIV are these values of the siginfo pointer. */
#define SEND_SIG_NOINFO_ 0
#define SEND_SIG_PRIV_	 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REV_MAX_CAUSES);
	__type(key, __u32);
	__type(value, struct cause_val);
} causes SEC(".maps");

static __always_inline bool can_kill(int sig)
{
	if (sig <= 0 || sig > 64)
		return false;
	return sig >= 32 || !((1u << sig) & REV_SIG_NONFATAL_MASK);
}

SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal, int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
	     int result)
{
	__u32 tgid, sender;
	struct cause_val *c;
	bool kernel;
	int code;

	/* Already pending (the first sender is the one the process sees) or ignored: not a cause.
	 */
	if (!can_kill(sig) ||
	    (result != TRACE_SIGNAL_DELIVERED && result != TRACE_SIGNAL_LOSE_INFO))
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	c = bpf_map_lookup_elem(&causes, &tgid);
	if (!c)
		return 0;
	if ((unsigned long)info == SEND_SIG_NOINFO_)
		code = REV_SI_USER;
	else if ((unsigned long)info == SEND_SIG_PRIV_)
		code = REV_SI_KERNEL;
	else
		code = BPF_CORE_READ(info, si_code);
	/* kill(), sigqueue(), tgkill() are a process's doing; every other code is the kernel's. */
	kernel = code != REV_SI_USER && code != REV_SI_QUEUE && code != REV_SI_TKILL;
	sender = bpf_get_current_pid_tgid() >> 32;
	/* A handler that restores the default and re-raises the signal it was sent: the cause is
	 * still whoever sent it first. */
	if (!kernel && sender == tgid && c->sig == (__u32)sig && c->sender_pid != tgid)
		return 0;
	c->ts_ns = bpf_ktime_get_ns();
	c->sender_pid = sender;
	c->sender_uid = (__u32)bpf_get_current_uid_gid();
	c->si_code = code;
	c->kernel = kernel;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	c->sig = sig;
	return 0;
}

/* 6.8+: mark_victim(struct task_struct *task, uid_t uid). Older kernels pass an int pid: the
 * agent then loads without this program and says so. */
SEC("tp_btf/mark_victim")
int BPF_PROG(on_oom_victim, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct cause_val *c = bpf_map_lookup_elem(&causes, &tgid);

	if (c)
		c->oom = 1;
	return 0;
}
