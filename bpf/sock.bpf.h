/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Reading an inet socket's identity (family, protocol, bound address and port, netns), shared by
 * the sensor (ports.bpf.c) and the snapshot iterators (snapshot.bpf.c). */
#ifndef REVENANT_SOCK_BPF_H
#define REVENANT_SOCK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include "event.h"

struct sock_id {
	__u8 addr[REV_ADDR_LEN];
	__u32 netns;
	__u16 port;
	__u8 family;
	__u8 proto;
	__u8 state;
	__u8 v6only;
};

/* Returns 0 for an AF_INET/AF_INET6 socket, -1 for anything else. */
static __always_inline int read_sock_id(const struct sock *sk, struct sock_id *id)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family != REV_AF_INET && family != REV_AF_INET6)
		return -1;
	__builtin_memset(id, 0, sizeof(*id));
	id->family = family;
	id->proto = BPF_CORE_READ(sk, sk_protocol);
	id->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	id->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	id->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	id->v6only = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_ipv6only);
	if (family == REV_AF_INET)
		bpf_core_read(id->addr, 4, &sk->__sk_common.skc_rcv_saddr);
	else
		bpf_core_read(id->addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	return 0;
}

/* The struct sock behind a file, or NULL when the file is not a socket. */
static __always_inline struct sock *sock_of_file(struct file *f)
{
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	struct socket *so;

	if ((mode & 00170000) != 0140000) /* S_IFMT, S_IFSOCK */
		return NULL;
	so = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(so, sk);
}

#endif
