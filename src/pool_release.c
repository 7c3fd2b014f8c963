/* pool_release.c — giving freed regions' pages back to the kernel: batching, decay, trim.
 *
 * Owns: which warm slots must go (those over the cache bound, down to 3/4 of it so releases come
 * in batches, and those idle past decay_ms), the release round (one vectored call for up to
 * LAC_RELEASE_BATCH regions, made with the pool lock NOT held), giving back the guards and page
 * tables of long free runs (below), the LACUNA_BACKGROUND decay thread, and lacuna_trim.
 *
 * Give-back: a released region keeps its page-table page alive (a guard marker is a page-table
 * entry: ~136 bytes of page tables per used 64 KiB slot) and its state line (64 bytes). After
 * release rounds, runs of consecutive slots on the clean stack that cover two page-table pages
 * (counting given-back holes and the never-used top next to them) lose their guard markers and
 * are MADV_DONTNEED'd whole, so the kernel frees their page tables, and their state lines are
 * dropped too: they become FRESH (guarded again when next taken) in a hole, or lower fresh. A
 * round costs O(slots used / 64 + clean stack), so it runs when the releases since the last one
 * reach a quarter of the clean stack (amortised O(1) a release) or, once the shared warm ring is
 * empty, two page tables' worth of slots (any number, for the background thread's sweep); and on
 * lacuna_trim. Runs a round gives back that meet are one range, so no page of state lines or
 * page table is left where they meet. Not with mprotect guards (VMAs, not page-table entries: a
 * released run's tables go with DONTNEED).
 *
 * Invariants: a slot being released is RELEASING and on no list, and p->releasing counts it, so
 * an allocation that finds the lists empty waits for the round (p->released) instead of failing.
 * A range the kernel refuses is never lost: it goes back to warm.
 *
 * Does not: decide what a free does (pool_cache.c) or make syscalls (os.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* lac_collect_release, counting a slot idle `early` ms less than decay_ms as aged (the
 * background thread's sweep: see bg_wait). */
static size_t collect(lacuna_pool *p, uint32_t *out, size_t max, bool all, uint32_t early)
{
    if (atomic_load_explicit(&p->release_mode, memory_order_relaxed) == LACUNA_RELEASE_NEVER)
        return 0;
    size_t n = 0;
    size_t target = p->warm_n > p->cache ? p->cache - p->cache / 4 : p->warm_n;
    uint32_t ms = p->decay_ms == LACUNA_DECAY_NEVER ? 0 : lac_pool_now_ms(p);
    while (n < max && p->warm_n > 0) {
        bool over = p->warm_n > target;
        bool aged = p->decay_ms != LACUNA_DECAY_NEVER &&
                    (uint32_t)(ms - p->warm_ms[p->warm_head]) >= p->decay_ms - early;
        if (!all && !over && !aged)
            break;
        uint32_t s = lac_warm_pop_bottom(p);
        lac_state_step(p, s, LAC_S_RELEASING);
        out[n++] = s;
    }
    p->releasing += n;
    return n;
}

size_t lac_collect_release(lacuna_pool *p, uint32_t *out, size_t max, bool all)
{
    return collect(p, out, max, all, 0);
}

/* The operator may want to know why RSS stays up: say it once. */
static void warn_refused(int err)
{
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (err == EINVAL && !atomic_flag_test_and_set(&said))
        fprintf(stderr, "lacuna: the kernel refused to release freed regions with EINVAL (the "
                        "pool's memory is locked: mlock or mlockall); they stay resident and are "
                        "counted in lacuna_stats.release_errors\n");
}

/* Sort ranges by address and join neighbours: regions of adjacent slots, with the guard between
 * them, become one range. The kernel's cost is per range (a VMA lookup and a page-table walk
 * from the top: measured 1.0-1.3 us a 16 KiB region with one page resident, 0.46-0.59 us when
 * 128 neighbours go as one range), and a guard marker survives DONTNEED and FREE. Returns the
 * number of ranges left. Insertion sort: rounds are mostly in address order already (slots are
 * handed out and freed in runs), and n <= LAC_RELEASE_BATCH. */
