/* pool_release.c — giving freed regions' pages back to the kernel: batching, decay, trim.
 *
 * Owns: which warm slots must go (those over the cache bound, down to 3/4 of it so releases come
 * in batches, and those idle past decay_ms), the release round (one vectored call for up to
 * LAC_RELEASE_BATCH regions, made with the pool lock NOT held), the LACUNA_BACKGROUND decay
 * thread, and lacuna_trim.
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

size_t lac_collect_release(lacuna_pool *p, uint32_t *out, size_t max, bool all)
{
    if (atomic_load_explicit(&p->release_mode, memory_order_relaxed) == LACUNA_RELEASE_NEVER)
        return 0;
    size_t n = 0;
    size_t target = p->warm_n > p->cache ? p->cache - p->cache / 4 : p->warm_n;
    uint32_t ms = p->decay_ms == LACUNA_DECAY_NEVER ? 0 : lac_pool_now_ms(p);
    while (n < max && p->warm_n > 0) {
        bool over = p->warm_n > target;
        bool aged = p->decay_ms != LACUNA_DECAY_NEVER &&
                    (uint32_t)(ms - p->warm_ms[p->warm_head]) >= p->decay_ms;
        if (!all && !over && !aged)
            break;
        uint32_t s = lac_warm_pop_bottom(p);
        lac_state_step(p, s, LAC_S_RELEASING);
        out[n++] = s;
    }
    p->releasing += n;
    return n;
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
    uint64_t calls = 0;
    size_t done = 0;
    int err = lac_os_release(iov, n, p->advice, &done, &calls);
    atomic_fetch_add(&p->release_calls, calls);
    atomic_fetch_add(&p->released_regions, done);
    if (err)
        warn_refused(err);

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < done; i++) {
        lac_state_step(p, slots[i], LAC_S_CLEAN);
        p->clean[p->clean_n++] = slots[i];
    }
    if (done < n) {
        /* The range the kernel refused (an mlocked stack, say) goes to the top: reused first,
         * and never again first in line, where it would block every later release round. */
        atomic_fetch_add(&p->release_errors, 1);
        lac_state_step(p, slots[done], LAC_S_WARM);
        lac_warm_push(p, slots[done], lac_pool_now_ms(p));
        for (size_t i = n; i-- > done + 1;) { /* untried: to the bottom, retried next round */
            lac_state_step(p, slots[i], LAC_S_WARM);
            lac_warm_push_bottom(p, slots[i]);
        }
    }
    p->releasing -= n;
    pthread_cond_broadcast(&p->released);
    pthread_mutex_unlock(&p->lock);
    return err;
}

int lac_release_due(lacuna_pool *p, bool all)
{
    uint32_t slots[LAC_RELEASE_BATCH];
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t n = lac_collect_release(p, slots, LAC_RELEASE_BATCH, all);
        pthread_mutex_unlock(&p->lock);
        if (n == 0)
            return 0;
        int err = lac_release_slots(p, slots, n);
        if (err) /* failed slots went back to warm: stop, or trim would retry them forever */
            return err;
    }
}

int lacuna_trim(lacuna_pool *p)
{
    if (p == NULL) {
        LAC_BAD_INPUT("lacuna_trim", "NULL pool", NULL);
        return EINVAL;
    }
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
        (void)lac_release_due(p, false);
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
