/* sync.c — the synchronisation objects of <lacuna/sync.h>: mutex, condition variable, waitgroup,
 * counting semaphore, fiber-local storage and the async wake-up handle.
 *
 * Owns: the layout behind each public object (a caller-placed struct of opaque words; all-zero
 * is a ready, empty object), the FIFO waiter queues in them, the process-wide FLS key table, and
 * each fiber's FLS values (f->fls, freed by lac_fls_exit when the fiber ends).
 *
 * Invariants:
 *   - A waiter is a `waiter` record on the blocked fiber's (or thread's) own stack, queued under
 *     the object's spin lock; a fiber parks holding that lock (released once its context is
 *     saved, sched.c), so whoever dequeues a waiter may wake it at once, and nobody touches the
 *     record after waking it.
 *   - Mutex word: the owner's token (0: none) | M_WAITERS while anyone is queued. A locker takes
 *     it with one CAS from 0; an unlock with no waiters is one CAS back to 0. An unlock with
 *     waiters wakes the oldest and leaves the mutex free: a locker that comes along first
 *     (spinning on another worker, or a fiber that runs before the woken one) takes it, and the
 *     woken waiter tries again, queueing at the front if it loses (Go's sync.Mutex does the same:
 *     hand-offs on every contended unlock make a convoy, each lock a park and a wake-up). A
 *     waiter queued for M_STARVE_NS or more is handed the lock instead (its token written by the
 *     unlock), so no waiter starves.
 *   - Tokens: a fiber's is its handle (generation << 32 | index) << 2, stable across migrations;
 *     a plain thread's is the address of a thread-local << 2 | 2. Bit 0 is M_WAITERS.
 *   - A destroyed object has `dead` set (and a destroyed mutex the word M_DEAD, which looks owned,
 *     so every fast path fails into the slow path, which reports EINVAL).
 *   - FLS keys are slots of a fixed table with a sequence number (odd while the key exists): a
 *     key is seq << 7 | slot, so a deleted key's values are never returned or destructed.
 *
 * Thread-locals: a fiber may resume on another worker after a park, so every read of the
 * scheduler goes through here() (not inlined: its thread-local address is computed afresh).
 *
 * Deadlines and cancellation: every wait follows wait.c's protocol (lac_park): a waiter whose
 * wait a deadline or a cancel ended stays queued until it runs and unlinks itself; wakers skip
 * it (wq_pop), so a unit, a hand-off or a signal always goes to a waiter that takes it.
 *
 * Does not: select (chan.c); recursive mutexes; priority inheritance.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- waiters ------------------------------------------------------------------------------ */

typedef struct waiter {
    struct waiter *next, *prev;
    lac_park *park; /* its wait (wait.c): won by a waker, a deadline or a cancel */
    uint64_t token; /* a mutex waiter's token: the owner it becomes */
    uint64_t since; /* a mutex waiter: when it first queued (starvation) */
    bool linked;    /* in its queue */
} waiter;

typedef struct wq {
    waiter *head, *tail; /* oldest first */
} wq;

static void wq_push(wq *q, waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->linked = true;
}

/* A mutex waiter that was woken and lost the lock to a newcomer goes back in front. */
static void wq_push_front(wq *q, waiter *w)
{
    w->prev = NULL;
    w->next = q->head;
    if (q->head)
        q->head->prev = w;
    else
        q->tail = w;
    q->head = w;
    w->linked = true;
}

static void wq_unlink(wq *q, waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->linked = false;
}

/* The oldest waiter whose wait the caller wins (claimed, unlinked: ours to wake), or NULL. One
 * whose wait ended otherwise (deadline, cancel) stays queued until its owner unlinks it. */
static waiter *wq_pop(wq *q)
{
    for (waiter *w = q->head; w; w = w->next) {
        if (atomic_load_explicit(&w->park->state, memory_order_relaxed) == LAC_PARK_WAITING &&
            lac_park_claim(w->park)) {
            wq_unlink(q, w);
            return w;
        }
    }
    return NULL;
}

