/* wait.c — how a blocking call ends: the wait protocol every blocking call follows (lac_park:
 * woken, timed out or cancelled, exactly one of them), deadlines (the timer heap), fds (epoll),
 * and the poll that ends those waits.
 *
 * Owns: each scheduler's timer heap (a binary min-heap of fibers on their deadline, under the
 * scheduler's tlock), its epoll instance (made by the first fd wait, CLOEXEC) and its list of fd
 * waits in progress (records on the waiting fibers' stacks), lacuna_sleep_* and lacuna_fd_wait*,
 * and their thread-context versions.
 *
 * Invariants:
 *   - A fiber is in the heap iff its heap_pos != LAC_NO_HEAP, and then f->tsched is that heap's
 *     worker; a fiber in an fd wait is also in s->io_waits, registered EPOLLONESHOT with its
 *     record as the cookie, and counted in s->nio.
 *   - Every deadline is absolute, on CLOCK_MONOTONIC: signal handlers (EINTR) and spurious
 *     wake-ups never restart it; a retry loop cannot stretch it.
 *   - A wait ends once: whoever wins its park's state (lac_park_claim's CAS) makes it runnable.
 *     A fiber arms its wait holding f->plk, which its switch releases once its context is saved
 *     (sched.c); a waker waits until it reads plk free (lac_park_wake: watched, not taken) and a
 *     canceller takes it, before either readies the fiber, so nobody resumes a fiber still
 *     running. A timer fires on the worker the fiber parked at, after that switch.
 *   - Local waits (sleep, fd) are in the heap of the worker they parked at for their whole wait
 *     (an untimed fd wait at LAC_FOREVER), and only that worker ends them: the fd, the deadline,
 *     or a cancel, which moves the deadline to 0 and kicks the worker. So the fd registration is
 *     only ever touched by its own worker.
 *   - A lock-based wait (channel, join, sync) that times out or is cancelled stays in its queue
 *     until it runs: it unlinks itself there, under the queue's lock (lac_park_block's caller).
 *     It removes itself from the heap (under the heap worker's tlock) once it runs, whoever won.
 *
 * Does not: switch contexts itself (it parks through sched.c), or know what a queue holds.
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
    int err; /* set when the wait ended without its fd: it could not move (lac_wait_adopt) */
};
_Static_assert(offsetof(lac_io_wait, user_fd) == LAC_IO_WAIT_FD_OFF &&
                   offsetof(lac_io_wait, events) == LAC_IO_WAIT_EVENTS_OFF,
               "the debug descriptor (fiber.c) names these offsets");

uint64_t lac_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#define now_ns lac_now_ns

uint64_t lacuna_now_ns(void)
{
    return lac_now_ns();
}

static struct timespec ts_of(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_nsec = (long)(ns % 1000000000u)};
}

/* Sleep the thread until a CLOCK_MONOTONIC deadline: a signal handler running meanwhile
 * (EINTR) does not restart the whole sleep. */
