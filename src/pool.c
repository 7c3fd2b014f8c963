/* pool.c — the region pool: slots, free lists, thread caches, release policy, stats.
 *
 * A pool is one reservation of `capacity` slots, each [guard][region], stride = guard + region:
 *
 *   base                                                             base + capacity * stride
 *   | guard | region 0 ........ | guard | region 1 ........ | ... | guard | region N-1 ...... |
 *
 * Address -> slot is arithmetic (a multiply by a precomputed reciprocal), so free, double-free
 * detection and overflow lookup are O(1). Per-slot state lives in a side table (a separate
 * mapping), never in the regions, whose pages get released. Every slot is in exactly one place:
 *
 *   FRESH     never handed out: no guard yet, costs no page table (slots >= p->fresh, or on
 *             the clean stack when a guard install failed and is to be retried)
 *   LIVE      handed out
 *   WARM      freed, pages kept: in a thread cache or in the shared warm deque
 *   CLEAN     freed and released (or fresh with its guard): in a thread cache or the clean stack
 *   RELEASING in the hands of a thread releasing it, outside the lock
 *
 * The warm deque is LIFO at its top (the hottest pages are reused first) and is released from its
 * bottom (the coldest), when it grows past `cache` or its entries idle past `decay_ms`. Releases
 * are batched (lac_os_release: one process_madvise per LAC_CHUNK regions) and never made while
 * holding the pool lock.
 *
 * Thread caches: each thread keeps up to LAC_TC_MAX regions per pool, found through a 4-way
 * thread-local table keyed by the pool's unique id. The warm path is a pop/push there plus one
 * atomic bit-clear on the slot's state (which is what makes a racing double free harmless): no
 * lock, no syscall. Caches spill and refill half at a time under the pool lock.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* Slot states. Only LIVE has bit 0 set, so a free is one atomic bit clear (LIVE -> WARM) that
 * also tells whether the slot was live: a lock btr on x86-64. */
enum { S_FRESH = 0, S_WARM = 2, S_LIVE = S_WARM | 1, S_CLEAN = 4, S_RELEASING = 6 };

#define LAC_TC_MAX   32 /* regions a thread keeps per pool: 2 MiB of 64 KiB stacks */
#define LAC_TLS_WAYS 4  /* pools a thread uses at once without evicting a cache */
#define LAC_CHUNK                                                                                  \
    128 /* regions per release round: 2.5 KiB of stack, as this may run on a                       \
           small fiber stack; 128 ranges per process_madvise is plenty */
#define LAC_GUARD_BATCH     32 /* fresh slots guarded per call: neighbours share a page table */
#define LAC_MAX_RESERVE     (1ull << 44) /* 16 TiB: keeps page offsets within 32 bits */
#define LAC_DEF_CAPACITY    65536
#define LAC_DEF_CACHE       1024
#define LAC_DEF_CACHE_BYTES (64u << 20) /* default cache holds at most 64 MiB of regions */
#define LAC_DEF_DECAY_MS    1000
#define LAC_STATE_STRIDE                                                                           \
    64                   /* bytes between two slots' states: a cache line each, or threads         \
                            freeing neighbouring slots false-share (measured: 2 threads scaled     \
                            1.21x with 1 byte per slot, see tools/churn.c). Untouched state        \
                            pages cost nothing: 64 B per slot ever used. */
#define LAC_TICK_MASK 63 /* a decay check every 64 warm-path allocs: ~1 ns amortised */
#define LAC_OFF_SHIFT                                                                              \
    12 /* offsets are divided in 4 KiB units: every page size is a multiple,                       \
          and below LAC_MAX_RESERVE the quotient fits 32 bits (exact                               \
          multiply-by-reciprocal division) */

typedef struct lac_tcache {
    _Atomic uint32_t n;      /* regions held; written by the owner only */
    uint32_t cap;            /* 0 when the pool has no cache */
    _Atomic uint64_t allocs; /* regions popped; owner-written, summed by lacuna_pool_stats */
    _Atomic uint64_t moved_in, moved_out; /* regions added by a refill / removed by a drain;
                                             frees = n + moved_out - moved_in + allocs, so the
                                             warm free path counts nothing */
    bool owned;                           /* a thread's TLS points here (under the pool lock) */
    uint32_t trim_seen;                   /* the pool's trim_epoch when the owner last trimmed */
    pthread_t owner;
    struct lac_tcache *next; /* the pool's list of caches (under the pool lock) */
    uint32_t slots[LAC_TC_MAX];
} lac_tcache;

struct lacuna_pool {
    /* read-only after create: the fast path's working set */
    uint64_t id; /* unique per process, never reused: thread caches key on it */
    char *first; /* lowest byte of region 0 = base + guard */
    size_t span; /* bytes from first to the end of the reservation */
    size_t stride;
    uint64_t stride_recip; /* 2^64 / stride_pages, rounded up: exact division of page offsets */
    unsigned page_shift;
    uint32_t zero_state; /* S_WARM under LACUNA_ZERO (such regions need zeroing), else 0xff */
    unsigned flags;
    _Atomic uint32_t *state; /* per slot, S_*, one cache line apart (see LAC_STATE_STRIDE) */
    char *base;
    size_t capacity, region, guard, keep, cache, reserve_len, side_len;
    unsigned decay_ms;
    lacuna_guard guard_mode;
    lacuna_release release_mode;
    lac_advice advice;
    uint32_t tc_cap;