/* Every waiter whose wait the caller wins, as a list linked by next (q's lock held). */
static waiter *wq_pop_all(wq *q)
{
    waiter *all = NULL, **tail = &all, *w;
    while ((w = wq_pop(q)) != NULL) {
        *tail = w;
        tail = &w->next;
    }
    *tail = NULL;
    return all;
}

/* The calling thread's scheduler, read afresh (see "Thread-locals" above). */
static __attribute__((noinline)) lac_sched *here(void)
{
    return lac_tls_sched;
}

static __thread char thread_anchor; /* its address names a plain thread as a mutex owner */

#define M_WAITERS 1u

static __attribute__((noinline)) uint64_t self_token(void)
{
    lac_sched *s = lac_tls_sched;
    lac_fiber *f = s ? s->cur : NULL;
    if (f)
        return ((uint64_t)atomic_load_explicit(&f->gen, memory_order_relaxed) << 32 | f->idx) << 2;
    return (uint64_t)(uintptr_t)&thread_anchor << 2 | 2;
}

/* Whether the caller may block here: a fiber, or a thread with no fibers of its own to run. */
static bool may_block(void)
{
    lac_sched *s = here();
    return s == NULL || s->cur != NULL || lac_rt_live(s->rt) <= 0;
}

/* Wait in q until woken or the deadline (q's lock held). 0: woken (lock released); ETIMEDOUT,
 * ECANCELED or ENOMEM with the lock held again and nothing queued. The caller checked
 * may_block(). */
static int block_as(lac_spin *lk, wq *q, uint64_t token, uint64_t since, uint64_t deadline,
                    bool nocancel)
{
    lac_sched *s = here();
    lac_park tp, *p = lac_park_mine(s, &tp);
    waiter w = {.park = p, .token = token, .since = since};
    int err = lac_park_arm(p, deadline, nocancel ? LAC_PARK_NOCANCEL : 0);
    if (err)
        return err;
    if (since && q->head && q->head->since > since)
        wq_push_front(q, &w); /* a mutex waiter that lost after a wake-up: before newer ones */
    else
        wq_push(q, &w);
    lac_spin_unlock(lk);
    err = lac_park_block(p, deadline);
    if (err) {
        lac_spin_lock(lk);
        if (w.linked)
            wq_unlink(q, &w);
    }
    return err;
}

static int block(lac_spin *lk, wq *q, uint64_t token, uint64_t deadline, bool nocancel)
{
    return block_as(lk, q, token, 0, deadline, nocancel);
}

/* Wake a waiter taken by wq_pop (its object's lock released or not: the record is ours alone). */
static void wake(waiter *w)
{
    lac_park_wake(w->park);
}

static void wake_all(waiter *w)
{
    for (waiter *next; w; w = next) {
        next = w->next; /* before the wake: the record is gone after it */
        wake(w);
    }
}

/* ---- mutex -------------------------------------------------------------------------------- */

typedef struct mtx {
    _Atomic uint64_t word; /* 0, or owner token | M_WAITERS */
    lac_spin lk;           /* the queue, dead, counted */
    uint16_t dead;
    uint16_t counted; /* a plain thread owns it while fibers wait: counted in lac_foreign_blocked */
    wq q;
} mtx;
_Static_assert(sizeof(mtx) <= sizeof(lacuna_mutex), "lacuna_mutex holds the mutex");
_Static_assert(alignof(mtx) <= alignof(lacuna_mutex), "lacuna_mutex aligns the mutex");

/* Spins for the word to clear before queueing, with several workers (the owner runs elsewhere and
 * a short critical section ends sooner than a park and a wake-up take). */
#define M_SPIN      64
#define M_STARVE_NS 1000000u   /* a waiter queued this long is handed the lock (Go: 1 ms) */
#define M_DEAD      UINT64_MAX /* a destroyed mutex's word: looks owned and waited for */
#define M_OWNER(w)  ((w) & ~(uint64_t)M_WAITERS)

