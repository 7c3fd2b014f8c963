/* chan.c — channels and select: a ring buffer plus FIFO queues of parked senders and receivers,
 * usable by fibers of any worker or runtime and by plain threads.
 *
 * Invariants: waiters still waiting exist only when they must (receivers wait only while the
 * buffer is empty, senders only while it is full: for an unbuffered channel, while no receiver
 * waits), so a send first hands its element straight to a waiting receiver, and a receive refills
 * the buffer from the first waiting sender. A waiter is a lac_waiter on the parked fiber's (or
 * thread's) own stack; the element is copied directly between the two. Everything is under the
 * channel's spin lock. A waker wins a waiter's wait (lac_park_claim, wait.c) before it hands over;
 * a waiter whose wait a deadline, a cancel or another case of its select won stays linked, is
 * skipped, and is unlinked by its owner once it runs (so a channel with such a waiter is still
 * busy for lacuna_chan_free). A woken fiber runs next on the waker's worker (a hand-off) when
 * they share a runtime.
 *
 * Select (Go's selectgo): a case is picked uniformly among those that look ready (a peek without
 * locks) and tried under its own lock; with none ready, every channel is locked in address order,
 * the cases are looked at again in a random order, and one waiter per case joins the queues, all
 * sharing one lac_park, so the first waker wins them all.
 *
 * A plain thread (not running a fiber) blocks on a futex in its park; a thread whose own runtime
 * has fibers left is refused (EPERM) instead, since blocking it would stop them. The try forms
 * (declared in <lacuna/sync.h>) run the same no-wait paths and answer EAGAIN where the blocking
 * forms would wait.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A select first looks for a ready case without any lock (as Go's does): the fields it peeks at
 * (the counts, the closed flag, the queue heads) are written with relaxed atomic stores, always
 * under the lock, and read there plainly. A peek is only a hint; the verdict is taken under the
 * lock. */
#define PEEK(x)   __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

typedef struct chq {
    lac_waiter *head, *tail; /* oldest first */
} chq;

/* What every send and receive reads or writes is in the first 64 bytes: a hand-over between
 * workers moves at most two lines of the channel (it is not line-aligned: see lacuna_chan_make). */
struct lacuna_chan {
    lac_spin lk;
    bool closed;
    chq sendq;           /* parked senders */
    chq recvq;           /* parked receivers */
    size_t n;            /* ring: count */
    size_t cap;          /* buffered elements at most (0 = unbuffered) */
    size_t elem_size;    /* bytes of an element */
    size_t head;         /* ring: oldest element */
    unsigned char buf[]; /* cap * elem_size bytes */
};
_Static_assert(offsetof(struct lacuna_chan, elem_size) + sizeof(size_t) <= 64,
               "a channel's hot fields fit one cache line");

lacuna_chan *lacuna_chan_make(size_t elem_size, size_t capacity)
{
    /* No object is larger than PTRDIFF_MAX; an unbuffered channel (capacity 0) still copies
     * whole elements between fibers, so its element size is bounded the same way. */
    if (elem_size == 0 ||
        elem_size > (PTRDIFF_MAX - sizeof(lacuna_chan)) / (capacity ? capacity : 1)) {
        LAC_BAD_INPUT("lacuna_chan_make", "elem_size 0 or absurd size", NULL);
        errno = EINVAL;
        return NULL;
    }
    /* Not aligned to a cache line: the 48 bytes that would take cost a million parked fibers
     * (a channel each) 62 MiB, 1.57x -> 1.61x Go's RSS, for a few percent of a pinned
     * ping-pong. The hot fields are together at the front, on at most two lines. */
    lacuna_chan *c = calloc(1, sizeof(lacuna_chan) + elem_size * capacity);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    c->elem_size = elem_size;
    c->cap = capacity;
    return c;
}

static void q_push(chq *q, lac_waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        SET(q->head, w);
    q->tail = w;
    w->linked = true;
}

/* The head's prev is left stale: unlinking the head (every hand-over) then writes no other
 * waiter, whose line is on another fiber's stack and cold; a waiter whose prev is read is known
 * not to be the head. */