    pthread_mutex_t lock; /* guards everything below */
    uint32_t *warm;       /* ring of capacity slot indices; bottom at warm_head */
    uint32_t *warm_ms;    /* when each warm entry was pushed (ms since create) */
    size_t warm_head, warm_n;
    uint32_t *clean; /* stack of released slots */
    size_t clean_n;
    size_t fresh;            /* slots [fresh, capacity) were never handed out */
    size_t releasing;        /* slots out in release right now */
    pthread_cond_t released; /* broadcast when a release round ends */
    lac_tcache *tcaches;
    size_t mprotect_guards; /* charged against the process-wide budget */
    struct timespec born;

    alignas(64) _Atomic uint64_t allocs, frees; /* those not counted in a thread cache */
    /* Bumped by lacuna_trim: other threads' caches release themselves on seeing it. */
    _Atomic uint32_t trim_epoch;
    _Atomic uint64_t released_regions, release_calls, guard_calls, unguarded, release_errors;

    pthread_t bg; /* LACUNA_BACKGROUND decay thread */
    bool bg_running, bg_stop;
    pthread_cond_t bg_wake;

    struct lacuna_pool *next_live; /* registry of live pools (under registry_lock) */
};

/* Live pools, for thread-exit and eviction flushes (a cache may outlive its pool) and fork. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static lacuna_pool *registry;
static uint64_t next_pool_id = 1;
static _Atomic size_t mprotect_guards_in_use; /* process-wide: VMAs are per process */

#if defined(__PIC__) && !defined(__PIE__)
/* In liblacuna.so: no __tls_get_addr call on the fast path (static TLS, like glibc's own). */
#define LAC_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define LAC_TLS_MODEL
#endif
static __thread struct {
    uint64_t id[LAC_TLS_WAYS];
    lac_tcache *tc[LAC_TLS_WAYS];
} tls LAC_TLS_MODEL;
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

#ifdef LACUNA_DEBUG
void lac_debug_bad_input(const char *call, const char *what, const void *value)
{
    fprintf(stderr, "lacuna: %s: %s (%p)\n", call, what, value);
}
#endif

/* ---- small helpers ------------------------------------------------------------------------ */

static inline void count(_Atomic uint64_t *c)
{
    /* Single writer: a plain load/add/store, no lock prefix; atomic only so stats may read it. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline char *slot_region(const lacuna_pool *p, size_t s)
{
    return p->first + s * p->stride;
}

static inline uint32_t state_get(const lacuna_pool *p, size_t s)
{
    return atomic_load_explicit(&p->state[s * (LAC_STATE_STRIDE / sizeof(uint32_t))],
                                memory_order_relaxed);
}

static inline void state_set(lacuna_pool *p, size_t s, uint32_t v)
{
    atomic_store_explicit(&p->state[s * (LAC_STATE_STRIDE / sizeof(uint32_t))], v,
                          memory_order_relaxed);
}

static uint32_t now_ms(const lacuna_pool *p)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint32_t)((t.tv_sec - p->born.tv_sec) * 1000 + (t.tv_nsec - p->born.tv_nsec) / 1000000);
}

/* LIVE -> WARM, returning whether the slot was live. Atomic, so that of two racing frees of one
 * region exactly one wins; a plain bit test-and-clear (lock btr) on x86-64. */
static inline bool state_unlive(lacuna_pool *p, size_t s)
{
    uint32_t old = atomic_fetch_and_explicit(&p->state[s * (LAC_STATE_STRIDE / sizeof(uint32_t))],
                                             ~1u, memory_order_relaxed);
    return (old & 1u) != 0;
}

/* Slot index of a region start, or false. Exact for every offset below LAC_MAX_RESERVE.
 * NULL and addresses below the pool wrap around to huge offsets and fail the span check. */
static inline bool slot_of(const lacuna_pool *p, const void *region, uint32_t *slot)
{
    uintptr_t off = (uintptr_t)region - (uintptr_t)p->first;
    if (LAC_UNLIKELY(off >= p->span))
        return false;
    uint64_t s = (uint64_t)(((unsigned __int128)p->stride_recip * (off >> LAC_OFF_SHIFT)) >> 64);
    *slot = (uint32_t)s;
    return s * p->stride == off;
}

/* ---- the shared lists (pool lock held) ---------------------------------------------------- */

static void warm_push(lacuna_pool *p, uint32_t s, uint32_t ms)
{
    size_t i = (p->warm_head + p->warm_n++) % p->capacity;
    p->warm[i] = s;
    p->warm_ms[i] = ms;
}

static uint32_t warm_pop_top(lacuna_pool *p)
{
    uint32_t s = p->warm[(p->warm_head + --p->warm_n) % p->capacity];
    if (p->warm_n == 0)
        p->warm_head = 0; /* or the head walks the whole ring, touching all its pages */
    return s;
}

static uint32_t warm_pop_bottom(lacuna_pool *p)
{
    uint32_t s = p->warm[p->warm_head];
    p->warm_head = (p->warm_head + 1) % p->capacity;
    if (--p->warm_n == 0)
        p->warm_head = 0;
    return s;
}

/* Put a freed (not live) slot back where its state says it belongs. */
static void shelve(lacuna_pool *p, uint32_t s, uint32_t ms)
{
    if (state_get(p, s) == S_CLEAN)
        p->clean[p->clean_n++] = s;
    else
        warm_push(p, s, ms);
}

/* Take up to max of the coldest warm slots that must go: those over the cache bound (down to 3/4
 * of it, so releases come in batches) and those idle past decay. all = every warm slot. */
static size_t collect_release(lacuna_pool *p, uint32_t *out, size_t max, bool all)
{
    if (p->release_mode == LACUNA_RELEASE_NEVER)
        return 0;
    size_t n = 0;
    size_t target = p->warm_n > p->cache ? p->cache - p->cache / 4 : p->warm_n;
    uint32_t ms = p->decay_ms == LACUNA_DECAY_NEVER ? 0 : now_ms(p);
    while (n < max && p->warm_n > 0) {
        bool over = p->warm_n > target;
        bool aged = p->decay_ms != LACUNA_DECAY_NEVER &&
                    (uint32_t)(ms - p->warm_ms[p->warm_head]) >= p->decay_ms;
        if (!all && !over && !aged)
            break;
        uint32_t s = warm_pop_bottom(p);
        state_set(p, s, S_RELEASING);
        out[n++] = s;
    }
    p->releasing += n;
    return n;
}

/* ---- releasing (pool lock NOT held) ------------------------------------------------------- */

/* Release the pages of slots taken by collect_release, then shelve them: released ones as CLEAN,
 * the rest (a failed syscall) back to the bottom of warm, to be retried. Returns 0 or errno. */
static __attribute__((noinline)) int release_slots(lacuna_pool *p, const uint32_t *slots, size_t n)
{
    struct iovec iov[LAC_CHUNK];
    assert(n <= LAC_CHUNK); /* collect_release never takes more */
    if (n == 0)
        return 0;
    size_t len = p->region - p->keep;
    for (size_t i = 0; i < n; i++) {
        char *r = slot_region(p, slots[i]);
        iov[i].iov_base = r;
        iov[i].iov_len = len;
        if (p->keep && (p->flags & LACUNA_ZERO))
            memset(r + len, 0, p->keep); /* measured cheaper than refaulting 1-4 pages */
    }
    uint64_t calls = 0;
    size_t done = lac_os_release(iov, n, p->advice, &calls);
    int err = done < n ? errno : 0;
    atomic_fetch_add(&p->release_calls, calls);
    atomic_fetch_add(&p->released_regions, done);

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < done; i++) {
        state_set(p, slots[i], S_CLEAN);
        p->clean[p->clean_n++] = slots[i];
    }
    if (done < n) {
        /* The range the kernel refused (an mlocked stack, say) goes to the top: reused first,
         * and never again first in line, where it would block every later release round. */
        atomic_fetch_add(&p->release_errors, 1);
        state_set(p, slots[done], S_WARM);
        warm_push(p, slots[done], now_ms(p));
        for (size_t i = n; i-- > done + 1;) { /* untried: to the bottom, retried next round */
            state_set(p, slots[i], S_WARM);
            p->warm_head = (p->warm_head + p->capacity - 1) % p->capacity;
            p->warm[p->warm_head] = slots[i];
            p->warm_ms[p->warm_head] = 0;
            p->warm_n++;
        }
    }
    p->releasing -= n;
    pthread_cond_broadcast(&p->released);
    pthread_mutex_unlock(&p->lock);
    return err;
}