static size_t join_neighbours(struct iovec *iov, size_t n, size_t guard)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && iov[j].iov_base < iov[j - 1].iov_base; j--) {
            struct iovec t = iov[j];
            iov[j] = iov[j - 1];
            iov[j - 1] = t;
        }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && (char *)iov[k - 1].iov_base + iov[k - 1].iov_len + guard == iov[i].iov_base)
            iov[k - 1].iov_len += guard + iov[i].iov_len;
        else
            iov[k++] = iov[i];
    }
    return k;
}

/* The range of iov[0, k) (sorted, disjoint) that holds r. */
static size_t range_of(const struct iovec *iov, size_t k, const char *r)
{
    size_t lo = 0, hi = k;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((const char *)iov[mid].iov_base <= r)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int lac_release_slots(lacuna_pool *p, const uint32_t *slots, size_t n)
{
    struct iovec iov[LAC_RELEASE_BATCH];
    assert(n <= LAC_RELEASE_BATCH); /* lac_collect_release never takes more */
    if (n == 0)
        return 0;
    size_t len = p->region - p->keep;
    for (size_t i = 0; i < n; i++) {
        char *r = lac_slot_region(p, slots[i]);
        iov[i].iov_base = r;
        iov[i].iov_len = len;
        if (p->keep && (p->flags & LACUNA_ZERO))
            memset(r + len, 0, p->keep); /* measured cheaper than refaulting 1-4 pages */
    }
    /* Only whole regions, and only over guards that are page-table markers or nothing: an
     * mprotect guard is a VMA of its own, and kept tops must stay. */
    int mode = atomic_load_explicit(&p->guard_mode, memory_order_relaxed);
    bool join = p->keep == 0 && (mode == LACUNA_GUARD_MARKER || mode == LACUNA_GUARD_NONE);
    size_t k = join ? join_neighbours(iov, n, p->guard) : n;
    uint64_t calls = 0;
    size_t done = 0;
    int err = lac_os_release(iov, k, p->advice, &done, &calls);
    atomic_fetch_add(&p->release_calls, calls);
    if (err)
        warn_refused(err);

    pthread_mutex_lock(&p->lock);
    size_t released = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = done == k ? 0 : join ? range_of(iov, k, lac_slot_region(p, slots[i])) : i;
        if (j < done) {
            lac_state_step(p, slots[i], LAC_S_CLEAN);
            lac_clean_push(p, slots[i]);
            released++;
        }
    }
    atomic_fetch_add(&p->released_regions, released);
    atomic_store_explicit(&p->released_since,
                          atomic_load_explicit(&p->released_since, memory_order_relaxed) + released,
                          memory_order_relaxed);
    if (done < k) {
        /* The range the kernel refused (an mlocked stack, say, with the neighbours it was joined
         * with) goes to the top: reused first, and never again first in line, where it would
         * block every later release round. Untried ones go to the bottom, retried next round. */
        atomic_fetch_add(&p->release_errors, 1);
        uint32_t now = lac_pool_now_ms(p);
        for (size_t i = n; i-- > 0;) {
            size_t j = join ? range_of(iov, k, lac_slot_region(p, slots[i])) : i;
            if (j > done) {
                lac_state_step(p, slots[i], LAC_S_WARM);
                lac_warm_push_bottom(p, slots[i]);
            }
        }
        for (size_t i = 0; i < n; i++) {
            size_t j = join ? range_of(iov, k, lac_slot_region(p, slots[i])) : i;
            if (j == done) {
                lac_state_step(p, slots[i], LAC_S_WARM);
                lac_warm_push(p, slots[i], now);
            }
        }
    }
    p->releasing -= n;
    pthread_cond_broadcast(&p->released);
    pthread_mutex_unlock(&p->lock);
    return err;
}

/* ---- give-back of free runs -------------------------------------------------------------- */

typedef struct run {
    size_t a, b;   /* slots [a, b): from the clean stack, RETIRING */
    size_t la, rb; /* [la, a) and [b, rb): the holes next to it, taken off the list meanwhile */
} run;

/* The first slot in [from, to) whose on_clean bit is `set`, or to. */
static size_t bit_next(const uint64_t *w, size_t from, size_t to, bool set)
{
    while (from < to) {
        uint64_t word = set ? w[from / 64] : ~w[from / 64];
        word &= ~(uint64_t)0 << (from % 64);
        if (word)
            return from - from % 64 + (size_t)__builtin_ctzll(word) < to
                       ? from - from % 64 + (size_t)__builtin_ctzll(word)
                       : to;
        from = from - from % 64 + 64;
    }
    return to;
}

