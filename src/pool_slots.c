/* pool_slots.c — where a pool's free slots wait, and how a fresh slot gets its guard.
 *
 * Owns: the shared warm ring (LIFO at its top: the hottest pages are reused first; released from
 * its bottom, the coldest), the clean stack, the order in which slots are taken, guard
 * installation with its fallbacks, and the process-wide mprotect guard budget.
 *
 * Invariants: every free slot not in a thread cache is on exactly one of the two lists; a slot on
 * the warm ring is WARM, one on the clean stack is CLEAN or (its guard install failed) FRESH.
 * Everything here but lac_guard_slots runs with the pool lock held.
 *
 * Does not: release pages (pool_release.c) or touch thread caches (pool_cache.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdio.h>

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

void lac_shelve(lacuna_pool *p, uint32_t s, uint32_t ms)
{
    if (lac_state_get(p, s) == LAC_S_CLEAN)
        p->clean[p->clean_n++] = s;
    else
        lac_warm_push(p, s, ms);
}

void lac_take_slots(lacuna_pool *p, size_t want, uint32_t *got, size_t *ngot, uint32_t *fresh,
                    size_t *nfresh)
{
    while (*ngot < want && p->warm_n > 0)
        got[(*ngot)++] = warm_pop_top(p);
    while (*ngot + *nfresh < want && p->clean_n > 0 && *nfresh < LAC_GUARD_BATCH) {
        uint32_t s = p->clean[--p->clean_n];
        if (lac_state_get(p, s) == LAC_S_FRESH)
            fresh[(*nfresh)++] = s;
        else
            got[(*ngot)++] = s;
    }
    while (*ngot + *nfresh < want && *nfresh < LAC_GUARD_BATCH && p->fresh < p->capacity)
        fresh[(*nfresh)++] = (uint32_t)p->fresh++;
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

static void guard_mprotect(lacuna_pool *p, const uint32_t *slots, size_t n)
{
    size_t budget = lac_os_features()->mprotect_guard_budget;
    for (size_t i = 0; i < n; i++) {
        size_t used = atomic_fetch_add(&mprotect_guards_in_use, 1);
        if (used >= budget) {
            warn_unguarded("the mprotect guard budget (a quarter of vm.max_map_count) is spent");
            atomic_fetch_sub(&mprotect_guards_in_use, 1);
            atomic_fetch_add(&p->unguarded, 1);
            continue;
        }
        atomic_fetch_add(&p->guard_calls, 1);
        int err = lac_os_guard_mprotect(lac_slot_region(p, slots[i]) - p->guard, p->guard);
        if (err) {
            if (err == ENOMEM)
                warn_unguarded("mprotect failed with ENOMEM: vm.max_map_count is exhausted");
            atomic_fetch_sub(&mprotect_guards_in_use, 1);
            atomic_fetch_add(&p->unguarded, 1);
            continue;
        }
        pthread_mutex_lock(&p->lock);
        p->mprotect_guards++;
        pthread_mutex_unlock(&p->lock);
    }
}

int lac_guard_slots(lacuna_pool *p, const uint32_t *slots, size_t n, size_t *ok)
{
    int mode = atomic_load_explicit(&p->guard_mode, memory_order_relaxed);
    *ok = n;
    if (mode == LACUNA_GUARD_NONE)
        return 0;
    if (mode == LACUNA_GUARD_MPROTECT) {
        guard_mprotect(p, slots, n); /* within the budget, else unguarded and counted */
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
    if (err != EINVAL)
        return 0; /* ENOMEM and the like: those slots stay FRESH and are retried */
    /* EINVAL on our own page-aligned ranges: the mapping is locked (mlockall(MCL_FUTURE) locked
     * the reservation). Markers will never work here: fall back as the policy allows. */
    if (p->guard_asked == LACUNA_GUARD_MARKER) {
        warn_locked(false);
        return ENOTSUP;
    }
    warn_locked(true);
    atomic_store_explicit(&p->guard_mode, LACUNA_GUARD_MPROTECT, memory_order_relaxed);
    guard_mprotect(p, slots + *ok, n - *ok);
    *ok = n;
    return 0;
}