/* Collect and release until nothing more is due. all = trim. */
static int release_due(lacuna_pool *p, bool all)
{
    uint32_t slots[LAC_CHUNK];
    int err = 0;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t n = collect_release(p, slots, LAC_CHUNK, all);
        pthread_mutex_unlock(&p->lock);
        if (n == 0)
            return err;
        int e = release_slots(p, slots, n);
        if (e) /* failed slots went back to warm: stop, or trim would retry them forever */
            return e;
    }
}

/* ---- guards (pool lock NOT held; the slots are ours) -------------------------------------- */

/* The operator can fix this one: say it once per process. */
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

/* Give fresh slots their guards. Returns how many of slots[] are usable (from the front, in
 * order); the others stay FRESH and are left for the caller to shelve on the noguard list. */
static size_t guard_slots(lacuna_pool *p, const uint32_t *slots, size_t n)
{
    if (p->guard_mode == LACUNA_GUARD_NONE)
        return n;
    if (p->guard_mode == LACUNA_GUARD_MARKER) {
        struct iovec iov[LAC_GUARD_BATCH];
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = slot_region(p, slots[i]) - p->guard;
            iov[i].iov_len = p->guard;
        }
        uint64_t calls = 0;
        size_t done = lac_os_guard_markers(iov, n, &calls);
        atomic_fetch_add(&p->guard_calls, calls);
        return done;
    }
    /* mprotect: within the process-wide budget, else unguarded and counted. */
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
        int err = lac_os_guard_mprotect(slot_region(p, slots[i]) - p->guard, p->guard);
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
    return n;
}

/* ---- thread caches ------------------------------------------------------------------------ */

/* Move a cache's regions to the shared lists (pool lock held). */
static void tcache_drain(lacuna_pool *p, lac_tcache *tc, size_t keep)
{
    uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
    if (n <= keep)
        return;
    uint32_t ms = now_ms(p);
    size_t out = n - keep; /* the bottom ones: least recently freed */
    for (size_t i = 0; i < out; i++)
        shelve(p, tc->slots[i], ms);
    memmove(tc->slots, tc->slots + out, keep * sizeof tc->slots[0]);
    atomic_store_explicit(&tc->n, (uint32_t)keep, memory_order_relaxed);
    atomic_store_explicit(&tc->moved_out,
                          atomic_load_explicit(&tc->moved_out, memory_order_relaxed) + out,
                          memory_order_relaxed);
}

static lacuna_pool *registry_find(uint64_t id)
{
    for (lacuna_pool *p = registry; p; p = p->next_live)
        if (p->id == id)
            return p;
    return NULL;
}