/* Index of the first hole starting at or after b. */
static size_t hole_at(const lacuna_pool *p, size_t b)
{
    size_t lo = 0, hi = p->nholes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->holes[2 * mid] < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Slots of the hole ending at a / starting at b (0 if none). */
static size_t hole_next_to(const lacuna_pool *p, size_t a, size_t b)
{
    size_t i = hole_at(p, b), n = 0;
    if (i < p->nholes && p->holes[2 * i] == b)
        n += p->holes[2 * i + 1] - b;
    if (i > 0 && p->holes[2 * (i - 1) + 1] == a)
        n += a - p->holes[2 * (i - 1)];
    return n;
}

/* Take the holes next to r off the list into r->la, r->rb: the kernel frees a page-table page
 * only when one DONTNEED covers all of its 2 MiB, so the run's range must reach across them. */
static void absorb_holes(lacuna_pool *p, run *r)
{
    size_t i = hole_at(p, r->b);
    r->la = r->a;
    r->rb = r->b;
    if (i < p->nholes && p->holes[2 * i] == r->b) {
        r->rb = p->holes[2 * i + 1];
        memmove(p->holes + 2 * i, p->holes + 2 * i + 2, (p->nholes - i - 1) * 2 * sizeof *p->holes);
        p->nholes--;
    }
    if (i > 0 && p->holes[2 * (i - 1) + 1] == r->a) {
        r->la = p->holes[2 * (i - 1)];
        memmove(p->holes + 2 * (i - 1), p->holes + 2 * i, (p->nholes - i) * 2 * sizeof *p->holes);
        p->nholes--;
    }
}

/* Runs of clean-stack slots worth giving back, at most max (pool lock held); they become
 * RETIRING, leave the clean stack, and count as releasing (an alloc finding the lists empty
 * waits for them). */
static size_t collect_runs(lacuna_pool *p, run *out, size_t max)
{
    size_t n = 0, total = 0;
    unsigned nch = atomic_load_explicit(&p->nchunks, memory_order_relaxed);
    for (unsigned c = 0; c < nch && n < max; c++) {
        size_t lo = p->chunks[c].start, hi = lo + p->chunks[c].n;
        hi = hi < p->fresh ? hi : p->fresh;
        for (size_t s = bit_next(p->on_clean, lo, hi, true); s < hi && n < max;) {
            size_t e = bit_next(p->on_clean, s, hi, false);
            /* A run the previous one reaches (through the hole between, which it took along)
             * goes with it: its length counts, and retire_states drops the page they share. */
            size_t with = n > 0 && out[n - 1].rb == s ? s - out[n - 1].la : 0;
            size_t len =
                e - s + with + hole_next_to(p, s, e) + (e == p->fresh ? p->capacity - e : 0);
            if (len >= p->give_back_min) {
                out[n] = (run){.a = s, .b = e};
                absorb_holes(p, &out[n]);
                total += out[n].rb - out[n].la;
                n++;
            }
            s = bit_next(p->on_clean, e, hi, true);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t s = out[i].a; s < out[i].b; s++) {
            lac_state_step(p, s, LAC_S_RETIRING);
            p->on_clean[s / 64] &= ~((uint64_t)1 << (s % 64));
        }
    }
    if (total > 0) { /* O(clean stack): drop them from it */
        size_t k = 0;
        for (size_t i = 0; i < p->clean_n; i++)
            if (lac_state_get(p, p->clean[i]) != LAC_S_RETIRING)
                p->clean[k++] = p->clean[i];
        p->clean_n = k;
        p->releasing += total;
    }
    return n;
}

/* Drop the state lines of the runs (RETIRING, and the holes taken along: ours): whole pages by
 * DONTNEED, so they read as FRESH (0) and cost nothing; the run's lines on pages shared with
 * other slots are stored. Runs that meet (collect_runs took the hole between along with the
 * first) are one range: the page where they meet is ours whole, and would otherwise stay
 * resident, all FRESH, once the hole they make together is never taken again. */
static void retire_states(lacuna_pool *p, const run *runs, size_t n)
{
    size_t pg = (size_t)1 << p->page_shift;
    struct iovec iov[LAC_GIVE_BACK_RUNS];
    size_t span[LAC_GIVE_BACK_RUNS]; /* the iovec of each run */
    uintptr_t hi_of[LAC_GIVE_BACK_RUNS];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        /* Across the holes taken along (FRESH: 0 already), or the pages at a run's edges would
         * stay, one or two per run. */
        uintptr_t lo = (uintptr_t)lac_state_at(p, runs[i].la);
        uintptr_t hi = (uintptr_t)lac_state_at(p, runs[i].rb);
        if (k == 0 || runs[i].la != runs[i - 1].rb)
            iov[k++].iov_base = (void *)((lo + pg - 1) & ~(uintptr_t)(pg - 1));
        hi_of[k - 1] = hi & ~(uintptr_t)(pg - 1);
        span[i] = k - 1;
    }
    for (size_t j = 0; j < k; j++) {
        uintptr_t plo = (uintptr_t)iov[j].iov_base;
        iov[j].iov_len = plo < hi_of[j] ? hi_of[j] - plo : 0;
    }
    size_t done = 0;
    uint64_t calls = 0;
    (void)lac_os_release(iov, k, LAC_ADV_DONTNEED, &done, &calls);
    atomic_fetch_add(&p->release_calls, calls);
    for (size_t i = 0; i < n; i++) {
        /* Lines on dropped pages read 0 (FRESH) now: only the others are stored. */
        size_t j = span[i];
        uintptr_t plo = (uintptr_t)iov[j].iov_base, len = j < done ? iov[j].iov_len : 0;
        for (size_t s = runs[i].a; s < runs[i].b; s++)
            if ((uintptr_t)lac_state_at(p, s) - plo >= len)
                lac_state_step(p, s, LAC_S_FRESH);
    }
}

