/* pool_slots.c — where a pool's free slots wait, and how a fresh slot gets its guard.
 *
 * Owns: the shared warm ring (LIFO at its top: the hottest pages are reused first; released from
 * its bottom, the coldest), the clean stack (and its bitmap), the holes (runs of slots whose
 * guards and page tables were given back: FRESH again), the order in which slots are taken, guard
 * installation with its fallbacks (and LACUNA_STRICT_GUARD), and the process-wide mprotect guard
 * budget.
 *
 * Invariants: every free slot not in a thread cache is on exactly one of the lists (warm ring,
 * clean stack, a hole, or at/above fresh); a slot on the warm ring is WARM, one on the clean stack
 * is CLEAN or (its guard install failed) FRESH, and has its on_clean bit set; a slot in a hole is
 * FRESH. Everything here but lac_guard_slots runs with the pool lock held.
 *
 * Does not: release pages (pool_release.c) or touch thread caches (pool_cache.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Atomic size_t mprotect_guards_in_use; /* process-wide: VMAs are per process */

void lac_warm_push(lacuna_pool *p, uint32_t s, uint32_t ms)
{
    size_t i = (p->warm_head + p->warm_n++) % p->capacity;
    p->warm[i] = s;
    p->warm_ms[i] = ms;
}

void lac_warm_push_bottom(lacuna_pool *p, uint32_t s)
{
    p->warm_head = (p->warm_head + p->capacity - 1) % p->capacity;
    p->warm[p->warm_head] = s;
    p->warm_ms[p->warm_head] = 0;
    p->warm_n++;
}

static uint32_t warm_pop_top(lacuna_pool *p)
{
    uint32_t s = p->warm[(p->warm_head + --p->warm_n) % p->capacity];
    if (p->warm_n == 0)
        p->warm_head = 0; /* or the head walks the whole ring, touching all its pages */
    return s;
}

uint32_t lac_warm_pop_bottom(lacuna_pool *p)
{
    uint32_t s = p->warm[p->warm_head];
    p->warm_head = (p->warm_head + 1) % p->capacity;
    if (--p->warm_n == 0)
        p->warm_head = 0;
    return s;
}

void lac_warm_regrow(lacuna_pool *p, size_t old_cap)
{
    size_t wrapped = p->warm_head + p->warm_n > old_cap ? p->warm_head + p->warm_n - old_cap : 0;
    for (size_t i = 0; i < wrapped; i++) { /* [0, wrapped) continues at old_cap now */
        size_t to = (old_cap + i) % p->capacity;
        p->warm[to] = p->warm[i];
        p->warm_ms[to] = p->warm_ms[i];
    }
}

void lac_clean_push(lacuna_pool *p, uint32_t s)
{
    p->clean[p->clean_n++] = s;
    if (p->clean_n > p->clean_hi)
        p->clean_hi = p->clean_n;
    p->on_clean[s / 64] |= (uint64_t)1 << (s % 64);
}

static uint32_t clean_pop(lacuna_pool *p)
{
    uint32_t s = p->clean[--p->clean_n];
    p->on_clean[s / 64] &= ~((uint64_t)1 << (s % 64));
    return s;
}

void lac_shelve(lacuna_pool *p, uint32_t s, uint32_t ms)
{
    if (lac_state_get(p, s) == LAC_S_CLEAN)
        lac_clean_push(p, s);
    else
        lac_warm_push(p, s, ms);
}

/* ---- holes: given-back runs, a sorted array of [a, b) ------------------------------------- */

