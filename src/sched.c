/* sched.c — the schedulers: one per worker (an OS thread), grouped into runtimes whose fibers
 * move between workers (M:N); run queues, work stealing, idle sleep, context switches, a fiber's
 * start and end, and the worker's own loop (lacuna_run, a thread-context lacuna_join).
 *
 * Owns: the thread-local scheduler (created lazily, freed when its runtime runs out of fibers),
 * the runtime a thread is home of (lac_rt: kept for the thread's life, then reused, or kept dead
 * when the thread leaves fibers behind), lacuna_run's helper workers, the run queues,
 * every lac_ctx_switch and the sanitizer/valgrind bookkeeping around it, and the moment a fiber
 * ends.
 *
 * Invariants:
 *   - Fibers switch directly to one another. An ending fiber keeps its stack as a spare for this
 *     worker's next spawn (up to LAC_SPARE_MAX) and switches straight to the next fiber; only
 *     past that bound does it switch to the worker's own stack (the "main" context, inside
 *     lac_sched_loop), which frees it. Spares left when main runs out of ready fibers go back
 *     to the pool there. Library work never runs on a user fiber's stack.
 *   - A fiber is visible to other workers (a run queue, a waiter list) only once its context is
 *     saved: what a switch must do after the switching fiber has left (queue it, release the
 *     lock that guards its waiter) is recorded in s->after and done by the context that runs
 *     next (after_switch), on the same worker. So no worker resumes a fiber still running.
 *   - After any switch, a fiber reads its worker from f->worker (set by whoever resumed it), never
 *     from thread-local storage read before: it may resume on another thread.
 *   - Order on a worker: runnext (the fiber the last hand-off woke: a channel operation, a join),
 *     then the stack of hand-offs it displaced, then the spawner the last spawn preempted (kept
 *     beside the queue until its child first blocks, yields or spawns: then it goes to the
 *     queue's front), then the run queue (spawned, yielding, timed-out and fd-ready fibers join
 *     its back). Hand-offs take at most LAC_RUNNEXT_MAX turns in a row while others wait. Only
 *     the run queue is stolen from (half of it, by an idle worker from a random victim), never
 *     runnext, the hand-offs or the spawner, nor pinned fibers. Fibers woken from outside
 *     the runtime wait in rt's injection queue; main takes them when idle and every
 *     LAC_POLL_EVERY-th decision.
 *   - A worker with nothing to run, steal or take sleeps in epoll (its fds, its next timer, its
 *     eventfd). The last worker to fall asleep decides: no fiber left (done), or none can ever
 *     wake (EDEADLK: no timer, no fd wait, no thread outside blocked on one); then all leave.
 *     A helper that cannot make its epoll or eventfd (the fd limit) naps instead, a millisecond
 *     at most, and tries again; the home reports it (lacuna_run).
 *   - A helper never takes fibers with it: one that leaves early (its epoll_wait failed: the run
 *     ends with that error) or on another worker's error leaves what it holds (ready fibers,
 *     timers, fd waits) to the home, which takes it once every helper is joined (helper_adopt).
 *
 * Does not: allocate stacks or control blocks (fiber.c), keep timers or fds (wait.c), preempt.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef LACUNA_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#define LAC_VG_REGISTER(lo, hi) VALGRIND_STACK_REGISTER(lo, hi)
#define LAC_VG_DEREGISTER(id)   VALGRIND_STACK_DEREGISTER(id)
#else
#define LAC_VG_REGISTER(lo, hi) ((void)(lo), (void)(hi), 0u)
#define LAC_VG_DEREGISTER(id)   ((void)(id))
#endif
#ifdef LAC_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef LAC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define LAC_POLL_EVERY 64   /* scheduling decisions between polls (timers, fds, injections) */
#define LAC_SPIN_IDLE  2000 /* looks for work before an idle worker sleeps (~20-50 us) */
#define LAC_SPIN_PEEK  16   /* of those, every how many also look at other workers' queues */

enum { LAC_AFTER_NONE = 0, LAC_AFTER_PUSH_BACK, LAC_AFTER_UNLOCK };

__thread lac_sched *lac_tls_sched;
__thread uint64_t lac_tls_id;
static __thread lac_rt *tls_rt; /* the runtime this thread is home of, across its schedulers */
static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER; /* rt_free */
static lac_rt *rt_free;                                     /* runtimes to reuse */
static _Atomic uint64_t next_id = 1;                        /* 2^64 thread starts never wrap */
_Atomic long lac_foreign_blocked;
static _Atomic unsigned workers_conf; /* lacuna_set_workers; 0 = the default */

/* ---- run queue ----------------------------------------------------------------------------- */

static inline void q_lock(lac_sched *s)
{
    if (s->multi)
        lac_spin_lock(&s->qlock);
}

static inline void q_unlock(lac_sched *s)
{
    if (s->multi)
        lac_spin_unlock(&s->qlock);
}

/* The queue's length changes under qlock (or with one worker); thieves peek at it without. */
static inline void nq_add(lac_sched *s, long d)
{
    atomic_store_explicit(&s->nq, atomic_load_explicit(&s->nq, memory_order_relaxed) + (size_t)d,
                          memory_order_relaxed);
}

static inline size_t nq_of(const lac_sched *s)
{
    return atomic_load_explicit(&s->nq, memory_order_relaxed);
}

static inline void link_back(lac_sched *s, lac_fiber *f)
{
    f->next = NULL;
    if (s->tail)
        s->tail->next = f;
    else
        s->head = f;
    s->tail = f;
    nq_add(s, 1);
}

/* rt->lock held: a sleeping worker other than `not` that may run f (NULL: any fiber), marked
 * awake (the caller kicks it once the lock is released), or NULL. */