/* Give a cache back to its pool, if the pool still lives; the thread stops using it. */
static void tcache_abandon(uint64_t id, lac_tcache *tc)
{
    pthread_mutex_lock(&registry_lock);
    lacuna_pool *p = registry_find(id);
    if (p) {
        pthread_mutex_lock(&p->lock);
        tcache_drain(p, tc, 0);
        tc->owned = false;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void thread_exit(void *unused)
{
    (void)unused;
    for (int i = 0; i < LAC_TLS_WAYS; i++) {
        if (tls.tc[i])
            tcache_abandon(tls.id[i], tls.tc[i]);
        tls.id[i] = 0;
        tls.tc[i] = NULL;
    }
}

static void make_exit_key(void)
{
    (void)pthread_key_create(&exit_key, thread_exit);
}

/* Find or make this thread's cache for p and move it to way 0. NULL: the pool has no cache, or
 * no memory for one (the caller then uses the shared lists directly). */
static __attribute__((noinline)) lac_tcache *tcache_slow(lacuna_pool *p)
{
    if (p->tc_cap == 0)
        return NULL;
    int way = LAC_TLS_WAYS - 1;
    for (int i = 1; i < LAC_TLS_WAYS; i++)
        if (tls.id[i] == p->id)
            way = i;
    lac_tcache *tc = NULL;
    if (tls.id[way] == p->id) {
        tc = tls.tc[way];
    } else {
        if (tls.tc[way]) /* evict the least recently used way */
            tcache_abandon(tls.id[way], tls.tc[way]);
        pthread_once(&exit_key_once, make_exit_key);
        (void)pthread_setspecific(exit_key, (void *)1);
        pthread_mutex_lock(&p->lock);
        for (tc = p->tcaches; tc && tc->owned; tc = tc->next)
            ;
        /* A cache line of its own: another thread's cache must not share it. */
        if (tc == NULL && (tc = aligned_alloc(64, (sizeof *tc + 63) / 64 * 64)) != NULL) {
            memset(tc, 0, sizeof *tc);
            tc->cap = p->tc_cap;
            tc->next = p->tcaches;
            p->tcaches = tc;
        }
        if (tc) {
            tc->owned = true;
            tc->owner = pthread_self();
            tc->trim_seen = atomic_load_explicit(&p->trim_epoch, memory_order_relaxed);
        }
        pthread_mutex_unlock(&p->lock);
        if (tc == NULL) {
            tls.id[way] = 0;
            tls.tc[way] = NULL;
            return NULL;
        }
    }
    memmove(&tls.id[1], &tls.id[0], (size_t)way * sizeof tls.id[0]);
    memmove(&tls.tc[1], &tls.tc[0], (size_t)way * sizeof tls.tc[0]);
    tls.id[0] = p->id;
    tls.tc[0] = tc;
    return tc;
}

static inline lac_tcache *tcache_of(lacuna_pool *p)
{
    if (LAC_LIKELY(tls.id[0] == p->id))
        return tls.tc[0];
    return tcache_slow(p);
}

/* ---- alloc -------------------------------------------------------------------------------- */

/* Zero what a previously used region may hold: its resident pages, found with mincore, are
 * memset, so a stack that used 2 of its 16 pages costs 2 page memsets, not 16 (and keeps RSS at 2
 * pages). Where the system has swap, a page mincore calls non-resident may be swapped out with
 * old data: each run of them is released then (MADV_DONTNEED drops swap entries too). */
static void zero_used(const lacuna_pool *p, char *r)
{
    size_t pg = (size_t)1 << p->page_shift;
    unsigned char vec[256];
    bool swap = lac_os_has_swap();
    for (size_t off = 0; off < p->region; off += sizeof vec * pg) {
        size_t len = p->region - off < sizeof vec * pg ? p->region - off : sizeof vec * pg;
        if (lac_os_resident(r + off, len, vec) != 0) {
            memset(r + off, 0, len);
            continue;
        }
        size_t pages = len / pg;
        for (size_t i = 0; i < pages;) {
            size_t j = i;
            while (j < pages && (vec[j] & 1) == (vec[i] & 1))
                j++;
            char *run = r + off + i * pg;
            if (vec[i] & 1) {
                memset(run, 0, (j - i) * pg);
            } else if (swap) {
                struct iovec iov = {run, (j - i) * pg};
                if (lac_os_release(&iov, 1, LAC_ADV_DONTNEED, NULL) != 1)
                    memset(run, 0, (j - i) * pg); /* correct, if it costs the swap-ins */
            }
            i = j;
        }
    }
}

static inline void *hand_out(lacuna_pool *p, uint32_t s)
{
    uint32_t was = state_get(p, s);
    state_set(p, s, S_LIVE);
    char *r = slot_region(p, s);
    if (LAC_UNLIKELY(p->flags & LACUNA_ZERO) && was == S_WARM)
        zero_used(p, r);
    return r;
}

/* Take up to want slots from the shared lists: hottest warm first, then released ones (and
 * those whose guard install failed earlier), then never-used slots in address order (pool lock
 * held). Slots still needing a guard are returned in fresh[], the others in got[]. */
static void take_slots(lacuna_pool *p, size_t want, uint32_t *got, size_t *ngot, uint32_t *fresh,
                       size_t *nfresh)
{
    while (*ngot < want && p->warm_n > 0)
        got[(*ngot)++] = warm_pop_top(p);
    while (*ngot + *nfresh < want && p->clean_n > 0 && *nfresh < LAC_GUARD_BATCH) {
        uint32_t s = p->clean[--p->clean_n];
        if (state_get(p, s) == S_FRESH)
            fresh[(*nfresh)++] = s;
        else
            got[(*ngot)++] = s;
    }
    while (*ngot + *nfresh < want && *nfresh < LAC_GUARD_BATCH && p->fresh < p->capacity)
        fresh[(*nfresh)++] = (uint32_t)p->fresh++;
}

static __attribute__((noinline)) void *alloc_slow(lacuna_pool *p, lac_tcache *tc)
{
    size_t want = tc ? tc->cap / 2 : 1;
    uint32_t got[LAC_TC_MAX], fresh[LAC_GUARD_BATCH];
    size_t ngot = 0, nfresh = 0;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        take_slots(p, want, got, &ngot, fresh, &nfresh);
        if (ngot + nfresh > 0 || p->releasing == 0)
            break;
        pthread_cond_wait(&p->released, &p->lock); /* all free slots are out being released */
    }
    pthread_mutex_unlock(&p->lock);

    if (nfresh > 0) {
        size_t ok = guard_slots(p, fresh, nfresh);
        for (size_t i = 0; i < ok; i++) {
            state_set(p, fresh[i], S_CLEAN);
            got[ngot++] = fresh[i];
        }
        if (ok < nfresh) {
            pthread_mutex_lock(&p->lock);
            for (size_t i = ok; i < nfresh; i++) /* still FRESH: retried by the next taker */
                p->clean[p->clean_n++] = fresh[i];
            pthread_mutex_unlock(&p->lock);
        }
    }
    if (ngot == 0) {
        errno = ENOMEM; /* every slot is live, or no guard could be installed */
        return NULL;
    }
    if (tc == NULL) {
        atomic_fetch_add(&p->allocs, 1);
        return hand_out(p, got[0]);
    }
    /* got[0] is the hottest: push it last, then pop it as the warm path would. */
    uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
    for (size_t i = ngot; i-- > 0;)
        tc->slots[n++] = got[i];
    atomic_store_explicit(&tc->moved_in,
                          atomic_load_explicit(&tc->moved_in, memory_order_relaxed) + ngot,
                          memory_order_relaxed);
    atomic_store_explicit(&tc->n, n - 1, memory_order_relaxed);
    count(&tc->allocs);
    return hand_out(p, got[0]);
}

/* Release the regions of a thread cache (its owner's, or lacuna_trim's caller's) and empty it:
 * only those, not the shared cache. 0 or the errno of a refused release (those regions go back
 * to warm, retried later). */
static int tcache_release(lacuna_pool *p, lac_tcache *tc)
{
    if (p->release_mode == LACUNA_RELEASE_NEVER)
        return 0; /* such a pool releases nothing */
    uint32_t slots[LAC_TC_MAX];
    size_t k = 0;
    pthread_mutex_lock(&p->lock);
    uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = tc->slots[i];
        if (state_get(p, s) == S_CLEAN) {
            p->clean[p->clean_n++] = s; /* nothing to release */
        } else {
            state_set(p, s, S_RELEASING);
            slots[k++] = s;
        }
    }
    p->releasing += k;
    atomic_store_explicit(&tc->n, 0, memory_order_relaxed);
    atomic_store_explicit(&tc->moved_out,
                          atomic_load_explicit(&tc->moved_out, memory_order_relaxed) + n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&p->lock);
    return release_slots(p, slots, k);
}

