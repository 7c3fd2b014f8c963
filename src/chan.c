/* chan.c — channels: a ring buffer plus FIFO queues of parked senders and receivers, usable by
 * fibers of any worker or runtime and by plain threads.
 *
 * Invariants: waiters exist only when they must (receivers wait only while the buffer is empty,
 * senders only while it is full: for an unbuffered channel, while no receiver waits), so a send
 * first hands its element straight to a waiting receiver, and a receive refills the buffer from
 * the first waiting sender. A waiter is a lac_waiter on the parked fiber's (or thread's) own
 * stack; the element is copied directly between the two. Everything is under the channel's spin
 * lock; a fiber parks holding it, and it is released once the fiber's context is saved (sched.c),
 * so whoever dequeues a waiter may wake it at once. A woken fiber runs next on the waker's worker
 * (a hand-off) when they share a runtime.
 *
 * A plain thread (not running a fiber) blocks on a futex in the waiter; a thread whose own
 * runtime has fibers left is refused (EPERM) instead, since blocking it would stop them. The try
 * forms (declared in <lacuna/sync.h>) run the same no-wait paths and answer EAGAIN where the
 * blocking forms would wait.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct lacuna_chan {
    lac_spin lk;
    size_t elem_size;
    size_t cap;                     /* buffered elements at most (0 = unbuffered) */
    size_t head, n;                 /* ring: oldest element, count */
    lac_waiter *sendq, *sendq_tail; /* parked senders, oldest first */
    lac_waiter *recvq, *recvq_tail; /* parked receivers, oldest first */
    bool closed;
    unsigned char buf[]; /* cap * elem_size bytes */
};

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
    lacuna_chan *c = calloc(1, sizeof *c + elem_size * capacity);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    c->elem_size = elem_size;
    c->cap = capacity;
    return c;
}

static void enqueue(lac_waiter **head, lac_waiter **tail, lac_waiter *w)
{
    w->next = NULL;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static lac_waiter *dequeue(lac_waiter **head, lac_waiter **tail)
{
    lac_waiter *w = *head;
    *head = w->next;
    if (*head == NULL)
        *tail = NULL;
    return w;
}

static inline unsigned char *slot(lacuna_chan *c, size_t i)
{
    return c->buf + ((c->head + i) % c->cap) * c->elem_size;
}

/* Whether the first waiter of a queue is a fiber that can never run again (its thread exited):
 * nothing may be handed to it or taken from it. */
static inline bool orphan_first(const lac_waiter *q)
{
    return q && q->fiber && lac_fiber_orphan(q->fiber);
}

static bool any_orphan(const lac_waiter *q)
{
    for (; q; q = q->next)
        if (q->fiber && lac_fiber_orphan(q->fiber))
            return true;
    return false;
}

/* Wake a dequeued waiter with its verdict (channel lock released: the waiter is ours alone). */
static void wake(lac_waiter *w, int result)
{
    w->result = result;
    if (w->fiber) {
        lac_fiber_ready(w->fiber);
    } else {
        atomic_fetch_sub_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
        lac_thread_wake(&w->done);
    }
}

/* Wait in a queue until woken (channel lock held; released here). The waker's verdict, or EPERM:
 * the caller is a thread whose runtime still has fibers, which blocking it would stop. */
static int wait_in(lacuna_chan *c, lac_waiter **head, lac_waiter **tail, void *elem)
{
    lac_sched *s = lac_tls_sched;
    lac_waiter w = {.fiber = s ? s->cur : NULL, .elem = elem};
    if (w.fiber) {
        enqueue(head, tail, &w);
        lac_sched_park(s, &c->lk);
        return w.result;
    }
    if (s && lac_rt_live(s->rt) > 0) {
        lac_spin_unlock(&c->lk);
        return EPERM;
    }
    atomic_fetch_add_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
    enqueue(head, tail, &w);
    lac_spin_unlock(&c->lk);
    lac_thread_wait(&w.done);
    return w.result;
}

/* A send that needs no wait (channel lock held): 0, EPIPE or EINVAL with the lock released, or
 * -1 with it still held when the sender would have to wait. */
static int send_now(lacuna_chan *c, const void *elem)
{
    if (c->closed) {
        lac_spin_unlock(&c->lk);
        return EPIPE;
    }
    if (orphan_first(c->recvq)) {
        lac_spin_unlock(&c->lk);
        return EINVAL;
    }
    if (c->recvq) { /* the buffer is empty: hand over directly */
        lac_waiter *r = dequeue(&c->recvq, &c->recvq_tail);
        memcpy(r->elem, elem, c->elem_size);
        lac_spin_unlock(&c->lk);
        wake(r, 0);
        return 0;
    }
    if (c->n < c->cap) {
        memcpy(slot(c, c->n), elem, c->elem_size);
        c->n++;
        lac_spin_unlock(&c->lk);
        return 0;
    }
    return -1;
}

/* A receive that needs no wait (channel lock held): as send_now. */
static int recv_now(lacuna_chan *c, void *elem)
{
    if (orphan_first(c->sendq)) {
        lac_spin_unlock(&c->lk);
        return EINVAL;
    }
    if (c->n > 0) {
        memcpy(elem, slot(c, 0), c->elem_size);
        c->head = (c->head + 1) % c->cap;
        c->n--;
        lac_waiter *w = NULL;
        if (c->sendq) { /* room now: the oldest waiting sender's element joins the buffer */
            w = dequeue(&c->sendq, &c->sendq_tail);
            memcpy(slot(c, c->n), w->elem, c->elem_size);
            c->n++;
        }
        lac_spin_unlock(&c->lk);
        if (w)
            wake(w, 0);
        return 0;
    }
    if (c->sendq) { /* unbuffered: take it straight from the sender */
        lac_waiter *w = dequeue(&c->sendq, &c->sendq_tail);
        memcpy(elem, w->elem, c->elem_size);
        lac_spin_unlock(&c->lk);
        wake(w, 0);
        return 0;
    }
    if (c->closed) {
        lac_spin_unlock(&c->lk);
        return EPIPE;
    }
    return -1;
}

int lacuna_chan_send(lacuna_chan *c, const void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_send", "NULL chan or elem", c);
        return EINVAL;
    }
    lac_spin_lock(&c->lk);
    int r = send_now(c, elem);
    if (r >= 0)
        return r;
    return wait_in(c, &c->sendq, &c->sendq_tail, (void *)elem);
}

