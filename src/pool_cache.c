/* pool_cache.c — lacuna_alloc and lacuna_free: the thread caches and the paths behind them.
 *
 * Owns: each thread's caches (up to LAC_TC_MAX regions per pool, found through a LAC_TLS_WAYS-way
 * thread-local table keyed by the pool's never-reused id; the warm paths compare way 0's pool by
 * address, which its reference keeps from reuse), their refill and spill (half at a time,
 * under the pool lock), the trim epoch check, zeroing under LACUNA_ZERO (batched per cache, see
 * zero_and_return), each thread's deferred frees (lacuna_free_deferred, lacuna_flush) and
 * lacuna_free_top.
 *
 * The warm path is a pop/push in the calling thread's cache plus one atomic bit-clear on the
 * slot's state (which makes a racing double free harmless): no lock, no syscall, a leaf function.
 * Invariants: a cache is touched by its owner only, but for its counters (read by stats) and,
 * under the pool lock, by a fork child rebuilding lists; a thread's caches go back to their pools
 * when it exits (process.c's destructor calls lac_pool_thread_exit), and its deferred regions are
 * freed then. A cache's zeroed marks are set only for positions below its count. Deferral costs
 * the warm paths nothing: a pool with deferrals pending fails their key check (DEFER_MARK). A
 * LACUNA_ZERO pool's allocs never take the warm path (its alloc key is NO_POOL): zeroing is
 * decided on the slow one. Counting costs the warm alloc nothing either: the cache's count and
 * its decay tick are one word (lac_tcache.w), checked and stored together.
 *
 * Does not: release pages itself (pool_release.c) or guard slots (pool_slots.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__PIC__) && !defined(__PIE__)
/* In liblacuna.so: no __tls_get_addr call on the fast path (static TLS, like glibc's own). */
#define LAC_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define LAC_TLS_MODEL
#endif
/* What the warm paths compare a pool with when way 0 cannot serve them: no pool's address. */
static const max_align_t no_pool; /* aligned as any pool: a pointer to it is a valid one */
#define NO_POOL ((const lacuna_pool *)(const void *)&no_pool)

/* The calling thread's caches, most recently used first. Each way with a cache holds a
 * reference on its pool's memory (lacuna_pool.refs), so no later pool can be made at that
 * address while the way names it: the warm paths can then compare pool pointers, which needs no
 * load from the pool and refuses NULL for free. Ids name pools in every other use (registry
 * lookups), since a way may outlive its pool. */
static __thread struct {
    const lacuna_pool *alloc_key, *free_key; /* way 0's pool, or NO_POOL (keys_set) */
    uint64_t id[LAC_TLS_WAYS];
    lac_tcache *tc[LAC_TLS_WAYS];
    lacuna_pool *pool[LAC_TLS_WAYS]; /* with a reference, where tc is set */
} tls LAC_TLS_MODEL = {.alloc_key = NO_POOL, .free_key = NO_POOL};

/* A pool with deferred frees pending has its way-0 id marked with this bit (ids are counters,
 * never this large), so the warm paths' keys are NO_POOL, and they take the slow path that does
 * the frees: the warm paths pay nothing for deferral. */
#define DEFER_MARK (1ull << 63)

/* Derive the warm paths' keys from way 0, after any change of the ways: its pool, unless the
 * way is empty or marked for deferrals; for alloc, also unless the pool zeroes (LACUNA_ZERO
 * allocations are made off the warm path, which then needs no check for them). */
static void keys_set(void)
{
    const lacuna_pool *p = tls.pool[0];
    bool serves = p != NULL && !(tls.id[0] & DEFER_MARK);
    tls.free_key = serves ? p : NO_POOL;
    tls.alloc_key = serves && !(p->flags & LACUNA_ZERO) ? p : NO_POOL;
}

/* The id in a way, whether or not it is marked. */
static inline uint64_t way_id(int i)
{
    return tls.id[i] & ~DEFER_MARK;
}

/* The calling thread's deferred frees (lacuna_free_deferred), of any pools, in a malloc'd array:
 * only a pointer and two counts in static TLS (liblacuna.so's TLS is initial-exec, whose room is
 * small). */
typedef struct deferral {
    uint64_t id; /* the pool's: never reused, so an entry of a destroyed pool is never run */
    lacuna_pool *pool;
    uint32_t slot; /* LAC_S_DEFERRED */
} deferral;
static __thread struct {
    deferral *e;
    uint32_t n, cap;
    bool running; /* defer_run is freeing: the frees it makes must not run it again */
} defer LAC_TLS_MODEL;

/* ---- thread caches ------------------------------------------------------------------------ */

/* The slot a cache holds at position i, and putting slot s there. */
static inline uint32_t tc_slot(const lacuna_pool *p, const lac_tcache *tc, uint32_t i)
{
    return lac_line_slot(p, tc->lines[i]);
}

/* The cache a slot last entered (NULL: handed out by no cache): the one a free from another
 * thread sends it back to. Written as the slot enters a cache's lines (tc_put, line_enter) or is
 * handed out without one, never by the warm alloc: every slot a cache holds names that cache. */
static inline _Atomic(lac_tcache *) *line_owner(_Atomic uint32_t *line)
{
    return (_Atomic(lac_tcache *) *)(void *)((char *)line + 16);
}

/* Put a state line at position i of a cache, the cache becoming its owner. */
static inline void line_enter(lac_tcache *tc, uint32_t i, _Atomic uint32_t *line)
{
    tc->lines[i] = line;
    atomic_store_explicit(line_owner(line), tc, memory_order_relaxed);
}

static inline void tc_put(const lacuna_pool *p, lac_tcache *tc, uint32_t i, uint32_t s)
{
    line_enter(tc, i, lac_state_at(p, s));
}

/* Add to a counter only its cache's owner writes (stats read it from other threads). */
static inline void count_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Move a cache's regions to the shared lists (pool lock held). */
static void tcache_drain(lacuna_pool *p, lac_tcache *tc, size_t keep)
{
    uint32_t n = lac_tc_n(tc);
    if (n <= keep)
        return;
    uint32_t ms = lac_pool_now_ms(p);
    size_t out = n - keep; /* the bottom ones: least recently freed */
    for (size_t i = 0; i < out; i++)
        lac_shelve(p, tc_slot(p, tc, (uint32_t)i), ms);
    memmove(tc->lines, tc->lines + out, keep * sizeof tc->lines[0]);
    tc->zeroed = out >= 32 ? 0 : tc->zeroed >> out; /* the marks move with their slots */
    lac_tc_set_n(tc, (uint32_t)keep);
    count_add(&tc->moved_out, out);
}