/* lacuna_trim on another thread asked every cache to be given back: release this thread's (the
 * shared cache was trimmed then, and what it holds now was freed since). Checked on the slow
 * paths only (every LAC_TICK_MASK + 1 warm allocs, and a free into a full cache), so the warm
 * path pays nothing; a thread that makes no calls keeps its cache until it does, or exits. */
static void trim_if_asked(lacuna_pool *p, lac_tcache *tc)
{
    uint32_t epoch = atomic_load_explicit(&p->trim_epoch, memory_order_relaxed);
    if (LAC_LIKELY(tc == NULL || tc->trim_seen == epoch))
        return;
    tc->trim_seen = epoch;
    (void)tcache_release(p, tc); /* a refusal is retried by later releases, as a decay's is */
}

/* Everything but the warm path: first call on this thread, empty cache, no cache, and every
 * LAC_TICK_MASK + 1 warm allocs a decay check, so a pool that only ever hits its thread caches
 * still gives idle memory back. */
static __attribute__((noinline)) void *alloc_miss(lacuna_pool *p)
{
    lac_tcache *tc = tcache_of(p);
    trim_if_asked(p, tc);
    if (tc && p->decay_ms != LACUNA_DECAY_NEVER &&
        (atomic_load_explicit(&tc->allocs, memory_order_relaxed) & LAC_TICK_MASK) == 0)
        (void)release_due(p, false);
    if (tc) {
        uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
        if (n > 0) {
            atomic_store_explicit(&tc->n, n - 1, memory_order_relaxed);
            count(&tc->allocs);
            return hand_out(p, tc->slots[n - 1]);
        }
    }
    return alloc_slow(p, tc);
}

static __attribute__((noinline)) void *alloc_bad(void)
{
    LAC_BAD_INPUT("lacuna_alloc", "NULL pool", NULL);
    errno = EINVAL;
    return NULL;
}

static __attribute__((noinline)) void *zero_and_return(const lacuna_pool *p, char *r)
{
    zero_used(p, r);
    return r;
}