/* Take the mutex if nobody owns it (waiters or not: they were woken, or will be). */
static inline bool try_take(mtx *m, uint64_t me)
{
    uint64_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
    return M_OWNER(w) == 0 &&
           atomic_compare_exchange_strong_explicit(&m->word, &w, me | (w & M_WAITERS),
                                                   memory_order_acquire, memory_order_relaxed);
}

int lacuna_mutex_init(lacuna_mutex *mutex)
{
    if (mutex == NULL)
        return EINVAL;
    memset(mutex, 0, sizeof *mutex);
    return 0;
}

/* A plain thread that owns a mutex fibers wait for will wake them: the runtime must not call
 * that a deadlock, so it counts as a blocked foreign thread until its unlock (m->lk held). */
static void owner_count(mtx *m, uint64_t owner)
{
    if ((owner & 2) && !m->counted) {
        m->counted = 1;
        atomic_fetch_add_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
    }
}

static int lock_slow(mtx *m, uint64_t me, uint64_t deadline, bool nocancel)
{
    lac_sched *s = here();
    bool spin = s == NULL || s->cur == NULL || s->multi;
    uint64_t since = 0; /* when it first queued */
    for (;;) {
        for (unsigned i = 0; spin && i < M_SPIN; i++) {
            if (try_take(m, me))
                return 0;
            LAC_CPU_RELAX();
        }
        lac_spin_lock(&m->lk);
        if (m->dead || try_take(m, me)) {
            int err = m->dead ? EINVAL : 0;
            lac_spin_unlock(&m->lk);
            return err;
        }
        uint64_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
        if (M_OWNER(w) == 0) { /* freed since try_take looked */
            lac_spin_unlock(&m->lk);
            continue;
        }
        if (M_OWNER(w) == me) {
            lac_spin_unlock(&m->lk);
            return EDEADLK;
        }
        if (!may_block()) {
            lac_spin_unlock(&m->lk);
            return EPERM;
        }
        if (!(w & M_WAITERS) &&
            !atomic_compare_exchange_strong_explicit(&m->word, &w, w | M_WAITERS,
                                                     memory_order_relaxed, memory_order_relaxed)) {
            lac_spin_unlock(&m->lk);
            continue; /* the word moved: look again */
        }
        owner_count(m, w);
        if (since == 0)
            since = lac_now_ns() | 1; /* never 0 */
        int err = block_as(&m->lk, &m->q, me, since, deadline, nocancel);
        if (err == 0) {
            if (M_OWNER(atomic_load_explicit(&m->word, memory_order_acquire)) == me)
                return 0; /* handed over by the unlock: it starved */
            continue;     /* woken to try again */
        }
        /* Not queued (any more): the last waiter gone, the owner's fast unlock may work. */
        if (m->q.head == NULL)
            atomic_fetch_and_explicit(&m->word, ~(uint64_t)M_WAITERS, memory_order_relaxed);
        lac_spin_unlock(&m->lk);
        return err;
    }
}

static inline int lock_as(mtx *m, uint64_t me, uint64_t deadline, bool nocancel)
{
    uint64_t z = 0;
    if (__builtin_expect(atomic_compare_exchange_strong_explicit(
                             &m->word, &z, me, memory_order_acquire, memory_order_relaxed),
                         1))
        return 0;
    return lock_slow(m, me, deadline, nocancel);
}

int lacuna_mutex_lock(lacuna_mutex *mutex)
{
    if (mutex == NULL)
        return EINVAL;
    return lock_as((mtx *)mutex, self_token(), LAC_FOREVER, false);
}

int lacuna_mutex_lock_until(lacuna_mutex *mutex, uint64_t deadline_ns)
{
    if (mutex == NULL)
        return EINVAL;
    return lock_as((mtx *)mutex, self_token(), deadline_ns, false);
}