/* DONTNEED what the lock-guarded side tables no longer use (pool lock held): the clean stack
 * above clean_n, the warm ring when empty, the bitmap above fresh. Rare: after a give-back. */
static void trim_side(lacuna_pool *p, size_t old_fresh)
{
    size_t pg = (size_t)1 << p->page_shift, m4 = p->capacity_max * 4;
    struct iovec iov[4];
    size_t k = 0;
    /* Whole pages from the first one wholly unused, up to the page of the highest byte used: no
     * further, and never onto the next array's first page (the arrays share edge pages). Rounding
     * that top page down instead kept one page per round (clean_hi falls round by round). */
#define LAC_SPAN(base, from_bytes, to_bytes, end_bytes)                                            \
    do {                                                                                           \
        size_t to_ = (to_bytes) + pg - 1 < (end_bytes) ? (to_bytes) + pg - 1 : (end_bytes);        \
        uintptr_t lo_ = ((uintptr_t)(base) + (from_bytes) + pg - 1) & ~(uintptr_t)(pg - 1);        \
        uintptr_t hi_ = ((uintptr_t)(base) + to_) & ~(uintptr_t)(pg - 1);                          \
        if (lo_ < hi_)                                                                             \
            iov[k++] = (struct iovec){(void *)lo_, hi_ - lo_};                                     \
    } while (0)
    LAC_SPAN(p->clean, p->clean_n * 4, p->clean_hi * 4, m4);
    if (p->warm_n == 0) {
        p->warm_head = 0;
        LAC_SPAN(p->warm, 0, p->capacity * 4, m4);
        LAC_SPAN(p->warm_ms, 0, p->capacity * 4, m4);
    }
    LAC_SPAN(p->on_clean, (p->fresh + 63) / 64 * 8, (old_fresh + 63) / 64 * 8,
             (p->capacity_max + 63) / 64 * 8);
#undef LAC_SPAN
    size_t done = 0;
    uint64_t calls = 0;
    if (k > 0)
        (void)lac_os_release(iov, k, LAC_ADV_DONTNEED, &done, &calls);
    atomic_fetch_add(&p->release_calls, calls);
    p->clean_hi = p->clean_n;
}

/* The end of the part of [s, e) in s's chunk (slots of two chunks are not address neighbours
 * unless the second was placed right after the first; the iovecs merge those again). */