/* The warm path is a leaf: every other case is a tail call, so it saves no registers. */
void *lacuna_alloc(lacuna_pool *p)
{
    if (LAC_UNLIKELY(p == NULL))
        return alloc_bad();
    if (LAC_UNLIKELY(tls.id[0] != p->id))
        return alloc_miss(p);
    lac_tcache *tc = tls.tc[0]; /* never NULL when the id matches */
    uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
    uint64_t a = atomic_load_explicit(&tc->allocs, memory_order_relaxed);
    if (LAC_UNLIKELY(n == 0 || (a & LAC_TICK_MASK) == 0))
        return alloc_miss(p);
    atomic_store_explicit(&tc->allocs, a + 1, memory_order_relaxed);
    atomic_store_explicit(&tc->n, n - 1, memory_order_relaxed);
    uint32_t s = tc->slots[n - 1];
    uint32_t was = state_get(p, s);
    state_set(p, s, S_LIVE);
    char *r = slot_region(p, s);
    if (LAC_UNLIKELY(was == p->zero_state))
        return zero_and_return(p, r);
    return r;
}

/* ---- free --------------------------------------------------------------------------------- */

static __attribute__((noinline)) int free_slow(lacuna_pool *p, lac_tcache *tc, uint32_t s)
{
    uint32_t batch[LAC_CHUNK];
    pthread_mutex_lock(&p->lock);
    if (tc) {
        tcache_drain(p, tc, tc->cap / 2);
        uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
        tc->slots[n] = s;
        atomic_store_explicit(&tc->n, n + 1, memory_order_relaxed);
    } else {
        warm_push(p, s, now_ms(p));
        atomic_fetch_add(&p->frees, 1);
    }
    size_t n = collect_release(p, batch, LAC_CHUNK, false);
    pthread_mutex_unlock(&p->lock);
    if (n > 0)
        (void)release_slots(p, batch, n); /* failure: kept warm and retried; not the caller's */
    return 0;
}

static __attribute__((noinline)) int free_miss(lacuna_pool *p, uint32_t s)
{
    lac_tcache *tc = tcache_of(p);
    trim_if_asked(p, tc);
    return free_slow(p, tc, s);
}

static __attribute__((noinline)) int free_bad(const lacuna_pool *p, const void *region)
{
    (void)p, (void)region;
    LAC_BAD_INPUT("lacuna_free",
                  p == NULL        ? "NULL pool"
                  : region == NULL ? "NULL region"
                                   : "not a live region of this pool (foreign, misaligned, in a "
                                     "guard, or freed twice)",
                  region);
    return EINVAL;
}

int lacuna_free(lacuna_pool *p, void *region)
{
    uint32_t s;
    if (LAC_UNLIKELY(p == NULL || !slot_of(p, region, &s)))
        return free_bad(p, region);
    if (LAC_UNLIKELY(!state_unlive(p, s)))
        return free_bad(p, region);
    if (LAC_UNLIKELY(tls.id[0] != p->id))
        return free_miss(p, s);
    lac_tcache *tc = tls.tc[0];
    uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
    if (LAC_UNLIKELY(n >= tc->cap))
        return free_miss(p, s);
    tc->slots[n] = s;
    atomic_store_explicit(&tc->n, n + 1, memory_order_relaxed);
    return 0;
}

int lacuna_trim(lacuna_pool *p)
{
    if (p == NULL) {
        LAC_BAD_INPUT("lacuna_trim", "NULL pool", NULL);
        return EINVAL;
    }
    /* Other threads' caches: each gives itself back on its owner's next slow path. */
    uint32_t epoch = atomic_fetch_add_explicit(&p->trim_epoch, 1, memory_order_relaxed) + 1;
    lac_tcache *tc = NULL; /* the calling thread's cache, if it has one: never make one here */
    for (int i = 0; i < LAC_TLS_WAYS; i++)
        if (tls.id[i] == p->id)
            tc = tls.tc[i];
    if (tc) {
        tc->trim_seen = epoch;
        int err = tcache_release(p, tc);
        if (err) /* as release_due does: stop at a refusal, the next trim retries */
            return err;
    }
    return release_due(p, true);
}

/* ---- background decay --------------------------------------------------------------------- */

static void *background(void *arg)
{
    lacuna_pool *p = arg;
    unsigned period = p->decay_ms == LACUNA_DECAY_NEVER ? 1000 : p->decay_ms / 2 + 1;
    pthread_mutex_lock(&p->lock);
    while (!p->bg_stop) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += period / 1000;
        t.tv_nsec += (long)(period % 1000) * 1000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->bg_wake, &p->lock, &t);
        if (p->bg_stop)
            break;
        pthread_mutex_unlock(&p->lock);
        (void)release_due(p, false);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- create / destroy --------------------------------------------------------------------- */

static size_t round_up(size_t x, size_t to)
{
    return (x + to - 1) / to * to;
}

/* The pool's condition variables; also remade in a forked child (see fork_child). */
static void init_conds(lacuna_pool *p)
{
    pthread_cond_init(&p->released, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->bg_wake, &ca);
    pthread_condattr_destroy(&ca);
}