static void sleep_until(uint64_t deadline)
{
    struct timespec t = ts_of(deadline);
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

/* Put f in s's heap at `deadline` (the caller is f, running on s). 0 or ENOMEM. */
static int timer_add(lac_sched *s, lac_fiber *f, uint64_t deadline)
{
    lac_spin_lock(&s->tlock);
    f->deadline = deadline;
    int err = heap_push(s, f);
    lac_spin_unlock(&s->tlock);
    if (err == 0)
        __atomic_store_n(&f->tsched, s, __ATOMIC_RELAXED); /* lac_park_cancel may read it */
    return err;
}

static __attribute__((noinline)) void timer_unlink(lac_fiber *f)
{
    lac_sched *t = f->tsched;
    lac_spin_lock(&t->tlock);
    if (f->heap_pos != LAC_NO_HEAP)
        heap_remove(t, f);
    lac_spin_unlock(&t->tlock);
    __atomic_store_n(&f->tsched, NULL, __ATOMIC_RELAXED);
}

/* Take f out of the heap it is in, if any (f runs: on any worker). Most parks have no timer. */
static inline void timer_drop(lac_fiber *f)
{
    if (f->tsched)
        timer_unlink(f);
}

/* ---- the wait protocol (see internal.h) --------------------------------------------------- */

/* lac_park_arm's general case: a thread, a deadline, or flags (internal.h has the common one). */
int lac_park_arm_slow(lac_park *p, uint64_t deadline, unsigned how)
{
    if (deadline == 0)
        return ETIMEDOUT; /* LACUNA_NOWAIT: it would have to wait */
    bool local = how & LAC_PARK_LOCAL, nocancel = how & LAC_PARK_NOCANCEL;
    lac_fiber *f = p->fiber;
    if (f == NULL) {
        p->how = (uint8_t)how;
        atomic_store_explicit(&p->state, LAC_PARK_WAITING, memory_order_relaxed);
        atomic_fetch_add_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
        return 0;
    }
    if (!nocancel && atomic_load_explicit(&f->cancelled, memory_order_relaxed))
        return ECANCELED;
    if (deadline != LAC_FOREVER || local) {
        int err = timer_add(f->worker, f, deadline);
        if (err)
            return err;
    }
    if (lac_park_publish(p, f, how)) {
        timer_drop(f);
        return ECANCELED;
    }
    return 0;
}

/* Take back an armed wait that never parked (its fiber holds plk, so nobody else can have won
 * it): the fd wait whose registration failed. */
static void park_disarm(lac_park *p)
{
    lac_fiber *f = p->fiber;
    atomic_store_explicit(&p->state, LAC_PARK_IDLE, memory_order_relaxed);
    lac_spin_unlock(&f->plk);
    timer_drop(f);
}

static int outcome(uint32_t state)
{
    return state == LAC_PARK_WOKEN ? 0 : state == LAC_PARK_TIMEOUT ? ETIMEDOUT : ECANCELED;
}

int lac_park_block(lac_park *p, uint64_t deadline)
{
    lac_fiber *f = p->fiber;
    if (f) {
        lac_sched_park(f->worker, &f->plk);
        timer_drop(f); /* whoever won: the heap must not name a fiber that moves on */
        /* Nothing to take back under plk: the park is the block's, and a canceller that comes
         * late finds its state ended and loses. */
        return outcome(atomic_load_explicit(&p->state, memory_order_acquire));
    }
    if (deadline == LAC_FOREVER) {
        lac_thread_wait(&p->done);
        return 0;
    }
    if (lac_thread_wait_until(&p->done, deadline))
        return 0;
    uint32_t w = LAC_PARK_WAITING;
    if (atomic_compare_exchange_strong_explicit(&p->state, &w, LAC_PARK_TIMEOUT,
                                                memory_order_acq_rel, memory_order_acquire)) {
        atomic_fetch_sub_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
        return ETIMEDOUT;
    }
    lac_thread_wait(&p->done); /* a waker won just now: it finishes its hand-over */
    return 0;
}

void lac_park_wake(lac_park *p)
{
    lac_fiber *f = p->fiber;
    if (f) {
        /* Its context is saved once the parker's switch released plk. Watched, not taken: the
         * parker took it before queueing its waiter (so before our claim), and only a losing
         * canceller may hold it after that; an acquire load that reads it free follows the
         * parker's release, and no locked instruction pulls the line over for writing twice. */
        unsigned spins = 0;
        while (atomic_load_explicit(&f->plk.v, memory_order_acquire) != 0)
            if (++spins % 128 == 0)
                sched_yield(); /* the parker's thread may have been preempted */
            else
                LAC_CPU_RELAX();
        lac_fiber_ready(f);
    } else {
        atomic_fetch_sub_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
        lac_thread_wake(&p->done);
    }
}

void lac_park_cancel(lac_fiber *f)
{
    lac_spin_lock(&f->plk);
    lac_park *p = &f->wp;
    /* State first: the flags are only stable (written under plk) while it waits. So is the worker
     * whose heap a local wait is in, read now and not after the CAS: once the CAS wins, that
     * worker's timer loop may end the wait anyway (it ends local waits a cancel won, below), and
     * the fiber run and leave the heap (timer_unlink clears tsched). Cancelled, it cannot arm
     * again, so t stays the worker that holds it, if anyone does. */
    bool waiting = atomic_load_explicit(&p->state, memory_order_relaxed) == LAC_PARK_WAITING;
    bool local = waiting && (p->how & LAC_PARK_LOCAL);
    /* (a relaxed read: a timeout that ends the wait first lets the fiber clear it meanwhile, and
     * then t goes unused, as the CAS below fails) */
    lac_sched *t = local ? __atomic_load_n(&f->tsched, __ATOMIC_RELAXED) : NULL;
    uint32_t w = LAC_PARK_WAITING;
    bool won = waiting && !(p->how & LAC_PARK_NOCANCEL) &&
               atomic_compare_exchange_strong_explicit(&p->state, &w, LAC_PARK_CANCEL,
                                                       memory_order_acq_rel, memory_order_relaxed);
    if (won && local) {
        /* Only its worker may end a local wait: make its deadline now and wake that worker. */
        lac_spin_lock(&t->tlock);
        if (f->heap_pos != LAC_NO_HEAP) {
            f->deadline = 0;
            heap_up(t, f->heap_pos);
        }
        lac_spin_unlock(&t->tlock);
        lac_sched_kick(t);
    }
    lac_spin_unlock(&f->plk);
    if (won && !local)
        lac_fiber_ready(f); /* it parked (we saw its park under plk) and only we may wake it */
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

/* End f's local wait here, on the worker it waits at (out of the heap already), and queue it.
 * Everything the wait registered on this worker is undone now: once queued, f may be stolen and
 * resume on another worker. */
static void ready_local(lac_sched *s, lac_fiber *f)
{
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
    /* A helper that failed here before naps counted asleep, so a kicker may be reading it now */
    __atomic_store_n(&s->evfd, e, __ATOMIC_RELAXED);
    return 0;
}

void lac_wait_kick(lac_sched *s)
{
    uint64_t one = 1;
    /* -1 (a napping helper, lac_wait_nap): EBADF, and it looks again within LAC_NAP_NS anyway.
     * EAGAIN: the counter is full, it wakes anyway. */
    ssize_t n = write(__atomic_load_n(&s->evfd, __ATOMIC_RELAXED), &one, sizeof one);
    (void)n;
}

/* How long a helper that could not make its epoll or eventfd sleeps at most before it looks for
 * work again: nobody can wake it, so this bounds how late it sees new work (and a stop). */
#define LAC_NAP_NS 1000000u

int lac_wait_nap(lac_sched *s)
{
    uint64_t due = now_ns() + LAC_NAP_NS;
    if (s->nheap > 0) {
        lac_spin_lock(&s->tlock);
        if (s->nheap > 0 && s->heap[0]->deadline < due)
            due = s->heap[0]->deadline;
        lac_spin_unlock(&s->tlock);
    }
    sleep_until(due);
    return 0;
}

/* epoll_pwait2 (Linux 5.11) takes a timeout in ns, so sleeps end within microseconds of their
 * deadline; without it, epoll_wait's milliseconds, rounded up (never early). */
static _Atomic bool no_pwait2;

static int epoll_until(int epfd, struct epoll_event *ev, int n, uint64_t due, bool block)
{
    if (!block)
        return epoll_wait(epfd, ev, n, 0);
    if (due == LAC_FOREVER)
        return epoll_wait(epfd, ev, n, -1);
    uint64_t now = now_ns(), left = due > now ? due - now : 0;
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec t = ts_of(left);
        int r = epoll_pwait2(epfd, ev, n, &t, NULL);
        if (r >= 0 || errno != ENOSYS)
            return r;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    uint64_t ms = (left + 999999) / 1000000;
    return epoll_wait(epfd, ev, n, ms > INT_MAX ? INT_MAX : (int)ms);
}

/* epoll_wait failed (not EINTR): its errno. EBADF or EINVAL: the number no longer names this
 * worker's epoll (the program closed it, maybe reused it), so it is not ours to close. */
static __attribute__((noinline, cold)) int epoll_failed(lac_sched *s)
{
    int err = errno;
    if (err == EBADF || err == EINVAL)
        s->epfd_lost = true;
    return err;
}

int lac_wait_poll(lac_sched *s, bool block)
{
    if (block || s->nio > 0) {
        /* Asleep, it wakes for its next timer or the next aging scan of parked fibers (parked.c).
         */
        uint64_t due = block ? lac_parked_due() : LAC_FOREVER;
        if (block && s->nheap > 0) {
            lac_spin_lock(&s->tlock);
            if (s->nheap > 0 && s->heap[0]->deadline < due)
                due = s->heap[0]->deadline;
            lac_spin_unlock(&s->tlock);
        }
        struct epoll_event ev[128];
        int n = epoll_until(s->epfd, ev, 128, due, block);
        if (n < 0 && errno != EINTR)
            return epoll_failed(s);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &s->evfd) {
                uint64_t v;
                ssize_t r = read(s->evfd, &v, sizeof v);
                (void)r;
                continue;
            }
            lac_fiber *f = ((lac_io_wait *)ev[i].data.ptr)->fiber;
            if (f->io != ev[i].data.ptr || !lac_park_claim(&f->wp))
                continue; /* ended already, or cancelled: its heap entry, due now, ends it */
            timer_drop(f);
            ready_local(s, f);
        }
    }
    if (s->nheap > 0) {
        /* Due timers, taken out under tlock, readied after it (pushing may take other locks). */
        lac_fiber *due = NULL, **tail = &due; /* in deadline order */
        uint64_t now = now_ns();
        lac_spin_lock(&s->tlock);
        while (s->nheap > 0 && s->heap[0]->deadline <= now) {
            lac_fiber *f = s->heap[0];
            heap_remove(s, f);
            lac_park *p = &f->wp;
            uint32_t w = LAC_PARK_WAITING;
            /* acquire on failure too: a cancel that won happened before the fiber runs again
             * (lac_park_cancel read its tsched before its CAS) */
            bool won = atomic_compare_exchange_strong_explicit(
                &p->state, &w, LAC_PARK_TIMEOUT, memory_order_acq_rel, memory_order_acquire);
            if (won ||
                (p->how & LAC_PARK_LOCAL)) { /* a local wait a cancel won is ours to end too */
                *tail = f;
                tail = &f->next;
            }
        }
        *tail = NULL;
        lac_spin_unlock(&s->tlock);
        while (due) {
            lac_fiber *f = due;
            due = f->next;
            if (f->wp.how & LAC_PARK_LOCAL) {
                ready_local(s, f);
            } else {
                f->wait = LAC_W_NONE;
                lac_sched_push(s, f);
            }
        }
    }
    return 0;
}