int lacuna_chan_recv(lacuna_chan *c, void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_recv", "NULL chan or elem", c);
        return EINVAL;
    }
    lac_spin_lock(&c->lk);
    int r = recv_now(c, elem);
    if (r >= 0)
        return r;
    return wait_in(c, &c->recvq, &c->recvq_tail, elem);
}

int lacuna_chan_try_send(lacuna_chan *c, const void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_try_send", "NULL chan or elem", c);
        return EINVAL;
    }
    lac_spin_lock(&c->lk);
    int r = send_now(c, elem);
    if (r >= 0)
        return r;
    lac_spin_unlock(&c->lk);
    return EAGAIN;
}

int lacuna_chan_try_recv(lacuna_chan *c, void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_try_recv", "NULL chan or elem", c);
        return EINVAL;
    }
    lac_spin_lock(&c->lk);
    int r = recv_now(c, elem);
    if (r >= 0)
        return r;
    lac_spin_unlock(&c->lk);
    return EAGAIN;
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
    if (any_orphan(c->recvq) || any_orphan(c->sendq)) {
        lac_spin_unlock(&c->lk);
        return EINVAL;
    }
    c->closed = true;
    /* Take every waiter first: once woken, a waiter's record (on its stack) is gone. Oldest
     * first, receivers before senders. */
    lac_waiter *woken = NULL, **tail = &woken;
    while (c->recvq) {
        *tail = dequeue(&c->recvq, &c->recvq_tail);
        tail = &(*tail)->next;
    }
    while (c->sendq) {
        *tail = dequeue(&c->sendq, &c->sendq_tail);
        tail = &(*tail)->next;
    }
    *tail = NULL;
    lac_spin_unlock(&c->lk);
    for (lac_waiter *w = woken, *next; w; w = next) {
        next = w->next; /* read before the wake: w may be gone after it */
        wake(w, EPIPE);
    }
    return 0;
}

int lacuna_chan_free(lacuna_chan *c)
{
    if (c == NULL)
        return 0;
    lac_spin_lock(&c->lk);
    bool busy = c->sendq || c->recvq;
    lac_spin_unlock(&c->lk);
    if (busy)
        return EBUSY;
    free(c);
    return 0;
}
