/* pool.c — a pool's life: configuration, creation, growth, destruction, stats, and fork.
 *
 * A pool is one or more reservations (chunks) of slots, each [guard][region], stride = guard +
 * region:
 *
 *   base                                                             base + capacity * stride
 *   | guard | region 0 ........ | guard | region 1 ........ | ... | guard | region N-1 ...... |
 *
 * An explicit capacity is one chunk of exactly that many slots. Capacity 0 grows: a first chunk
 * of 2^k slots (about LAC_GROW_FIRST bytes), then chunks doubling the slot count, up to
 * LAC_GROW_MAX slots. Each new chunk is first asked for right after the last one
 * (MAP_FIXED_NOREPLACE): equal flags, so the kernel merges them into one VMA, and if every chunk
 * so far is contiguous the first chunk's formula simply covers more (span grows). Where that
 * address is taken the chunk goes anywhere, and the few such chunks are found by a short table
 * walk (lac_slot_find, off the warm paths).
 *
 * Address -> slot is arithmetic (a multiply by a precomputed reciprocal), so free, double-free
 * detection and overflow lookup are O(1). Slot -> region is one load: the address is cached in
 * the slot's state line when the slot is first taken. Per-slot state lives in a side table (a
 * separate mapping, reserved for the largest capacity the pool can reach and touched only per
 * slot used), never in the regions, whose pages get released. The state machine is in internal.h
 * (lac_state_step); where free slots wait is pool_slots.c's, the thread caches and the
 * alloc/free paths pool_cache.c's, releasing pages pool_release.c's.
 *
 * Owns: configuration and defaults, the reservation and side tables, the registry of live pools
 * (for thread-exit flushes, whose cache may outlive its pool, and for fork), stats.
 * Does not: install process-wide hooks: process.c calls lac_pool_fork_* and lac_pool_thread_exit.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define LAC_DEF_CACHE       1024
#define LAC_DEF_CACHE_BYTES (64u << 20) /* default cache holds at most 64 MiB of regions */
#define LAC_DEF_DECAY_MS    1000

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static lacuna_pool *registry;
static uint64_t next_pool_id = 1;

#ifdef LACUNA_DEBUG
void lac_debug_bad_input(const char *call, const char *what, const void *value)
{
    fprintf(stderr, "lacuna: %s: %s (%p)\n", call, what, value);
}
#endif

uint32_t lac_pool_now_ms(const lacuna_pool *p)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint32_t)((t.tv_sec - p->born.tv_sec) * 1000 + (t.tv_nsec - p->born.tv_nsec) / 1000000);
}