void lac_holes_add(lacuna_pool *p, size_t a, size_t b)
{
    uint32_t *h = p->holes;
    size_t lo = 0, hi = p->nholes; /* first hole starting after a */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (h[2 * mid] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool left = lo > 0 && h[2 * (lo - 1) + 1] == a, right = lo < p->nholes && h[2 * lo] == b;
    if (left && right) { /* bridges two holes */
        h[2 * (lo - 1) + 1] = h[2 * lo + 1];
        memmove(h + 2 * lo, h + 2 * lo + 2, (p->nholes - lo - 1) * 2 * sizeof *h);
        p->nholes--;
    } else if (left) {
        h[2 * (lo - 1) + 1] = (uint32_t)b;
    } else if (right) {
        h[2 * lo] = (uint32_t)a;
    } else {
        memmove(h + 2 * lo + 2, h + 2 * lo, (p->nholes - lo) * 2 * sizeof *h);
        h[2 * lo] = (uint32_t)a;
        h[2 * lo + 1] = (uint32_t)b;
        p->nholes++;
    }
    /* A hole reaching fresh is just never-used space again. */
    if (p->nholes > 0 && h[2 * (p->nholes - 1) + 1] == p->fresh) {
        p->fresh = h[2 * (p->nholes - 1)];
        p->nholes--;
    }
}

/* A FRESH slot to guard: from the highest hole (its end: O(1)), else above fresh, growing the
 * pool when it is full. UINT32_MAX: none. */
static uint32_t take_fresh(lacuna_pool *p)
{
    if (p->nholes > 0) {
        uint32_t *h = &p->holes[2 * (p->nholes - 1)];
        uint32_t s = --h[1];
        if (h[1] == h[0])
            p->nholes--;
        return s;
    }
    if (p->fresh == p->capacity && lac_pool_grow(p) != 0)
        return UINT32_MAX;
    return (uint32_t)p->fresh++;
}

void lac_take_slots(lacuna_pool *p, size_t want, uint32_t *got, size_t *ngot, uint32_t *fresh,
                    size_t *nfresh)
{
    while (*ngot < want && p->warm_n > 0)
        got[(*ngot)++] = warm_pop_top(p);
    while (*ngot + *nfresh < want && p->clean_n > 0 && *nfresh < LAC_GUARD_BATCH) {
        uint32_t s = clean_pop(p);
        if (lac_state_get(p, s) == LAC_S_FRESH) {
            lac_slot_cache_addr(p, s); /* a fork child's, maybe zeroed */
            fresh[(*nfresh)++] = s;
        } else
            got[(*ngot)++] = s;
    }
    while (*ngot + *nfresh < want && *nfresh < LAC_GUARD_BATCH) {
        uint32_t s = take_fresh(p);
        if (s == UINT32_MAX)
            break;
        lac_slot_cache_addr(p, s); /* the state line's address cache */
        fresh[(*nfresh)++] = s;
    }
}

/* ---- guards (pool lock NOT held; the slots are the caller's) ------------------------------- */

/* The operator can fix these: say each once per process. */
static void warn_unguarded(const char *why)
{
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
        fprintf(stderr,
                "lacuna: %s (vm.max_map_count is %zu; each mprotect guard costs 2 VMAs): regions "
                "are handed out unguarded and counted in lacuna_stats.unguarded. Use Linux >= 6.13 "
                "for guard markers, or raise vm.max_map_count.\n",
                why, lac_os_features()->max_map_count);
}

static void warn_locked(bool falling_back)
{
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
        fprintf(stderr,
                "lacuna: the kernel refuses guard markers in a locked mapping (mlock/mlockall: "
                "MADV_GUARD_INSTALL gives EINVAL); %s\n",
                falling_back ? "using mprotect guards instead (2 VMAs each, within the budget)"
                             : "this pool asked for LACUNA_GUARD_MARKER only, so lacuna_alloc "
                               "fails with ENOTSUP");
}

void lac_guard_budget_return(size_t n)
{
    atomic_fetch_sub(&mprotect_guards_in_use, n);
}

/* A guard could not be made (err: the kernel's errno, or ENOSPC for a spent budget): a strict
 * pool keeps the slot FRESH and says why in its stats; another hands it out unguarded. Returns
 * whether the slot may be handed out. */
static bool guard_failed(lacuna_pool *p, int err, const char *why)
{
    atomic_store(&p->guard_error, err);
    atomic_fetch_add(&p->guard_failures, 1);
    if (p->flags & LACUNA_STRICT_GUARD)
        return false;
    if (why)
        warn_unguarded(why);
    atomic_fetch_add(&p->unguarded, 1);
    return true;
}

/* mprotect guards for n slots, within the budget: the number usable from the front. */
static size_t guard_mprotect(lacuna_pool *p, const uint32_t *slots, size_t n)
{
    size_t budget = lac_os_features()->mprotect_guard_budget;
    for (size_t i = 0; i < n; i++) {
        size_t used = atomic_fetch_add(&mprotect_guards_in_use, 1);
        if (used >= budget) {
            atomic_fetch_sub(&mprotect_guards_in_use, 1);
            if (!guard_failed(p, ENOSPC,
                              "the mprotect guard budget (a quarter of "
                              "vm.max_map_count) is spent"))
                return i;
            continue;
        }
        atomic_fetch_add(&p->guard_calls, 1);
        int err = lac_os_guard_mprotect(lac_slot_region(p, slots[i]) - p->guard, p->guard);
        if (err) {
            atomic_fetch_sub(&mprotect_guards_in_use, 1);
            if (!guard_failed(p, err,
                              err == ENOMEM
                                  ? "mprotect failed with ENOMEM: vm.max_map_count is exhausted"
                                  : NULL))
                return i;
            continue;
        }
        pthread_mutex_lock(&p->lock);
        p->mprotect_guards++;
        pthread_mutex_unlock(&p->lock);
    }
    return n;
}

int lac_guard_slots(lacuna_pool *p, const uint32_t *slots, size_t n, size_t *ok)
{
    int mode = atomic_load_explicit(&p->guard_mode, memory_order_relaxed);
    *ok = n;
    if (mode == LACUNA_GUARD_NONE)
        return 0;
    if (mode == LACUNA_GUARD_MPROTECT) {
        *ok = guard_mprotect(p, slots, n); /* within the budget, else unguarded or (strict) not */
        return 0;
    }
    struct iovec iov[LAC_GUARD_BATCH];
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = lac_slot_region(p, slots[i]) - p->guard;
        iov[i].iov_len = p->guard;
    }
    uint64_t calls = 0;
    int err = lac_os_guard_markers(iov, n, ok, &calls);
    atomic_fetch_add(&p->guard_calls, calls);
    if (err != 0 && err != EINVAL) {
        atomic_store(&p->guard_error, err);
        atomic_fetch_add(&p->guard_failures, n - *ok);
    }
    if (err != EINVAL)
        return 0; /* ENOMEM and the like: those slots stay FRESH and are retried */
    /* EINVAL on our own page-aligned ranges: the mapping is locked (mlockall(MCL_FUTURE) locked
     * the reservation). Markers will never work here: fall back as the policy allows. */
    atomic_store(&p->guard_error, EINVAL);
    if (p->guard_asked == LACUNA_GUARD_MARKER) {
        warn_locked(false);
        return ENOTSUP;
    }
    warn_locked(true);
    atomic_store_explicit(&p->guard_mode, LACUNA_GUARD_MPROTECT, memory_order_relaxed);
    *ok += guard_mprotect(p, slots + *ok, n - *ok);
    return 0;
}
