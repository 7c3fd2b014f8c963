/* chan.c — channels between the fibers of one thread: a ring buffer plus FIFO queues of parked
 * senders and receivers.
 *
 * Invariants: waiters exist only when they must (receivers wait only while the buffer is empty,
 * senders only while it is full: for an unbuffered channel, while no receiver waits), so a send
 * first hands its element straight to a waiting receiver, and a receive refills the buffer from
 * the first waiting sender. A waiter is a lac_waiter on the parked fiber's own stack; the element
 * is copied directly between the two fibers' memory. A woken fiber runs next (a hand-off).
 *
 * Does not: lock. A channel serves the fibers of one thread; a call that would wake another
 * thread's fiber is refused with EINVAL rather than corrupting that thread's scheduler.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct lacuna_chan {
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

/* Park the calling fiber in a queue until woken; returns the waker's verdict. */
static int wait_in(lac_waiter **head, lac_waiter **tail, lac_fiber *self, void *elem)
{
    lac_waiter w = {.fiber = self, .elem = elem, .result = 0};
    enqueue(head, tail, &w);
    lac_fiber_park();
    return w.result;
}

int lacuna_chan_send(lacuna_chan *c, const void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_send", "NULL chan or elem", c);
        return EINVAL;
    }
    if (c->closed)
        return EPIPE;
    if (c->recvq) { /* the buffer is empty: hand over directly */
        if (!lac_fiber_local(c->recvq->fiber))
            return EINVAL;
        lac_waiter *r = dequeue(&c->recvq, &c->recvq_tail);
        memcpy(r->elem, elem, c->elem_size);
        r->result = 0;
        lac_fiber_ready(r->fiber);
        return 0;
    }
    if (c->n < c->cap) {
        memcpy(slot(c, c->n), elem, c->elem_size);
        c->n++;
        return 0;
    }
    lac_fiber *self = lac_fiber_self();
    if (self == NULL)
        return EPERM;
    if (c->sendq && !lac_fiber_local(c->sendq->fiber))
        return EINVAL;
    return wait_in(&c->sendq, &c->sendq_tail, self, (void *)elem);
}

int lacuna_chan_recv(lacuna_chan *c, void *elem)
{
    if (c == NULL || elem == NULL) {
        LAC_BAD_INPUT("lacuna_chan_recv", "NULL chan or elem", c);
        return EINVAL;
    }
    if (c->sendq && !lac_fiber_local(c->sendq->fiber))
        return EINVAL;
    if (c->n > 0) {
        memcpy(elem, slot(c, 0), c->elem_size);
        c->head = (c->head + 1) % c->cap;
        c->n--;
        if (c->sendq) { /* room now: the oldest waiting sender's element joins the buffer */
            lac_waiter *w = dequeue(&c->sendq, &c->sendq_tail);
            memcpy(slot(c, c->n), w->elem, c->elem_size);
            c->n++;
            w->result = 0;
            lac_fiber_ready(w->fiber);
        }
        return 0;
    }
    if (c->sendq) { /* unbuffered: take it straight from the sender */
        lac_waiter *w = dequeue(&c->sendq, &c->sendq_tail);
        memcpy(elem, w->elem, c->elem_size);
        w->result = 0;
        lac_fiber_ready(w->fiber);
        return 0;
    }
    if (c->closed)
        return EPIPE;
    lac_fiber *self = lac_fiber_self();
    if (self == NULL)
        return EPERM;
    if (c->recvq && !lac_fiber_local(c->recvq->fiber))
        return EINVAL;
    return wait_in(&c->recvq, &c->recvq_tail, self, elem);
}

int lacuna_chan_close(lacuna_chan *c)
{
    if (c == NULL) {
        LAC_BAD_INPUT("lacuna_chan_close", "NULL chan", NULL);
        return EINVAL;
    }
    if (c->closed)
        return EALREADY;
    if ((c->sendq && !lac_fiber_local(c->sendq->fiber)) ||
        (c->recvq && !lac_fiber_local(c->recvq->fiber)))
        return EINVAL;
    c->closed = true;
    while (c->recvq) {
        lac_waiter *w = dequeue(&c->recvq, &c->recvq_tail);
        w->result = EPIPE;
        lac_fiber_ready(w->fiber);
    }
    while (c->sendq) {
        lac_waiter *w = dequeue(&c->sendq, &c->sendq_tail);
        w->result = EPIPE;
        lac_fiber_ready(w->fiber);
    }
    return 0;
}

int lacuna_chan_free(lacuna_chan *c)
{
    if (c == NULL)
        return 0;
    if (c->sendq || c->recvq)
        return EBUSY;
    free(c);
    return 0;
}