bool lac_pool_with(uint64_t id, void (*fn)(lacuna_pool *p, void *ctx), void *ctx)
{
    pthread_mutex_lock(&registry_lock);
    lacuna_pool *p = registry;
    while (p && p->id != id)
        p = p->next_live;
    if (p)
        fn(p, ctx);
    pthread_mutex_unlock(&registry_lock);
    return p != NULL;
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
        (c->flags & ~(LACUNA_ZERO | LACUNA_BACKGROUND | LACUNA_STRICT_GUARD)))
        return EINVAL;
    /* Strict guards with no guard at all: every alloc would fail. Say so at once. */
    if ((c->flags & LACUNA_STRICT_GUARD) && c->guard == LACUNA_GUARD_NONE)
        return EINVAL;
    p->region = round_up(c->region_size, pg);
    p->guard = round_up(c->guard_size ? c->guard_size : pg, pg);
    p->keep = round_up(c->keep_resident, pg);
    if (c->keep_resident > c->region_size || p->keep >= p->region)
        return EINVAL;
    p->stride = p->region + p->guard;
    if (p->stride > LAC_MAX_RESERVE)
        return EINVAL;
    p->grows = c->capacity == 0;
    if (p->grows) {
        size_t most = LAC_MAX_RESERVE / p->stride;
        p->capacity_max = most < LAC_GROW_MAX ? most : LAC_GROW_MAX;
        size_t first = LAC_GROW_FIRST / p->stride;
        p->first_shift = first > 1 ? 63u - (unsigned)__builtin_clzl(first) : 0;
        p->capacity = (size_t)1 << p->first_shift;
        if (p->capacity > p->capacity_max)
            p->capacity = p->capacity_max;
    } else {
        p->capacity_max = p->capacity = c->capacity;
        if (p->capacity > UINT32_MAX || p->capacity > LAC_MAX_RESERVE / p->stride)
            return EINVAL;
    }
    p->reserve_len = p->capacity * p->stride;
    /* A free run is worth giving back when it covers two page-table pages of address space (the
     * kernel frees only whole ones): 4 MiB with 4 KiB pages. */
    size_t pt_span = pg * (pg / sizeof(uint64_t));
    p->give_back_min = (2 * pt_span + p->stride - 1) / p->stride;
    p->page_shift = (unsigned)__builtin_ctzl(pg);
    p->stride_recip = UINT64_MAX / (p->stride >> LAC_OFF_SHIFT) + 1;
    p->flags = c->flags;

    lacuna_guard guard = c->guard;
    p->guard_asked = c->guard;
    if (guard == LACUNA_GUARD_DEFAULT)
        guard = f->guard_marker ? LACUNA_GUARD_MARKER : LACUNA_GUARD_MPROTECT;
    else if (guard == LACUNA_GUARD_MARKER && !f->guard_marker)
        return ENOTSUP;
    atomic_init(&p->guard_mode, guard);
    lacuna_release release =
        c->release == LACUNA_RELEASE_DEFAULT ? LACUNA_RELEASE_DONTNEED : c->release;
    /* Zeroing lazily-freed pages would fault every one of them back in: DONTNEED is cheaper. */
    if (release == LACUNA_RELEASE_FREE && (!f->madv_free || (c->flags & LACUNA_ZERO)))
        release = LACUNA_RELEASE_DONTNEED;
    atomic_init(&p->release_mode, release);
    p->advice = release == LACUNA_RELEASE_FREE ? LAC_ADV_FREE : LAC_ADV_DONTNEED;

    if (c->cache == LACUNA_CACHE_NONE) {
        p->cache = 0;
    } else if (c->cache == 0) {
        size_t by_bytes = LAC_DEF_CACHE_BYTES / p->region;
        p->cache = by_bytes < LAC_DEF_CACHE ? (by_bytes ? by_bytes : 1) : LAC_DEF_CACHE;
    } else {
        p->cache = c->cache;
    }
    if (p->cache > p->capacity_max)
        p->cache = p->capacity_max;
    /* A thread cache only pays when the shared cache is big enough to feed it (its refills and
     * spills move half of it). 1 MiB regions get a cache of 64 by default: still fed. */
    p->tc_cap = p->cache >= 2 * LAC_TC_MAX || release == LACUNA_RELEASE_NEVER ? LAC_TC_MAX : 0;
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

    /* Side tables in a mapping of their own, sized for the most slots the pool can have (only
     * what is touched costs memory): state (LAC_STATE_STRIDE, first: page-aligned), warm ring +
     * times (8 bytes a slot), clean stack (4), holes (4: at most one per two slots), and the
     * clean-stack bitmap. */
    size_t pg = lac_os_features()->page_size, m = p->capacity_max;
    size_t bits = round_up((m + 63) / 64 * 8, 64);
    p->side_len = round_up(m * (LAC_STATE_STRIDE + 16) + 16 + bits, pg);
    void *side;
    err = lac_os_reserve(p->side_len, &side);
    if (err)
        goto fail;
    p->state = (_Atomic uint32_t *)side;
    p->on_clean = (uint64_t *)((char *)side + m * LAC_STATE_STRIDE);
    p->warm = (uint32_t *)((char *)p->on_clean + bits);
    p->warm_ms = p->warm + m;
    p->clean = p->warm_ms + m;
    p->holes = p->clean + m;

    void *base;
    err = lac_os_reserve(p->reserve_len, &base);
    if (err)
        goto fail_side;
    p->base = base;
    p->first = p->base + p->guard;
    atomic_init(&p->span, p->reserve_len - p->guard);
    p->chunks[0] = (lac_chunk){.first = p->first, .start = 0, .n = p->capacity};
    atomic_init(&p->nchunks, 1);
    p->primary_chunks = 1;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &p->born);

    pthread_mutex_init(&p->lock, NULL);
    init_conds(p);

    pthread_mutex_lock(&registry_lock);
    p->id = next_pool_id++;
    atomic_init(&p->refs, 1);
    p->next_live = registry;
    registry = p;
    pthread_mutex_unlock(&registry_lock);
    err = lac_overflow_register(p, (uintptr_t)p->base, p->reserve_len, p->stride, p->guard, 0);
    if (err == 0 && (p->flags & LACUNA_BACKGROUND))
        err = lac_background_start(p);
    if (err) {
        lacuna_pool_destroy(p);
        return err;
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
    lac_background_stop(p);
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
    lac_tcache_forget(p);
    for (lac_tcache *tc = p->tcaches, *next; tc; tc = next) {
        next = tc->next;
        free(tc);
    }
    lac_guard_budget_return(p->mprotect_guards);
    unsigned nchunks = atomic_load_explicit(&p->nchunks, memory_order_relaxed);
    for (unsigned i = 0; i < nchunks; i++)
        (void)lac_os_unreserve(p->chunks[i].first - p->guard, p->chunks[i].n * p->stride);
    (void)lac_os_unreserve((void *)p->state, p->side_len);
    pthread_cond_destroy(&p->released);
    pthread_cond_destroy(&p->bg_wake);
    pthread_mutex_destroy(&p->lock);
    /* Other threads' cache ways may still name the struct: it goes with the last of them. */
    lac_pool_unref(p);
}

