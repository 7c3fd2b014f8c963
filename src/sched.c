/* sched.c — one cooperative scheduler per OS thread: run queue, context switches, a fiber's start
 * and end, and the thread's own loop (lacuna_run, a thread-context lacuna_join).
 *
 * Owns: the thread-local scheduler (created lazily, freed when it runs out of fibers), the run
 * queue, every lac_ctx_switch and the sanitizer/valgrind bookkeeping around it, and the moment a
 * fiber ends.
 *
 * Invariants:
 *   - Fibers switch directly to one another. An ending fiber keeps its stack as a spare for this
 *     thread's next spawn (up to LAC_SPARE_MAX) and switches straight to the next fiber; only
 *     past that bound does it switch to the thread's own stack (the "main" context, inside
 *     lac_sched_loop), which frees it (reap). Spares left when main runs out of ready fibers go
 *     back to the pool there. Library work never runs on a user fiber's stack, which its owner
 *     sized for their own frames: the ending fiber does only bookkeeping, on its own stack.
 *   - Main runs when nothing is ready, when an ending fiber finds the spares full, and every
 *     LAC_POLL_EVERY-th scheduling decision while timers or fd waits are pending (so a fiber
 *     that keeps yielding cannot starve them). Main polls epoll and fires timers (wait.c).
 *   - Order: runnext (the fiber the last hand-off woke: a channel operation, a join), then the
 *     stack of hand-offs it displaced, then the run queue, a deque (a fiber preempted by its own
 *     spawn goes to its front; spawned, yielding, timed-out and fd-ready fibers to its back).
 *     Hand-offs take at most LAC_RUNNEXT_MAX turns in a row while the queue waits.
 *   - At most one zombie at a time: main reaps it right after the switch that brought it back.
 *
 * Does not: allocate stacks or control blocks (fiber.c), keep timers or fds (wait.c), move fibers
 * between threads, or preempt.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

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

#define LAC_POLL_EVERY 64 /* switches between polls while timers or fd waits pend */

__thread lac_sched *lac_tls_sched;
__thread uint64_t lac_tls_id;
static _Atomic uint64_t next_id = 1; /* 2^64 thread starts never wrap */

/* ---- run queue ----------------------------------------------------------------------------- */

static inline void push_back(lac_sched *s, lac_fiber *f)
{
    f->state = LAC_F_READY;
    f->next = NULL;
    if (s->tail)
        s->tail->next = f;
    else
        s->head = f;
    s->tail = f;
}

static inline void push_front(lac_sched *s, lac_fiber *f)
{
    f->state = LAC_F_READY;
    f->next = s->head;
    s->head = f;
    if (s->tail == NULL)
        s->tail = f;
}

static inline lac_fiber *pop_front(lac_sched *s)
{
    lac_fiber *f = s->head;
    s->head = f->next;
    if (s->head == NULL)
        s->tail = NULL;
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
    f->state = LAC_F_READY;
    if (s->runnext) {
        s->runnext->next = s->handed;
        s->handed = s->runnext;
    }
    s->runnext = f;
}

static inline bool has_ready(const lac_sched *s)
{
    return s->runnext != NULL || s->handed != NULL || s->head != NULL;
}

/* The next fiber to run: runnext, then the stack of hand-offs, then the queue. Hand-offs get at
 * most LAC_RUNNEXT_MAX turns in a row while the queue waits (two fibers handing off to each other
 * forever must not starve it): then the queue's head runs. NULL: nothing is ready. */