int lacuna_mutex_trylock(lacuna_mutex *mutex)
{
    if (mutex == NULL)
        return EINVAL;
    mtx *m = (mtx *)mutex;
    if (try_take(m, self_token())) /* free, with waiters or not */
        return 0;
    lac_spin_lock(&m->lk);
    int err = m->dead ? EINVAL : EBUSY;
    lac_spin_unlock(&m->lk);
    return err;
}

static int unlock_slow(mtx *m, uint64_t me)
{
    lac_spin_lock(&m->lk);
    uint64_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
    if (m->dead || M_OWNER(w) != me) {
        int err = m->dead ? EINVAL : EPERM;
        lac_spin_unlock(&m->lk);
        LAC_BAD_INPUT("lacuna_mutex_unlock", "destroyed, or not the owner", m);
        return err;
    }
    bool uncount = m->counted; /* dropped after the wake: the new owner is visible by then */
    m->counted = 0;
    waiter *x = wq_pop(&m->q);
    /* The oldest waiter: handed the lock if it has starved, else woken to try again (the mutex
     * free meanwhile: whoever comes first takes it). */
    bool hand = x && lac_now_ns() - x->since >= M_STARVE_NS;
    if (hand && m->q.head)
        owner_count(m, x->token);
    uint64_t owner = hand ? x->token : 0;
    atomic_store_explicit(&m->word, owner | (m->q.head ? M_WAITERS : 0), memory_order_release);
    lac_spin_unlock(&m->lk);
    if (x)
        wake(x);
    if (uncount)
        atomic_fetch_sub_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
    return 0;
}

int lacuna_mutex_unlock(lacuna_mutex *mutex)
{
    if (mutex == NULL)
        return EINVAL;
    mtx *m = (mtx *)mutex;
    uint64_t me = self_token(), w = me;
    if (__builtin_expect(atomic_compare_exchange_strong_explicit(
                             &m->word, &w, 0, memory_order_release, memory_order_relaxed),
                         1))
        return 0;
    return unlock_slow(m, me);
}

int lacuna_mutex_destroy(lacuna_mutex *mutex)
{
    if (mutex == NULL)
        return EINVAL;
    mtx *m = (mtx *)mutex;
    lac_spin_lock(&m->lk);
    int err = m->dead ? EINVAL : atomic_load_explicit(&m->word, memory_order_relaxed) ? EBUSY : 0;
    if (err == 0) {
        m->dead = 1;
        atomic_store_explicit(&m->word, M_DEAD, memory_order_relaxed); /* fast paths fail */
    }
    lac_spin_unlock(&m->lk);
    return err;
}

/* ---- condition variable ------------------------------------------------------------------- */

typedef struct cnd {
    lac_spin lk;
    uint32_t dead;
    wq q;
} cnd;
_Static_assert(sizeof(cnd) <= sizeof(lacuna_cond), "lacuna_cond holds the cond");
_Static_assert(alignof(cnd) <= alignof(lacuna_cond), "lacuna_cond aligns the cond");

int lacuna_cond_init(lacuna_cond *cond)
{
    if (cond == NULL)
        return EINVAL;
    memset(cond, 0, sizeof *cond);
    return 0;
}

