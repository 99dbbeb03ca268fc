/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Maps and helpers every sensor program shares: the one ring buffer (each object declares it; the
 * agent makes them one map with bpf_map__reuse_fd) and the count of records it dropped. */
#ifndef REVENANT_COMMON_BPF_H
#define REVENANT_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "event.h"

/* Sized by the agent before load (sensor.c): 4 MiB (~58k records before an exit storm drops any)
 * when every exit comes this way, 512 KiB when the kernel keeps the zombie grace and only
 * zombies, reaps of zombies and port events do (6,500 records: a burst of collisions). Its pages
 * are mapped into the agent (twice: the data area wraps), so its size is most of the agent's RSS. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Records the ring buffer had no room for. A global in .bss: the agent reads it through the
 * skeleton's memory mapping after each batch, with no syscall. Drops are rare; the atomic add
 * costs nothing the rest of the time. */
__u64 rev_drops = 0;

static __always_inline void count_drop(void)
{
	__sync_fetch_and_add(&rev_drops, 1);
}

static __always_inline void *reserve_event(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		count_drop();
	return e;
}

/* Slots in BPF arrays claimed by an id (a pid, a thread id) through a claim word: 0 free,
 * SLOT_CLAIMING while the claimer fills the slot, then the id (stored by the claimer once the
 * slot is filled). Returns SLOT_NEW for a free slot taken, SLOT_STALE when the slot still held
 * this same id (left by a holder whose end was never seen: the id was reused, so it is over),
 * SLOT_BUSY when another id holds it. */
#define SLOT_CLAIMING 0xffffffffu
enum { SLOT_BUSY, SLOT_NEW, SLOT_STALE };

static __always_inline int slot_claim(__u32 *word, __u32 id)
{
	__u32 was = __sync_val_compare_and_swap(word, 0, SLOT_CLAIMING);

	if (was == 0)
		return SLOT_NEW;
	if (was == id && __sync_val_compare_and_swap(word, id, SLOT_CLAIMING) == id)
		return SLOT_STALE;
	return SLOT_BUSY;
}

#endif
