// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Ports: keeps the pinned map of listening TCP sockets (inet_sock_set_state) and, when the agent
 * could attach the release hook, of every socket bound with bind() (UDP, TCP not listening) until
 * it is released; reports bind() and listen() calls that fail with EADDRINUSE, with the address
 * the caller asked for. */
#include "common.bpf.h"
#include "sock.bpf.h"
#include "core_fixes.bpf.h"
#include "ports_rec.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define MAX_FDS_SCAN 1048576

/* Set by the agent once cgroup/sock_release is attached: only then can a bound socket's entry be
 * trusted to leave the map with the socket, so only then are bind()s recorded. */
__u32 track_binds = 0;
/* Set by the agent before it starts a service outside any cgroup (which puts itself in
 * `service_tree`): until then forks and exits skip that map. */
__u32 track_tree = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for the listeners there are, not 64k */
	__uint(max_entries, REV_MAX_LISTENERS);
	__type(key, struct listener_key);
	__type(value, struct listener_val);
} listeners SEC(".maps");

/* How many confirmed listeners each process (tgid) owns: lets the fork probe skip, with one
 * look-up, every fork of a process that owns none. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REV_MAX_OWNERS);
	__type(key, __u32);
	__type(value, __u32);
} owners SEC(".maps");

/* Entries of `owners` by tgid modulo REV_OWNER_HINTS (the agent adds the ones it seeds): 0 means
 * this tgid owns nothing, without a look-up in the map. */
__u32 owner_hint[REV_OWNER_HINTS] = {};

static __always_inline __u32 *hint_of(__u32 tgid)
{
	return &owner_hint[tgid & (REV_OWNER_HINTS - 1)];
}

/* Whether tgid owns a socket of the map: its counter first (0: no, without a look-up). */
static __always_inline bool owns(__u32 tgid)
{
	return *hint_of(tgid) != 0 && bpf_map_lookup_elem(&owners, &tgid);
}

static __always_inline void owner_forget(__u32 tgid)
{
	if (bpf_map_delete_elem(&owners, &tgid) == 0)
		__sync_fetch_and_add(hint_of(tgid), (__u32)-1);
}

static __always_inline void owner_add(__u32 tgid, int delta)
{
	__u32 *n = bpf_map_lookup_elem(&owners, &tgid), one = 1;

	if (n) {
		if (delta > 0)
			__sync_fetch_and_add(n, 1);
		else if (*n <= 1)
			owner_forget(tgid);
		else
			__sync_fetch_and_add(n, (__u32)-1); /* XADD: no atomic sub before -mcpu=v3 */
	} else if (delta > 0) {
		if (bpf_map_update_elem(&owners, &tgid, &one, BPF_NOEXIST) == 0)
			__sync_fetch_and_add(hint_of(tgid), 1);
	}
}

/* The listeners-map key of each socket recorded at bind(), by socket address: what the release
 * hook, which sees only the socket, needs to find its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, REV_MAX_LISTENERS);
	__type(key, __u64);
	__type(value, struct listener_key);
} bound_socks SEC(".maps");

/* The services' process trees, for hosts where the agent can make no cgroup: a service's main
 * process puts itself in (before exec), every process it forks joins the tree with its tag (the
 * fork hook below), an exit leaves it. The supervisor finds what escaped a service's process
 * group (setsid, a daemon) here. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REV_MAX_TREE);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* the service's tag */
} service_tree SEC(".maps");

/* A bind()/listen() between syscall entry and exit, per thread. The kernel clears a socket's port
 * when bind fails, so the requested address must be captured at entry. */
struct pending_call {
	__u8 addr[REV_ADDR_LEN];
	__s32 fd;
	__u16 port;
	__u8 family;
	__u8 syscall;
};

/* A call waits in the slot of its thread id (modulo CALL_SLOTS; the array look-up is inlined),
 * claimed by compare-and-swap of `tid`; a thread whose slot another thread's call holds uses the
 * LRU table (an update there costs ~1 us here). A slot whose thread died inside the call (no
 * syscall exit) is taken over by the next thread with that tid. */
#define CALL_SLOTS 4096

struct call_slot {
	__u32 tid;
	__u32 pad;
	struct pending_call c;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CALL_SLOTS);
	__type(key, __u32);
	__type(value, struct call_slot);
} call_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pending_call);
} calls SEC(".maps");