/* ---- remote frees ---------------------------------------------------------------------------
 *
 * A region freed by a thread other than the one whose cache handed it out goes back to that cache
 * (mimalloc's thread_free lists do the same for its pages): the freer clears its LIVE bit as every
 * free does (so a double free is still refused at once), links it into a batch of its own
 * (lac_tcache.out_*), and pushes the batch onto the owner's remote list in one CAS every
 * LAC_REMOTE_BATCH regions; the owner takes the whole list in one exchange when its cache runs
 * empty, before it would take the pool lock. Without it, the freer kept such regions: its cache
 * overflowed while the owner's ran dry, so both went through the pool lock and its shared lists
 * every few dozen cycles, and the owner then wrote pages last written on the other CPU.
 *
 * The links live in the slots' state lines, past the state and the region address: the freer
 * has just written that line, so linking costs no other line. The line's owner field is written
 * as the slot enters a cache's lines (line_enter) or is handed out by no cache (hand_out); a
 * region on its way back already names the cache that takes it (remote_take writes nothing). A
 * list holds at most LAC_REMOTE_MAX (the count in its first line, a hint: a push that raced the
 * owner's take may read a stale one);
 * past that, or when the cache has no owner (LAC_REMOTE_CLOSED), the freer keeps the batch in its
 * own cache, as before, and so does a freer whose alloc finds nothing else free. The owner takes
 * the whole list when its cache is empty and keeps it as a chain of its own (lac_tcache.taken,
 * so up to LAC_REMOTE_MAX - 1 more held), handing it out one region per empty cache. Any thread
 * holding the pool lock may take a list too (lac_remote_sweep: decay, a trim, an alloc about to
 * fail), onto the shared lists: only the owner's take runs without the lock, and it allows for
 * that. Regions on a remote list, in a batch or taken are WARM and on no shared list: the cache's
 * owner gives them to the shared lists when it exits, releases them when it trims, and a fork
 * child rebuilds them as it rebuilds what other threads held (lac_fork_mark_mine). Counting: the
 * freer counts each into its moved_out when it links it, the taker into its moved_in, so frees stay
 * exact; lacuna_stats' warm does not see regions between two threads (at most 2 * LAC_REMOTE_MAX -
 * 1 and a batch per cache). */

/* The remote-list links. */

static inline _Atomic(_Atomic uint32_t *) *line_next(_Atomic uint32_t *line)
{
    return (_Atomic(_Atomic uint32_t *) *)(void *)((char *)line + 24);
}

/* In a list's first line: the regions on the list from it down. */
static inline _Atomic uint32_t *line_pending(_Atomic uint32_t *line)
{
    return (_Atomic uint32_t *)(void *)((char *)line + 32);
}

/* In a list's first line: when the list began, in sweeps (lacuna_pool.remote_sweeps at its first
 * push): a count, not a clock, so a push reads no clock. */
static inline _Atomic uint32_t *line_since(_Atomic uint32_t *line)
{
    return (_Atomic uint32_t *)(void *)((char *)line + 48);
}

/* The line after the next (NULL: none): what the owner prefetches when it takes this one. */
static inline _Atomic(_Atomic uint32_t *) *line_next2(_Atomic uint32_t *line)
{
    return (_Atomic(_Atomic uint32_t *) *)(void *)((char *)line + 40);
}

static inline _Atomic uint32_t *next_of(_Atomic uint32_t *line)
{
    return line ? atomic_load_explicit(line_next(line), memory_order_relaxed) : NULL;
}

_Static_assert(LAC_STATE_STRIDE >= 52, "a state line holds the state, region, owner and links");
_Static_assert(2 * LAC_REMOTE_BATCH <= LAC_TC_MAX, "a kept batch fits a half-drained cache");

/* Put regions on the shared lists, following the links from `line` (pool lock held). */
static void shelve_chain(lacuna_pool *p, _Atomic uint32_t *line, uint32_t ms)
{
    while (line) {
        _Atomic uint32_t *next = atomic_load_explicit(line_next(line), memory_order_relaxed);
        lac_shelve(p, lac_line_slot(p, line), ms);
        line = next;
    }
}

/* Take the calling thread's unsent batch out of its cache: its first line, *k regions. */
static _Atomic uint32_t *batch_take(lac_tcache *tc, uint32_t *k)
{
    _Atomic uint32_t *head = tc->out_head;
    *k = tc->out_n;
    tc->out_to = NULL;
    tc->out_head = tc->out_tail = tc->out_tail_prev = NULL;
    tc->out_n = 0;
    return head;
}

/* Take a cache's pending batch (NULL-terminated, as it was linked), the chain it took aside and
 * its remote list out of it (the owner's, or a cache without a thread): into c[0..2].
 * `close`: no more pushes, the cache loses its owner. */
static void remote_detach(lac_tcache *tc, bool close, _Atomic uint32_t *c[3])
{
    uint32_t k;
    c[0] = batch_take(tc, &k);
    c[1] = tc->taken;
    tc->taken = NULL;
    uintptr_t h =
        atomic_exchange_explicit(&tc->remote, close ? LAC_REMOTE_CLOSED : 0, memory_order_acquire);
    c[2] = h == LAC_REMOTE_CLOSED ? NULL : (_Atomic uint32_t *)h;
}

/* A cache's pending batch and remote list to the shared lists (pool lock held). */
static void remote_shelve(lacuna_pool *p, lac_tcache *tc, bool close)
{
    _Atomic uint32_t *c[3];
    remote_detach(tc, close, c);
    uint32_t ms = lac_pool_now_ms(p);
    for (int i = 0; i < 3; i++)
        shelve_chain(p, c[i], ms);
}

/* Release the regions linked from `line` (pool lock NOT held), a round at a time: what a trim
 * asks of the regions on their way back to or from a cache, as of the cache's own. 0 or the
 * errno of a refused release (those regions went back to warm). */
static int release_chain(lacuna_pool *p, _Atomic uint32_t *line)
{
    int err = 0;
    while (line) {
        uint32_t slots[LAC_RELEASE_BATCH];
        size_t k = 0;
        pthread_mutex_lock(&p->lock);
        for (; line && k < LAC_RELEASE_BATCH;
             line = atomic_load_explicit(line_next(line), memory_order_relaxed))
            slots[k++] = lac_line_slot(p, line);
        for (size_t i = 0; i < k; i++) /* WARM: they were freed live (after the links are read) */
            lac_state_step(p, slots[i], LAC_S_RELEASING);
        p->releasing += k;
        pthread_mutex_unlock(&p->lock);
        int e = lac_release_slots(p, slots, k);
        err = err ? err : e;
    }
    return err;
}