void lac_pool_ref(lacuna_pool *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void lac_pool_unref(lacuna_pool *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        free(p);
}

/* ---- growth and lookup -------------------------------------------------------------------- */

int lac_pool_grow(lacuna_pool *p)
{
    unsigned i = atomic_load_explicit(&p->nchunks, memory_order_relaxed);
    if (!p->grows || i == LAC_CHUNKS_MAX || p->capacity >= p->capacity_max)
        return ENOMEM;
    size_t n = (size_t)1 << (p->first_shift + i - 1); /* doubles the slots */
    if (n > p->capacity_max - p->capacity)
        n = p->capacity_max - p->capacity;
    const lac_chunk *last = &p->chunks[i - 1];
    char *end = last->first - p->guard + last->n * p->stride;
    void *base;
    int err = lac_os_reserve_near(end, n * p->stride, &base);
    if (err)
        return err;
    bool adjacent = base == end;
    lac_chunk *c = &p->chunks[i];
    *c = (lac_chunk){.first = (char *)base + p->guard, .start = p->capacity, .n = n};
    /* The overflow handler must know the chunk before a slot of it can be handed out. */
    if (adjacent) {
        unsigned j = i - 1; /* the chunk whose entry covers `end`: the first of its run */
        while (j > 0 &&
               p->chunks[j - 1].first + p->chunks[j - 1].n * p->stride == p->chunks[j].first)
            j--;
        lac_overflow_grow(p, (uintptr_t)(p->chunks[j].first - p->guard),
                          (size_t)(end + n * p->stride - (p->chunks[j].first - p->guard)));
    } else if ((err = lac_overflow_register(p, (uintptr_t)base, n * p->stride, p->stride, p->guard,
                                            c->start)) != 0) {
        (void)lac_os_unreserve(base, n * p->stride);
        return err;
    }
    size_t old = p->capacity;
    p->capacity += n;
    p->reserve_len += n * p->stride;
    lac_warm_regrow(p, old);
    atomic_store_explicit(&p->nchunks, i + 1, memory_order_release);
    if (adjacent && p->primary_chunks == i) {
        p->primary_chunks = i + 1;
        atomic_store_explicit(&p->span, p->reserve_len - p->guard, memory_order_release);
    }
    return 0;
}

/* The chunk holding slot s (s < capacity): chunk 0, else a count of leading zeros. */
static const lac_chunk *chunk_of_slot(const lacuna_pool *p, size_t s)
{
    if (s < p->chunks[0].n)
        return &p->chunks[0];
    return &p->chunks[64 - __builtin_clzll((uint64_t)s >> p->first_shift)];
}

char *lac_slot_addr(const lacuna_pool *p, size_t s)
{
    const lac_chunk *c = chunk_of_slot(p, s);
    return c->first + (s - c->start) * p->stride;
}

/* The chunk holding addr at offset *off from its first region, or NULL (lock-free). */
static const lac_chunk *chunk_of_addr(const lacuna_pool *p, uintptr_t addr, uintptr_t *off)
{
    /* Newest first: each holds as many slots as all before it together. */
    for (unsigned i = atomic_load_explicit(&p->nchunks, memory_order_acquire); i-- > 0;) {
        *off = addr - (uintptr_t)p->chunks[i].first;
        if (*off < p->chunks[i].n * p->stride)
            return &p->chunks[i];
    }
    return NULL;
}

uint64_t lac_slot_find(const lacuna_pool *p, const void *region)
{
    uintptr_t off;
    const lac_chunk *c = chunk_of_addr(p, (uintptr_t)region, &off);
    if (c == NULL)
        return UINT64_MAX;
    uint64_t s = (uint64_t)(((unsigned __int128)p->stride_recip * (off >> LAC_OFF_SHIFT)) >> 64);
    return s * p->stride == off ? c->start + s : UINT64_MAX;
}

/* ---- fork --------------------------------------------------------------------------------- */

void lac_pool_fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (lacuna_pool *p = registry; p; p = p->next_live)
        pthread_mutex_lock(&p->lock);
}