/* Calls put in the LRU table: the syscall exit looks there only when some were. (An entry the LRU
 * evicts leaves it high; the look-up then only misses.) */
__s64 calls_overflow = 0;

static __always_inline struct call_slot *call_slot_of(__u32 tid)
{
	__u32 k = tid & (CALL_SLOTS - 1);

	return bpf_map_lookup_elem(&call_slots, &k);
}

static __always_inline struct file *file_of_fd(int fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds, *f = NULL;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds) || fd >= MAX_FDS_SCAN)
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

static __always_inline struct sock *sock_of_fd(int fd)
{
	struct file *f = file_of_fd(fd);

	return f ? sock_of_file(f) : NULL;
}

static __always_inline void key_of(struct listener_key *k, const struct sock *sk,
				   const struct sock_id *id)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->sk = (__u64)sk;
	__builtin_memcpy(k->addr, id->addr, sizeof(k->addr));
	k->netns = id->netns;
	k->port = id->port;
	k->family = id->family;
	k->proto = id->proto;
}

/* Reserves and fills a port_event for the socket id; the caller sets who and submits. */
static __always_inline struct port_event *new_port_event(__u32 type, const struct sock_id *id)
{
	struct port_event *e = reserve_event(sizeof(*e));

	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(e->addr, id->addr, sizeof(e->addr));
	e->netns = id->netns;
	e->port = id->port;
	e->family = id->family;
	e->proto = id->proto;
	e->v6only = id->v6only;
	return e;
}

/* An event about the current task's own call. */
static __always_inline void emit_port(__u32 type, const struct sock_id *id, __u8 syscall)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct port_event *e = new_port_event(type, id);

	if (!e)
		return;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->syscall = syscall;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/* Into LISTEN: recorded unconfirmed, because the kernel announces LISTEN before it validates the
 * port; listen()'s return confirms it (or the failure path takes it out of LISTEN again). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_sock_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 skp = (__u64)sk;
	struct listener_key k;
	struct listener_val v, *old;
	struct sock_id id;

	if (newstate != REV_TCP_LISTEN && oldstate != REV_TCP_LISTEN)
		return 0;
	if (read_sock_id(sk, &id) || id.proto != REV_PROTO_TCP)
		return 0;
	/* Leaving LISTEN, tcp_set_state() has already released a port the kernel chose (bind to
	 * port 0 or none: no SOCK_BINDPORT_LOCK), so inet_num reads 0; inet_sport still holds it. */
	if (newstate != REV_TCP_LISTEN && !id.port)
		id.port = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	key_of(&k, sk, &id);

	if (newstate == REV_TCP_LISTEN) {
		old = bpf_map_lookup_elem(&listeners, &k);
		if (old && old->confirmed)
			owner_add(old->pid, -1); /* the bind() entry; listen() counts it again */
		__builtin_memset(&v, 0, sizeof(v));
		v.shared = old ? old->shared : 0; /* forked or passed on since bind() */
		v.state = REV_TCP_LISTEN;
		v.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
		v.ts_ns = bpf_ktime_get_ns();
		v.pid = bpf_get_current_pid_tgid() >> 32;
		v.uid = (__u32)bpf_get_current_uid_gid();
		v.v6only = id.v6only;
		bpf_get_current_comm(v.comm, sizeof(v.comm));
		bpf_map_update_elem(&listeners, &k, &v, BPF_ANY);
		return 0;
	}

	old = bpf_map_lookup_elem(&listeners, &k);
	if (!old)
		return 0;
	if (old->confirmed) {
		owner_add(old->pid, -1);
		/* Report the owner that listened, not whoever closes (an exiting child, say). */
		struct port_event *e = new_port_event(REV_EV_RELEASE, &id);

		if (e) {
			e->pid = old->pid;
			e->uid = old->uid;
			__builtin_memcpy(e->comm, old->comm, sizeof(e->comm));
			bpf_ringbuf_submit(e, 0);
		}
	}
	/* Still open and bound (a failed listen(), a shutdown()): the socket keeps its port, so it
	 * stays as the bound entry it was before listen(). On close the release hook ran first
	 * and took it out of bound_socks. */
	if (track_binds && bpf_map_lookup_elem(&bound_socks, &skp)) {
		old->state = REV_TCP_CLOSE;
		old->confirmed = 1;
		owner_add(old->pid, 1);
		return 0;
	}
	bpf_map_delete_elem(&listeners, &k);
	return 0;
}