void lac_remote_sweep(lacuna_pool *p, bool all)
{
    uint32_t now = lac_pool_now_ms(p), decay = p->decay_ms;
    if (!all && (decay == LACUNA_DECAY_NEVER || now - p->remote_swept < decay / 2))
        return;
    p->remote_swept = now;
    /* A list stamped k was begun before sweep k + 1 (a pusher may stamp an older count, and
     * trims' sweeps count too: both only make a take earlier, which costs its owner locality, not
     * memory); sweeps of decay are decay / 2 apart or more, so one stamped 3 sweeps ago has
     * waited about decay_ms. Its regions are stamped now on the shared lists: their release
     * still waits a whole decay. */
    uint32_t sweeps = atomic_load_explicit(&p->remote_sweeps, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->remote_sweeps, sweeps, memory_order_relaxed);
    for (lac_tcache *tc = p->tcaches; tc; tc = tc->next) {
        uintptr_t h = atomic_load_explicit(&tc->remote, memory_order_acquire);
        if (h == 0 || h == LAC_REMOTE_CLOSED)
            continue;
        uint32_t since =
            atomic_load_explicit(line_since((_Atomic uint32_t *)h), memory_order_relaxed);
        if (!all && sweeps - since < 3)
            continue;
        /* Only an unchanged head is taken (a push or the owner's take meanwhile: next time); an
         * ABA head is a whole list too, and its links are read after the exchange. */
        if (atomic_compare_exchange_strong_explicit(&tc->remote, &h, 0, memory_order_acquire,
                                                    memory_order_relaxed))
            shelve_chain(p, (_Atomic uint32_t *)h, now);
    }
}

/* Put k regions linked from `line` in the calling thread's own cache, spilling half of it to the
 * shared lists first if they do not fit. They were counted out when linked: count them in. */
static void remote_keep(lacuna_pool *p, lac_tcache *tc, _Atomic uint32_t *line, uint32_t k)
{
    uint32_t batch[LAC_RELEASE_BATCH];
    size_t nrel = 0;
    if (lac_tc_n(tc) + k > tc->cap) {
        pthread_mutex_lock(&p->lock);
        tcache_drain(p, tc, tc->cap / 2);
        nrel = lac_collect_release(p, batch, LAC_RELEASE_BATCH, false);
        pthread_mutex_unlock(&p->lock);
    }
    uint32_t n = lac_tc_n(tc);
    for (; line; line = atomic_load_explicit(line_next(line), memory_order_relaxed))
        line_enter(tc, n++, line);
    lac_tc_set_n(tc, n);
    count_add(&tc->moved_in, k);
    if (nrel > 0)
        (void)lac_release_slots(p, batch, nrel); /* failure: kept warm and retried */
}

/* Hand the calling thread's pending batch to its owner's remote list, or keep it. */
static void remote_push(lacuna_pool *p, lac_tcache *tc)
{
    lac_tcache *o = tc->out_to;
    _Atomic uint32_t *tail = tc->out_tail, *tail_prev = tc->out_tail_prev;
    uint32_t k;
    _Atomic uint32_t *head = batch_take(tc, &k);
    uintptr_t old = atomic_load_explicit(&o->remote, memory_order_acquire); /* its count */
    uint32_t sweeps = atomic_load_explicit(&p->remote_sweeps, memory_order_relaxed);
    while (old != LAC_REMOTE_CLOSED) {
        /* Read from a line the owner or a sweep may have taken meanwhile (handed out, or on the
         * shared lists now; the state table is never unmapped): then the CAS fails and retries,
         * unless the line is the head again (taken, handed out and pushed back: ABA). The links
         * are right even then (this batch's own lines are written), but pending and next2 may
         * be stale: a bound and a prefetch hint, never followed for the structure. */
        uint32_t pending =
            old ? atomic_load_explicit(line_pending((_Atomic uint32_t *)old), memory_order_relaxed)
                : 0;
        if (pending + k > LAC_REMOTE_MAX)
            break; /* the owner has enough coming: keep these */
        atomic_store_explicit(line_next(tail), (_Atomic uint32_t *)old, memory_order_relaxed);
        atomic_store_explicit(line_next2(tail), next_of((_Atomic uint32_t *)old),
                              memory_order_relaxed);
        if (tail_prev)
            atomic_store_explicit(line_next2(tail_prev), (_Atomic uint32_t *)old,
                                  memory_order_relaxed);
        atomic_store_explicit(line_pending(head), pending + k, memory_order_relaxed);
        atomic_store_explicit(
            line_since(head),
            old ? atomic_load_explicit(line_since((_Atomic uint32_t *)old), memory_order_relaxed)
                : sweeps,
            memory_order_relaxed); /* a hint too, as pending */
        if (atomic_compare_exchange_weak_explicit(&o->remote, &old, (uintptr_t)head,
                                                  memory_order_release, memory_order_acquire))
            return;
    }
    atomic_store_explicit(line_next(tail), NULL, memory_order_relaxed);
    remote_keep(p, tc, head, k);
}

static void trim_if_asked(lacuna_pool *p, lac_tcache *tc);

/* Free a region (already WARM) that cache o handed out, o being another thread's cache: into
 * the calling thread's batch for o (tc, its cache of p). */
static __attribute__((noinline)) int free_remote(lacuna_pool *p, lac_tcache *tc,
                                                 _Atomic uint32_t *line, lac_tcache *o)
{
    /* A batch goes to one owner, and leaves when the next free finds it full, not as the free
     * that fills it returns: the region a thread freed last is then always in its own batch,
     * where alloc_slow finds it ("free one and retry", lacuna.h). */
    if (tc->out_n > 0 && (tc->out_to != o || tc->out_n == LAC_REMOTE_BATCH)) {
        trim_if_asked(p, tc); /* a push is this free's slow path: it sees a trim as others do */
        if (tc->out_n > 0)    /* (a trim released the batch) */
            remote_push(p, tc);
    }
    atomic_store_explicit(line_next(line), tc->out_head, memory_order_relaxed);
    atomic_store_explicit(line_next2(line), next_of(tc->out_head), memory_order_relaxed);
    if (tc->out_n == 0)
        tc->out_tail = line;
    else if (tc->out_n == 1)
        tc->out_tail_prev = line;
    tc->out_head = line;
    tc->out_to = o;
    count_add(&tc->moved_out, 1);
    tc->out_n++;
    return 0;
}

/* The owner, its cache empty: take one region of what other threads gave back (the chain it
 * took before, else the remote list, in one exchange). One at a time: the link to the next is
 * read from the line this allocation writes anyway, where walking the chain here waited for each
 * line in turn from the other CPU (the walk was most of the time of a cross-thread cycle).
 * Returns the regions the cache holds: 0 or 1. */