static int cond_wait(lacuna_cond *cond, lacuna_mutex *mutex, uint64_t deadline)
{
    if (cond == NULL || mutex == NULL)
        return EINVAL;
    cnd *c = (cnd *)cond;
    mtx *m = (mtx *)mutex;
    uint64_t me = self_token();
    if ((atomic_load_explicit(&m->word, memory_order_relaxed) & ~(uint64_t)M_WAITERS) != me)
        return EPERM; /* not the owner (also: a destroyed mutex) */
    if (!may_block())
        return EPERM;
    lac_spin_lock(&c->lk);
    if (c->dead) {
        lac_spin_unlock(&c->lk);
        return EINVAL;
    }
    /* Queued before the mutex is released (lock order: cond, then mutex): a signal sent by
     * whoever takes the mutex next finds this waiter. */
    lac_sched *s = here();
    lac_park tp, *p = lac_park_mine(s, &tp);
    waiter w = {.park = p};
    int err = lac_park_arm(p, deadline, 0);
    if (err) { /* cancelled, or LACUNA_NOWAIT: the mutex was never released */
        lac_spin_unlock(&c->lk);
        return err;
    }
    wq_push(&c->q, &w);
    (void)lacuna_mutex_unlock(mutex); /* ours: cannot fail */
    lac_spin_unlock(&c->lk);
    err = lac_park_block(p, deadline);
    if (err) {
        lac_spin_lock(&c->lk);
        if (w.linked)
            wq_unlink(&c->q, &w);
        lac_spin_unlock(&c->lk);
    }
    /* The mutex comes back whatever ended the wait (as pthread_cond_timedwait's), so a cancelled
     * caller's cleanup may still unlock it: this lock ignores the cancel. `me` is a value: still
     * ours after a migration. */
    int lerr = lock_as(m, me, LAC_FOREVER, true);
    return err ? err : lerr;
}

int lacuna_cond_wait(lacuna_cond *cond, lacuna_mutex *mutex)
{
    return cond_wait(cond, mutex, LAC_FOREVER);
}

int lacuna_cond_wait_until(lacuna_cond *cond, lacuna_mutex *mutex, uint64_t deadline_ns)
{
    return cond_wait(cond, mutex, deadline_ns);
}

int lacuna_cond_signal(lacuna_cond *cond)
{
    if (cond == NULL)
        return EINVAL;
    cnd *c = (cnd *)cond;
    lac_spin_lock(&c->lk);
    waiter *w = c->dead ? NULL : wq_pop(&c->q);
    int err = c->dead ? EINVAL : 0;
    lac_spin_unlock(&c->lk);
    if (w)
        wake(w);
    return err;
}

int lacuna_cond_broadcast(lacuna_cond *cond)
{
    if (cond == NULL)
        return EINVAL;
    cnd *c = (cnd *)cond;
    lac_spin_lock(&c->lk);
    waiter *all = NULL;
    int err = c->dead ? EINVAL : 0;
    if (err == 0)
        all = wq_pop_all(&c->q);
    lac_spin_unlock(&c->lk);
    wake_all(all);
    return err;
}

int lacuna_cond_destroy(lacuna_cond *cond)
{
    if (cond == NULL)
        return EINVAL;
    cnd *c = (cnd *)cond;
    lac_spin_lock(&c->lk);
    int err = c->dead ? EINVAL : c->q.head ? EBUSY : 0;
    if (err == 0)
        c->dead = 1;
    lac_spin_unlock(&c->lk);
    return err;
}

/* ---- waitgroup ---------------------------------------------------------------------------- */

typedef struct wgrp {
    lac_spin lk;
    uint32_t dead;
    int64_t n; /* the counter */
    wq q;      /* waiting for n == 0 */
} wgrp;
_Static_assert(sizeof(wgrp) <= sizeof(lacuna_waitgroup), "lacuna_waitgroup holds the group");
_Static_assert(alignof(wgrp) <= alignof(lacuna_waitgroup), "lacuna_waitgroup aligns the group");

int lacuna_waitgroup_init(lacuna_waitgroup *wg)
{
    if (wg == NULL)
        return EINVAL;
    memset(wg, 0, sizeof *wg);
    return 0;
}

int lacuna_waitgroup_add(lacuna_waitgroup *wg, long delta)
{
    if (wg == NULL)
        return EINVAL;
    wgrp *g = (wgrp *)wg;
    lac_spin_lock(&g->lk);
    int err = 0;
    if (g->dead || (delta < 0 && g->n < -(int64_t)delta))
        err = EINVAL;
    else if (delta > 0 && g->n > INT64_MAX - delta)
        err = EOVERFLOW;
    waiter *all = NULL;
    if (err == 0) {
        g->n += delta;
        if (g->n == 0)
            all = wq_pop_all(&g->q);
    }
    lac_spin_unlock(&g->lk);
    if (err == EINVAL)
        LAC_BAD_INPUT("lacuna_waitgroup_add", "counter would go negative, or destroyed", g);
    wake_all(all);
    return err;
}