static __always_inline void remember_call(int fd, __u8 syscall, const void *uaddr)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call_slot *s = call_slot_of(tid);
	struct pending_call c;

	if (!s)
		return;
	__builtin_memset(&c, 0, sizeof(c));
	c.fd = fd;
	c.syscall = syscall;
	if (uaddr) {
		/* One read of the larger address (a helper call each); a sockaddr_in at the end of a
		 * mapping fails that, and is read at its own size. */
		union {
			struct sockaddr_in sin;
			struct sockaddr_in6 sin6;
		} a;

		if (bpf_probe_read_user(&a.sin6, sizeof(a.sin6), uaddr) &&
		    (bpf_probe_read_user(&a.sin, sizeof(a.sin), uaddr) || a.sin.sin_family != REV_AF_INET))
			return;
		if (a.sin.sin_family == REV_AF_INET) {
			c.port = bpf_ntohs(a.sin.sin_port);
			__builtin_memcpy(c.addr, &a.sin.sin_addr, 4);
		} else if (a.sin6.sin6_family == REV_AF_INET6) {
			c.port = bpf_ntohs(a.sin6.sin6_port);
			__builtin_memcpy(c.addr, &a.sin6.sin6_addr, 16);
		} else {
			return; /* AF_UNIX, AF_NETLINK...: not ours */
		}
		c.family = a.sin.sin_family;
	}
	/* A stale claim of this tid: its earlier call never returned (it cannot be running). */
	if (slot_claim(&s->tid, tid) != SLOT_BUSY) {
		s->c = c;
		s->tid = tid;
		return;
	}
	if (bpf_map_update_elem(&calls, &tid, &c, BPF_ANY) == 0)
		__sync_fetch_and_add(&calls_overflow, 1);
}

/* The call this thread remembered at entry, taken out of its slot or table (into *c): 0 when
 * there is none. */
static __always_inline int take_call(struct pending_call *c)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call_slot *s = call_slot_of(tid);
	struct pending_call *t;

	if (s && s->tid == tid) {
		*c = s->c;
		__sync_val_compare_and_swap(&s->tid, tid, 0);
		return 1;
	}
	if (calls_overflow <= 0 || !(t = bpf_map_lookup_elem(&calls, &tid)))
		return 0;
	*c = *t;
	if (bpf_map_delete_elem(&calls, &tid) == 0)
		__sync_fetch_and_add(&calls_overflow, -1);
	return 1;
}

SEC("tp/syscalls/sys_enter_bind")
int on_bind_enter(struct trace_event_raw_sys_enter *ctx)
{
	remember_call((int)ctx->args[0], REV_SYS_BIND, (const void *)ctx->args[1]);
	return 0;
}

SEC("tp/syscalls/sys_enter_listen")
int on_listen_enter(struct trace_event_raw_sys_enter *ctx)
{
	remember_call((int)ctx->args[0], REV_SYS_LISTEN, NULL);
	return 0;
}

/* A successful bind(): the socket holds its port from now until it is released (or, for TCP,
 * until listen() makes it a listener entry under the same key). */
static __always_inline void record_bind(struct sock *sk, const struct sock_id *id)
{
	struct listener_key k;
	struct listener_val v;
	__u64 skp = (__u64)sk;

	if (!id->port || (id->proto != REV_PROTO_UDP && id->proto != REV_PROTO_TCP))
		return;
	key_of(&k, sk, id);
	__builtin_memset(&v, 0, sizeof(v));
	v.ts_ns = bpf_ktime_get_ns();
	v.pid = bpf_get_current_pid_tgid() >> 32;
	v.uid = (__u32)bpf_get_current_uid_gid();
	v.confirmed = 1;
	v.v6only = id->v6only;
	v.state = REV_TCP_CLOSE;
	v.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	bpf_get_current_comm(v.comm, sizeof(v.comm));
	if (bpf_map_update_elem(&bound_socks, &skp, &k, BPF_ANY))
		return; /* no way to find it at release: leave it out, scan walks for it */
	if (bpf_map_update_elem(&listeners, &k, &v, BPF_NOEXIST) == 0)
		owner_add(v.pid, 1);
}