static lac_sched *take_sleeper(lac_rt *rt, const lac_sched * not, const lac_fiber *f)
{
    for (unsigned i = 0, hi = rt->whi; i < hi; i++) {
        lac_sched *c = rt->w[i];
        if (c && c != not &&c->sleeping && (f == NULL || f->pin == 0 || f->pin == c->idx + 1)) {
            c->sleeping = false;
            atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_relaxed);
            return c;
        }
    }
    return NULL;
}

/* Wake one sleeping worker of the runtime, other than s, if any sleeps: new work is queued. */
static void kick_one(lac_sched *s)
{
    lac_rt *rt = s->rt;
    atomic_thread_fence(memory_order_seq_cst); /* the push, then the check: see idle() */
    if (atomic_load_explicit(&rt->nidle, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&rt->lock);
    lac_sched *w = take_sleeper(rt, s, NULL);
    pthread_mutex_unlock(&rt->lock);
    if (w)
        lac_wait_kick(w);
}

static inline void push_back(lac_sched *s, lac_fiber *f)
{
    lac_state_set(f, LAC_F_READY);
    q_lock(s);
    link_back(s, f);
    q_unlock(s);
    if (s->multi)
        kick_one(s);
}

static inline void push_front(lac_sched *s, lac_fiber *f)
{
    lac_state_set(f, LAC_F_READY);
    q_lock(s);
    f->next = s->head;
    s->head = f;
    if (s->tail == NULL)
        s->tail = f;
    nq_add(s, 1);
    q_unlock(s);
    if (s->multi)
        kick_one(s);
}

static inline lac_fiber *pop_front(lac_sched *s)
{
    q_lock(s);
    lac_fiber *f = s->head;
    if (f) {
        s->head = f->next;
        if (s->head == NULL)
            s->tail = NULL;
        nq_add(s, -1);
    }
    q_unlock(s);
    return f;
}

void lac_sched_push(lac_sched *s, lac_fiber *f)
{
    push_back(s, f);
}

/* A hand-off: f was made ready by the running fiber (a channel operation, the end of the fiber
 * it joins) and runs next, inheriting the rest of the turn (Go's runnext). Where one fiber
 * readies several before it parks (a parent collecting its children's results), the one it
 * displaces goes on a stack of hand-offs that runs before the queue: the woken fibers run to
 * their end (freeing their stacks) before anything new starts, so spawn trees and request chains
 * stay depth-first and few stacks are live. */
static inline void hand_off(lac_sched *s, lac_fiber *f)
{
    lac_state_set(f, LAC_F_READY);
    if (s->runnext) {
        s->runnext->next = s->handed;
        s->handed = s->runnext;
    }
    s->runnext = f;
}

static inline bool has_ready(const lac_sched *s)
{
    return s->runnext != NULL || s->handed != NULL || s->spawner != NULL || nq_of(s) != 0;
}

/* Fibers other workers made ready in s's inbox join the back of its queue, in the order they were
 * pushed; with the queue empty the first is returned instead (saving a lock round trip), else
 * NULL. */
static lac_fiber *take_inbox(lac_sched *s)
{
    lac_fiber *f = atomic_exchange_explicit(&s->inbox, NULL, memory_order_acquire), *fifo = NULL;
    while (f) { /* newest first: reverse */
        lac_fiber *nx = f->next;
        f->next = fifo;
        fifo = f;
        f = nx;
    }
    if (fifo == NULL)
        return NULL;
    if (nq_of(s) == 0) {
        f = fifo;
        fifo = f->next;
    }
    if (fifo) {
        q_lock(s);
        for (lac_fiber *nx; fifo; fifo = nx) {
            nx = fifo->next;
            link_back(s, fifo);
        }
        q_unlock(s);
    }
    return f;
}

/* The next fiber to run here: runnext, then the stack of hand-offs, then the spawner the last
 * spawn preempted, then the queue. Hand-offs get at most LAC_RUNNEXT_MAX turns in a row while
 * others wait (two fibers handing off to each other forever must not starve them): then the
 * spawner or the queue's head runs. NULL: nothing is ready. */
static inline lac_fiber *next_ready(lac_sched *s)
{
    if (LAC_LIKELY(s->runnext_streak < LAC_RUNNEXT_MAX) ||
        (nq_of(s) == 0 && s->handed == NULL && s->spawner == NULL &&
         atomic_load_explicit(&s->inbox, memory_order_relaxed) == NULL)) {
        lac_fiber *f = s->runnext;
        if (f) {
            s->runnext = NULL;
            s->runnext_streak++;
            return f;
        }
        if ((f = s->handed) != NULL) {
            s->handed = f->next;
            s->runnext_streak++;
            return f;
        }
    }
    /* The turn goes to the queue, and the displaced hand-offs join its back: runnext alone (two
     * fibers handing off to each other) can no longer keep them waiting. */
    if (s->handed) {
        q_lock(s);
        while (s->handed) {
            lac_fiber *h = s->handed;
            s->handed = h->next;
            link_back(s, h);
        }
        q_unlock(s);
    }
    s->runnext_streak = 0;
    lac_fiber *f = s->spawner;
    if (f) {
        s->spawner = NULL;
        return f;
    }
    if (LAC_UNLIKELY(atomic_load_explicit(&s->inbox, memory_order_relaxed) != NULL) &&
        (f = take_inbox(s)) != NULL)
        return f;
    return nq_of(s) ? pop_front(s) : NULL;
}

/* ---- work from elsewhere: injection, stealing ------------------------------------------------ */

/* Whether f may run on worker s (a pinned fiber only on its own). */
static inline bool runs_on(const lac_fiber *f, const lac_sched *s)
{
    return f->pin == 0 || f->pin == s->idx + 1;
}

/* rt->lock held: runs_on, and a fiber pinned to a worker that has left (lacuna_run ended) moves
 * to s for good rather than wait for a worker that may never come back. */
static inline bool takes(lac_rt *rt, lac_fiber *f, lac_sched *s)
{
    if (runs_on(f, s))
        return true;
    if (f->pin - 1u < LAC_WORKERS_MAX && rt->w[f->pin - 1] != NULL)
        return false;
    f->pin = (uint16_t)(s->idx + 1);
    return true;
}

/* Fibers woken from outside the runtime (a fiber pinned here and woken by another worker comes
 * through the inbox instead): into this worker's queue. */
static void take_injected(lac_sched *s)
{
    lac_rt *rt = s->rt;
    if (atomic_load_explicit(&rt->ninj, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&rt->lock);
    lac_fiber **pp = &rt->inj_head, *prev = NULL;
    while (*pp) {
        lac_fiber *f = *pp;
        if (!takes(rt, f, s)) {
            prev = f;
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        if (rt->inj_tail == f)
            rt->inj_tail = prev;
        atomic_fetch_sub_explicit(&rt->ninj, 1, memory_order_relaxed);
        lac_state_set(f, LAC_F_READY);
        q_lock(s);
        link_back(s, f);
        q_unlock(s);
    }
    pthread_mutex_unlock(&rt->lock);
}

static uint64_t rng_next(lac_sched *s)
{
    uint64_t x = s->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s->rng = x;
}

/* Take half of a random victim's run queue (not its pinned fibers). The first stolen fiber is
 * returned, the others join this worker's queue. NULL: nothing to steal anywhere. */
static lac_fiber *steal(lac_sched *s)
{
    lac_rt *rt = s->rt;
    unsigned hi = atomic_load_explicit(&rt->whi, memory_order_acquire);
    unsigned start = (unsigned)(rng_next(s) % hi);
    for (unsigned k = 0; k < hi; k++) {
        lac_sched *v = atomic_load_explicit(&rt->w[(start + k) % hi], memory_order_acquire);
        if (v == NULL || v == s || nq_of(v) == 0)
            continue;
        lac_fiber *got = NULL, *got_tail = NULL;
        size_t n = 0;
        lac_spin_lock(&v->qlock);
        size_t n_v = nq_of(v), want = n_v - n_v / 2;
        lac_fiber **pp = &v->head, *prev = NULL;
        while (*pp && n < want) {
            lac_fiber *f = *pp;
            if (f->pin) {
                prev = f;
                pp = &f->next;
                continue;
            }
            *pp = f->next;
            if (v->tail == f)
                v->tail = prev;
            nq_add(v, -1);
            f->next = NULL;
            if (got_tail)
                got_tail->next = f;
            else
                got = f;
            got_tail = f;
            n++;
        }
        lac_spin_unlock(&v->qlock);
        if (got == NULL)
            continue;
        if (got->next) {
            q_lock(s);
            for (lac_fiber *f = got->next, *nx; f; f = nx) {
                nx = f->next;
                link_back(s, f);
            }
            q_unlock(s);
        }
        return got;
    }
    return NULL;
}

/* ---- switching ----------------------------------------------------------------------------- */

/* Sanitizer bookkeeping around lac_ctx_switch. `from` NULL = the thread's own stack; a dying
 * `from` never resumes, so ASan may drop its fake stack. */
static inline void san_before(lac_sched *s, lac_fiber *from, lac_fiber *to, bool dying)
{
    (void)s, (void)from, (void)to, (void)dying;
#ifdef LAC_ASAN
    void **fake = from == NULL ? &s->main_fake : dying ? NULL : &from->asan_fake;
    s->from_main = from == NULL;
    if (to)
        __sanitizer_start_switch_fiber(fake, to->stack, to->stack_size);
    else
        __sanitizer_start_switch_fiber(fake, s->main_bottom, s->main_size);
#endif
#ifdef LAC_TSAN
    __tsan_switch_to_fiber(to ? to->tsan : s->tsan_main, 0);
#endif
}

/* Now running `self` (NULL = the thread's own stack) on worker s after a switch. */
static inline void san_after(lac_sched *s, lac_fiber *self)
{
    (void)s, (void)self;
#ifdef LAC_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(self ? self->asan_fake : s->main_fake, &bottom, &size);
    if (s->from_main) {
        s->main_bottom = bottom;
        s->main_size = size;
    }
#endif
}

/* Out of line, so the uncontended lock inlined everywhere is one exchange and a branch, and
 * its callers keep their registers for their own work. */
__attribute__((noinline, cold)) void lac_spin_lock_slow(lac_spin *l)
{
    unsigned spins = 0;
    do {
        while (atomic_load_explicit(&l->v, memory_order_relaxed)) {
            if (++spins % 128 == 0)
                sched_yield(); /* the holder may have been preempted (a busy machine) */
            else
                LAC_CPU_RELAX();
        }
    } while (atomic_exchange_explicit(&l->v, 1, memory_order_acquire));
}

/* What the context that left must have done once it is saved (see the invariants). */
static inline void after_switch(lac_sched *s)
{
    uint8_t what = s->after;
    if (LAC_LIKELY(what == LAC_AFTER_NONE))
        return;
    s->after = LAC_AFTER_NONE;
    if (what == LAC_AFTER_UNLOCK)
        lac_spin_unlock(s->after_arg);
    else
        push_back(s, s->after_arg);
}

static void spare_forget(lac_spare *sp)
{
    LAC_VG_DEREGISTER(sp->vg_id);
#ifdef LAC_TSAN
    __tsan_destroy_fiber(sp->tsan);
#endif
    (void)sp;
}

/* Free an ended fiber's stack. Main context only: the ended fiber has switched away for good. */
static void reap(lac_sched *s)
{
    s->has_zombie = false;
    spare_forget(&s->zombie);
    lac_fiber_stack_free(s->zombie.stack, s->zombie.stacks);
}

/* The saved context of a fiber being switched into. Its saved sp reads NULL from now until it is
 * saved again, so a release of its stack pages (parked.c) that sampled it parked sees that it
 * runs; a release under way is waited for. No fence: the releaser's membarrier orders this store
 * before the load below, or the releaser's flag before it. */
static inline void *resume_sp(lac_fiber *f)
{
    void *sp = f->sp;
    __atomic_store_n(&f->sp, NULL, __ATOMIC_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
    /* acquire: a release that just ended happened before this fiber runs (a plain load on x86) */
    if (LAC_UNLIKELY(atomic_load_explicit(&f->punching, memory_order_acquire)))
        lac_parked_wait(f);
    return sp;
}

/* Switch from the running fiber `from` to `to` (NULL: the thread's own stack). Returns, on the
 * worker it resumed on, when something switches back to `from`; never, when it is dying. */
static inline lac_sched *switch_to(lac_sched *s, lac_fiber *from, lac_fiber *to, bool dying)
{
    s->cur = to;
    void *sp = s->main_sp;
    if (to) {
        lac_state_set(to, LAC_F_RUNNING);
        to->worker = s;
        sp = resume_sp(to);
    }
    san_before(s, from, to, dying);
    /* A dying fiber's block may already be another fiber's (a detached one is given back before
     * this switch): its context goes to a scratch slot. */
    lac_ctx_switch(dying ? &s->dead_sp : &from->sp, sp);
    s = from->worker; /* set by whoever resumed us: maybe another thread */
    san_after(s, from);
    after_switch(s);
    return s;
}

/* From the thread's own stack, run `to` until something switches back here; then free the stack
 * of a fiber that ended meanwhile, on this stack (the zombie's own is gone, and any other fiber's
 * was sized by its owner for their frames, not for the pool's slow path). */
static inline void run(lac_sched *s, lac_fiber *to)
{
    s->cur = to;
    lac_state_set(to, LAC_F_RUNNING);
    to->worker = s;
    void *sp = resume_sp(to);
    san_before(s, NULL, to, false);
    lac_ctx_switch(&s->main_sp, sp);
    san_after(s, NULL);
    after_switch(s);
    if (s->has_zombie)
        reap(s);
}

/* Whether this scheduling decision is one where the thread's own stack polls timers, fds and the
 * injection queue (every LAC_POLL_EVERY-th while any pend), so a fiber that keeps yielding or
 * handing off cannot starve them. */
static inline bool poll_due(lac_sched *s)
{
    if (LAC_LIKELY(++s->tick % LAC_POLL_EVERY != 0))
        return false;
    if (s->nheap + s->nio == 0 && atomic_load_explicit(&s->rt->ninj, memory_order_relaxed) == 0)
        return false;
    s->poll_due = true;
    return true;
}

/* Where a fiber giving up the CPU goes: the next runnable fiber, or NULL for the thread's own
 * stack (nothing here, or time to poll). */
static inline lac_fiber *pick_next(lac_sched *s)
{
    if (poll_due(s))
        return NULL;
    return next_ready(s);
}

lac_sched *lac_sched_park(lac_sched *s, lac_spin *unlock)
{
    lac_fiber *self = s->cur;
    lac_state_set(self, LAC_F_PARKED);
    /* release: what this fiber wrote before (its spawn's fields too) is visible to parked.c */
    atomic_store_explicit(&self->parks,
                          atomic_load_explicit(&self->parks, memory_order_relaxed) + 1,
                          memory_order_release);
    if (unlock) {
        s->after = LAC_AFTER_UNLOCK;
        s->after_arg = unlock;
    }
    return switch_to(s, self, pick_next(s), false);
}

/* ---- spare stacks -------------------------------------------------------------------------- */

/* An ended fiber's stack is kept for this worker's next spawn (up to LAC_SPARE_MAX): no pool call
 * at either end, and the ending fiber switches straight to the next one. What is left when the
 * worker's own loop runs out of ready fibers goes back to the pool there, on the thread's stack. */
char *lac_sched_spare_take(lac_sched *s, unsigned stacks, long *region)
{
    /* Only the most recent: its pages are the hottest, and a mismatch just means a pool call. */
    if (s->nspare == 0 || s->spare[s->nspare - 1].stacks != stacks)
        return NULL;
    lac_spare *sp = &s->spare[--s->nspare];
    spare_forget(sp);
    *region = sp->region;
    return sp->stack;
}

static void spares_free(lac_sched *s)
{
    while (s->nspare > 0) {
        lac_spare *sp = &s->spare[--s->nspare];
        spare_forget(sp);
        lac_fiber_stack_free(sp->stack, sp->stacks);
    }
}

/* ---- a fiber's life ------------------------------------------------------------------------ */

static inline void delta_add(lac_sched *s, int64_t d)
{
    atomic_store_explicit(&s->delta, atomic_load_explicit(&s->delta, memory_order_relaxed) + d,
                          memory_order_release);
}

static void ready_from(lac_sched *s, lac_fiber *f);

static __attribute__((noreturn)) void fiber_entry(void *arg)
{
    lac_fiber *f = arg;
    lac_sched *s = f->worker;
    san_after(s, f);
    after_switch(s);
    f->arg = f->fn(f->arg);
    if (f->fls)
        lac_fls_exit(f); /* fiber-local destructors, on its own stack, before it is done */

    s = f->worker; /* where it ends: maybe not where it started */
    bool keep = s->nspare < LAC_SPARE_MAX && lac_fiber_spares_ok(f);
    bool main_waits = s->main_join == f;
    lac_spare sp;
    lac_fiber *joiner = lac_fiber_finish(s, f, &sp); /* f may be another fiber's block now */
    delta_add(s, -1);
    if (joiner)
        ready_from(s, joiner);
    if (keep) {
        /* Keep the stack for the next spawn; this fiber is the only one that may still run on
         * it, so the bookkeeping runs here and nothing frees it here. */
        s->spare[s->nspare++] = sp;
        switch_to(s, f, main_waits ? NULL : pick_next(s), true);
    } else { /* the thread's own stack frees it */
        s->zombie = sp;
        s->has_zombie = true;
        (void)poll_due(s); /* this decision counts too: main polls if it falls due */
        switch_to(s, f, NULL, true);
    }
    abort(); /* an ended fiber is never switched back to */
}

void lac_sched_start(lac_sched *s, lac_fiber *f)
{
    /* Coloured: stack tops a multiple of 4 KiB apart share one set of the L1 cache (its index
     * is address bits 6-11), and a fiber's hottest lines are its top ones (its first frames, its
     * channel waiter): neighbouring stack slots start 64 bytes apart over 1 KiB, so a parent's
     * and its children's tops spread over 16 sets instead of evicting each other. By slot, not by
     * fiber: a reused stack starts where its last fiber did, which valgrind's memcheck expects. */
    char *top = f->stack + f->stack_size - ((size_t)f->region % LAC_STACK_COLORS) * 64;
    __atomic_store_n(&f->sp, lac_ctx_init(top, fiber_entry, f),
                     __ATOMIC_RELAXED); /* parked.c may be reading a block's sp */
    f->vg_id = LAC_VG_REGISTER(f->stack, f->stack + f->stack_size);
#ifdef LAC_ASAN
    f->asan_fake = NULL;
#endif
#ifdef LAC_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
    f->rt = s->rt;
    f->worker = s;
    delta_add(s, 1);
    lac_fiber *self = s->cur;
    if (self) {
        /* f runs now; the spawner waits beside this worker's queue, where no other worker can
         * take it, until f blocks, yields or ends (then it runs next) or spawns in turn (then it
         * goes to the queue's front, where it may be stolen: a spawn tree spreads over the
         * workers from its top). */
        if (s->spawner)
            push_front(s, s->spawner);
        lac_state_set(self, LAC_F_READY);
        s->spawner = self;
        switch_to(s, self, f, false);
    } else {
        push_back(s, f);
    }
}

/* ---- waking -------------------------------------------------------------------------------- */

/* Queue f to its runtime from outside it (another runtime's fiber, a plain thread) or to a
 * pinned fiber's own worker, and wake a sleeping worker that may run it. */
static void inject(lac_fiber *f)
{
    lac_rt *rt = f->rt;
    lac_state_set(f, LAC_F_READY);
    f->next = NULL;
    pthread_mutex_lock(&rt->lock);
    if (rt->inj_tail)
        rt->inj_tail->next = f;
    else
        rt->inj_head = f;
    rt->inj_tail = f;
    atomic_fetch_add_explicit(&rt->ninj, 1, memory_order_relaxed);
    lac_sched *w = take_sleeper(rt, NULL, f);
    pthread_mutex_unlock(&rt->lock);
    if (w)
        lac_wait_kick(w);
}

/* Wake worker w if it sleeps: new work is in its own queue. */
static void kick_worker(lac_sched *w)
{
    lac_rt *rt = w->rt;
    atomic_thread_fence(memory_order_seq_cst); /* the push, then the check: see idle() */
    if (atomic_load_explicit(&rt->nidle, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&rt->lock);
    bool asleep = w->sleeping;
    if (asleep) {
        w->sleeping = false;
        atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&rt->lock);
    if (asleep)
        lac_wait_kick(w);
}

/* A fiber pinned to another worker of s's runtime, made ready by s: into that worker's inbox (it
 * spins a while before it sleeps, watching that line, so a ping-pong between two workers stays
 * off the kernel and off its queue's lock). False if that worker is not running (lacuna_run has
 * ended). */
static bool push_pinned(lac_sched *s, lac_fiber *f)
{
    lac_sched *w = atomic_load_explicit(&s->rt->w[f->pin - 1], memory_order_acquire);
    if (w == NULL || !s->multi)
        return false;
    lac_state_set(f, LAC_F_READY);
    lac_fiber *old = atomic_load_explicit(&w->inbox, memory_order_relaxed);
    do
        f->next = old;
    while (!atomic_compare_exchange_weak_explicit(&w->inbox, &old, f, memory_order_seq_cst,
                                                  memory_order_relaxed));
    /* No fence: the push (seq_cst) then this load, against idle()'s nidle increment (seq_cst)
     * then its look at the inbox: one of the two sees the other. */
    if (atomic_load_explicit(&s->rt->nidle, memory_order_seq_cst) != 0)
        kick_worker(w);
    return true;
}

/* Make f ready from worker or thread s (NULL: a thread with no scheduler). */
static void ready_from(lac_sched *s, lac_fiber *f)
{
    f->wait = LAC_W_NONE;
    if (s == NULL || s->rt != f->rt) {
        inject(f);
    } else if (!runs_on(f, s)) {
        if (!push_pinned(s, f))
            inject(f);
    } else if (s->cur) {
        hand_off(s, f);
    } else {
        push_back(s, f);
    }
}

void lac_fiber_ready(lac_fiber *f)
{
    ready_from(lac_tls_sched, f);
}

/* ---- futexes: threads outside the runtime waiting on it ------------------------------------ */

void lac_thread_wait(_Atomic uint32_t *word)
{
    while (atomic_load_explicit(word, memory_order_acquire) == 0)
        (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

bool lac_thread_wait_until(_Atomic uint32_t *word, uint64_t deadline)
{
    struct timespec t = {.tv_sec = (time_t)(deadline / 1000000000u),
                         .tv_nsec = (long)(deadline % 1000000000u)};
    int saved = errno; /* the caller's: its API reports through return values */
    bool woken = true;
    while (atomic_load_explicit(word, memory_order_acquire) == 0) {
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (FUTEX_WAIT a relative one) */
        long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, 0, &t, NULL,
                         FUTEX_BITSET_MATCH_ANY);
        if (r < 0 && errno == ETIMEDOUT) {
            woken = atomic_load_explicit(word, memory_order_acquire) != 0;
            break;
        }
    }
    errno = saved;
    return woken;
}

void lac_sched_kick(lac_sched *w)
{
    kick_worker(w);
}

void lac_thread_wake(_Atomic uint32_t *word)
{
    atomic_store_explicit(word, 1, memory_order_release);
    (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- the scheduler ------------------------------------------------------------------------- */

/* A runtime for a thread's first scheduler: one an exited thread left unused, or a new one. */
static lac_rt *rt_get(void)
{
    pthread_mutex_lock(&rt_lock);
    lac_rt *rt = rt_free;
    if (rt)
        rt_free = rt->next_free;
    pthread_mutex_unlock(&rt_lock);
    if (rt == NULL && (rt = calloc(1, sizeof *rt)) != NULL)
        pthread_mutex_init(&rt->lock, NULL);
    return rt;
}

lac_sched *lac_sched_get(void)
{
    lac_sched *s = lac_tls_sched;
    if (LAC_LIKELY(s != NULL))
        return s;
    int err = lacuna_overflow_handler_install(); /* also gives this thread its altstack */
    if (err) {
        errno = err;
        return NULL;
    }
    s = aligned_alloc(64, (sizeof *s + 63) / 64 * 64); /* its run queue's line is its own */
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(s, 0, sizeof *s);
    if (lac_tls_id == 0)
        lac_tls_id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    lac_rt *rt = tls_rt ? tls_rt : rt_get();
    if (rt == NULL) {
        free(s);
        errno = ENOMEM;
        return NULL;
    }
    tls_rt = rt;
    s->epfd = -1;
    s->evfd = -1;
    s->rng = lac_tls_id * 0x9e3779b97f4a7c15ull | 1;
    s->rt = rt;
    rt->w[0] = s;
    rt->nw = 1;
    rt->whi = 1;
#ifdef LAC_TSAN
    s->tsan_main = __tsan_get_current_fiber();
#endif
    lac_tls_sched = s;
    return s;
}

/* Give back what a scheduler holds and leave its runtime; its waits (lac_wait_free) and the
 * memory itself stay (see helper_main). On the scheduler's own thread. */
static void sched_retire(lac_sched *s)
{
    spares_free(s);
    lac_fiber_blocks_drop(s);
    lac_rt *rt = s->rt;
    pthread_mutex_lock(&rt->lock);
    rt->gone += atomic_load_explicit(&s->delta, memory_order_relaxed);
    if (rt->w[s->idx] == s)
        rt->w[s->idx] = NULL;
    pthread_mutex_unlock(&rt->lock);
    lac_tls_sched = NULL;
}

void lac_sched_free(lac_sched *s)
{
    sched_retire(s);
    lac_wait_free(s);
    free(s);
}

int64_t lac_rt_live(lac_rt *rt)
{
    int64_t n = rt->gone;
    for (unsigned i = 0, hi = rt->whi; i < hi; i++) {
        lac_sched *c = rt->w[i];
        if (c)
            n += atomic_load_explicit(&c->delta, memory_order_acquire);
    }
    return n;
}

/* rt->lock held: whether a worker fell asleep with timers or fd waits of its own (they are all
 * asleep: one of them may be waking to those right now, and counts as busy). */
static bool waits_pending(lac_rt *rt)
{
    for (unsigned i = 0, hi = rt->whi; i < hi; i++) {
        lac_sched *c = rt->w[i];
        if (c && c->sleep_waits)
            return true;
    }
    return false;
}

/* rt->lock held: whether a fiber waits in a worker's inbox. Its pusher may be counted asleep
 * already (it pushed, then went idle), and its worker has not taken it yet: not a deadlock. */
static bool inbox_pending(lac_rt *rt)
{
    for (unsigned i = 0, hi = rt->whi; i < hi; i++) {
        lac_sched *c = rt->w[i];
        if (c && atomic_load_explicit(&c->inbox, memory_order_relaxed) != NULL)
            return true;
    }
    return false;
}

static void wake_all(lac_rt *rt, lac_sched *self)
{
    for (unsigned i = 0, hi = rt->whi; i < hi; i++) {
        lac_sched *c = rt->w[i];
        if (c && c != self && c->sleeping) {
            c->sleeping = false;
            atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_relaxed);
            lac_wait_kick(c);
        }
    }
}

/* Whether this worker's own queue or its runtime's injection queue has work. */
static inline bool work_here(const lac_sched *s)
{
    /* seq_cst: after idle()'s nidle increment, against push_pinned (see there) */
    return has_ready(s) || atomic_load_explicit(&s->inbox, memory_order_seq_cst) != NULL ||
           atomic_load_explicit(&s->rt->ninj, memory_order_relaxed) != 0;
}

/* Whether anything this worker could run is visible now. */
static bool work_visible(lac_sched *s)
{
    lac_rt *rt = s->rt;
    if (work_here(s))
        return true;
    if (!s->multi)
        return false;
    for (unsigned i = 0, hi = atomic_load_explicit(&rt->whi, memory_order_acquire); i < hi; i++) {
        lac_sched *v = atomic_load_explicit(&rt->w[i], memory_order_acquire);
        if (v && v != s && nq_of(v) > 0)
            return true;
    }
    return false;
}

/* Nothing to run: look a while longer (several workers), then sleep until woken, a timer or an
 * fd. The last worker to fall asleep decides whether the runtime is done (LAC_STOP_DONE) or
 * deadlocked (EDEADLK), and returns that; 0: look for work again. Or an epoll errno. */
static int idle(lac_sched *s)
{
    lac_rt *rt = s->rt;
    /* Others' queues only every LAC_SPIN_PEEK-th look: reading them keeps pulling lines their
     * owners write, which a pinned ping-pong pays on every hop; a steal can wait that long. */
    if (s->multi)
        for (unsigned i = 0; i < LAC_SPIN_IDLE; i++) {
            if ((i % LAC_SPIN_PEEK == 0 ? work_visible(s) : work_here(s)) ||
                atomic_load_explicit(&rt->stop, memory_order_relaxed))
                return 0;
            LAC_CPU_RELAX();
        }
    lac_parked_idle(s);            /* parked fibers' pages, when an aging scan is due */
    int err = lac_wait_prepare(s); /* before anyone may see it asleep and kick it */
    /* No epoll or eventfd (the fd limit, no memory): the home reports it (lacuna_run), its fibers
     * kept; a helper naps below instead, counted asleep like any other (a kick just misses it),
     * and tries again at its next idle, so it leaves nothing behind and recovers once fds are
     * free. */
    if (LAC_UNLIKELY(err) && s->idx == 0)
        return err;
    pthread_mutex_lock(&rt->lock);
    int stop = atomic_load_explicit(&rt->stop, memory_order_relaxed);
    if (stop) {
        pthread_mutex_unlock(&rt->lock);
        return stop;
    }
    s->sleeping = true;
    s->sleep_waits = s->nheap + s->nio > 0;
    unsigned idle_now = atomic_fetch_add_explicit(&rt->nidle, 1, memory_order_seq_cst) + 1;
    if (idle_now == atomic_load_explicit(&rt->nw, memory_order_relaxed)) {
        int verdict = 0;
        if (lac_rt_live(rt) == 0)
            verdict = LAC_STOP_DONE;
        else if (!waits_pending(rt) && !inbox_pending(rt) && atomic_load(&rt->ninj) == 0 &&
                 atomic_load(&lac_foreign_blocked) == 0)
            verdict = EDEADLK;
        if (verdict) {
            s->sleeping = false;
            s->sleep_waits = false;
            atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_relaxed);
            if (s->multi) {
                atomic_store(&rt->stop, verdict);
                wake_all(rt, s);
            }
            pthread_mutex_unlock(&rt->lock);
            return verdict;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    /* Asleep as far as wakers know; a push made before they could see it is seen here. */
    err = work_visible(s) ? 0 : LAC_LIKELY(err == 0) ? lac_wait_poll(s, true) : lac_wait_nap(s);
    pthread_mutex_lock(&rt->lock);
    s->sleep_waits = false;
    if (s->sleeping) {
        s->sleeping = false;
        atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&rt->lock);
    return err;
}

/* The next fiber this worker runs: its own, then injected ones, then stolen ones. */
static lac_fiber *find_work(lac_sched *s)
{
    lac_fiber *f = next_ready(s);
    if (f)
        return f;
    take_injected(s);
    if ((f = next_ready(s)) != NULL)
        return f;
    return s->multi ? steal(s) : NULL;
}

int lac_sched_loop(lac_sched *s, lac_fiber *until)
{
    s->poll_due = true;
    for (;;) {
        if (until && atomic_load_explicit(&until->done, memory_order_acquire))
            return 0;
        int stop = atomic_load_explicit(&s->rt->stop, memory_order_relaxed);
        if (LAC_UNLIKELY(stop))
            return stop == LAC_STOP_DONE ? 0 : stop;
        if (LAC_UNLIKELY(s->poll_due)) {
            s->poll_due = false;
            int err = s->nheap + s->nio > 0 ? lac_wait_poll(s, false) : 0;
            if (err)
                return err;
            take_injected(s);
        }
        lac_fiber *f = find_work(s);
        if (f) {
            run(s, f);
            continue;
        }
        spares_free(s); /* idle now: what no spawn took goes back to the pool */
        int verdict = idle(s);
        if (verdict == LAC_STOP_DONE)
            return 0;
        if (verdict)
            return verdict;
        s->poll_due = true;
    }
}

bool __attribute__((noinline)) lac_sched_escaped(const lac_sched *s)
{
    /* this frame is on the real stack, even where ASan moves locals to a fake one */
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    return s->cur && sp - (uintptr_t)s->cur->stack >= s->cur->stack_size;
}

/* ---- workers ------------------------------------------------------------------------------- */

typedef struct helper {
    pthread_t thread;
    lac_rt *rt;
    unsigned idx;
    lac_sched *s; /* its scheduler: freed by lacuna_run once every helper is joined, since other
                     workers may still peek at it (work_visible, steal) as it leaves */
    int err;      /* its loop's result, or why it could not start */
} helper;

/* rt->lock held: helper s's loop failed on its own (its epoll_wait: the descriptor closed under
 * it): the run ends with that error rather than with fibers only s could wake. */
static __attribute__((noinline, cold)) void helper_failed(lac_rt *rt, lac_sched *s, int err)
{
    atomic_store(&rt->stop, err);
    wake_all(rt, s);
}

/* On the home s once every helper is joined: what helper h still holds moves to s, so the next
 * lacuna_run (this one ended with an error) runs it: ready fibers (runnext, hand-offs, spawner,
 * queue, inbox) join s's queue, re-pinned to s as takes() would; timers and fd waits move to s's
 * heap and epoll (wait.c). Then h's waits are freed. No fiber of the runtime runs meanwhile, so
 * only other threads (a cancel, a wake: injected) touch these fibers. */
static void helper_adopt(lac_sched *s, lac_sched *h)
{
    lac_fiber *f;
    while ((f = next_ready(h)) != NULL) {
        if (f->pin == h->idx + 1u)
            f->pin = (uint16_t)(s->idx + 1);
        push_back(s, f);
    }
    lac_wait_adopt(s, h);
    lac_wait_free(h);
}

static void *helper_main(void *arg)
{
    helper *h = arg;
    lac_sched *s = lac_sched_get();
    if (s == NULL) {
        h->err = errno;
        return NULL;
    }
    lac_rt *rt = h->rt;
    s->rt = rt;
    s->idx = h->idx;
    s->multi = true;
    pthread_mutex_lock(&rt->lock);
    atomic_store_explicit(&rt->w[h->idx], s, memory_order_release);
    atomic_fetch_add_explicit(&rt->nw, 1, memory_order_relaxed);
    if (rt->whi <= h->idx)
        atomic_store_explicit(&rt->whi, h->idx + 1, memory_order_release);
    pthread_mutex_unlock(&rt->lock);

    h->err = lac_sched_loop(s, NULL);

    pthread_mutex_lock(&rt->lock);
    if (LAC_UNLIKELY(h->err) && atomic_load(&rt->stop) == LAC_STOP_NONE)
        helper_failed(rt, s, h->err);
    atomic_fetch_sub_explicit(&rt->nw, 1, memory_order_relaxed);
    pthread_mutex_unlock(&rt->lock);
    sched_retire(s); /* leaves rt->w[idx] and folds its count into rt->gone */
    h->s = s;        /* what it still holds, lacuna_run moves to the home (helper_adopt) */
    return NULL;
}

/* Workers lacuna_run uses: lacuna_set_workers', else LACUNA_WORKERS, else the CPUs we may use. */
static unsigned workers_wanted(void)
{
    unsigned n = atomic_load_explicit(&workers_conf, memory_order_relaxed);
    if (n)
        return n;
    const char *env = getenv("LACUNA_WORKERS");
    if (env && *env) {
        char *end;
        unsigned long v = strtoul(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= LAC_WORKERS_MAX)
            return (unsigned)v;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        return c < 1 ? 1 : c > LAC_WORKERS_MAX ? LAC_WORKERS_MAX : (unsigned)c;
    }
    return 1;
}

int lacuna_set_workers(unsigned workers)
{
    if (workers > LAC_WORKERS_MAX)
        return EINVAL;
    atomic_store_explicit(&workers_conf, workers, memory_order_relaxed);
    return 0;
}

unsigned lacuna_get_workers(void)
{
    return workers_wanted();
}

int lacuna_worker_id(void)
{
    lac_sched *s = lac_tls_sched;
    return s ? (int)s->idx : -1;
}

/* Run the home worker's loop with n - 1 helper workers beside it. */
static int run_workers(lac_sched *s, unsigned n)
{
    lac_rt *rt = s->rt;
    helper *hs = n > 1 ? calloc(n - 1, sizeof *hs) : NULL;
    unsigned started = 0;
    if (hs) {
        atomic_store(&rt->stop, LAC_STOP_NONE);
        s->multi = true;
        for (unsigned i = 0; i < n - 1; i++) {
            hs[i] = (helper){.rt = rt, .idx = i + 1};
            if (pthread_create(&hs[i].thread, NULL, helper_main, &hs[i]) != 0)
                break; /* fewer workers: still correct */
            started++;
        }
    }
    int err = lac_sched_loop(s, NULL);
    if (started) {
        pthread_mutex_lock(&rt->lock);
        if (atomic_load(&rt->stop) == LAC_STOP_NONE)
            atomic_store(&rt->stop, err ? err : LAC_STOP_DONE);
        wake_all(rt, s);
        pthread_mutex_unlock(&rt->lock);
        for (unsigned i = 0; i < started; i++)
            pthread_join(hs[i].thread, NULL);
        for (unsigned i = 0; i < started; i++)
            if (hs[i].s) {
                helper_adopt(s, hs[i].s);
                free(hs[i].s);
            }
    }
    s->multi = false;
    atomic_store(&rt->stop, LAC_STOP_NONE);
    free(hs);
    return err;
}

int lacuna_run(void)
{
    lac_sched *s = lac_tls_sched;
    if (s == NULL)
        return 0;
    if (s->cur)
        return lac_sched_escaped(s) ? ENOTRECOVERABLE : EPERM;
    if (s->rt != tls_rt) /* a helper worker's thread: only a fiber runs here */
        return EPERM;
    int saved = errno; /* the result is the error: keep the caller's errno */
    int err = run_workers(s, lac_rt_live(s->rt) > 0 ? workers_wanted() : 1);
    if (err == 0)
        lac_sched_free(s);
    errno = saved;
    return err;
}

void lacuna_yield(void)
{
    lac_sched *s = lac_tls_sched;
    if (s == NULL || s->cur == NULL)
        return;
    if (!has_ready(s) && s->nheap + s->nio == 0 && !s->multi &&
        atomic_load_explicit(&s->rt->ninj, memory_order_relaxed) == 0)
        return;
    lac_fiber *self = s->cur;
    lac_state_set(self, LAC_F_READY);
    s->after = LAC_AFTER_PUSH_BACK;
    s->after_arg = self;
    switch_to(s, self, pick_next(s), false);
}

void lac_sched_thread_exit(void)
{
    lac_rt *rt = tls_rt;
    if (rt == NULL)
        return;
    tls_rt = NULL;
    if (lac_tls_sched) { /* fibers left: they, the scheduler and the runtime stay, dead */
        atomic_store_explicit(&rt->dead, true, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&rt_lock);
    rt->next_free = rt_free;
    rt_free = rt;
    pthread_mutex_unlock(&rt_lock);
}

bool lac_sched_is_home(const lac_sched *s)
{
    return s->rt == tls_rt;
}

/* ---- for chan.c ---------------------------------------------------------------------------- */

lac_fiber *lac_fiber_self(void)
{
    lac_sched *s = lac_tls_sched;
    return s ? s->cur : NULL;
}