int lacuna_waitgroup_done(lacuna_waitgroup *wg)
{
    return lacuna_waitgroup_add(wg, -1);
}

static int waitgroup_wait(lacuna_waitgroup *wg, uint64_t deadline)
{
    if (wg == NULL)
        return EINVAL;
    wgrp *g = (wgrp *)wg;
    lac_spin_lock(&g->lk);
    int err = g->dead ? EINVAL : g->n == 0 ? 0 : may_block() ? -1 : EPERM;
    if (err < 0 && (err = block(&g->lk, &g->q, 0, deadline, false)) == 0)
        return 0;
    lac_spin_unlock(&g->lk);
    return err;
}

int lacuna_waitgroup_wait(lacuna_waitgroup *wg)
{
    return waitgroup_wait(wg, LAC_FOREVER);
}

int lacuna_waitgroup_wait_until(lacuna_waitgroup *wg, uint64_t deadline_ns)
{
    return waitgroup_wait(wg, deadline_ns);
}

int lacuna_waitgroup_destroy(lacuna_waitgroup *wg)
{
    if (wg == NULL)
        return EINVAL;
    wgrp *g = (wgrp *)wg;
    lac_spin_lock(&g->lk);
    int err = g->dead ? EINVAL : g->q.head ? EBUSY : 0;
    if (err == 0)
        g->dead = 1;
    lac_spin_unlock(&g->lk);
    return err;
}

/* ---- semaphore ---------------------------------------------------------------------------- */

typedef struct sema {
    lac_spin lk;
    uint32_t dead;
    uint64_t n; /* units available; never > 0 while anyone waits (a post hands its unit over) */
    wq q;
} sema;
_Static_assert(sizeof(sema) <= sizeof(lacuna_sem), "lacuna_sem holds the semaphore");
_Static_assert(alignof(sema) <= alignof(lacuna_sem), "lacuna_sem aligns the semaphore");

int lacuna_sem_init(lacuna_sem *sem, unsigned long value)
{
    if (sem == NULL)
        return EINVAL;
    memset(sem, 0, sizeof *sem);
    ((sema *)sem)->n = value;
    return 0;
}

int lacuna_sem_post(lacuna_sem *sem)
{
    if (sem == NULL)
        return EINVAL;
    sema *m = (sema *)sem;
    lac_spin_lock(&m->lk);
    waiter *w = NULL;
    int err = m->dead ? EINVAL : 0;
    if (err == 0 && (w = wq_pop(&m->q)) == NULL) {
        if (m->n == UINT64_MAX)
            err = EOVERFLOW;
        else
            m->n++;
    }
    lac_spin_unlock(&m->lk);
    if (w)
        wake(w);
    return err;
}

static int sem_take(lacuna_sem *sem, bool wait, uint64_t deadline)
{
    if (sem == NULL)
        return EINVAL;
    sema *m = (sema *)sem;
    lac_spin_lock(&m->lk);
    int err = m->dead ? EINVAL : m->n > 0 ? 0 : !wait ? EAGAIN : may_block() ? -1 : EPERM;
    if (err == 0)
        m->n--;
    if (err < 0 && (err = block(&m->lk, &m->q, 0, deadline, false)) == 0)
        return 0; /* woken with the poster's unit */
    lac_spin_unlock(&m->lk);
    return err;
}

int lacuna_sem_wait(lacuna_sem *sem)
{
    return sem_take(sem, true, LAC_FOREVER);
}

int lacuna_sem_wait_until(lacuna_sem *sem, uint64_t deadline_ns)
{
    return sem_take(sem, true, deadline_ns);
}