static void q_unlink(chq *q, lac_waiter *w)
{
    if (q->head == w) {
        SET(q->head, w->next);
        if (w->next == NULL)
            q->tail = NULL;
    } else {
        w->prev->next = w->next;
        if (w->next)
            w->next->prev = w->prev;
        else
            q->tail = w->prev;
    }
    w->linked = false;
}

static inline bool live(const lac_waiter *w)
{
    return atomic_load_explicit(&w->park->state, memory_order_relaxed) == LAC_PARK_WAITING;
}

/* Whether a waiter is a fiber that can never run again (its thread exited). */
static inline bool orphan(const lac_waiter *w)
{
    const lac_rt *rt = w->park->rt;
    return rt && atomic_load_explicit(&rt->dead, memory_order_relaxed);
}

/* The first waiter of q whose wait the caller wins (claimed and unlinked: ours to hand over to
 * and wake), or NULL; also NULL, with *orphaned set, when the first waiter still waiting is an
 * orphan: nothing may be handed to it or taken from it (orphaned NULL: orphans are taken too).
 * Waiters whose wait ended otherwise (a deadline, a cancel, another case of their select) stay:
 * their owners unlink them. */
static inline lac_waiter *q_take(chq *q, bool *orphaned)
{
    for (lac_waiter *w = q->head; w; w = w->next) {
        if (!live(w))
            continue;
        if (LAC_UNLIKELY(orphaned && orphan(w))) {
            *orphaned = true;
            return NULL;
        }
        if (lac_park_claim(w->park)) {
            /* its block's first line, which the wake needs, comes while the hand-over goes on */
            __builtin_prefetch(w->park->fiber);
            q_unlink(q, w);
            return w;
        }
    }
    return NULL;
}

static inline unsigned char *slot(lacuna_chan *c, size_t i)
{
    return c->buf + ((c->head + i) % c->cap) * c->elem_size;
}

/* An element's copy: the common sizes as plain moves, not a call. */
static inline void elem_copy(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4:
        memcpy(dst, src, 4);
        break;
    case 8:
        memcpy(dst, src, 8);
        break;
    case 16:
        memcpy(dst, src, 16);
        break;
    default:
        memcpy(dst, src, n);
    }
}

static bool any_orphan(const chq *q)
{
    for (const lac_waiter *w = q->head; w; w = w->next)
        if (live(w) && orphan(w))
            return true;
    return false;
}

/* Wake a waiter taken by q_take with its verdict (channel lock released: it is ours alone). */
static void wake(lac_waiter *w, int result)
{
    w->result = result;
    lac_park_wake(w->park);
}

/* A send that needs no wait (channel lock held, and kept): 0, EPIPE or EINVAL, or -1 when the
 * sender would have to wait. *woken: a receiver to wake once the lock is released, or NULL. */
static int send_locked(lacuna_chan *c, const void *elem, lac_waiter **woken)
{
    *woken = NULL;
    if (c->closed)
        return EPIPE;
    bool orphaned = false;
    lac_waiter *r = q_take(&c->recvq, &orphaned);
    if (r) { /* the buffer is empty: hand over directly */
        elem_copy(r->elem, elem, c->elem_size);
        *woken = r;
        return 0;
    }
    if (orphaned)
        return EINVAL;
    if (c->n < c->cap) {
        elem_copy(slot(c, c->n), elem, c->elem_size);
        SET(c->n, c->n + 1);
        return 0;
    }
    return -1;
}

/* A receive that needs no wait (channel lock held, and kept): as send_locked. */
static int recv_locked(lacuna_chan *c, void *elem, lac_waiter **woken)
{
    bool orphaned = false;
    lac_waiter *w = q_take(&c->sendq, &orphaned);
    *woken = w;
    if (orphaned)
        return EINVAL;
    if (c->n > 0) {
        elem_copy(elem, slot(c, 0), c->elem_size);
        c->head = (c->head + 1) % c->cap;
        if (w) /* room now: the oldest waiting sender's element joins the buffer */
            elem_copy(slot(c, c->n - 1), w->elem, c->elem_size);
        else
            SET(c->n, c->n - 1);
        return 0;
    }
    if (w) { /* unbuffered: take it straight from the sender */
        elem_copy(elem, w->elem, c->elem_size);
        return 0;
    }
    return c->closed ? EPIPE : -1;
}

/* Whether the caller is a thread whose own runtime still has fibers: blocking it would stop them.
 */