static __always_inline int finish_call(long ret)
{
	struct pending_call call, *c = &call;
	struct listener_key k;
	struct listener_val *v;
	struct sock_id id;
	struct sock *sk;
	__u8 syscall;
	int fd;

	if (!take_call(c))
		return 0;
	fd = c->fd;
	syscall = c->syscall;
	if (ret != -REV_EADDRINUSE && !(ret == 0 && (syscall == REV_SYS_LISTEN || track_binds)))
		return 0;
	sk = sock_of_fd(fd);
	if (!sk || read_sock_id(sk, &id))
		return 0;

	if (ret == 0 && syscall == REV_SYS_BIND) {
		record_bind(sk, &id);
	} else if (ret == 0) {
		/* listen() succeeded: confirm the entry the state tracepoint made, once. */
		key_of(&k, sk, &id);
		v = bpf_map_lookup_elem(&listeners, &k);
		if (!v) {
			/* listen() without bind() picks the port after the LISTEN tracepoint: the
			 * entry was made under port 0. Move it under the real one. */
			struct listener_key k0 = k;
			struct listener_val *v0;

			k0.port = 0;
			v0 = bpf_map_lookup_elem(&listeners, &k0);
			if (v0) {
				struct listener_val nv = *v0;

				bpf_map_delete_elem(&listeners, &k0);
				bpf_map_update_elem(&listeners, &k, &nv, BPF_ANY);
				v = bpf_map_lookup_elem(&listeners, &k);
			}
		}
		if (v && !v->confirmed) {
			owner_add(v->pid, 1);
			v->confirmed = 1;
			emit_port(REV_EV_LISTEN, &id, 0);
		}
	} else {
		if (syscall == REV_SYS_BIND) {
			/* The socket's own address was reset by the failure; use the requested one. */
			__builtin_memcpy(id.addr, c->addr, sizeof(id.addr));
			id.port = c->port;
			id.family = c->family;
		}
		emit_port(REV_EV_COLLISION, &id, syscall);
	}
	return 0;
}

SEC("tp/syscalls/sys_exit_bind")
int on_bind_exit(struct trace_event_raw_sys_exit *ctx)
{
	return finish_call(ctx->ret);
}

SEC("tp/syscalls/sys_exit_listen")
int on_listen_exit(struct trace_event_raw_sys_exit *ctx)
{
	return finish_call(ctx->ret);
}


static long mark_shared(struct bpf_map *map, struct listener_key *k, struct listener_val *v,
			__u32 *tgid)
{
	if (v->pid == *tgid)
		v->shared = 1;
	return 0;
}

/* A fork that copies the fd table duplicates every socket of the parent: its listeners now may
 * have more than one holder, which is what tells `scan` to walk the fd tables for them. Threads
 * and CLONE_FILES children share the table and change nothing. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = parent->tgid, child_tgid = child->tgid, *tag;

	if (track_tree && child_tgid != tgid &&
	    (tag = bpf_map_lookup_elem(&service_tree, &tgid))) {
		__u32 t = *tag;

		bpf_map_update_elem(&service_tree, &child_tgid, &t, BPF_ANY);
	}
	if (child->files == parent->files || !owns(tgid))
		return 0;
	bpf_for_each_map_elem(&listeners, mark_shared, &tgid, 0);
	return 0;
}

/* An owner that dies may leave its listeners to processes it passed them to (fork, SCM_RIGHTS):
 * they are marked so `scan` finds the holders that remain, instead of naming the dead. A dead
 * process also leaves its service's tree. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_owner_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;

	if (!exit_group_dead(p, ctx))
		return 0;
	/* A look-up first: a delete takes the bucket's lock even for a pid that is not there. */
	if (track_tree && bpf_map_lookup_elem(&service_tree, &tgid))
		bpf_map_delete_elem(&service_tree, &tgid);
	if (!owns(tgid))
		return 0;
	bpf_for_each_map_elem(&listeners, mark_shared, &tgid, 0);
	owner_forget(tgid);
	return 0;
}

/* An inet socket is released (its last file reference closed): a bound socket's entry goes with
 * it. The context of a cgroup sock program is the struct sock itself; its address is the key
 * bind() recorded. Runs for every inet socket on the host: one look-up when it was not ours. */