static uint32_t remote_take(lac_tcache *tc)
{
    _Atomic uint32_t *line = tc->taken;
    if (line == NULL) {
        if (atomic_load_explicit(&tc->remote, memory_order_relaxed) == 0)
            return 0; /* a read: the line stays shared until there is something to take */
        line = (_Atomic uint32_t *)atomic_exchange_explicit(&tc->remote, 0, memory_order_acquire);
        if (line == NULL)
            return 0; /* a sweep took the list meanwhile (lac_remote_sweep) */
        if ((tc->taken = next_of(line)) != NULL)
            lac_prefetch_w(tc->taken); /* the next take's line; later ones come two ahead */
    } else {
        tc->taken = next_of(line);
    }
    /* The line two takes ahead, on its way meanwhile (the next one's is, since the last take): a
     * take a line at a time would otherwise wait for each from the other CPU. */
    _Atomic uint32_t *ahead = atomic_load_explicit(line_next2(line), memory_order_relaxed);
    if (ahead)
        lac_prefetch_w(ahead);
    assert(atomic_load_explicit(line_owner(line), memory_order_relaxed) == tc);
    tc->lines[0] = line;
    lac_tc_set_n(tc, 1);
    count_add(&tc->moved_in, 1);
    return 1;
}

static void abandon(lacuna_pool *p, void *ctx)
{
    lac_tcache *tc = ctx;
    pthread_mutex_lock(&p->lock);
    remote_shelve(p, tc, true);
    tcache_drain(p, tc, 0);
    tc->owned = false;
    pthread_mutex_unlock(&p->lock);
}

/* Empty way i: give its cache back to its pool, if the pool still lives, and drop the way's
 * reference on the pool's memory. (keys_set is the caller's.) */
static void way_drop(int i)
{
    if (tls.pool[i]) {
        (void)lac_pool_with(way_id(i), abandon, tls.tc[i]);
        lac_pool_unref(tls.pool[i]);
    }
    tls.id[i] = 0;
    tls.tc[i] = NULL;
    tls.pool[i] = NULL;
}

static void defer_exit_all(void);

void lac_pool_thread_exit(void)
{
    defer_exit_all();
    for (int i = 0; i < LAC_TLS_WAYS; i++)
        way_drop(i);
    keys_set();
}

unsigned lac_tcache_refs(const lacuna_pool *p)
{
    unsigned n = 0;
    for (int i = 0; i < LAC_TLS_WAYS; i++)
        n += tls.pool[i] == p;
    return n;
}

lac_tcache *lac_tcache_peek(const lacuna_pool *p)
{
    for (int i = 0; i < LAC_TLS_WAYS; i++)
        if (way_id(i) == p->id)
            return tls.tc[i];
    return NULL;
}

void lac_tcache_forget(lacuna_pool *p)
{
    for (int i = 0; i < LAC_TLS_WAYS; i++) {
        if (tls.pool[i] == p) { /* its cache is the destroyer's to free */
            lac_pool_unref(tls.pool[i]);
            tls.id[i] = 0;
            tls.tc[i] = NULL;
            tls.pool[i] = NULL;
        }
    }
    keys_set();
    for (uint32_t i = 0; i < defer.n;) /* the pool's memory is going: nothing left to free */
        if (defer.e[i].id == p->id)
            defer.e[i] = defer.e[--defer.n];
        else
            i++;
}

/* Find or make this thread's cache for p and move it to way 0. NULL: the pool has no cache, or
 * no memory for one (the caller then uses the shared lists directly). */
static __attribute__((noinline)) lac_tcache *tcache_slow(lacuna_pool *p)
{
    if (p->tc_cap == 0)
        return NULL;
    if (way_id(0) == p->id) { /* marked for deferrals that were run: unmark */
        tls.id[0] = p->id;
        keys_set();
        return tls.tc[0];
    }
    int way = LAC_TLS_WAYS - 1;
    for (int i = 1; i < LAC_TLS_WAYS; i++)
        if (way_id(i) == p->id)
            way = i;
    lac_tcache *tc = NULL;
    if (way_id(way) == p->id) {
        tc = tls.tc[way];
    } else {
        way_drop(way); /* evict the least recently used way */
        /* A cache must go back when the thread exits; without a key for that (the process
         * ran out), the thread does without one: every call then takes the pool lock. */
        if (lac_process_on_thread_exit() != 0)
            return NULL;
        pthread_mutex_lock(&p->lock);
        for (tc = p->tcaches; tc && tc->owned; tc = tc->next)
            ;
        /* A cache line of its own: another thread's cache must not share it. */
        if (tc == NULL && (tc = aligned_alloc(64, (sizeof *tc + 63) / 64 * 64)) != NULL) {
            memset(tc, 0, sizeof *tc);
            atomic_store_explicit(&tc->w, (uint32_t)LAC_TICK << 16, memory_order_relaxed);
            tc->cap = p->tc_cap;
            tc->next = p->tcaches;
            p->tcaches = tc;
        }
        if (tc) {
            tc->owned = true;
            tc->zeroed = 0; /* a fork child emptied it without clearing its marks */
            atomic_store_explicit(&tc->remote, 0, memory_order_relaxed); /* open: see abandon */
            tc->owner = pthread_self();
            tc->trim_seen = atomic_load_explicit(&p->trim_epoch, memory_order_relaxed);
        }
        pthread_mutex_unlock(&p->lock);
        if (tc == NULL)
            return NULL;
        lac_pool_ref(p);
    }
    memmove(&tls.id[1], &tls.id[0], (size_t)way * sizeof tls.id[0]);
    memmove(&tls.tc[1], &tls.tc[0], (size_t)way * sizeof tls.tc[0]);
    memmove(&tls.pool[1], &tls.pool[0], (size_t)way * sizeof tls.pool[0]);
    tls.id[0] = p->id;
    tls.tc[0] = tc;
    tls.pool[0] = p;
    keys_set();
    return tc;
}

static inline lac_tcache *tcache_of(lacuna_pool *p)
{
    if (LAC_LIKELY(tls.id[0] == p->id))
        return tls.tc[0];
    return tcache_slow(p);
}

/* ---- deferred frees ------------------------------------------------------------------------ */

/* Free the calling thread's deferred regions of p (its next alloc or free on p, or lacuna_flush),
 * as lacuna_free would: DEFERRED -> LIVE -> lacuna_free. The frees may take the slow path, which
 * would run this again: `running` stops that recursion (the outer loop finishes the list). */
static __attribute__((noinline)) void defer_run(lacuna_pool *p)
{
    for (int i = 0; i < LAC_TLS_WAYS; i++)
        if (tls.id[i] == (p->id | DEFER_MARK))
            tls.id[i] = p->id;
    keys_set();
    if (defer.running)
        return;
    defer.running = true;
    for (uint32_t i = 0; i < defer.n;) {
        if (defer.e[i].id != p->id) {
            i++;
            continue;
        }
        uint32_t s = defer.e[i].slot;
        defer.e[i] = defer.e[--defer.n];
        lac_state_step(p, s, LAC_S_LIVE);
        (void)lacuna_free(p, lac_slot_region(p, s)); /* cannot fail: the slot was ours */
    }
    defer.running = false;
}

