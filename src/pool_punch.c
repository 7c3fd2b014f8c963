/* pool_punch.c — holes in LIVE regions, and how much of a region is resident.
 *
 * Owns: lacuna_punch / lacuna_punch_many (drop the pages of live regions below an address: a
 * parked stack's pages below its saved stack pointer) and lacuna_resident (pages of a live region
 * in memory now, for a census of real stack depths), and lac_resident_range under both it and the
 * fiber runtime's census (parked.c).
 *
 * Invariants: a punch never changes a slot's state, never touches a guard (the ranges end at the
 * region's own bytes) and always uses MADV_DONTNEED whatever the pool's release mode: a punched
 * page must read zero and leave RSS now, as the caller is told. Every request is checked before
 * anything is released, so bad input releases nothing.
 *
 * Does not: check residency before punching. Measured (lacuna-bench census: 20,000 regions of
 * 64 KiB, 13% with pages below the kept top 2): lacuna_resident on each, then punching only those,
 * took 2.8-3.0x the time of punching all of them blindly in process_madvise batches (537 vs
 * 1,525-1,622 ns a region): the query is a syscall per region, while a range with nothing
 * resident costs the batched call only a page-table walk. Does not own the slot states
 * (pool_slots.c) or make syscalls (os.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>

/* The slot of a live region start, or false: in any reservation of a grown pool (lac_slot_of,
 * not lac_slot_near). A DEFERRED region is not live: punching it is EINVAL. */
static bool live_slot(const lacuna_pool *p, const void *region, uint32_t *s)
{
    return p != NULL && lac_slot_of(p, region, s) && lac_state_get(p, *s) == LAC_S_LIVE;
}

/* The range [region, keep_from rounded down to a page) of a punch request, or false when the
 * request is bad. An empty range (keep_from in the region's first page) is fine. */
static bool punch_range(const lacuna_pool *p, const lacuna_punch_req *rq, struct iovec *iov)
{
    uint32_t s;
    if (!live_slot(p, rq->region, &s))
        return false;
    uintptr_t lo = (uintptr_t)rq->region, keep = (uintptr_t)rq->keep_from;
    if (keep < lo || keep - lo > p->region) /* one past the end is allowed: punch it all */
        return false;
    size_t len = (keep - lo) & ~(((size_t)1 << p->page_shift) - 1);
    iov->iov_base = rq->region;
    iov->iov_len = len;
    return true;
}

int lacuna_punch_many(lacuna_pool *p, const lacuna_punch_req *reqs, size_t n)
{
    if (p == NULL || (reqs == NULL && n > 0)) {
        LAC_BAD_INPUT("lacuna_punch_many", p == NULL ? "NULL pool" : "NULL requests", reqs);
        return EINVAL;
    }
    struct iovec iov;
    for (size_t i = 0; i < n; i++) {
        if (!punch_range(p, &reqs[i], &iov)) {
            LAC_BAD_INPUT("lacuna_punch", "not a live region, or keep_from outside it",
                          reqs[i].region);
            return EINVAL;
        }
    }
    /* LAC_RELEASE_BATCH ranges a call: 2 KiB of stack, as a release round (this may run on a
     * small fiber stack). */
    struct iovec batch[LAC_RELEASE_BATCH];
    size_t k = 0;
    int err = 0;
    for (size_t i = 0; i < n && err == 0; i++) {
        (void)punch_range(p, &reqs[i], &batch[k]);
        if (batch[k].iov_len > 0)
            k++;
        if (k == LAC_RELEASE_BATCH || (i + 1 == n && k > 0)) {
            uint64_t calls = 0;
            size_t done = 0;
            err = lac_os_release(batch, k, LAC_ADV_DONTNEED, &done, &calls);
            atomic_fetch_add(&p->release_calls, calls);
            if (err)
                atomic_fetch_add(&p->release_errors, 1);
            k = 0;
        }
    }
    return err;
}

int lacuna_punch(lacuna_pool *p, void *region, const void *keep_from)
{
    lacuna_punch_req rq = {region, keep_from};
    return lacuna_punch_many(p, &rq, 1);
}

/* ---- residency ---------------------------------------------------------------------------- */

int lac_resident_range(uintptr_t lo, uintptr_t hi, size_t *pages, uintptr_t *lowest)
{
    const size_t pg = lac_os_features()->page_size;
    *pages = 0;
    *lowest = hi;
    if (lac_os_features()->pagemap_scan) {
        /* PRESENT only, as mincore counts: a swapped-out page is not resident. */
        static const lac_scan_query q = {.required = LAC_PAGE_PRESENT};
        lac_run runs[16];
        for (uintptr_t at = lo; at < hi;) {
            size_t n = 0;
            uintptr_t next = hi;
            int err = lac_os_pagemap_scan(at, hi, &q, runs, 16, &n, &next);
            if (err)
                return err;
            for (size_t i = 0; i < n; i++) {
                if (runs[i].start < *lowest)
                    *lowest = runs[i].start;
                *pages += (runs[i].end - runs[i].start) / pg;
            }
            if (next <= at)
                break;
            at = next;
        }
        return 0;
    }
    unsigned char vec[256];
    for (uintptr_t at = lo; at < hi; at += sizeof vec * pg) {
        size_t len = hi - at < sizeof vec * pg ? hi - at : sizeof vec * pg;
        int err = lac_os_resident((const void *)at, len, vec);
        if (err)
            return err;
        for (size_t i = 0; i < len / pg; i++) {
            if (!(vec[i] & 1))
                continue;
            if (at + i * pg < *lowest)
                *lowest = at + i * pg;
            (*pages)++;
        }
    }
    return 0;
}

int lacuna_resident(const lacuna_pool *p, const void *region, size_t *pages)
{
    uint32_t s;
    if (pages == NULL || !live_slot(p, region, &s)) {
        LAC_BAD_INPUT("lacuna_resident", "not a live region (or NULL pages)", region);
        return EINVAL;
    }
    size_t n = 0;
    uintptr_t lowest, a = (uintptr_t)region;
    int err = lac_resident_range(a, a + p->region, &n, &lowest);
    if (err == 0)
        *pages = n;
    return err;
}