/* Fill in the geometry and policy from a config, applying defaults. EINVAL, ENOTSUP or 0. */
static int configure(lacuna_pool *p, const lacuna_pool_config *c)
{
    const lacuna_features *f = lac_os_features();
    size_t pg = f->page_size;
    if (c->region_size == 0 || c->region_size > LAC_MAX_RESERVE ||
        c->guard_size > LAC_MAX_RESERVE || (unsigned)c->guard > LACUNA_GUARD_NONE ||
        (unsigned)c->release > LACUNA_RELEASE_NEVER ||
        (c->flags & ~(LACUNA_ZERO | LACUNA_BACKGROUND)))
        return EINVAL;
    p->region = round_up(c->region_size, pg);
    p->guard = round_up(c->guard_size ? c->guard_size : pg, pg);
    p->keep = round_up(c->keep_resident, pg);
    if (c->keep_resident > c->region_size || p->keep >= p->region)
        return EINVAL;
    p->capacity = c->capacity ? c->capacity : LAC_DEF_CAPACITY;
    p->stride = p->region + p->guard;
    if (p->capacity > UINT32_MAX || p->capacity > LAC_MAX_RESERVE / p->stride)
        return EINVAL;
    p->reserve_len = p->capacity * p->stride;
    p->page_shift = (unsigned)__builtin_ctzl(pg);
    p->stride_recip = UINT64_MAX / (p->stride >> LAC_OFF_SHIFT) + 1;
    p->zero_state = (c->flags & LACUNA_ZERO) ? S_WARM : 0xff;
    p->flags = c->flags;

    switch (c->guard) {
    case LACUNA_GUARD_DEFAULT:
        p->guard_mode = f->guard_marker ? LACUNA_GUARD_MARKER : LACUNA_GUARD_MPROTECT;
        break;
    case LACUNA_GUARD_MARKER:
        if (!f->guard_marker)
            return ENOTSUP;
        /* fallthrough */
    default:
        p->guard_mode = c->guard;
    }
    p->release_mode = c->release == LACUNA_RELEASE_DEFAULT ? LACUNA_RELEASE_DONTNEED : c->release;
    /* Zeroing lazily-freed pages would fault every one of them back in: DONTNEED is cheaper. */
    if (p->release_mode == LACUNA_RELEASE_FREE && (!f->madv_free || (c->flags & LACUNA_ZERO)))
        p->release_mode = LACUNA_RELEASE_DONTNEED;
    p->advice = p->release_mode == LACUNA_RELEASE_FREE ? LAC_ADV_FREE : LAC_ADV_DONTNEED;

    if (c->cache == LACUNA_CACHE_NONE) {
        p->cache = 0;
    } else if (c->cache == 0) {
        size_t by_bytes = LAC_DEF_CACHE_BYTES / p->region;
        p->cache = by_bytes < LAC_DEF_CACHE ? (by_bytes ? by_bytes : 1) : LAC_DEF_CACHE;
    } else {
        p->cache = c->cache;
    }
    if (p->cache > p->capacity)
        p->cache = p->capacity;
    /* A thread cache only pays when the shared cache is big enough to feed it (its refills and
     * spills move half of it). 1 MiB regions get a cache of 64 by default: still fed. */
    p->tc_cap =
        p->cache >= 2 * LAC_TC_MAX || p->release_mode == LACUNA_RELEASE_NEVER ? LAC_TC_MAX : 0;
    p->decay_ms = c->decay_ms ? c->decay_ms : LAC_DEF_DECAY_MS;
    return 0;
}

int lacuna_pool_create(const lacuna_pool_config *c, lacuna_pool **out)
{
    if (c == NULL || out == NULL)
        return EINVAL;
    lacuna_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return ENOMEM;
    int err = configure(p, c);
    if (err)
        goto fail;

    /* Side tables in a mapping of their own: warm ring + times (8 bytes a slot), clean (4),
     * state (LAC_STATE_STRIDE). */
    size_t pg = lac_os_features()->page_size;
    p->side_len = round_up(p->capacity * (12 + LAC_STATE_STRIDE), pg);
    char *side = lac_os_reserve(p->side_len);
    if (side == NULL) {
        err = errno == EINVAL ? ENOMEM : errno;
        goto fail;
    }
    p->warm = (uint32_t *)side;
    p->warm_ms = p->warm + p->capacity;
    p->clean = p->warm_ms + p->capacity;
    p->state = (_Atomic uint32_t *)(p->clean + p->capacity);

    p->base = lac_os_reserve(p->reserve_len);
    if (p->base == NULL) {
        err = errno == EINVAL ? ENOMEM : errno;
        goto fail_side;
    }
    p->first = p->base + p->guard;
    p->span = p->reserve_len - p->guard;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &p->born);

    pthread_mutex_init(&p->lock, NULL);
    init_conds(p);

    pthread_mutex_lock(&registry_lock);
    p->id = next_pool_id++;
    p->next_live = registry;
    registry = p;
    pthread_mutex_unlock(&registry_lock);
    (void)lac_overflow_register(p, (uintptr_t)p->base, p->reserve_len, p->stride, p->guard);

    if (p->flags & LACUNA_BACKGROUND) {
        err = pthread_create(&p->bg, NULL, background, p);
        if (err) {
            lacuna_pool_destroy(p);
            return err;
        }
        p->bg_running = true;
    }
    *out = p;
    return 0;

fail_side:
    (void)lac_os_unreserve(side, p->side_len);
fail:
    free(p);
    return err;
}