static bool refuse_block(const lac_sched *s)
{
    return s && s->cur == NULL && lac_rt_live(s->rt) > 0;
}

/* Wait in a queue until woken or the deadline (channel lock held; released here). The waker's
 * verdict, ETIMEDOUT, ECANCELED, or EPERM (see refuse_block). */
static int wait_in(lacuna_chan *c, chq *q, void *elem, uint64_t deadline)
{
    lac_sched *s = lac_tls_sched;
    lac_park tp, *p = lac_park_mine(s, &tp);
    int err = refuse_block(s) ? EPERM : lac_park_arm(p, deadline, 0);
    if (err) {
        lac_spin_unlock(&c->lk);
        return err;
    }
    /* On a line of its own: a waker on another worker reads and writes it while this fiber's
     * switch saves its registers just below (pinned ping-pong: 7 % slower when they shared one). */
    _Alignas(64) lac_waiter w = {.park = p, .elem = elem};
    q_push(q, &w);
    lac_spin_unlock(&c->lk);
    err = lac_park_block(p, deadline);
    if (err == 0)
        return w.result;
    lac_spin_lock(&c->lk); /* timed out or cancelled: still queued, unlink ourselves */
    if (w.linked)
        q_unlink(q, &w);
    lac_spin_unlock(&c->lk);
    return err;
}

static int send_until(lacuna_chan *c, const void *elem, uint64_t deadline)
{
    lac_waiter *woken;
    lac_spin_lock(&c->lk);
    int r = send_locked(c, elem, &woken);
    if (r < 0)
        return wait_in(c, &c->sendq, (void *)elem, deadline);
    lac_spin_unlock(&c->lk);
    if (woken)
        wake(woken, 0);
    return r;
}

static int recv_until(lacuna_chan *c, void *elem, uint64_t deadline)
{
    lac_waiter *woken;
    lac_spin_lock(&c->lk);
    int r = recv_locked(c, elem, &woken);
    if (r < 0)
        return wait_in(c, &c->recvq, elem, deadline);
    lac_spin_unlock(&c->lk);
    if (woken)
        wake(woken, 0);
    return r;
}

int lacuna_chan_send(lacuna_chan *c, const void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_send", "NULL chan or elem", c);
        return EINVAL;
    }
    return send_until(c, elem, LAC_FOREVER);
}

int lacuna_chan_recv(lacuna_chan *c, void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_recv", "NULL chan or elem", c);
        return EINVAL;
    }
    return recv_until(c, elem, LAC_FOREVER);
}

int lacuna_chan_send_until(lacuna_chan *c, const void *elem, uint64_t deadline_ns)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_send_until", "NULL chan or elem", c);
        return EINVAL;
    }
    return send_until(c, elem, deadline_ns);
}

int lacuna_chan_recv_until(lacuna_chan *c, void *elem, uint64_t deadline_ns)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_recv_until", "NULL chan or elem", c);
        return EINVAL;
    }
    return recv_until(c, elem, deadline_ns);
}

int lacuna_chan_try_send(lacuna_chan *c, const void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_try_send", "NULL chan or elem", c);
        return EINVAL;
    }
    lac_waiter *woken;
    lac_spin_lock(&c->lk);
    int r = send_locked(c, elem, &woken);
    lac_spin_unlock(&c->lk);
    if (woken)
        wake(woken, 0);
    return r < 0 ? EAGAIN : r;
}

int lacuna_chan_try_recv(lacuna_chan *c, void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_try_recv", "NULL chan or elem", c);
        return EINVAL;
    }
    lac_waiter *woken;
    lac_spin_lock(&c->lk);
    int r = recv_locked(c, elem, &woken);
    lac_spin_unlock(&c->lk);
    if (woken)
        wake(woken, 0);
    return r < 0 ? EAGAIN : r;
}

/* ---- select ------------------------------------------------------------------------------- */

/* The caller's random numbers (xorshift64), for the order select tries its cases in. */
static __thread uint64_t sel_rng;

/* The next random number of the calling thread's generator (see perm_fill for why not inlined). */
static __attribute__((noinline)) uint64_t sel_rand(void)
{
    uint64_t x = sel_rng;
    if (x == 0)
        x = ((uint64_t)(uintptr_t)&sel_rng * 0x9e3779b97f4a7c15ull ^ lac_now_ns()) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return sel_rng = x;
}