int lacuna_sem_trywait(lacuna_sem *sem)
{
    return sem_take(sem, false, 0);
}

int lacuna_sem_value(lacuna_sem *sem, unsigned long *value)
{
    if (sem == NULL || value == NULL)
        return EINVAL;
    sema *m = (sema *)sem;
    lac_spin_lock(&m->lk);
    int err = m->dead ? EINVAL : 0;
    *value = (unsigned long)m->n;
    lac_spin_unlock(&m->lk);
    return err;
}

int lacuna_sem_destroy(lacuna_sem *sem)
{
    if (sem == NULL)
        return EINVAL;
    sema *m = (sema *)sem;
    lac_spin_lock(&m->lk);
    int err = m->dead ? EINVAL : m->q.head ? EBUSY : 0;
    if (err == 0)
        m->dead = 1;
    lac_spin_unlock(&m->lk);
    return err;
}

/* ---- fiber-local storage ------------------------------------------------------------------ */

#define FLS_SHIFT 7 /* a key: seq << FLS_SHIFT | slot */
_Static_assert(LACUNA_FLS_KEYS_MAX == 1u << FLS_SHIFT, "a key's slot bits");

static struct {
    _Atomic uint32_t seq;           /* odd while the slot is a key */
    _Atomic(void (*)(void *)) dtor; /* its destructor, or NULL */
} fls_keys[LACUNA_FLS_KEYS_MAX];

typedef struct fls_tab {
    uint32_t n; /* slots below n are in e */
    struct {
        lacuna_fls_key key; /* the key the value was set under (0: none) */
        void *v;
    } e[];
} fls_tab;

static bool fls_valid(lacuna_fls_key key)
{
    uint32_t slot = key & (LACUNA_FLS_KEYS_MAX - 1), seq = key >> FLS_SHIFT;
    return (seq & 1) && atomic_load_explicit(&fls_keys[slot].seq, memory_order_acquire) == seq;
}

int lacuna_fls_key_create(lacuna_fls_key *key, void (*destructor)(void *))
{
    if (key == NULL)
        return EINVAL;
    for (uint32_t i = 0; i < LACUNA_FLS_KEYS_MAX; i++) {
        uint32_t seq = atomic_load_explicit(&fls_keys[i].seq, memory_order_relaxed);
        if ((seq & 1) || (seq + 1) >> (32 - FLS_SHIFT) ||
            !atomic_compare_exchange_strong(&fls_keys[i].seq, &seq, seq + 1))
            continue; /* in use, worn out (never reused), or just taken */
        atomic_store_explicit(&fls_keys[i].dtor, destructor, memory_order_release);
        *key = (seq + 1) << FLS_SHIFT | i;
        return 0;
    }
    return EAGAIN;
}

int lacuna_fls_key_delete(lacuna_fls_key key)
{
    uint32_t slot = key & (LACUNA_FLS_KEYS_MAX - 1), seq = key >> FLS_SHIFT;
    if (!(seq & 1) || !atomic_compare_exchange_strong(&fls_keys[slot].seq, &seq, seq + 1))
        return EINVAL;
    return 0;
}

void *lacuna_fls_get(lacuna_fls_key key)
{
    lac_sched *s = here();
    lac_fiber *f = s ? s->cur : NULL;
    fls_tab *t = f ? f->fls : NULL;
    uint32_t slot = key & (LACUNA_FLS_KEYS_MAX - 1);
    if (t == NULL || slot >= t->n || t->e[slot].key != key || !fls_valid(key))
        return NULL;
    return t->e[slot].v;
}

