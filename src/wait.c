/* wait.c — what a parked fiber waits for besides a wake-up: a deadline (lacuna_sleep_ms, the
 * timeout of lacuna_fd_wait) or an fd (lacuna_fd_wait), and the poll that ends those waits.
 *
 * Owns: each scheduler's timer heap (a binary min-heap of fibers on their deadline), its epoll
 * instance (made by the first fd wait, CLOEXEC) and its list of fd waits in progress (records on
 * the waiting fibers' stacks), and the thread-context versions of sleep and fd wait.
 *
 * Invariants:
 *   - A fiber is in the heap iff its heap_pos != LAC_NO_HEAP; a fiber in an fd wait is also in
 *     s->io_waits, registered EPOLLONESHOT with its record as the cookie, and counted in s->nio.
 *   - Every timeout is a deadline on CLOCK_MONOTONIC taken once at the call: signal handlers
 *     (EINTR) and spurious wake-ups never restart it.
 *   - Whichever ends a timed fd wait first (the fd or the deadline) wins; the wait takes itself
 *     out of the heap and epoll before it returns, so a late event finds nothing.
 *
 * Does not: switch contexts itself (it parks through sched.c), or wake fibers of other threads.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* An fd wait in progress: lives on the waiting fiber's stack. */
struct lac_io_wait {
    lac_io_wait *next, *prev; /* s->io_waits */
    lac_fiber *fiber;
    int fd;          /* what epoll watches: the caller's fd, or a dup of it */
    int user_fd;     /* the caller's fd */
    uint32_t events; /* its epoll events, for a forked child's new epoll */
};
_Static_assert(offsetof(lac_io_wait, user_fd) == LAC_IO_WAIT_FD_OFF &&
                   offsetof(lac_io_wait, events) == LAC_IO_WAIT_EVENTS_OFF,
               "the debug descriptor (fiber.c) names these offsets");

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Sleep the thread until a CLOCK_MONOTONIC deadline: a signal handler running meanwhile
 * (EINTR) does not restart the whole sleep. */