void lac_wait_free(lac_sched *s)
{
    if (s->evfd >= 0)
        close(s->evfd);
    if (s->epfd >= 0 && !s->epfd_lost)
        close(s->epfd);
    free(s->heap);
}

/* ---- a helper's waits, moved to the home worker as it leaves -------------------------------- */

/* Make room for n more timers in s's heap (s->tlock held). 0 or ENOMEM. */
static int heap_reserve(lac_sched *s, size_t n)
{
    if (s->heap_cap - s->nheap >= n)
        return 0;
    size_t cap = s->heap_cap ? s->heap_cap : 64;
    while (cap - s->nheap < n)
        cap *= 2;
    lac_fiber **h = realloc(s->heap, cap * sizeof *h);
    if (h == NULL)
        return ENOMEM;
    s->heap = h;
    s->heap_cap = cap;
    return 0;
}

/* Register fd wait w on s's epoll (made now if s has none): 0 or errno, as fd_wait would. */
static int io_register(lac_sched *s, lac_io_wait *w)
{
    if (s->epfd_lost)
        return EBADF; /* that number may be someone else's epoll now */
    if (s->epfd < 0 && (s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return errno;
    struct epoll_event ev = {.events = w->events, .data.ptr = w};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, w->fd, &ev) == 0)
        return 0;
    if (errno != EEXIST || w->fd != w->user_fd) /* a dup of its own is registered nowhere else */
        return errno;
    int d = fcntl(w->user_fd, F_DUPFD_CLOEXEC, 3); /* s waits on that fd already: as fd_wait */
    if (d < 0)
        return errno;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, d, &ev) != 0) {
        int err = errno;
        close(d);
        return err;
    }
    w->fd = d;
    return 0;
}