void lac_pool_fork_parent(void)
{
    for (lacuna_pool *p = registry; p; p = p->next_live)
        pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&registry_lock);
}

#define S_MINE 0x100u /* fork child only: the slot is in the forking thread's own cache */

/* The fork child's one exception to lac_state_step: it rebuilds states other threads left
 * half-way (their RELEASING slots), and marks its own cache's slots for the scan. */
static void mark(lacuna_pool *p, size_t s, uint32_t v)
{
    atomic_store_explicit(lac_state_at(p, s), v, memory_order_relaxed);
}

/* The child has one thread: every slot that is neither live nor in this thread's cache goes back
 * on the shared lists, rebuilt from the state table (pool lock held). That takes in what other
 * threads held in their caches, what they had in hand between the lists and their caches, what
 * they were releasing, and what they deferred (lacuna_free_deferred: done with, but freed only by
 * their next call): none of those threads was copied, so none of it would come back, and
 * alloc_slow would wait for the releases forever. This thread's own deferrals stay DEFERRED: its
 * list was copied, and its next call frees them; so do its batch, taken chain and remote list
 * (lac_fork_mark_mine). O(slots ever used), once per fork. */
static void rebuild_lists(lacuna_pool *p, pthread_t self)
{
    lac_fork_mark_mine(p, S_MINE);
    for (lac_tcache *tc = p->tcaches; tc; tc = tc->next) {
        uint32_t n = lac_tc_n(tc);
        if (tc->owned && pthread_equal(tc->owner, self)) {
            for (uint32_t i = 0; i < n; i++)
                mark(p, lac_line_slot(p, tc->lines[i]),
                     atomic_load_explicit(tc->lines[i], memory_order_relaxed) | S_MINE);
        } else { /* its slots are shelved by the scan below; frees stay counted */
            atomic_store_explicit(&tc->moved_out,
                                  atomic_load_explicit(&tc->moved_out, memory_order_relaxed) + n,
                                  memory_order_relaxed);
            lac_tc_set_n(tc, 0);
            tc->owned = false;
        }
    }
    p->warm_head = p->warm_n = p->clean_n = p->nholes = 0;
    memset(p->on_clean, 0, (p->fresh + 63) / 64 * sizeof p->on_clean[0]);
    for (size_t s = 0; s < p->fresh; s++) {
        uint32_t st = lac_state_get(p, s);
        if (st & S_MINE) {
            mark(p, s, st & ~S_MINE);
        } else if (st == LAC_S_WARM || st == LAC_S_RELEASING ||
                   st == LAC_S_DEFERRED) { /* a copied page may hold old data */
            if (st == LAC_S_DEFERRED)
                atomic_fetch_add(&p->frees, 1); /* its free, which that thread never made */
            mark(p, s, LAC_S_WARM);
            lac_warm_push(p, (uint32_t)s, 0);
        } else if (st == LAC_S_RETIRING) { /* its guard may be gone: re-guarded on take */
            mark(p, s, LAC_S_FRESH);
            lac_clean_push(p, (uint32_t)s);
        } else if (st == LAC_S_CLEAN ||
                   st == LAC_S_FRESH) { /* FRESH: its guard is installed on take */
            lac_clean_push(p, (uint32_t)s);
        }
    }
    p->clean_hi = p->clean_n;
    p->releasing = 0;
}