static void sleep_until(uint64_t deadline)
{
    struct timespec t = {.tv_sec = (time_t)(deadline / 1000000000u),
                         .tv_nsec = (long)(deadline % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
        ;
}

/* ---- the timer heap ------------------------------------------------------------------------ */

static void heap_swap(lac_sched *s, size_t a, size_t b)
{
    lac_fiber *t = s->heap[a];
    s->heap[a] = s->heap[b];
    s->heap[b] = t;
    s->heap[a]->heap_pos = a;
    s->heap[b]->heap_pos = b;
}

static void heap_up(lac_sched *s, size_t i)
{
    while (i > 0 && s->heap[(i - 1) / 2]->deadline > s->heap[i]->deadline) {
        heap_swap(s, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(lac_sched *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < s->nheap && s->heap[l]->deadline < s->heap[m]->deadline)
            m = l;
        if (l + 1 < s->nheap && s->heap[l + 1]->deadline < s->heap[m]->deadline)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

static int heap_push(lac_sched *s, lac_fiber *f)
{
    if (s->nheap == s->heap_cap) {
        size_t cap = s->heap_cap ? 2 * s->heap_cap : 64;
        lac_fiber **h = realloc(s->heap, cap * sizeof *h);
        if (h == NULL)
            return ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    f->heap_pos = s->nheap;
    s->heap[s->nheap++] = f;
    heap_up(s, f->heap_pos);
    return 0;
}

static void heap_remove(lac_sched *s, lac_fiber *f)
{
    size_t i = f->heap_pos;
    f->heap_pos = LAC_NO_HEAP;
    if (--s->nheap == i)
        return;
    s->heap[i] = s->heap[s->nheap];
    s->heap[i]->heap_pos = i;
    heap_up(s, i);
    heap_down(s, s->heap[i]->heap_pos);
}

/* ---- polling ------------------------------------------------------------------------------- */

/* End a wait's registration: delete it before closing a dup, since epoll drops a registration
 * only when the last descriptor of its file is closed, and would report the closed number. */
static void io_unregister(lac_sched *s, int fd, int wfd)
{
    (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, wfd, NULL);
    if (wfd != fd)
        close(wfd);
}

/* End f's wait here, on the worker it waits at, and queue it. Everything the wait registered on
 * this worker is undone now: once queued, f may be stolen and resume on another worker. */
static void ready(lac_sched *s, lac_fiber *f, bool timed_out)
{
    f->timed_out = timed_out;
    if (f->heap_pos != LAC_NO_HEAP)
        heap_remove(s, f);
    lac_io_wait *w = f->io;
    if (w) {
        f->io = NULL;
        s->nio--;
        if (w->next)
            w->next->prev = w->prev;
        if (w->prev)
            w->prev->next = w->next;
        else
            s->io_waits = w->next;
        io_unregister(s, w->user_fd, w->fd);
    }
    f->wait = LAC_W_NONE;
    lac_sched_push(s, f);
}

int lac_wait_prepare(lac_sched *s)
{
    if (s->epfd < 0 && (s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return errno;
    if (s->evfd >= 0)
        return 0;
    int e = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e < 0)
        return errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->evfd};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, e, &ev) != 0) {
        int err = errno;
        close(e);
        return err;
    }
    s->evfd = e;
    return 0;
}

void lac_wait_kick(lac_sched *s)
{
    uint64_t one = 1;
    ssize_t n = write(s->evfd, &one, sizeof one); /* EAGAIN: the counter is full, it wakes anyway */
    (void)n;
}

int lac_wait_poll(lac_sched *s, bool block)
{
    int timeout = 0;
    /* Asleep, it wakes for its next timer or the next aging scan of parked fibers (parked.c). */
    uint64_t due = block ? lac_parked_due() : 0;
    if (block && s->nheap > 0 && s->heap[0]->deadline < due)
        due = s->heap[0]->deadline;
    if (block && due != UINT64_MAX) {
        uint64_t now = now_ns();
        uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
        timeout = ms > INT_MAX ? INT_MAX : (int)ms;
    } else if (block) {
        timeout = -1;
    }
    if (block || s->nio > 0) {
        struct epoll_event ev[128];
        int n = epoll_wait(s->epfd, ev, 128, timeout);
        if (n < 0 && errno != EINTR)
            return errno;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &s->evfd) {
                uint64_t v;
                ssize_t r = read(s->evfd, &v, sizeof v);
                (void)r;
                continue;
            }
            lac_fiber *f = ((lac_io_wait *)ev[i].data.ptr)->fiber;
            if (f->io == ev[i].data.ptr)
                ready(s, f, false);
        }
    }
    if (s->nheap > 0) {
        uint64_t now = now_ns();
        while (s->nheap > 0 && s->heap[0]->deadline <= now)
            ready(s, s->heap[0], true);
    }
    return 0;
}

void lac_wait_free(lac_sched *s)
{
    if (s->evfd >= 0)
        close(s->evfd);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->heap);
}

/* fork() copies the scheduler of the forking thread, epoll descriptor included, but an epoll
 * instance is shared between parent and child: each would take the other's events. The child
 * gets one of its own, with the fd waits of its (inherited) parked fibers registered again. */
void lac_wait_fork_child(lac_sched *s)
{
    if (s == NULL)
        return;
    if (s->evfd >= 0) { /* the parent's wake-ups must not reach the child */
        close(s->evfd);
        s->evfd = -1;
    }
    if (s->epfd < 0)
        return;
    close(s->epfd);
    s->epfd = s->nio > 0 ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (s->epfd < 0)
        return; /* no fd waits pending, or no epoll: the next lacuna_fd_wait makes one */
    for (lac_io_wait *w = s->io_waits; w; w = w->next) {
        struct epoll_event ev = {.events = w->events, .data.ptr = w};
        (void)epoll_ctl(s->epfd, EPOLL_CTL_ADD, w->fd, &ev);
    }
}

/* ---- sleep --------------------------------------------------------------------------------- */

static int sleep_ms(unsigned ms)
{
    uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;
    lac_sched *s = lac_tls_sched;
    if (s == NULL || s->cur == NULL) {
        sleep_until(deadline);
        return 0;
    }
    if (ms == 0) {
        lacuna_yield();
        return 0;
    }
    lac_fiber *self = s->cur;
    self->deadline = deadline;
    if (heap_push(s, self) != 0) { /* no memory for the heap: sleep the thread instead */
        sleep_until(deadline);
        return 0;
    }
    self->wait = LAC_W_TIMER;
    lac_sched_park(s, NULL);
    return 0;
}

/* ---- fd waits ------------------------------------------------------------------------------ */

/* Thread context: poll(2) until fd is ready or timeout_ms (< 0: none) has passed since the call.
 * A signal handler running meanwhile (EINTR) shortens the next poll to what is left, so periodic
 * signals cannot stretch the wait for ever. */
static int poll_until(int fd, short events, int timeout_ms)
{
    uint64_t deadline = now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    struct pollfd p = {.fd = fd, .events = events};
    int left = timeout_ms, n;
    while ((n = poll(&p, 1, left)) < 0 && errno == EINTR) {
        if (timeout_ms < 0)
            continue;
        uint64_t now = now_ns();
        if (now >= deadline)
            return ETIMEDOUT;
        left = (int)((deadline - now + 999999) / 1000000); /* up: never return early */
    }
    if (n < 0)
        return errno;
    if (n == 0)
        return ETIMEDOUT;
    return p.revents & POLLNVAL ? EBADF : 0;
}

static int fd_wait(int fd, short events, int timeout_ms)
{
    if (events == 0 || (events & ~(POLLIN | POLLOUT)))
        return EINVAL;
    if (fd < 0)
        return EBADF;
    lac_sched *s = lac_tls_sched;
    if (s == NULL || s->cur == NULL || timeout_ms == 0)
        return poll_until(fd, events, timeout_ms);
    if (s->epfd < 0) {
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
            return errno;
    }
    lac_fiber *self = s->cur;
    lac_io_wait w = {.fiber = self, .fd = fd, .user_fd = fd};
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = &w};
    if (events & POLLIN)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & POLLOUT)
        ev.events |= EPOLLOUT;
    /* epoll keeps one registration per (file, fd number): a second fiber waiting on the same fd
     * (a reader and a writer of one socket, say) registers a dup of it, its own until it wakes. */
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (errno == EPERM) /* a regular file or directory: always ready */
            return 0;
        if (errno != EEXIST)
            return errno;
        if ((w.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) /* never 0-2: stdio stays stdio */
            return errno;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, w.fd, &ev) != 0) {
            int err = errno;
            close(w.fd);
            return err;
        }
    }
    if (timeout_ms > 0) {
        self->deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
        if (heap_push(s, self) != 0) {
            io_unregister(s, fd, w.fd);
            return ENOMEM;
        }
    }
    w.events = ev.events;
    w.next = s->io_waits;
    if (w.next)
        w.next->prev = &w;
    s->io_waits = &w;
    self->wait = LAC_W_IO;
    self->io = &w;
    s->nio++;
    lac_sched_park(s, NULL); /* the poller that wakes it undoes the registration (ready()) */
    return self->timed_out ? ETIMEDOUT : 0;
}

/* Both return their error: the caller's errno survives the syscalls made underneath. */
int lacuna_sleep_ms(unsigned ms)
{
    int saved = errno;
    int err = sleep_ms(ms);
    lac_set_errno(saved); /* errno's address may have changed: it may have resumed elsewhere */
    return err;
}

int lacuna_fd_wait(int fd, short events, int timeout_ms)
{
    int saved = errno;
    int err = fd_wait(fd, events, timeout_ms);
    lac_set_errno(saved); /* errno's address may have changed: it may have resumed elsewhere */
    return err;
}