/* from's fd waits, onto to's list and epoll. One that cannot be registered there ends now with
 * that errno (fd_wait returns it), unless a cancel won it first: its timer ends it then. */
static void io_adopt(lac_sched *to, lac_sched *from)
{
    while (from->io_waits) {
        lac_io_wait *w = from->io_waits;
        lac_fiber *f = w->fiber;
        from->io_waits = w->next;
        from->nio--;
        int err = io_register(to, w);
        if (err && lac_park_claim(&f->wp)) {
            timer_drop(f); /* still in from's heap: timers_adopt comes next */
            if (w->fd != w->user_fd)
                close(w->fd); /* from's epoll, closed soon, drops its registration */
            w->err = err;
            f->io = NULL;
            f->wait = LAC_W_NONE;
            lac_sched_push(to, f);
            continue;
        }
        w->prev = NULL;
        w->next = to->io_waits;
        if (w->next)
            w->next->prev = w;
        to->io_waits = w;
        to->nio++;
    }
}

/* from's timer heap, emptied into to's. Each fiber's plk and both tlocks are held while it moves:
 * a canceller reads f->tsched under plk, then changes that heap under its worker's tlock. A timer
 * that finds no room in to's heap (no memory) ends now, as if its deadline had passed. */
static void timers_adopt(lac_sched *to, lac_sched *from)
{
    lac_spin_lock(&to->tlock);
    (void)heap_reserve(to, from->nheap); /* a failure shows below, fiber by fiber */
    lac_spin_unlock(&to->tlock);
    for (;;) {
        lac_spin_lock(&from->tlock);
        lac_fiber *f = from->nheap > 0 ? from->heap[from->nheap - 1] : NULL;
        lac_spin_unlock(&from->tlock);
        if (f == NULL)
            return;
        /* Only from's poller or f itself takes f out of from's heap, and neither runs now; a
         * canceller (plk, then from->tlock) may move it within the heap meanwhile. */
        lac_spin_lock(&f->plk);
        lac_spin_lock(&from->tlock);
        heap_remove(from, f);
        lac_spin_lock(&to->tlock);
        int err = heap_push(to, f);
        lac_spin_unlock(&to->tlock);
        lac_spin_unlock(&from->tlock);
        if (f->pin == from->idx + 1u) /* waits at to now: re-pinned there, as takes() (sched.c) */
            f->pin = (uint16_t)(to->idx + 1);
        bool end = false;
        if (err == 0) {
            __atomic_store_n(&f->tsched, to, __ATOMIC_RELAXED);
        } else {
            /* Decided under plk, before tsched reads NULL: a canceller that reads it must lose. */
            uint32_t w = LAC_PARK_WAITING;
            end = atomic_compare_exchange_strong_explicit(&f->wp.state, &w, LAC_PARK_TIMEOUT,
                                                          memory_order_acq_rel,
                                                          memory_order_acquire) ||
                  (f->wp.how & LAC_PARK_LOCAL);
            __atomic_store_n(&f->tsched, NULL, __ATOMIC_RELAXED);
        }
        lac_spin_unlock(&f->plk);
        if (!end)
            continue;
        if (f->wp.how & LAC_PARK_LOCAL) {
            ready_local(to, f); /* its fd wait, if any, is on to's list now (io_adopt) */
        } else {
            f->wait = LAC_W_NONE;
            lac_sched_push(to, f);
        }
    }
}