/* perm[0..n) = the indices of the cases with a channel, in a uniformly random order
 * (Fisher-Yates, inside-out; Lemire's multiply-shift for the bounded draws). Not inlined: a fiber
 * may resume on another thread later in the caller (see internal.h), so the thread-local's
 * address is computed here only. */
static __attribute__((noinline)) void perm_fill(const lacuna_select_case *cases, size_t n,
                                                size_t *perm)
{
    uint64_t x = sel_rng;
    if (x == 0)
        x = ((uint64_t)(uintptr_t)&sel_rng * 0x9e3779b97f4a7c15ull ^ lac_now_ns()) | 1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (cases[i].chan == NULL)
            continue;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = (size_t)(((x >> 32) * (uint64_t)(m + 1)) >> 32);
        perm[m] = perm[j];
        perm[j] = i;
        m++;
    }
    sel_rng = x;
}

_Static_assert(LACUNA_SELECT_RECV == LACUNA_SELECT_SEND + 1, "lacuna_select checks op by range");

/* Whether a case on c looks ready, without its lock: a hint (see PEEK). Branch-free but for the
 * op: select peeks at every case before it takes a lock, so this is most of its fast path. */
static inline bool maybe_ready(const lacuna_chan *c, int op)
{
    uintptr_t any = PEEK(c->closed);
    if (op == LACUNA_SELECT_SEND)
        any |= (uintptr_t)PEEK(c->recvq.head) | (PEEK(c->n) < c->cap);
    else
        any |= (uintptr_t)PEEK(c->sendq.head) | PEEK(c->n);
    return any != 0;
}

/* One case, under its channel's lock (held, kept): as send_locked. */
static int case_locked(const lacuna_select_case *k, lac_waiter **woken)
{
    return k->op == LACUNA_SELECT_SEND ? send_locked(k->chan, k->elem, woken)
                                       : recv_locked(k->chan, k->elem, woken);
}

/* Lock (or unlock) the channels of the cases in `order` (sorted by channel address: a global
 * lock order, each channel once). */
static void lock_all(const lacuna_select_case *cases, const size_t *order, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (k == 0 || cases[order[k]].chan != cases[order[k - 1]].chan)
            lac_spin_lock(&cases[order[k]].chan->lk);
}

static void unlock_all(const lacuna_select_case *cases, const size_t *order, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (k == 0 || cases[order[k]].chan != cases[order[k - 1]].chan)
            lac_spin_unlock(&cases[order[k]].chan->lk);
}

#define SEL_STACK 8 /* cases whose scratch lives on the caller's stack; more are malloc'ed */

/* Select over the n cases whose channel is not NULL (their indices in perm, a random order, and
 * order, by channel address), with scratch ws for their waiters. */