static size_t run_end_in_chunk(const lacuna_pool *p, size_t s, size_t e)
{
    unsigned n = atomic_load_explicit(&p->nchunks, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        size_t end = p->chunks[i].start + p->chunks[i].n;
        if (s >= p->chunks[i].start && s < end)
            return e < end ? e : end;
    }
    return e;
}

/* Give back the guards, page tables and state lines of long free runs (pool lock NOT held). Due
 * when `all` (trim) or enough was released since the last round; for an `idle` caller (the
 * background thread's sweep) also once the shared warm ring is empty and anything was released
 * since: no call may come to finish the job, and a sweep that drained the ring in two parts
 * would otherwise leave the second part's slots holding their page tables for good. */
static void give_back(lacuna_pool *p, bool all, bool idle)
{
    int mode = atomic_load_explicit(&p->guard_mode, memory_order_relaxed);
    if (mode == LACUNA_GUARD_MPROTECT)
        return;
    run runs[LAC_GIVE_BACK_RUNS];
    struct iovec iov[LAC_GIVE_BACK_RUNS + LAC_CHUNKS_MAX]; /* runs, split where chunks part */
    /* The decay tick of the warm path comes here every LAC_TICK allocations: no lock unless a round
     * can be due (it never is below give_back_min). */
    size_t least = idle ? 1 : p->give_back_min;
    if (!all && atomic_load_explicit(&p->released_since, memory_order_relaxed) < least)
        return;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        /* Due once the releases since the last round could make a quarter of the clean stack
         * new, or, once the shared warm ring drained (its last regions were what broke the runs
         * after a burst), at two page tables' worth (idle: any). */
        size_t due =
            p->clean_n / 4 > p->give_back_min && p->warm_n > 0 ? p->clean_n / 4 : p->give_back_min;
        if (idle && p->warm_n == 0)
            due = 1;
        if (!all && atomic_load_explicit(&p->released_since, memory_order_relaxed) < due) {
            pthread_mutex_unlock(&p->lock);
            return;
        }
        atomic_store_explicit(&p->released_since, 0, memory_order_relaxed);
        size_t n = collect_runs(p, runs, LAC_GIVE_BACK_RUNS), total = 0, held = 0, k = 0;
        for (size_t i = 0; i < n; i++) {
            total += runs[i].b - runs[i].a;
            held += runs[i].rb - runs[i].la;
            for (size_t s = runs[i].la, e; s < runs[i].rb; s = e) { /* chunk by chunk */
                e = run_end_in_chunk(p, s, runs[i].rb);
                char *at = lac_slot_addr(p, s) - p->guard;
                if (k > 0 && (char *)iov[k - 1].iov_base + iov[k - 1].iov_len == at)
                    iov[k - 1].iov_len += (e - s) * p->stride; /* one range: whole tables */
                else
                    iov[k++] = (struct iovec){at, (e - s) * p->stride};
            }
        }
        pthread_mutex_unlock(&p->lock);
        if (n == 0)
            return;

        /* Whatever the kernel says, these slots are re-guarded on their next take, and their
         * pages were released already: FRESH is right even if this fails. */
        size_t done = 0;
        uint64_t calls = 0;
        (void)lac_os_unguard(iov, k, mode == LACUNA_GUARD_MARKER, &done, &calls);
        atomic_fetch_add(&p->release_calls, calls);
        retire_states(p, runs, n);

        pthread_mutex_lock(&p->lock);
        size_t old_fresh = p->fresh;
        for (size_t i = n; i-- > 0;) /* highest first: the top ones lower fresh */
            lac_holes_add(p, runs[i].la, runs[i].rb);
        p->releasing -= held;
        atomic_fetch_add(&p->given_back, total);
        trim_side(p, old_fresh);
        pthread_cond_broadcast(&p->released);
        pthread_mutex_unlock(&p->lock);
        if (n < LAC_GIVE_BACK_RUNS)
            return;
        all = true; /* more runs than one round takes */
    }
}