void lac_wait_adopt(lac_sched *to, lac_sched *from)
{
    io_adopt(to, from);
    timers_adopt(to, from);
}

/* fork() copies the scheduler of the forking thread, epoll descriptor included, but an epoll
 * instance is shared between parent and child: each would take the other's events. The child
 * gets one of its own, with the fd waits of its (inherited) parked fibers registered again. */
void lac_wait_fork_child(lac_sched *s)
{
    if (s == NULL)
        return;
    s->tlock.v = 0;     /* another thread may have held it at the fork */
    if (s->evfd >= 0) { /* the parent's wake-ups must not reach the child */
        close(s->evfd);
        s->evfd = -1;
    }
    if (s->epfd < 0)
        return;
    if (!s->epfd_lost) /* a lost number may be the program's now (epoll_failed) */
        close(s->epfd);
    s->epfd_lost = false;
    s->epfd = s->nio > 0 ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (s->epfd < 0)
        return; /* no fd waits pending, or no epoll: the next lacuna_fd_wait makes one */
    for (lac_io_wait *w = s->io_waits; w; w = w->next) {
        struct epoll_event ev = {.events = w->events, .data.ptr = w};
        (void)epoll_ctl(s->epfd, EPOLL_CTL_ADD, w->fd, &ev);
    }
}

/* ---- sleep --------------------------------------------------------------------------------- */

static int sleep_until_ns(uint64_t deadline)
{
    lac_sched *s = lac_tls_sched;
    if (s == NULL || s->cur == NULL) {
        sleep_until(deadline);
        return 0;
    }
    lac_fiber *self = s->cur;
    if (atomic_load_explicit(&self->cancelled, memory_order_relaxed))
        return ECANCELED;
    if (deadline <= now_ns()) {
        lacuna_yield();
        return 0;
    }
    lac_park *p = &self->wp;
    int err = lac_park_arm(p, deadline, LAC_PARK_LOCAL);
    if (err == ENOMEM) { /* no memory for the heap: sleep the thread instead */
        sleep_until(deadline);
        return 0;
    }
    if (err)
        return err;
    self->wait = LAC_W_TIMER;
    err = lac_park_block(p, deadline);
    return err == ETIMEDOUT ? 0 : err; /* the deadline is a sleep's normal end */
}