static inline lac_fiber *next_ready(lac_sched *s)
{
    if (LAC_LIKELY(s->runnext_streak < LAC_RUNNEXT_MAX) || (s->head == NULL && s->handed == NULL)) {
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
    while (s->handed) {
        lac_fiber *h = s->handed;
        s->handed = h->next;
        push_back(s, h);
    }
    s->runnext_streak = 0;
    return s->head ? pop_front(s) : NULL;
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

/* Now running `self` (NULL = the thread's own stack) after a switch. */
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

/* Free an ended fiber's stack. Main context only: the ended fiber has switched away for good. */
static void reap(lac_sched *s)
{
    lac_fiber *f = s->zombie;
    s->zombie = NULL;
    LAC_VG_DEREGISTER(f->vg_id);
#ifdef LAC_TSAN
    __tsan_destroy_fiber(f->tsan);
#endif
    lac_fiber_reap(s, f);
}

/* Switch from the running fiber `from` to `to` (NULL: the thread's own stack). Returns when
 * something switches back to `from`; never, when it is dying. */
static inline void switch_to(lac_sched *s, lac_fiber *from, lac_fiber *to, bool dying)
{
    s->cur = to;
    if (to == from) {
        to->state = LAC_F_RUNNING;
        return;
    }
    if (to)
        to->state = LAC_F_RUNNING;
    san_before(s, from, to, dying);
    /* A dying fiber's block may already be another fiber's (a detached one is given back before
     * this switch, and may be spilled to another thread): its context goes to a scratch slot. */
    lac_ctx_switch(dying ? &s->dead_sp : &from->sp, to ? to->sp : s->main_sp);
    san_after(s, from);
}

/* From the thread's own stack, run `to` until something switches back here; then free the stack
 * of a fiber that ended meanwhile, on this stack (the zombie's own is gone, and any other fiber's
 * was sized by its owner for their frames, not for the pool's slow path). */
static inline void run(lac_sched *s, lac_fiber *to)
{
    s->cur = to;
    to->state = LAC_F_RUNNING;
    san_before(s, NULL, to, false);
    lac_ctx_switch(&s->main_sp, to->sp);
    san_after(s, NULL);
    if (s->zombie)
        reap(s);
}

/* Whether this scheduling decision is one where the thread's own stack polls timers and fds
 * (every LAC_POLL_EVERY-th while any pend), so a fiber that keeps yielding cannot starve them. */
static inline bool poll_due(lac_sched *s)
{
    if (LAC_LIKELY(s->nheap + s->nio == 0) || ++s->tick % LAC_POLL_EVERY != 0)
        return false;
    s->poll_due = true;
    return true;
}

/* Where a fiber giving up the CPU goes: the next runnable fiber, or NULL for the thread's own
 * stack (queue empty, or time to poll timers and fds). */
static inline lac_fiber *pick_next(lac_sched *s)
{
    if (poll_due(s))
        return NULL;
    return next_ready(s);
}

void lac_sched_park(lac_sched *s)
{
    lac_fiber *self = s->cur;
    self->state = LAC_F_PARKED;
    switch_to(s, self, pick_next(s), false);
}

/* ---- spare stacks -------------------------------------------------------------------------- */

/* An ended fiber's stack is kept for this thread's next spawn (up to LAC_SPARE_MAX): no pool call
 * at either end, and the ending fiber switches straight to the next one. What is left when the
 * thread's own loop runs out of ready fibers goes back to the pool there, on the thread's stack. */
static void spare_forget(lac_spare *sp)
{
    LAC_VG_DEREGISTER(sp->vg_id);
#ifdef LAC_TSAN
    __tsan_destroy_fiber(sp->tsan);
#endif
    (void)sp;
}

char *lac_sched_spare_take(lac_sched *s, unsigned stacks)
{
    /* Only the most recent: its pages are the hottest, and a mismatch just means a pool call. */
    if (s->nspare == 0 || s->spare[s->nspare - 1].stacks != stacks)
        return NULL;
    lac_spare *sp = &s->spare[--s->nspare];
    spare_forget(sp);
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

static __attribute__((noreturn)) void fiber_entry(void *arg)
{
    lac_fiber *f = arg;
    lac_sched *s = lac_tls_sched;
    san_after(s, f);
    f->arg = f->fn(f->arg); /* the same thread's scheduler still: fibers never migrate */

    f->state = LAC_F_DONE;
    s->live--;
    if (f->joiner) {
        hand_off(s, f->joiner);
        f->joiner = NULL;
    }
    if (s->nspare < LAC_SPARE_MAX && lac_fiber_spares_ok(f)) {
        /* Keep the stack for the next spawn; this fiber is the only one that may still run on
         * it, so the bookkeeping runs here and nothing frees it here. */
        lac_spare *sp = &s->spare[s->nspare++];
        sp->stack = f->stack;
        sp->stacks = f->stacks;
        sp->vg_id = f->vg_id;
#ifdef LAC_TSAN
        sp->tsan = f->tsan;
#endif
        lac_fiber_retire(s, f);
        switch_to(s, f, s->main_join == f ? NULL : pick_next(s), true);
    } else { /* the thread's own stack frees it */
        s->zombie = f;
        (void)poll_due(s); /* this decision counts too: main polls if it falls due */
        switch_to(s, f, NULL, true);
    }
    abort(); /* an ended fiber is never switched back to */
}

void lac_sched_start(lac_sched *s, lac_fiber *f)
{
    f->sp = lac_ctx_init(f->stack + f->stack_size, fiber_entry, f);
    f->vg_id = LAC_VG_REGISTER(f->stack, f->stack + f->stack_size);
#ifdef LAC_ASAN
    f->asan_fake = NULL;
#endif
#ifdef LAC_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
    s->live++;
    lac_fiber *self = s->cur;
    if (self) { /* runs now; the spawner right after it */
        push_front(s, self);
        switch_to(s, self, f, false);
    } else {
        push_back(s, f);
    }
}

/* ---- the scheduler ------------------------------------------------------------------------- */

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
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (lac_tls_id == 0)
        lac_tls_id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    s->epfd = -1;
#ifdef LAC_TSAN
    s->tsan_main = __tsan_get_current_fiber();
#endif
    lac_tls_sched = s;
    return s;
}

void lac_sched_free(lac_sched *s)
{
    spares_free(s);
    lac_fiber_blocks_drop(s);
    lac_wait_free(s);
    free(s);
    lac_tls_sched = NULL;
}

int lac_sched_loop(lac_sched *s, lac_fiber *until)
{
    s->poll_due = true;
    for (;;) {
        if (until && until->state == LAC_F_DONE)
            return 0;
        if (has_ready(s)) {
            if (LAC_UNLIKELY(s->poll_due)) {
                s->poll_due = false;
                int err = s->nheap + s->nio > 0 ? lac_wait_poll(s, false) : 0;
                if (err)
                    return err;
            }
            run(s, next_ready(s));
            continue;
        }
        spares_free(s); /* idle now: what no spawn took goes back to the pool */
        if (s->live == 0)
            return 0;
        if (s->nheap + s->nio == 0)
            return EDEADLK;
        int err = lac_wait_poll(s, true);
        if (err)
            return err;
    }
}

bool __attribute__((noinline)) lac_sched_escaped(const lac_sched *s)
{
    /* this frame is on the real stack, even where ASan moves locals to a fake one */
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    return s->cur && sp - (uintptr_t)s->cur->stack >= s->cur->stack_size;
}

int lacuna_run(void)
{
    lac_sched *s = lac_tls_sched;
    if (s == NULL)
        return 0;
    if (s->cur)
        return lac_sched_escaped(s) ? ENOTRECOVERABLE : EPERM;
    int saved = errno; /* the result is the error: keep the caller's errno */
    int err = lac_sched_loop(s, NULL);
    if (err == 0)
        lac_sched_free(s);
    errno = saved;
    return err;
}

void lacuna_yield(void)
{
    lac_sched *s = lac_tls_sched;
    if (s == NULL || s->cur == NULL || (!has_ready(s) && s->nheap + s->nio == 0))
        return;
    lac_fiber *self = s->cur;
    push_back(s, self);
    switch_to(s, self, pick_next(s), false);
}

/* ---- for chan.c ---------------------------------------------------------------------------- */

lac_fiber *lac_fiber_self(void)
{
    lac_sched *s = lac_tls_sched;
    return s ? s->cur : NULL;
}

void lac_fiber_park(void)
{
    lac_sched_park(lac_tls_sched);
}

void lac_fiber_ready(lac_fiber *f)
{
    lac_sched *s = lac_tls_sched;
    f->wait = LAC_W_NONE;
    hand_off(s, f);
}

bool lac_fiber_local(const lac_fiber *f)
{
    return atomic_load_explicit(&f->owner, memory_order_relaxed) == lac_tls_id;
}