/* lac_release_due, with collect's `early`; idle: the background thread's sweep (give_back). */
static int release_due(lacuna_pool *p, bool all, uint32_t early, bool idle)
{
    uint32_t slots[LAC_RELEASE_BATCH];
    for (bool first = true;; first = false) {
        pthread_mutex_lock(&p->lock);
        if (first) /* regions freed back to idle threads decay too */
            lac_remote_sweep(p, all);
        size_t n = collect(p, slots, LAC_RELEASE_BATCH, all, early);
        pthread_mutex_unlock(&p->lock);
        if (n == 0)
            break;
        int err = lac_release_slots(p, slots, n);
        if (err) /* failed slots went back to warm: stop, or trim would retry them forever */
            return err;
    }
    if (atomic_load_explicit(&p->release_mode, memory_order_relaxed) != LACUNA_RELEASE_NEVER)
        give_back(p, all, idle);
    return 0;
}

int lac_release_due(lacuna_pool *p, bool all)
{
    return release_due(p, all, 0, false);
}

int lacuna_trim(lacuna_pool *p)
{
    if (p == NULL) {
        LAC_BAD_INPUT("lacuna_trim", "NULL pool", NULL);
        return EINVAL;
    }
    if (p->trim_hook) /* a fiber stack pool: parked fibers' pages below their stack pointers */
        p->trim_hook(p);
    /* Other threads' caches: each gives itself back on its owner's next slow path. */
    uint32_t epoch = atomic_fetch_add_explicit(&p->trim_epoch, 1, memory_order_relaxed) + 1;
    lac_tcache *tc = lac_tcache_peek(p); /* the calling thread's, if any: never make one here */
    if (tc) {
        tc->trim_seen = epoch;
        int err = lac_tcache_release(p, tc);
        if (err) /* as lac_release_due does: stop at a refusal, the next trim retries */
            return err;
    }
    return lac_release_due(p, true);
}

/* ---- background decay --------------------------------------------------------------------- */

/* The background thread sweeps when the oldest warm region comes due, not on a fixed period (a
 * period of decay_ms / 2 kept a burst's last regions up to 1.5 decay_ms). A sweep releases what
 * has been idle decay_ms - slack or more, sweeps come at least slack / 2 apart, and the next is
 * set for when the oldest left reaches decay_ms - slack / 2: regions freed close together go in
 * one round, and each is released once idle between 15/16 of decay_ms and decay_ms (plus a tick
 * of the coarse clock and the scheduler's delay). Pool calls still decay at decay_ms exactly. */
static uint32_t bg_slack(const lacuna_pool *p)
{
    return p->decay_ms / 16;
}

/* ms until the next sweep (pool lock held, right after one; refused: the kernel refused a
 * release in it). */
static unsigned bg_wait(const lacuna_pool *p, bool refused)
{
    if (p->decay_ms == LACUNA_DECAY_NEVER)
        return 1000; /* no decay: the sweep only trims a cache over its bound */
    if (refused)
        return p->decay_ms / 2 + 1; /* mlocked memory, say: retry calmly, not every slack */
    uint32_t slack = bg_slack(p), min = slack / 2 ? slack / 2 : 1;
    uint32_t at = p->decay_ms - slack / 2; /* idle time at which to sweep for the oldest */
    if (p->warm_n == 0)
        return at; /* a region freed from now on comes due no sooner */
    uint32_t age = lac_pool_now_ms(p) - p->warm_ms[p->warm_head];
    return age < at && at - age > min ? at - age : min;
}

static void *background(void *arg)
{
    lacuna_pool *p = arg;
    bool refused = false;
    pthread_mutex_lock(&p->lock);
    while (!p->bg_stop) {
        unsigned wait = bg_wait(p, refused);
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += wait / 1000;
        t.tv_nsec += (long)(wait % 1000) * 1000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->bg_wake, &p->lock, &t);
        if (p->bg_stop)
            break;
        pthread_mutex_unlock(&p->lock);
        refused = release_due(p, false, bg_slack(p), true) != 0;
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int lac_background_start(lacuna_pool *p)
{
    int err = pthread_create(&p->bg, NULL, background, p);
    if (err == 0)
        p->bg_running = true;
    return err;
}

void lac_background_stop(lacuna_pool *p)
{
    if (!p->bg_running)
        return;
    pthread_mutex_lock(&p->lock);
    p->bg_stop = true;
    pthread_cond_signal(&p->bg_wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->bg, NULL);
    p->bg_running = false;
}