void lacuna_pool_destroy(lacuna_pool *p)
{
    if (p == NULL)
        return;
    if (p->bg_running) {
        pthread_mutex_lock(&p->lock);
        p->bg_stop = true;
        pthread_cond_signal(&p->bg_wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->bg, NULL);
    }
    lac_overflow_unregister(p);
    pthread_mutex_lock(&registry_lock);
    for (lacuna_pool **pp = &registry; *pp; pp = &(*pp)->next_live) {
        if (*pp == p) {
            *pp = p->next_live;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    /* Threads' TLS may still name this pool's id: ids are never reused, so they never match. */
    for (int i = 0; i < LAC_TLS_WAYS; i++) {
        if (tls.id[i] == p->id) {
            tls.id[i] = 0;
            tls.tc[i] = NULL;
        }
    }
    for (lac_tcache *tc = p->tcaches, *next; tc; tc = next) {
        next = tc->next;
        free(tc);
    }
    atomic_fetch_sub(&mprotect_guards_in_use, p->mprotect_guards);
    (void)lac_os_unreserve(p->base, p->reserve_len);
    (void)lac_os_unreserve(p->warm, p->side_len);
    pthread_cond_destroy(&p->released);
    pthread_cond_destroy(&p->bg_wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- fork --------------------------------------------------------------------------------- */

static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (lacuna_pool *p = registry; p; p = p->next_live)
        pthread_mutex_lock(&p->lock);
}

static void fork_parent(void)
{
    for (lacuna_pool *p = registry; p; p = p->next_live)
        pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&registry_lock);
}

#define S_MINE 0x100u /* fork_child only: the slot is in the forking thread's own cache */

/* The child has one thread: every slot that is neither live nor in this thread's cache goes back
 * on the shared lists, rebuilt from the state table (pool lock held). That takes in what other
 * threads held in their caches, what they had in hand between the lists and their caches, and
 * what they were releasing: none of those threads was copied, so none of it would come back, and
 * alloc_slow would wait for the releases forever. O(slots ever used), once per fork. */
static void rebuild_lists(lacuna_pool *p, pthread_t self)
{
    for (lac_tcache *tc = p->tcaches; tc; tc = tc->next) {
        uint32_t n = atomic_load_explicit(&tc->n, memory_order_relaxed);
        if (tc->owned && pthread_equal(tc->owner, self)) {
            for (uint32_t i = 0; i < n; i++)
                state_set(p, tc->slots[i], state_get(p, tc->slots[i]) | S_MINE);
        } else { /* its slots are shelved by the scan below; frees stay counted */
            atomic_store_explicit(&tc->moved_out,
                                  atomic_load_explicit(&tc->moved_out, memory_order_relaxed) + n,
                                  memory_order_relaxed);
            atomic_store_explicit(&tc->n, 0, memory_order_relaxed);
            tc->owned = false;
        }
    }
    p->warm_head = p->warm_n = p->clean_n = 0;
    for (size_t s = 0; s < p->fresh; s++) {
        uint32_t st = state_get(p, s);
        if (st & S_MINE) {
            state_set(p, s, st & ~S_MINE);
        } else if (st == S_WARM || st == S_RELEASING) { /* a copied page may hold old data */
            state_set(p, s, S_WARM);
            warm_push(p, (uint32_t)s, 0);
        } else if (st == S_CLEAN || st == S_FRESH) { /* FRESH: its guard is installed on take */
            p->clean[p->clean_n++] = (uint32_t)s;
        }
    }
    p->releasing = 0;
}

/* Rebuild every pool's lists, forget the background threads (they were not copied; the child's
 * pools decay on pool calls and lacuna_trim only), and remake the condition variables: they may
 * count waiters that were not copied (the background thread in its timed wait), and glibc's
 * pthread_cond_destroy waits for those forever. */
static void fork_child(void)
{
    pthread_t self = pthread_self();
    for (lacuna_pool *p = registry; p; p = p->next_live) {
        rebuild_lists(p, self);
        init_conds(p);
        p->bg_running = false;
        p->bg_stop = false;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void install_atfork(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

__attribute__((constructor)) static void pool_init(void)
{
    install_atfork();
}

/* ---- queries ------------------------------------------------------------------------------ */

void lacuna_pool_stats(const lacuna_pool *cp, lacuna_stats *st)
{
    if (cp == NULL || st == NULL)
        return;
    lacuna_pool *p = (lacuna_pool *)cp; /* the lock is not part of the observable state */
    memset(st, 0, sizeof *st);
    uint64_t allocs = atomic_load(&p->allocs), frees = atomic_load(&p->frees);
    size_t tc_warm = 0;
    pthread_mutex_lock(&p->lock);
    for (lac_tcache *tc = p->tcaches; tc; tc = tc->next) {
        allocs += atomic_load_explicit(&tc->allocs, memory_order_relaxed);
        frees += atomic_load_explicit(&tc->n, memory_order_relaxed) +
                 atomic_load_explicit(&tc->moved_out, memory_order_relaxed) -
                 atomic_load_explicit(&tc->moved_in, memory_order_relaxed) +
                 atomic_load_explicit(&tc->allocs, memory_order_relaxed);
        tc_warm += atomic_load_explicit(&tc->n, memory_order_relaxed);
    }
    st->warm = p->warm_n + tc_warm;
    st->released = p->clean_n;
    st->used = p->fresh;
    pthread_mutex_unlock(&p->lock);
    st->allocs = allocs;
    st->frees = frees;
    st->live = allocs > frees ? (size_t)(allocs - frees) : 0;
    st->capacity = p->capacity;
    st->region_size = p->region;
    st->guard_size = p->guard;
    st->stride = p->stride;
    st->reserved_bytes = p->reserve_len;
    st->cache = p->cache;
    st->keep_resident = p->keep;
    st->decay_ms = p->decay_ms;
    st->released_regions = atomic_load(&p->released_regions);
    st->release_calls = atomic_load(&p->release_calls);
    st->guard_calls = atomic_load(&p->guard_calls);
    st->unguarded = atomic_load(&p->unguarded);
    st->release_errors = atomic_load(&p->release_errors);
    st->guard = p->guard_mode;
    st->release = p->release_mode;
    st->flags = p->flags;
}

long lacuna_region_index(const lacuna_pool *p, const void *addr)
{
    if (p == NULL)
        return -1;
    uintptr_t off = (uintptr_t)addr - (uintptr_t)p->first;
    if (off >= p->span || off % p->stride >= p->region)
        return -1;
    return (long)(off / p->stride);
}

void lac_pool_set_namer(lacuna_pool *p, lac_region_namer namer, void *ctx)
{
    lac_overflow_set_namer(p, namer, ctx);
}