/* ---- fd waits ------------------------------------------------------------------------------ */

/* Thread context: ppoll(2) until fd is ready or the deadline passes. A signal handler running
 * meanwhile (EINTR) shortens the next poll to what is left, so periodic signals cannot stretch
 * the wait for ever. */
static int poll_until(int fd, short events, uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;
    for (;;) {
        struct timespec t, *tp = NULL;
        if (deadline != LAC_FOREVER) {
            uint64_t now = now_ns();
            t = ts_of(deadline > now ? deadline - now : 0);
            tp = &t;
        }
        n = ppoll(&p, 1, tp, NULL);
        if (n >= 0 || errno != EINTR)
            break;
    }
    if (n < 0)
        return errno;
    if (n == 0)
        return ETIMEDOUT;
    return p.revents & POLLNVAL ? EBADF : 0;
}

static int fd_wait(int fd, short events, uint64_t deadline)
{
    if (events == 0 || (events & ~(POLLIN | POLLOUT)))
        return EINVAL;
    if (fd < 0)
        return EBADF;
    lac_sched *s = lac_tls_sched;
    if (s == NULL || s->cur == NULL || deadline == 0)
        return poll_until(fd, events, deadline);
    lac_fiber *self = s->cur;
    if (atomic_load_explicit(&self->cancelled, memory_order_relaxed))
        return ECANCELED;
    if (s->epfd < 0) {
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
            return errno;
    }
    lac_io_wait w = {.fiber = self, .fd = fd, .user_fd = fd};
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = &w};
    if (events & POLLIN)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & POLLOUT)
        ev.events |= EPOLLOUT;
    /* Armed first (heap entry, park published): the registration may fire at once, but only this
     * worker reads events, and it runs this fiber until it parks. */
    lac_park *p = &self->wp;
    int err = lac_park_arm(p, deadline, LAC_PARK_LOCAL);
    if (err)
        return err;
    /* epoll keeps one registration per (file, fd number): a second fiber waiting on the same fd
     * (a reader and a writer of one socket, say) registers a dup of it, its own until it wakes. */
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        err = errno;
        if (err == EEXIST) {
            err = 0;
            if ((w.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) /* never 0-2: stdio stays stdio */
                err = errno;
            else if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, w.fd, &ev) != 0) {
                err = errno;
                close(w.fd);
            }
        } else if (err == EPERM) { /* a regular file or directory: always ready */
            err = -1;
        }
        if (err) { /* not parked after all: take the arming back */
            park_disarm(p);
            return err < 0 ? 0 : err;
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
    err = lac_park_block(p, deadline); /* the poller that ends it undoes the registration */
    return err == 0 ? w.err : err;     /* w.err: its worker left and it could not follow */
}

/* All return their error: the caller's errno survives the syscalls made underneath. */
int lacuna_sleep_until(uint64_t deadline_ns)
{
    int saved = errno;
    int err = sleep_until_ns(deadline_ns);
    lac_set_errno(saved); /* errno's address may have changed: it may have resumed elsewhere */
    return err;
}

int lacuna_sleep_ns(uint64_t ns)
{
    uint64_t now = now_ns();
    return lacuna_sleep_until(ns > LAC_FOREVER - 1 - now ? LAC_FOREVER - 1 : now + ns);
}

int lacuna_sleep_ms(unsigned ms)
{
    return lacuna_sleep_ns((uint64_t)ms * 1000000u);
}

int lacuna_fd_wait_until(int fd, short events, uint64_t deadline_ns)
{
    int saved = errno;
    int err = fd_wait(fd, events, deadline_ns);
    lac_set_errno(saved); /* errno's address may have changed: it may have resumed elsewhere */
    return err;
}

int lacuna_fd_wait(int fd, short events, int timeout_ms)
{
    uint64_t deadline =
        timeout_ms < 0 ? LAC_FOREVER : lac_now_ns() + (uint64_t)timeout_ms * 1000000u;
    return lacuna_fd_wait_until(fd, events, timeout_ms == 0 ? 0 : deadline);
}