static void defer_exit_one(lacuna_pool *p, void *ctx)
{
    uint32_t s = *(const uint32_t *)ctx;
    pthread_mutex_lock(&p->lock);
    lac_state_step(p, s, LAC_S_WARM);
    lac_shelve(p, s, lac_pool_now_ms(p));
    atomic_fetch_add(&p->frees, 1);
    pthread_mutex_unlock(&p->lock);
}

/* Thread exit: the thread's deferred regions go straight to their pools' shared lists (not
 * through lacuna_free, which could make this exiting thread a new cache). */
static void defer_exit_all(void)
{
    for (uint32_t i = 0; i < defer.n; i++)
        (void)lac_pool_with(defer.e[i].id, defer_exit_one, &defer.e[i].slot);
    free(defer.e);
    defer.e = NULL;
    defer.n = defer.cap = 0;
}

/* The forking thread's batches and remote list (its cache's) are copied with it: its regions
 * there are marked to stay where they are. Other threads' are not: their caches lose them to the
 * scan, and take no more pushes. */
static void fork_mark_remote(lacuna_pool *p, uint32_t bit)
{
    pthread_t self = pthread_self();
    for (lac_tcache *tc = p->tcaches; tc; tc = tc->next) {
        if (!tc->owned || !pthread_equal(tc->owner, self)) {
            uint32_t k;
            (void)batch_take(tc, &k);
            tc->taken = NULL;
            atomic_store_explicit(&tc->remote, LAC_REMOTE_CLOSED, memory_order_relaxed);
            continue;
        }
        _Atomic uint32_t *chains[3] = {
            tc->out_head, tc->taken,
            (_Atomic uint32_t *)atomic_load_explicit(&tc->remote, memory_order_relaxed)};
        for (int i = 0; i < 3; i++)
            for (_Atomic uint32_t *l = chains[i]; l;
                 l = atomic_load_explicit(line_next(l), memory_order_relaxed))
                atomic_fetch_or_explicit(l, bit, memory_order_relaxed);
    }
}

void lac_fork_mark_mine(lacuna_pool *p, uint32_t bit)
{
    for (uint32_t i = 0; i < defer.n; i++)
        if (defer.e[i].id == p->id)
            atomic_fetch_or_explicit(lac_state_at(p, defer.e[i].slot), bit, memory_order_relaxed);
    fork_mark_remote(p, bit);
}