/* Rebuild every pool's lists, forget the background threads (they were not copied; the child's
 * pools decay on pool calls and lacuna_trim only), and remake the condition variables: they may
 * count waiters that were not copied (the background thread in its timed wait), and glibc's
 * pthread_cond_destroy waits for those forever. */
void lac_pool_fork_child(void)
{
    pthread_t self = pthread_self();
    for (lacuna_pool *p = registry; p; p = p->next_live) {
        rebuild_lists(p, self);
        /* The other threads are gone, and their cache ways' references with them. (A pool
         * destroyed before the fork whose struct they kept is not listed: it stays, unused.) */
        atomic_store_explicit(&p->refs, 1 + lac_tcache_refs(p), memory_order_relaxed);
        init_conds(p);
        p->bg_running = false;
        p->bg_stop = false;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&registry_lock);
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
        uint32_t n;
        uint64_t a = lac_tc_snapshot(tc, &n);
        allocs += a;
        frees += n + atomic_load_explicit(&tc->moved_out, memory_order_relaxed) -
                 atomic_load_explicit(&tc->moved_in, memory_order_relaxed) + a;
        tc_warm += n;
    }
    st->warm = p->warm_n + tc_warm;
    st->released = p->clean_n;
    st->used = p->fresh;
    for (size_t i = 0; i < p->nholes; i++)
        st->used -= p->holes[2 * i + 1] - p->holes[2 * i];
    st->capacity = p->capacity;
    st->reserved_bytes = p->reserve_len;
    pthread_mutex_unlock(&p->lock);
    st->allocs = allocs;
    st->frees = frees;
    st->live = allocs > frees ? (size_t)(allocs - frees) : 0;
    st->capacity_max = p->capacity_max;
    st->region_size = p->region;
    st->guard_size = p->guard;
    st->stride = p->stride;
    st->cache = p->cache;
    st->keep_resident = p->keep;
    st->decay_ms = p->decay_ms;
    st->released_regions = atomic_load(&p->released_regions);
    st->release_calls = atomic_load(&p->release_calls);
    st->guard_calls = atomic_load(&p->guard_calls);
    st->unguarded = atomic_load(&p->unguarded);
    st->release_errors = atomic_load(&p->release_errors);
    st->guard_failures = atomic_load(&p->guard_failures);
    st->guard_error = atomic_load(&p->guard_error);
    st->given_back = atomic_load(&p->given_back);
    st->guard = atomic_load_explicit(&p->guard_mode, memory_order_relaxed);
    st->release = atomic_load_explicit(&p->release_mode, memory_order_relaxed);
    st->flags = p->flags;
}

long lacuna_region_index(const lacuna_pool *p, const void *addr)
{
    if (p == NULL)
        return -1;
    uintptr_t off = (uintptr_t)addr - (uintptr_t)p->first;
    size_t start = 0;
    if (off >= atomic_load_explicit(&p->span, memory_order_relaxed)) {
        const lac_chunk *c = chunk_of_addr(p, (uintptr_t)addr, &off);
        if (c == NULL)
            return -1;
        start = c->start;
    }
    if (off % p->stride >= p->region)
        return -1;
    return (long)(start + off / p->stride);
}

void lac_pool_set_namer(lacuna_pool *p, lac_region_namer namer, void *ctx)
{
    lac_overflow_set_namer(p, namer, ctx);
}

void lac_pool_set_trim_hook(lacuna_pool *p, void (*hook)(lacuna_pool *))
{
    p->trim_hook = hook; /* set once, before the pool is published to other threads */
}

void lac_pool_set_prefault(lacuna_pool *p, size_t bytes)
{
    size_t pg = (size_t)1 << p->page_shift;
    bytes = (bytes + pg - 1) & ~(pg - 1);
    p->prefault = bytes < p->region ? bytes : p->region; /* set once, before publication too */
}