int lacuna_fls_set(lacuna_fls_key key, const void *value)
{
    lac_sched *s = here();
    lac_fiber *f = s ? s->cur : NULL;
    if (f == NULL)
        return EPERM;
    if (!fls_valid(key))
        return EINVAL;
    uint32_t slot = key & (LACUNA_FLS_KEYS_MAX - 1);
    fls_tab *t = f->fls;
    if (t == NULL || slot >= t->n) {
        uint32_t n = slot < 8 ? 8 : LACUNA_FLS_KEYS_MAX, old = t ? t->n : 0;
        t = realloc(t, sizeof *t + n * sizeof t->e[0]);
        if (t == NULL)
            return ENOMEM;
        memset(&t->e[old], 0, (n - old) * sizeof t->e[0]);
        t->n = n;
        f->fls = t;
    }
    t->e[slot].key = key;
    t->e[slot].v = (void *)value;
    return 0;
}

/* pthread's rule: destructors may set values again; a few rounds, then the rest is dropped. */
#define FLS_ROUNDS 4

void lac_fls_exit(lac_fiber *f)
{
    for (int round = 0; round < FLS_ROUNDS; round++) {
        bool ran = false;
        for (uint32_t i = 0; f->fls && i < ((fls_tab *)f->fls)->n; i++) {
            fls_tab *t = f->fls; /* a destructor's set may move it */
            lacuna_fls_key key = t->e[i].key;
            void *v = t->e[i].v;
            t->e[i].key = 0;
            t->e[i].v = NULL;
            void (*dtor)(void *) = atomic_load_explicit(&fls_keys[i].dtor, memory_order_acquire);
            if (v && dtor && fls_valid(key)) {
                dtor(v);
                ran = true;
            }
        }
        if (!ran)
            break;
    }
    free(f->fls);
    f->fls = NULL;
}

uint64_t lacuna_fiber_id(void)
{
    lac_sched *s = here();
    lac_fiber *f = s ? s->cur : NULL;
    if (f == NULL)
        return 0;
    return (uint64_t)atomic_load_explicit(&f->gen, memory_order_relaxed) << 32 | f->idx;
}

/* ---- async: a wake-up from outside the runtime ---------------------------------------------- */

struct lacuna_async {
    _Atomic uint64_t pending; /* sends since the last wait took them */
    _Atomic int waiting;      /* fibers/threads in lacuna_async_wait */
    int fd;                   /* eventfd: the doorbell, rung by the send that makes pending 1 */
};
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "lacuna_async_send is lock-free (signal-safe)");

lacuna_async *lacuna_async_make(void)
{
    lacuna_async *a = malloc(sizeof *a);
    if (a == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    a->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->fd < 0) {
        int err = errno;
        free(a);
        errno = err;
        return NULL;
    }
    atomic_init(&a->pending, 0);
    atomic_init(&a->waiting, 0);
    return a;
}

int lacuna_async_send(lacuna_async *a)
{
    if (a == NULL)
        return EINVAL;
    if (atomic_fetch_add_explicit(&a->pending, 1, memory_order_release) != 0)
        return 0;      /* the doorbell rang already and nobody has taken the sends yet */
    int saved = errno; /* a signal handler must leave errno as it found it */
    uint64_t one = 1;
    while (write(a->fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    errno = saved;
    return 0;
}

int lacuna_async_wait(lacuna_async *a, uint64_t *count)
{
    if (a == NULL)
        return EINVAL;
    atomic_fetch_add_explicit(&a->waiting, 1, memory_order_relaxed);
    int err = 0;
    for (;;) {
        uint64_t n = atomic_exchange_explicit(&a->pending, 0, memory_order_acquire);
        if (n) {
            uint64_t drain;
            (void)!read(a->fd, &drain, sizeof drain); /* EAGAIN: the send has not rung yet */
            if (count)
                *count = n;
            break;
        }
        err = lacuna_fd_wait(a->fd, POLLIN, -1); /* the pending check above comes first */
        if (err)
            break;
    }
    atomic_fetch_sub_explicit(&a->waiting, 1, memory_order_relaxed);
    return err;
}

int lacuna_async_free(lacuna_async *a)
{
    if (a == NULL)
        return 0;
    if (atomic_load_explicit(&a->waiting, memory_order_relaxed))
        return EBUSY;
    close(a->fd);
    free(a);
    return 0;
}