int lacuna_free_deferred(lacuna_pool *p, void *region)
{
    uint32_t s;
    if (p == NULL || !lac_slot_of(p, region, &s) || lac_state_get(p, s) != LAC_S_LIVE) {
        LAC_BAD_INPUT("lacuna_free_deferred", p == NULL ? "NULL pool" : "not a live region",
                      region);
        return EINVAL;
    }
    if (defer.n == defer.cap) { /* room first: ENOMEM must leave nothing changed */
        uint32_t cap = defer.cap ? defer.cap * 2 : 16;
        deferral *e = realloc(defer.e, cap * sizeof *e);
        if (e == NULL)
            return ENOMEM;
        defer.e = e;
        defer.cap = cap;
    }
    int err = lac_process_on_thread_exit(); /* a pending deferral is freed at thread exit */
    if (err)
        return err;
    uint32_t live = LAC_S_LIVE;
    if (!atomic_compare_exchange_strong_explicit(lac_state_at(p, s), &live, LAC_S_DEFERRED,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        LAC_BAD_INPUT("lacuna_free_deferred", "freed meanwhile", region);
        return EINVAL; /* a racing free of the same region won */
    }
    defer.e[defer.n++] = (deferral){p->id, p, s};
    if (tls.id[0] == p->id) {
        tls.id[0] |= DEFER_MARK;
        keys_set();
    }
    return 0;
}

int lacuna_flush(lacuna_pool *p)
{
    if (p == NULL) {
        LAC_BAD_INPUT("lacuna_flush", "NULL pool", NULL);
        return EINVAL;
    }
    if (defer.n > 0)
        defer_run(p);
    lac_tcache *tc = lac_tcache_peek(p);
    if (tc && tc->out_n > 0) {
        /* A push, as free_remote's: a trim asked meanwhile releases the batch here, where the
         * owner may have seen the trim already and would keep what it is handed now. */
        trim_if_asked(p, tc);
        if (tc->out_n > 0)
            remote_push(p, tc);
    }
    return 0;
}

int lacuna_free_top(lacuna_pool *p, void *top)
{
    if (p == NULL) {
        LAC_BAD_INPUT("lacuna_free_top", "NULL pool", top);
        return EINVAL;
    }
    /* Integer arithmetic: top may be NULL or anything (it wraps, and lacuna_free refuses it). */
    return lacuna_free(p, (void *)((uintptr_t)top - p->region));
}

/* ---- alloc -------------------------------------------------------------------------------- */

/* ---- LACUNA_ZERO -------------------------------------------------------------------------- */

/* Whether the system has swap, asked at most once a second (CLOCK_MONOTONIC_COARSE is read from
 * the vDSO: no syscall): a swapon takes effect within a second, and zeroing does not pay a
 * sysinfo per region. Atomics: threads race to refresh it, with the same answer. */
static bool swap_now(void)
{
    static _Atomic int64_t checked_s = -1;
    static atomic_bool swap;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    if (atomic_load_explicit(&checked_s, memory_order_relaxed) != (int64_t)t.tv_sec) {
        atomic_store_explicit(&swap, lac_os_has_swap(), memory_order_relaxed);
        atomic_store_explicit(&checked_s, (int64_t)t.tv_sec, memory_order_relaxed);
    }
    return atomic_load_explicit(&swap, memory_order_relaxed);
}

_Static_assert(LAC_TC_MAX <= 32, "lac_tcache.zeroed has a bit per cached slot");
#define ZERO_VEC 512 /* pages per mincore call: 512 bytes of stack (this may run on a fiber's) */

/* Zero [r, r + len) as a window mincore described (vec[0] is r's page):
 * resident runs are memset; where there is swap, a non-resident run may hold old data in swap,
 * so it is released (MADV_DONTNEED drops swap entries too). */
static void zero_by_vec(char *r, size_t len, size_t pg, const unsigned char *vec, bool swap)
{
    size_t pages = len / pg;
    for (size_t i = 0; i < pages;) {
        size_t j = i;
        while (j < pages && (vec[j] & 1) == (vec[i] & 1))
            j++;
        char *run = r + i * pg;
        if (vec[i] & 1) {
            memset(run, 0, (j - i) * pg);
        } else if (swap) {
            struct iovec iov = {run, (j - i) * pg};
            size_t done;
            if (lac_os_release(&iov, 1, LAC_ADV_DONTNEED, &done, NULL) != 0)
                memset(run, 0, (j - i) * pg); /* correct, if it costs the swap-ins */
        }
        i = j;
    }
}

/* Zero what n previously used regions (at most LAC_TC_MAX + 1) may hold, with as few residency
 * queries as their addresses allow: sorted, each mincore window of ZERO_VEC pages covers every
 * region lying wholly inside it (neighbouring slots: 30 regions of 64 KiB a call). A stack that
 * used 2 of its 16 pages costs 2 page memsets, not 16, and keeps RSS at 2 pages. */
static void zero_regions(const lacuna_pool *p, char **r, size_t n)
{
    for (size_t i = 1; i < n; i++) /* insertion sort: n <= 33 */
        for (size_t j = i; j > 0 && r[j] < r[j - 1]; j--) {
            char *t = r[j];
            r[j] = r[j - 1];
            r[j - 1] = t;
        }
    size_t pg = (size_t)1 << p->page_shift;
    bool swap = swap_now();
    unsigned char vec[ZERO_VEC];
    for (size_t i = 0; i < n;) {
        char *lo = r[i];
        size_t k = i + 1; /* regions [i, k) share the window */
        while (k < n && (size_t)(r[k] + p->region - lo) <= sizeof vec * pg)
            k++;
        size_t len = (size_t)(r[k - 1] + p->region - lo);
        if (len > sizeof vec * pg) { /* one region larger than a window: piece by piece */
            for (size_t off = 0; off < p->region; off += sizeof vec * pg) {
                size_t l = p->region - off < sizeof vec * pg ? p->region - off : sizeof vec * pg;
                if (lac_os_resident(lo + off, l, vec) != 0)
                    memset(vec, 1, l / pg); /* unknown: zero it all */
                zero_by_vec(lo + off, l, pg, vec, swap);
            }
        } else if (lac_os_resident(lo, len, vec) != 0) {
            for (size_t j = i; j < k; j++)
                memset(r[j], 0, p->region);
        } else {
            for (size_t j = i; j < k; j++)
                zero_by_vec(r[j], p->region, pg, vec + (size_t)(r[j] - lo) / pg, swap);
        }
        i = k;
    }
}

static void zero_used(const lacuna_pool *p, char *r)
{
    zero_regions(p, &r, 1);
}

/* A WARM region of a LACUNA_ZERO pool was popped from the calling thread's cache (the slot was
 * slots[pos], the cache holds pos now, and the slot is LIVE). No syscall unless every warm region
 * the cache holds is dirty: tc->zeroed marks those already zeroed here, so
 *   - the popped region was zeroed here: hand it out;
 *   - another one was: hand that one out instead, and keep the popped one (dirty) in its place;
 *   - a clean (released, or never used) region is cached: hand that out likewise: its pages
 *     fault in once, and the dirty ones wait to be zeroed together (a thread cycling one region
 *     warms up a cacheful this way, then zeroes them a batch at a time);
 *   - else zero the popped region and every dirty one of the cache in one batch (a mincore per
 *     window of neighbouring slots, zero_regions).
 * So a thread reusing regions pays about one mincore per cacheful of allocations, not one each
 * (the syscall count is checked by tests/test_pool_zero.c). */
static void *zero_and_return(lacuna_pool *p, lac_tcache *tc, uint32_t pos, char *r)
{
    uint32_t bit = 1u << pos, below = tc->zeroed & (bit - 1);
    if (tc->zeroed & bit) {
        tc->zeroed &= ~bit;
        return r;
    }
    uint32_t s = tc_slot(p, tc, pos);
    int j = below ? 31 - __builtin_clz(below) : -1;
    for (uint32_t i = 0; i < pos && j < 0; i++)
        if (lac_state_get(p, tc_slot(p, tc, i)) == LAC_S_CLEAN)
            j = (int)i;
    if (j >= 0) { /* swap: slot j goes out, the dirty popped one takes its place */
        uint32_t t = tc_slot(p, tc, (uint32_t)j);
        atomic_store_explicit(lac_state_at(p, s), LAC_S_WARM, memory_order_relaxed);
        tc_put(p, tc, (uint32_t)j, s);
        tc->zeroed &= ~(1u << j);
        lac_state_step(p, t, LAC_S_LIVE);
        atomic_store_explicit(line_owner(lac_state_at(p, t)), tc, memory_order_relaxed);
        return lac_slot_region(p, t);
    }
    char *batch[LAC_TC_MAX + 1];
    size_t n = 0;
    batch[n++] = r;
    for (uint32_t i = 0; i < pos; i++)
        if (lac_state_get(p, tc_slot(p, tc, i)) == LAC_S_WARM && !(below & (1u << i)))
            batch[n++] = lac_slot_region(p, tc_slot(p, tc, i));
    zero_regions(p, batch, n);
    for (uint32_t i = 0; i < pos; i++)
        if (lac_state_get(p, tc_slot(p, tc, i)) == LAC_S_WARM)
            tc->zeroed |= 1u << i;
    return r;
}

/* Hand out slot s from cache tc (NULL: none); `zeroed`: a LACUNA_ZERO region already zeroed in
 * a thread cache. */
static inline void *hand_out(lacuna_pool *p, lac_tcache *tc, uint32_t s, bool zeroed)
{
    uint32_t was = lac_state_get(p, s);
    lac_state_step(p, s, LAC_S_LIVE);
    atomic_store_explicit(line_owner(lac_state_at(p, s)), tc, memory_order_relaxed);
    char *r = lac_slot_region(p, s);
    if (LAC_UNLIKELY(p->flags & LACUNA_ZERO) && was == LAC_S_WARM && !zeroed)
        zero_used(p, r);
    return r;
}

/* Count a tick's pops into allocs and start the next tick (owner only). The word is marked
 * meanwhile, so stats never add a tick twice or not at all (lac_tc_snapshot). */
static void tick_reload(lac_tcache *tc)
{
    uint32_t w = atomic_load_explicit(&tc->w, memory_order_relaxed);
    uint64_t a = atomic_load_explicit(&tc->allocs, memory_order_relaxed) + LAC_TICK - (w >> 16);
    atomic_store_explicit(&tc->w, w | LAC_TC_BORROW, memory_order_relaxed);
    atomic_store_explicit(&tc->allocs, a, memory_order_release);
    atomic_store_explicit(&tc->w, (w & LAC_TC_N_MASK) | (uint32_t)LAC_TICK << 16,
                          memory_order_release);
}

/* Pop the top of a non-empty thread cache outside the warm path (a LACUNA_ZERO pool's always):
 * one pop and one tick, as the warm path counts them. */
static void *tcache_pop(lacuna_pool *p, lac_tcache *tc, uint32_t n)
{
    uint32_t w = atomic_load_explicit(&tc->w, memory_order_relaxed);
    assert((w >> 16) > 0); /* alloc_miss, the only way here, reloaded a tick that ran out */
    atomic_store_explicit(&tc->w, w - LAC_TC_POP, memory_order_relaxed);
    uint32_t s = tc_slot(p, tc, n - 1), bit = 1u << (n - 1);
    if (p->flags & LACUNA_ZERO && lac_state_get(p, s) == LAC_S_WARM) {
        lac_state_step(p, s, LAC_S_LIVE);
        atomic_store_explicit(line_owner(lac_state_at(p, s)), tc, memory_order_relaxed);
        return zero_and_return(p, tc, n - 1, lac_slot_region(p, s));
    }
    bool zeroed = (tc->zeroed & bit) != 0;
    tc->zeroed &= ~bit; /* bits at and above n stay clear */
    return hand_out(p, tc, s, zeroed);
}

/* Fault in the top of the page-less (CLEAN) regions of a refill in one call. The kernel's work
 * a page is the same as a demand fault's, less the exception and the VMA lookup of each:
 * measured here 2,290 -> 2,170 ns of CPU a page in batches of 16, and about 4% less CPU for
 * lacuna-bench parked. The pool's user writes each region's top at once (a fiber's first frame),
 * so no page is made resident that would not have been. */
static __attribute__((noinline)) void prefault(const lacuna_pool *p, const uint32_t *got, size_t n)
{
    struct iovec iov[LAC_TC_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (lac_state_get(p, got[i]) == LAC_S_CLEAN)
            iov[k++] =
                (struct iovec){lac_slot_region(p, got[i]) + p->region - p->prefault, p->prefault};
    if (k > 1)
        (void)lac_os_prefault(iov, k); /* a page left out faults on use */
}

static __attribute__((noinline)) void *alloc_slow(lacuna_pool *p, lac_tcache *tc)
{
    size_t want = tc ? tc->cap / 2 : 1;
    uint32_t got[LAC_TC_MAX], fresh[LAC_GUARD_BATCH];
    size_t ngot = 0, nfresh = 0;

    pthread_mutex_lock(&p->lock);
    for (bool swept = false;;) {
        lac_take_slots(p, want, got, &ngot, fresh, &nfresh);
        if (ngot + nfresh == 0 && !swept) { /* regions waiting for idle owners: take them now */
            lac_remote_sweep(p, true);
            swept = true;
            continue;
        }
        if (ngot + nfresh > 0 || p->releasing == 0)
            break;
        pthread_cond_wait(&p->released, &p->lock); /* all free slots are out being released */
    }
    pthread_mutex_unlock(&p->lock);

    int err = ENOMEM; /* every slot is live, or no guard could be installed */
    if (nfresh > 0) {
        size_t ok = 0;
        int gerr = lac_guard_slots(p, fresh, nfresh, &ok);
        if (gerr)
            err = gerr;
        for (size_t i = 0; i < ok; i++) {
            lac_state_step(p, fresh[i], LAC_S_CLEAN);
            got[ngot++] = fresh[i];
        }
        if (ok < nfresh) {
            pthread_mutex_lock(&p->lock);
            for (size_t i = ok; i < nfresh; i++) /* still FRESH: retried by the next taker */
                lac_clean_push(p, fresh[i]);
            pthread_mutex_unlock(&p->lock);
        }
    }
    if (ngot == 0 && tc && tc->out_n > 0) {
        /* "Free one and retry" (lacuna.h): what this thread freed last may still wait in its
         * unsent batch, where nothing else can reach it. Keep the batch instead. */
        uint32_t k;
        _Atomic uint32_t *head = batch_take(tc, &k);
        remote_keep(p, tc, head, k); /* its tail links to NULL: it was linked first */
        return tcache_pop(p, tc, lac_tc_n(tc));
    }
    if (ngot == 0) {
        errno = err;
        return NULL;
    }
    if (p->prefault && tc != NULL && ngot > 1)
        prefault(p, got, ngot);
    if (tc == NULL) {
        atomic_fetch_add(&p->allocs, 1);
        return hand_out(p, NULL, got[0], false);
    }
    /* got[0] is the hottest: push it last, then pop it as the warm path would. */
    uint32_t n = lac_tc_n(tc);
    for (size_t i = ngot; i-- > 0;)
        tc_put(p, tc, n++, got[i]);
    count_add(&tc->moved_in, ngot);
    lac_tc_set_n(tc, n);
    return tcache_pop(p, tc, n);
}

/* Release the regions of a thread cache (its owner's, or lacuna_trim's caller's) and empty it:
 * only those, not the shared cache. 0 or the errno of a refused release (those regions go back
 * to warm, retried later). */
int lac_tcache_release(lacuna_pool *p, lac_tcache *tc)
{
    if (atomic_load_explicit(&p->release_mode, memory_order_relaxed) == LACUNA_RELEASE_NEVER)
        return 0; /* such a pool releases nothing */
    uint32_t slots[LAC_TC_MAX];
    size_t k = 0;
    _Atomic uint32_t *c[3];
    pthread_mutex_lock(&p->lock);
    /* Released here, not shelved: a thread that sees another's trim releases only its own. */
    remote_detach(tc, false, c);
    uint32_t n = lac_tc_n(tc);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = tc_slot(p, tc, i);
        if (lac_state_get(p, s) == LAC_S_CLEAN) {
            lac_clean_push(p, s); /* nothing to release */
        } else {
            lac_state_step(p, s, LAC_S_RELEASING);
            slots[k++] = s;
        }
    }
    p->releasing += k;
    lac_tc_set_n(tc, 0);
    tc->zeroed = 0;
    count_add(&tc->moved_out, n);
    pthread_mutex_unlock(&p->lock);
    int err = lac_release_slots(p, slots, k);
    for (int i = 0; i < 3; i++) {
        int e = release_chain(p, c[i]);
        err = err ? err : e;
    }
    return err;
}

/* lacuna_trim on another thread asked every cache to be given back: release this thread's (the
 * shared cache was trimmed then, and what it holds now was freed since). Checked on the slow
 * paths only (every LAC_TICK warm allocs, and a free into a full cache), so the warm
 * path pays nothing; a thread that makes no calls keeps its cache until it does, or exits. */
static void trim_if_asked(lacuna_pool *p, lac_tcache *tc)
{
    uint32_t epoch = atomic_load_explicit(&p->trim_epoch, memory_order_relaxed);
    if (LAC_LIKELY(tc == NULL || tc->trim_seen == epoch))
        return;
    tc->trim_seen = epoch;
    (void)lac_tcache_release(p, tc); /* a refusal is retried by later releases, as a decay's is */
}

static __attribute__((noinline)) void *alloc_bad(void)
{
    LAC_BAD_INPUT("lacuna_alloc", "NULL pool", NULL);
    errno = EINVAL;
    return NULL;
}

/* Everything but the warm path: first call on this thread, empty cache, no cache, a
 * LACUNA_ZERO pool, and every LAC_TICK pops a decay check, so a pool that only ever hits its
 * thread caches still gives idle memory back. */
static __attribute__((noinline)) void *alloc_miss(lacuna_pool *p)
{
    if (p == NULL)
        return alloc_bad();
    if (LAC_UNLIKELY(defer.n > 0))
        defer_run(p);
    lac_tcache *tc = tcache_of(p);
    trim_if_asked(p, tc);
    if (tc == NULL)
        return alloc_slow(p, NULL);
    if ((atomic_load_explicit(&tc->w, memory_order_relaxed) >> 16) == 0) { /* a tick is over */
        tick_reload(tc);
        if (p->decay_ms != LACUNA_DECAY_NEVER)
            (void)lac_release_due(p, false);
    }
    uint32_t n = lac_tc_n(tc);
    if (n == 0)
        n = remote_take(tc);
    return n > 0 ? tcache_pop(p, tc, n) : alloc_slow(p, tc);
}

/* The warm path is a leaf: every other case is a tail call, so it saves no registers. */
void *lacuna_alloc(lacuna_pool *p)
{
    if (LAC_UNLIKELY(tls.alloc_key != p)) /* NULL too */
        return alloc_miss(p);
    lac_tcache *tc = tls.tc[0]; /* never NULL when the key matches */
    uint32_t w = atomic_load_explicit(&tc->w, memory_order_relaxed);
    if (LAC_UNLIKELY((w & LAC_TC_N_MASK) == 0))
        return alloc_miss(p);
    w -= LAC_TC_POP;
    if (LAC_UNLIKELY(w & LAC_TC_BORROW)) /* the tick ran out */
        return alloc_miss(p);
    atomic_store_explicit(&tc->w, w, memory_order_relaxed);
    _Atomic uint32_t *line = tc->lines[w & LAC_TC_N_MASK];
    assert(lac_state_step_ok(atomic_load_explicit(line, memory_order_relaxed), LAC_S_LIVE));
    assert(atomic_load_explicit(line_owner(line), memory_order_relaxed) == tc);
    atomic_store_explicit(line, LAC_S_LIVE, memory_order_relaxed);
    return atomic_load_explicit(lac_line_region(line), memory_order_relaxed);
}

/* ---- free --------------------------------------------------------------------------------- */

static __attribute__((noinline)) int free_slow(lacuna_pool *p, lac_tcache *tc, uint32_t s)
{
    uint32_t batch[LAC_RELEASE_BATCH];
    pthread_mutex_lock(&p->lock);
    if (tc) {
        tcache_drain(p, tc, tc->cap / 2);
        uint32_t n = lac_tc_n(tc);
        tc_put(p, tc, n, s);
        lac_tc_set_n(tc, n + 1);
    } else {
        lac_warm_push(p, s, lac_pool_now_ms(p));
        atomic_fetch_add(&p->frees, 1);
    }
    size_t n = lac_collect_release(p, batch, LAC_RELEASE_BATCH, false);
    pthread_mutex_unlock(&p->lock);
    if (n > 0)
        (void)lac_release_slots(p, batch, n); /* failure: kept warm and retried; not the caller's */
    return 0;
}

static __attribute__((noinline)) int free_miss(lacuna_pool *p, _Atomic uint32_t *line)
{
    if (LAC_UNLIKELY(defer.n > 0))
        defer_run(p);
    lac_tcache *tc = tcache_of(p);
    trim_if_asked(p, tc);
    lac_tcache *o = atomic_load_explicit(line_owner(line), memory_order_relaxed);
    if (tc && o && o != tc)
        return free_remote(p, tc, line, o);
    return free_slow(p, tc, lac_line_slot(p, line));
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

/* Push a region that was live (its state is WARM now) into the calling thread's cache. */
static int free_push(lacuna_pool *p, _Atomic uint32_t *line)
{
    if (tls.free_key == p) {
        lac_tcache *tc = tls.tc[0];
        lac_tcache *o = atomic_load_explicit(line_owner(line), memory_order_relaxed);
        if (o && o != tc)
            return free_remote(p, tc, line, o);
        uint32_t w = atomic_load_explicit(&tc->w, memory_order_relaxed);
        if ((w & LAC_TC_N_MASK) < tc->cap) {
            line_enter(tc, w & LAC_TC_N_MASK, line); /* its owner was no cache */
            atomic_store_explicit(&tc->w, w + 1, memory_order_relaxed);
            return 0;
        }
    }
    return free_miss(p, line);
}

/* A NULL pool, a pool other than the last one this thread used, a region of a later reservation
 * of a grown pool (the chunk table), or bad input. Out of line, so the warm path keeps its one
 * multiply and no stack frame. */
static __attribute__((noinline)) int free_far(lacuna_pool *p, void *region)
{
    uint32_t s;
    if (p == NULL || !lac_slot_of(p, region, &s))
        return free_bad(p, region);
    _Atomic uint32_t *line = lac_state_at(p, s);
    if (!lac_line_unlive(line))
        return free_bad(p, region);
    return free_push(p, line);
}

/* lac_slot_near, with the check that region starts its slot made by the slot's cached address
 * (a load from the line the free then clears a bit in) instead of a multiply back. */
int lacuna_free(lacuna_pool *p, void *region)
{
    if (LAC_UNLIKELY(tls.free_key != p)) /* NULL too */
        return free_far(p, region);
    uintptr_t off = (uintptr_t)region - (uintptr_t)p->first;
    if (LAC_UNLIKELY(lac_relaxed_le(&p->span, off)))
        return free_far(p, region);
    _Atomic uint32_t *line = lac_state_at(p, lac_slot_div(p, off));
    lac_prefetch_w(line); /* another thread's region: its line comes once, writable */
    /* not a region's start, or a slot never handed out */
    if (LAC_UNLIKELY(!lac_relaxed_eq(lac_line_region(line), (uintptr_t)region)))
        return free_far(p, region);
    if (LAC_UNLIKELY(!lac_line_unlive(line)))
        return free_bad(p, region);
    lac_tcache *tc = tls.tc[0];
    /* Another cache's region goes back to it (free_push: also when it handed out none) */
    if (LAC_UNLIKELY(!lac_relaxed_eq(line_owner(line), (uintptr_t)tc)))
        return free_push(p, line);
    uint32_t w = atomic_load_explicit(&tc->w, memory_order_relaxed);
    if (LAC_UNLIKELY((w & LAC_TC_N_MASK) >= tc->cap))
        return free_miss(p, line);
    tc->lines[w & LAC_TC_N_MASK] = line;
    atomic_store_explicit(&tc->w, w + 1, memory_order_relaxed);
    return 0;
}
