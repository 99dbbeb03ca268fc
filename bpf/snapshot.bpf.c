// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Snapshots by BPF iterators, for start-up seeding and for `revenant scan`/`zombies` without an
 * agent: every inet socket a task holds (the kernel's view, so PID 1's unreadable fds included),
 * the TCP listeners and UDP sockets in the tables of the caller's netns, and every zombie. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "sock.bpf.h"
#include "snapshot_rec.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define EXIT_ZOMBIE_STATE 32 /* EXIT_DEAD is 16 */

/* A socket matters for port ownership when it holds a port: TCP listening or bound, UDP bound. */
static __always_inline bool holds_port(const struct sock_id *id)
{
	if (!id->port)
		return false;
	if (id->proto == REV_PROTO_TCP)
		return id->state == REV_TCP_LISTEN || id->state == REV_TCP_CLOSE;
	return id->proto == REV_PROTO_UDP;
}

static __always_inline void fill_sock(struct snap_sock *r, __u32 type, const struct sock *sk,
				      const struct sock_id *id)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->type = type;
	r->sk = (__u64)sk;
	__builtin_memcpy(r->addr, id->addr, sizeof(r->addr));
	r->netns = id->netns;
	r->port = id->port;
	r->family = id->family;
	r->proto = id->proto;
	r->state = id->state;
	r->v6only = id->v6only;
}

SEC("iter/task_file")
int dump_socket_fds(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct snap_sock r;
	struct sock_id id;
	struct sock *sk;

	if (!task || !file)
		return 0;
	sk = sock_of_file(file);
	if (!sk || read_sock_id(sk, &id) || !holds_port(&id))
		return 0;
	fill_sock(&r, REV_SNAP_SOCK_FD, sk, &id);
	r.pid = BPF_CORE_READ(task, tgid);
	r.uid = BPF_CORE_READ(task, cred, uid.val);
	r.fd = ctx->fd;
	r.ino = BPF_CORE_READ(file, f_inode, i_ino);
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->group_leader->comm);
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

static __always_inline void dump_table_sock(struct seq_file *seq, const struct sock *sk, __u32 uid)
{
	struct snap_sock r;
	struct sock_id id;

	if (!sk || read_sock_id(sk, &id) || !holds_port(&id))
		return;
	fill_sock(&r, REV_SNAP_SOCK_TABLE, sk, &id);
	r.uid = uid;
	r.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	bpf_seq_write(seq, &r, sizeof(r));
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;

	if (!skc || BPF_CORE_READ(skc, skc_state) != REV_TCP_LISTEN)
		return 0; /* established, time-wait and request sockets hold no port of their own */
	dump_table_sock(ctx->meta->seq, (const struct sock *)skc, ctx->uid);
	return 0;
}

SEC("iter/udp")
int dump_udp(struct bpf_iter__udp *ctx)
{
	if (!ctx->udp_sk)
		return 0;
	dump_table_sock(ctx->meta->seq, (const struct sock *)ctx->udp_sk, ctx->uid);
	return 0;
}

SEC("iter/task")
int dump_zombies(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task, *parent;
	struct snap_zombie z;
	__u64 now, ran;

	if (!task || task->pid != task->tgid)
		return 0;
	if (!(task->exit_state & EXIT_ZOMBIE_STATE) || BPF_CORE_READ(task, signal, live.counter))
		return 0;
	__builtin_memset(&z, 0, sizeof(z));
	z.type = REV_SNAP_ZOMBIE;
	z.pid = task->tgid;
	z.start_ns = task->start_time;
	now = bpf_ktime_get_ns();
	ran = task->se.exec_start;
	z.age_ns = now > ran ? now - ran : 0;
	z.uid = BPF_CORE_READ(task, cred, uid.val);
	parent = task->real_parent;
	z.ppid = BPF_CORE_READ(parent, tgid);
	bpf_probe_read_kernel_str(z.comm, sizeof(z.comm), task->comm);
	bpf_probe_read_kernel_str(z.parent_comm, sizeof(z.parent_comm), BPF_CORE_READ(parent, comm));
	bpf_seq_write(ctx->meta->seq, &z, sizeof(z));
	return 0;
}