SEC("cgroup/sock_release")
int on_sock_release(struct bpf_sock *ctx)
{
	__u64 skp = (__u64)ctx;
	struct listener_key *k = bpf_map_lookup_elem(&bound_socks, &skp);
	struct listener_val *v;

	if (!k)
		return 1;
	v = bpf_map_lookup_elem(&listeners, k);
	/* A listener is the state tracepoint's: it runs after this hook (tcp_close), and says
	 * port_release as it removes the entry. */
	if (v && v->state != REV_TCP_LISTEN) {
		if (v->confirmed)
			owner_add(v->pid, -1);
		bpf_map_delete_elem(&listeners, k);
	}
	bpf_map_delete_elem(&bound_socks, &skp);
	return 1; /* allow: this hook only watches */
}

/* Mark the listeners-map entry of the socket behind fd (of the current task) as shared. */
static __always_inline void share_fd(int fd)
{
	struct listener_key k;
	struct listener_val *v;
	struct sock_id id;
	struct sock *sk = sock_of_fd(fd);

	if (!sk || read_sock_id(sk, &id))
		return;
	key_of(&k, sk, &id);
	v = bpf_map_lookup_elem(&listeners, &k);
	if (v)
		v->shared = 1;
}

#define SCM_MAX_FDS 8

/* An owner passes fds with SCM_RIGHTS: a socket of ours gets another holder (the receiver, or
 * nobody yet while in flight), so its entry is marked for `scan` to walk the fd tables for it.
 * Forks are the fork probe's; this is the other way sockets change hands. One look-up for each
 * sendmsg() of a process that owns nothing; two user reads for an owner's message without
 * ancillary data. */
SEC("tp/syscalls/sys_enter_sendmsg")
int on_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct user_msghdr m;
	struct cmsghdr c;
	int fds[SCM_MAX_FDS];
	__u64 n;

	if (!owns(tgid))
		return 0;
	if (bpf_probe_read_user(&m, sizeof(m), (void *)ctx->args[1]) || !m.msg_control ||
	    m.msg_controllen < sizeof(c))
		return 0;
	/* The first control message: SCM_RIGHTS comes alone in practice (one per message). */
	if (bpf_probe_read_user(&c, sizeof(c), m.msg_control) || c.cmsg_level != 1 /* SOL_SOCKET */ ||
	    c.cmsg_type != 1 /* SCM_RIGHTS */ || c.cmsg_len <= sizeof(c))
		return 0;
	n = (c.cmsg_len - sizeof(c)) / sizeof(int);
	if (n > SCM_MAX_FDS)
		n = SCM_MAX_FDS;
	if (bpf_probe_read_user(fds, sizeof(fds), m.msg_control + sizeof(c)))
		return 0;
	for (__u32 i = 0; i < SCM_MAX_FDS; i++)
		if (i < n)
			share_fd(fds[i]);
	return 0;
}

/* pidfd_getfd(): another process takes a copy of one of our sockets' fds (rare: a debugger, a
 * socket hand-over). The fd is in the target's table, not the caller's. */
SEC("tp/syscalls/sys_enter_pidfd_getfd")
int on_pidfd_getfd(struct trace_event_raw_sys_enter *ctx)
{
	struct pid *pid;
	struct task_struct *t;
	struct file *f;
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **fds;
	int fd = (int)ctx->args[1];
	__u32 tgid;
	struct listener_key k;
	struct listener_val *v;
	struct sock_id id;
	struct sock *sk;

	/* The pidfd's file names a struct pid (pidfs keeps it in the inode, 6.9+; before, the
	 * file's private_data); its task's fd table holds fd. */
	f = file_of_fd((int)ctx->args[0]);
	if (!f)
		return 0;
	pid = BPF_CORE_READ(f, f_inode, i_private);
	if (!pid)
		pid = BPF_CORE_READ(f, private_data);
	t = BPF_CORE_READ(pid, tasks[0].first) ?
		    (struct task_struct *)((void *)BPF_CORE_READ(pid, tasks[0].first) -
					   bpf_core_field_offset(struct task_struct, pid_links[0])) :
		    NULL;
	if (!t)
		return 0;
	tgid = BPF_CORE_READ(t, tgid);
	if (!owns(tgid))
		return 0;
	files = BPF_CORE_READ(t, files);
	fdt = BPF_CORE_READ(files, fdt);
	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds) || fd >= MAX_FDS_SCAN)
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	sk = sock_of_file(f);
	if (!sk || read_sock_id(sk, &id))
		return 0;
	key_of(&k, sk, &id);
	v = bpf_map_lookup_elem(&listeners, &k);
	if (v)
		v->shared = 1;
	return 0;
}