static int select_live(lacuna_select_case *cases, size_t *perm, size_t *order, lac_waiter *ws,
                       size_t n, uint64_t deadline, bool tried, size_t *chosen)
{
    lac_waiter *woken;
    /* First each case alone, in random order (fair: no ready case is always behind another),
     * where it looks ready, under its own lock only (done already by the caller when tried). */
    for (size_t k = 0; !tried && k < n; k++) {
        lacuna_select_case *cs = &cases[perm[k]];
        if (!maybe_ready(cs->chan, cs->op))
            continue;
        lac_spin_lock(&cs->chan->lk);
        int r = case_locked(cs, &woken);
        lac_spin_unlock(&cs->chan->lk);
        if (r >= 0) {
            if (woken)
                wake(woken, 0);
            *chosen = perm[k];
            return r;
        }
    }
    if (deadline == 0)
        return ETIMEDOUT;
    /* None: under every lock, taken in address order, look again (one may have become ready),
     * else queue on them all. */
    for (size_t k = 0; k < n; k++) {
        size_t i = perm[k], j = k;
        for (; j > 0 && (uintptr_t)cases[order[j - 1]].chan > (uintptr_t)cases[i].chan; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    lock_all(cases, order, n);
    for (size_t k = 0; k < n; k++) {
        int r = case_locked(&cases[perm[k]], &woken);
        if (r >= 0) {
            unlock_all(cases, order, n);
            if (woken)
                wake(woken, 0);
            *chosen = perm[k];
            return r;
        }
    }
    lac_sched *s = lac_tls_sched;
    lac_park tp, *p = lac_park_mine(s, &tp);
    int err = refuse_block(s) ? EPERM : lac_park_arm(p, deadline, 0);
    if (err) {
        unlock_all(cases, order, n);
        return err;
    }
    for (size_t k = 0; k < n; k++) {
        lacuna_select_case *cs = &cases[perm[k]];
        ws[k] = (lac_waiter){.park = p, .elem = cs->elem, .index = perm[k]};
        q_push(cs->op == LACUNA_SELECT_SEND ? &cs->chan->sendq : &cs->chan->recvq, &ws[k]);
    }
    unlock_all(cases, order, n);
    err = lac_park_block(p, deadline);
    /* The winning case's waiter was unlinked by its waker (the only one a waker unlinks: one
     * wins the park); the others are ours to unlink. */
    size_t won = n;
    lock_all(cases, order, n);
    for (size_t k = 0; k < n; k++) {
        lacuna_select_case *cs = &cases[perm[k]];
        if (ws[k].linked)
            q_unlink(cs->op == LACUNA_SELECT_SEND ? &cs->chan->sendq : &cs->chan->recvq, &ws[k]);
        else
            won = k;
    }
    unlock_all(cases, order, n);
    if (err == 0 && won < n) {
        err = ws[won].result;
        *chosen = ws[won].index;
    }
    return err;
}

/* One case alone, under its own lock only: as case_locked (-1: not ready), the wake done. */
static int try_case(const lacuna_select_case *k)
{
    lac_waiter *woken;
    lac_spin_lock(&k->chan->lk);
    int r = case_locked(k, &woken);
    lac_spin_unlock(&k->chan->lk);
    if (woken)
        wake(woken, 0);
    return r;
}

/* lacuna_select past its fast path: scratch for nlive waiters, a random order, the locking order
 * (kept out of lacuna_select, whose common case needs none of it). */
static __attribute__((noinline)) int select_slow(lacuna_select_case *cases, size_t n, size_t nlive,
                                                 uint64_t deadline_ns, size_t *chosen)
{
    size_t perm_s[SEL_STACK], order_s[SEL_STACK], *perm = perm_s, *order = order_s;
    lac_waiter ws_s[SEL_STACK], *ws = ws_s;
    void *heap = NULL;
    if (nlive > SEL_STACK) {
        if (nlive > SIZE_MAX / (sizeof *ws + 2 * sizeof(size_t)) ||
            (heap = malloc(nlive * (sizeof *ws + 2 * sizeof(size_t)))) == NULL)
            return ENOMEM;
        ws = heap;
        perm = (size_t *)(ws + nlive);
        order = perm + nlive;
    }
    perm_fill(cases, n, perm);
    int err = select_live(cases, perm, order, ws, nlive, deadline_ns, n <= 64, chosen);
    free(heap);
    return err;
}

/* Several cases look ready (the bits of ready, n <= 64): try them in a uniformly random order,
 * each under its own lock alone. The result of the one that completed (its index in *chosen), or
 * -1 when every peek raced away. Kept out of lacuna_select: one ready case is the common one. */
static __attribute__((noinline)) int select_ready(lacuna_select_case *cases, uint64_t ready,
                                                  size_t *chosen)
{
    uint64_t x = sel_rand();
    do {
        uint64_t m = ready;
        if (m & (m - 1)) { /* several: the r-th of them, r uniform below their count */
            uint64_t r = ((x >> 32) * (uint64_t)__builtin_popcountll(m)) >> 32;
            for (; r > 0; r--)
                m &= m - 1;
        }
        size_t i = (size_t)__builtin_ctzll(m);
        int res = try_case(&cases[i]);
        if (res >= 0) {
            *chosen = i;
            return res;
        }
        ready &= ~(1ull << i);
        x = x * 6364136223846793005ull + 1442695040888963407ull; /* next draw (an LCG) */
    } while (ready);
    return -1;
}

int lacuna_select(lacuna_select_case *cases, size_t n, uint64_t deadline_ns, size_t *chosen)
{
    if ((cases == NULL && n > 0) || chosen == NULL) {
        LAC_BAD_INPUT("lacuna_select", "NULL cases or chosen", cases);
        return EINVAL;
    }
    /* One pass checks every case and, with n <= 64, peeks at its channel: ready has a bit for
     * each case that looks ready and last is one of them. */
    size_t nlive = 0, last = 0;
    uint64_t ready = 0;
    for (size_t i = 0; i < n; i++) {
        const lacuna_select_case *k = &cases[i];
        lacuna_chan *c = k->chan;
        int op = k->op;
        if ((unsigned)op - LACUNA_SELECT_SEND > 1u) { /* neither SEND nor RECV */
            LAC_BAD_INPUT("lacuna_select", "unknown op", k);
            return EINVAL;
        }
        if (c == NULL)
            continue;
        if (k->elem == NULL) {
            LAC_BAD_INPUT("lacuna_select", "NULL elem", k);
            return EINVAL;
        }
        nlive++;
        if (n <= 64 && maybe_ready(c, op)) { /* past 64, select_live peeks in its own order */
            ready |= 1ull << i;
            last = i;
        }
    }
    if (nlive == 0) { /* nothing can become ready: only the deadline (or a cancel) ends it */
        if (deadline_ns == LAC_FOREVER) {
            LAC_BAD_INPUT("lacuna_select", "no case and no deadline", cases);
            return EINVAL;
        }
        if (deadline_ns == 0)
            return ETIMEDOUT;
        int err = lacuna_sleep_until(deadline_ns);
        return err ? err : ETIMEDOUT;
    }
    /* The common case, up to 64 cases: pick uniformly among those that look ready and try it
     * under its lock alone (one ready: no draw); a peek that raced away is dropped and another
     * picked. */
    if (n <= 64 && ready) {
        int res;
        if ((ready & (ready - 1)) == 0) {
            res = try_case(&cases[last]);
            if (res >= 0)
                *chosen = last;
        } else {
            res = select_ready(cases, ready, chosen);
        }
        if (res >= 0)
            return res;
    }
    if (n <= 64 && deadline_ns == 0)
        return ETIMEDOUT;
    return select_slow(cases, n, nlive, deadline_ns, chosen);
}

size_t lacuna_chan_len(const lacuna_chan *c)
{
    if (c == NULL)
        return 0;
    lacuna_chan *m = (lacuna_chan *)c; /* the lock is not part of the value */
    lac_spin_lock(&m->lk);
    size_t n = m->n;
    lac_spin_unlock(&m->lk);
    return n;
}

size_t lacuna_chan_cap(const lacuna_chan *c)
{
    return c ? c->cap : 0; /* fixed at make */
}

int lacuna_chan_close(lacuna_chan *c)
{
    if (c == NULL) {
        LAC_BAD_INPUT("lacuna_chan_close", "NULL chan", NULL);
        return EINVAL;
    }
    lac_spin_lock(&c->lk);
    if (c->closed) {
        lac_spin_unlock(&c->lk);
        return EALREADY;
    }
    if (any_orphan(&c->recvq) || any_orphan(&c->sendq)) {
        lac_spin_unlock(&c->lk);
        return EINVAL;
    }
    SET(c->closed, true);
    /* Take every waiter still waiting first: once woken, a waiter's record (on its stack) is
     * gone. Oldest first, receivers before senders. */
    lac_waiter *woken = NULL, **tail = &woken, *w;
    while ((w = q_take(&c->recvq, NULL)) != NULL) {
        *tail = w;
        tail = &w->next;
    }
    while ((w = q_take(&c->sendq, NULL)) != NULL) {
        *tail = w;
        tail = &w->next;
    }
    *tail = NULL;
    lac_spin_unlock(&c->lk);
    for (lac_waiter *next; woken; woken = next) {
        next = woken->next; /* read before the wake: the record may be gone after it */
        wake(woken, EPIPE);
    }
    return 0;
}

int lacuna_chan_free(lacuna_chan *c)
{
    if (c == NULL)
        return 0;
    lac_spin_lock(&c->lk);
    bool busy = c->sendq.head || c->recvq.head;
    lac_spin_unlock(&c->lk);
    if (busy)
        return EBUSY;
    free(c);
    return 0;
}
