/* lacuna/fiber.h — green threads (fibers) whose stacks are regions of one shared lacuna pool, run
 * by M:N schedulers.
 *
 * Included by <lacuna.h>; include that one. The first thread that calls lacuna_go becomes the home
 * of a runtime: its fibers, and the fibers they spawn, belong to that runtime. lacuna_run (or a
 * thread-context lacuna_join) runs them. lacuna_run uses lacuna_get_workers() worker threads: the
 * calling thread and n - 1 helper threads it starts for the run and joins before it returns; fibers
 * move between workers (an idle worker steals half of a busy one's queue) unless pinned
 * (LACUNA_FIBER_PINNED). All threads share one stack pool (64 KiB guarded stacks unless
 * lacuna_fiber_configure says otherwise; lacuna_go_opts picks other sizes, each size class a pool
 * of its own). An ended fiber's stack goes to its worker's next spawn of the same size (up to 16
 * are kept per worker, none for a LACUNA_ZERO or LACUNA_CACHE_NONE pool), else back to the pool.
 *
 * Scheduling, per worker, cooperative: a fiber runs until it yields, blocks (channel, sleep, fd
 * wait, join) or ends. A fiber spawned BY A FIBER runs at once on the same worker, and its spawner
 * runs right after it first blocks, yields or ends (Go's `runnext`, taken one step further): a
 * spawn-heavy tree is walked depth first and few stacks are live. Until then no other worker can
 * take the spawner; once the new fiber spawns in turn, the spawner joins the run queue's front,
 * where an idle worker may steal it. A fiber made ready by a channel operation or by the end of the
 * fiber it joins runs next on the waker's worker (a hand-off), and the hand-offs it displaces run
 * before the run queue; hand-offs take at most 64 turns in a row while anything else waits.
 * Everything else (yield, timers, fd waits, spawns from thread context, wake-ups from outside the
 * runtime) is first in, first out per worker. An idle worker sleeps in epoll (0 % CPU).
 *
 * Migration: after any blocking call (and lacuna_yield) an unpinned fiber may run on another OS
 * thread. Thread-local variables read before the call may then be another thread's: compilers keep
 * a thread-local's address (errno's too) across calls within a function. Pin a fiber that relies
 * on thread-locals across blocking calls, or read them in a separate non-inlined function.
 *
 * Conventions as in <lacuna.h>: 0 or a positive errno value; pointer results are NULL + errno;
 * bad input is EINVAL, never a crash. "Thread context" below means code running on a thread's
 * own stack (not inside any fiber), e.g. main() before or after lacuna_run.
 *
 * Stack: a fiber's stack holds its own frames plus those of the lacuna call it is in, nothing
 * else. The runtime's own work (freeing an ended fiber's stack through the pool, polling, timers)
 * runs on the worker thread's stack. What each call needs below the caller's frame, at most
 * (x86-64, glibc, an optimized build of the library (-O0 uses more); measured by
 * tests/test_fiber_stack.c with the pool's slow paths taken, rounded
 * up with margin; the measurement includes lazy symbol binding, ~1.7 KiB on the test machine, when
 * the call is the first user of a libc function; it can be larger on CPUs with wider vector state,
 * and disappears when the program is linked with -z now):
 *     lacuna_yield, lacuna_self, lacuna_join, lacuna_detach             512 bytes
 *     lacuna_fiber_set_name, lacuna_chan_*                             2 KiB
 *     lacuna_go, lacuna_go_named, lacuna_sleep_ms, lacuna_fd_wait      3 KiB
 *     lacuna_select (up to 8 cases), lacuna_*_until, lacuna_cancel     3 KiB
 * A fiber that ends needs no stack of its own frames: the bookkeeping of its end runs on what its
 * function no longer uses, and its stack is freed on the worker's stack, or reused by a spawn.
 *
 * Leaving a fiber other than by returning from its function or blocking in a lacuna call (longjmp
 * out of it, a C++ exception unwinding past its start) is undefined: the scheduler still thinks
 * that fiber runs. lacuna_run and a lacuna_join that would block detect it (the caller is not on
 * that fiber's stack) and fail with ENOTRECOVERABLE; other calls are not checked.
 *
 * Debugging: tools/gdb/lacuna-gdb.py (installed where gdb auto-loads it for liblacuna.so) adds
 * `lacuna fibers` (every live fiber: id = lacuna_fiber_id, name, state, what it waits on, stack
 * used) and `lacuna bt ID|NAME` (a parked fiber's backtrace from its saved context) to gdb, on a
 * live process or a core file, with or without the library's debug info: docs/debugging.md.
 *
 * Threads: handles and channels work from any thread and any runtime: a fiber may join a fiber of
 * another runtime, and a plain thread (one with no fibers of its own left to run) may send,
 * receive, close and join, blocking that thread like Go's cgo callers. A thread that exits while
 * its runtime still has fibers leaves them blocked for ever: calls on them, and on channels they
 * wait on, fail with EINVAL. fork() from a thread whose runtime runs with several workers: the
 * child has only the calling thread (fibers queued on other workers never run there); exec or
 * _exit in it. From thread context (no lacuna_run in progress) fork works as with one worker.
 */
#ifndef LACUNA_FIBER_H
#define LACUNA_FIBER_H

#include "../lacuna.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lacuna_fiber lacuna_fiber; /* a handle: it stays safe to pass after the fiber is
                                             reclaimed (calls then fail with EINVAL) */
typedef struct lacuna_chan lacuna_chan;

#define LACUNA_FIBER_NAME_MAX 32 /* bytes of a fiber name kept, with the terminating NUL */

/* Deadlines. Every call that may wait has a form taking an absolute deadline in nanoseconds on
 * CLOCK_MONOTONIC (lacuna_now_ns() + a timeout), so a retry loop cannot stretch it. Such a call
 * returns ETIMEDOUT when the deadline passes before it could complete (an operation that needs
 * no wait completes whatever the deadline). LACUNA_FOREVER waits without limit; LACUNA_NOWAIT
 * (any passed deadline, in fact) never waits: ETIMEDOUT at once where a wait would begin. A
 * fiber's wait with a deadline (and any fd wait) may also fail with ENOMEM when its worker's
 * timer heap cannot grow. */
#define LACUNA_FOREVER UINT64_MAX
#define LACUNA_NOWAIT  ((uint64_t)0)

/* Cancellation (libdill's model): after lacuna_cancel(f), every call of f that would wait (its
 * wait in progress included) returns ECANCELED instead: channel operations, select, join, sleep,
 * fd waits, mutex lock, cond wait, waitgroup wait, semaphore wait, in all their forms. Calls that
 * complete without waiting still complete (a try, a receive from a non-empty channel, a join of
 * an ended fiber), so the fiber can clean up: close, drain, join its children, then return. It is
 * joined (or reclaims itself, detached) as usual. A cancel cannot be undone. */

/* ---------------------------------------------------------------------------------------------
 * Stacks
 * ------------------------------------------------------------------------------------------- */

/* Create the shared stack pool from *config (region_size = stack size, guard, release policy,
 * cache, ...) instead of the default (64 KiB stacks, one guard page each, capacity 0: growing on
 * demand, the pool's default cache and decay). Any thread, before the first lacuna_go of the
 * process. Returns 0, or EINVAL (config NULL or rejected by lacuna_pool_create), EBUSY (the pool
 * exists already: a fiber was spawned or this was called before), ENOTSUP/ENOMEM from the pool. */
LACUNA_API int lacuna_fiber_configure(const lacuna_pool_config *config);

/* The shared stack pool (for lacuna_pool_stats, lacuna_trim), or NULL before the first spawn or
 * lacuna_fiber_configure. Owned by the runtime: never destroy it. Any thread. */
LACUNA_API lacuna_pool *lacuna_fiber_pool(void);

/* The pool that lacuna_go_opts takes stacks of stack_size from (creating it on first use): the
 * default pool for 0 or the default stack size, else its size class's. NULL with errno EINVAL
 * (stack_size beyond LACUNA_FIBER_STACK_MAX) or the pool's creation errno. Never destroy it. */
LACUNA_API lacuna_pool *lacuna_fiber_pool_for(size_t stack_size);

/* ---------------------------------------------------------------------------------------------
 * Fibers
 * ------------------------------------------------------------------------------------------- */

/* Spawn fn(arg) in the caller's runtime (from thread context: the thread's own, created with the
 * thread's alternate signal stack and the overflow handler on first use). From a fiber, the new
 * fiber runs on the same worker before this returns (at least until it first blocks, yields or
 * spawns); from thread context it is queued and runs under lacuna_run or lacuna_join. Returns a
 * handle to join or detach exactly once, or NULL with errno EINVAL (fn NULL), ENOMEM (every stack
 * slot is live, or no memory), or an errno from creating the scheduler (epoll, sigaltstack). */
LACUNA_API lacuna_fiber *lacuna_go(void *(*fn)(void *arg), void *arg);

/* lacuna_go with a name (truncated to LACUNA_FIBER_NAME_MAX - 1 bytes; NULL = unnamed), set
 * before the fiber first runs. A stack overflow in it prints
 *     lacuna: stack overflow in fiber "NAME" (region N, fault at 0x...)
 * and the process dies by SIGSEGV. Unnamed fibers are reported as "(unnamed)". */
LACUNA_API lacuna_fiber *lacuna_go_named(const char *name, void *(*fn)(void *arg), void *arg);

/* Per-fiber options for lacuna_go_opts; a zero-initialised struct means lacuna_go's defaults. */
#define LACUNA_FIBER_STACK_MIN (16u << 10) /* the smallest stack size class: 16 KiB */
#define LACUNA_FIBER_STACK_MAX (8u << 20)  /* the largest: 8 MiB */
#define LACUNA_FIBER_PINNED    1u /* runs only on the worker that spawns it (lacuna_worker_id) */
typedef struct lacuna_fiber_opts {
    size_t stack_size; /* usable stack bytes. 0 or the default pool's size: the default pool
                          (lacuna_fiber_configure's, else 64 KiB). Otherwise rounded up to a
                          size class, a power of two from 16 KiB to 8 MiB, each class a pool of
                          its own (one guard page per stack, growing on demand like the
                          default pool), created on first use. A fiber's frames start up to
                          960 bytes below its stack's top (stacks are staggered so that
                          neighbours' hottest lines do not share an L1 cache set). */
    const char *name;  /* as lacuna_go_named; NULL = unnamed */
    unsigned flags;    /* LACUNA_FIBER_PINNED, or 0 */
} lacuna_fiber_opts;

/* lacuna_go with options (opts NULL = lacuna_go). Errors as lacuna_go, and EINVAL for a
 * stack_size above LACUNA_FIBER_STACK_MAX or an unknown flag. */
LACUNA_API lacuna_fiber *lacuna_go_opts(const lacuna_fiber_opts *opts, void *(*fn)(void *arg),
                                        void *arg);

/* Rename a fiber (NULL fiber = the calling fiber). 0, or EINVAL (no such fiber: stale handle, a
 * fiber of an exited thread's runtime, NULL fiber from thread context). */
LACUNA_API int lacuna_fiber_set_name(lacuna_fiber *fiber, const char *name);

/* The calling fiber, or NULL in thread context. */
LACUNA_API lacuna_fiber *lacuna_self(void);

/* Let the other runnable fibers of this worker run; the caller goes to the back of its queue
 * (where an idle worker may take it). Returns at once when nothing else is runnable and the
 * runtime has one worker. A no-op in thread context. */
LACUNA_API void lacuna_yield(void);

/* Wait until the fiber ends, reclaim it and return fn's result. From a fiber, the caller blocks;
 * from thread context of the fiber's own runtime, the thread runs it (one worker) until that fiber
 * ends; from any other thread, the thread blocks. On error returns NULL with errno (set errno = 0
 * first if fn may return NULL):
 *   EINVAL  NULL or stale handle (already joined, or detached and ended), a detached fiber, a
 *           fiber someone is already joining, a fiber of an exited thread's runtime;
 *   EDEADLK joining yourself; or, from thread context, every fiber of the runtime is blocked with
 *           no timer and no fd wait (the fiber stays joinable);
 *   ECANCELED  the caller is a cancelled fiber and would have to wait (the fiber stays joinable);
 *   ENOTRECOVERABLE  the fiber would have to wait, and the caller left the fiber the scheduler
 *           thinks is running without switching (longjmp: see the top of this file). */
LACUNA_API void *lacuna_join(lacuna_fiber *fiber);

/* lacuna_join with a deadline (see "Deadlines"), reporting through the return value: 0 and fn's
 * result in *result (if result is not NULL), or an errno as lacuna_join's, or
 *   ETIMEDOUT  the deadline passed first: the fiber stays joinable (join it again later);
 *   ECANCELED  the caller is a cancelled fiber and would have to wait: the fiber stays joinable;
 *   EINVAL     also: a deadline other than LACUNA_FOREVER from thread context of the fiber's own
 *              runtime (that thread runs the runtime until the fiber ends; use lacuna_run). */
LACUNA_API int lacuna_join_until(lacuna_fiber *fiber, uint64_t deadline_ns, void **result);

/* Cancel a fiber (see "Cancellation" above): its wait in progress, if any, ends with ECANCELED
 * (it runs again soon, on any worker), and so does every later call of it that would wait. Any
 * thread or fiber; a fiber may cancel itself. Cancelling an ended (not yet joined) fiber or one
 * cancelled already does nothing. 0, or EINVAL (NULL or stale handle, a fiber of an exited
 * thread's runtime). */
LACUNA_API int lacuna_cancel(lacuna_fiber *fiber);

/* Let the fiber reclaim itself when it ends (at once if it has ended). Any thread. 0, or EINVAL
 * (NULL or stale handle, already detached, being joined, a fiber of an exited thread's runtime). */
LACUNA_API int lacuna_detach(lacuna_fiber *fiber);

/* Run this thread's runtime on lacuna_get_workers() workers until no fiber is left, then tear its
 * schedulers down (the helper threads are joined before it returns). Thread context only.
 * Returns 0 (also when nothing was ever spawned), EPERM (called from a fiber or a helper worker),
 * EDEADLK (every remaining fiber is blocked on a channel or a join, with no timer, no fd wait and
 * no thread outside the runtime blocked on a channel or join to wake it: they stay blocked; close
 * or feed their channels and call lacuna_run again),
 * ENOTRECOVERABLE (called on the thread's stack while the scheduler thinks a fiber runs: that
 * fiber was left by longjmp; every later call returns it too), an errno from epoll_wait (any
 * worker's: EBADF or EINVAL when the program closed a worker's epoll descriptor), or EMFILE,
 * ENFILE or ENOMEM when the calling thread could not make its epoll instance or eventfd (a helper
 * that cannot make its own polls its timers every millisecond instead, and keeps working). After
 * an error every remaining fiber is kept, whichever worker held it (its fd waits join the calling
 * thread's epoll; one that cannot ends with that errno): remove the cause and call lacuna_run
 * again. */
LACUNA_API int lacuna_run(void);

/* ---------------------------------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------------------------------- */

#define LACUNA_WORKERS_MAX 256 /* workers of one runtime */

/* How many worker threads lacuna_run uses from its next call on (any thread): 1 runs every fiber
 * on the calling thread; n > 1 adds n - 1 helper threads for the duration of the run, and fibers
 * move between them (work stealing) unless pinned. 0 restores the default: the environment
 * variable LACUNA_WORKERS if set (1..256), else the CPUs the process may run on
 * (sched_getaffinity). Returns 0, or EINVAL (workers > LACUNA_WORKERS_MAX). */
LACUNA_API int lacuna_set_workers(unsigned workers);

/* The number of workers the next lacuna_run will use. */
LACUNA_API unsigned lacuna_get_workers(void);

/* The index of the worker the caller runs on: 0 for the thread that spawned the runtime's first
 * fiber (its home, also in thread context), 1..n-1 for lacuna_run's helpers, -1 on a thread that
 * never spawned. A fiber may see it change after any blocking call unless it is pinned. */
LACUNA_API int lacuna_worker_id(void);

/* Block the calling fiber for at least ms milliseconds (0: a yield); in thread context, sleep the
 * thread (no fibers run meanwhile). The end is a deadline taken at the call: signal handlers
 * running meanwhile do not extend it. Returns 0, or ECANCELED (a cancelled fiber: at once). */
LACUNA_API int lacuna_sleep_ms(unsigned ms);

/* CLOCK_MONOTONIC now, in nanoseconds: the clock of every deadline. Any thread. */
LACUNA_API uint64_t lacuna_now_ns(void);

/* Block the calling fiber until the deadline (CLOCK_MONOTONIC ns; a passed one: a yield), or the
 * thread in thread context. A fiber's sleep ends within microseconds of its deadline when its
 * worker is otherwise idle (epoll_pwait2, Linux 5.11; milliseconds before), later when other
 * fibers keep the worker busy (they are not preempted). LACUNA_FOREVER: until cancelled (while
 * such a sleep lasts, the runtime never reports EDEADLK: a cancel may still end it).
 * Returns 0, or ECANCELED (a cancelled fiber, at once or when cancelled meanwhile). */
LACUNA_API int lacuna_sleep_until(uint64_t deadline_ns);

/* lacuna_sleep_until(lacuna_now_ns() + ns). */
LACUNA_API int lacuna_sleep_ns(uint64_t ns);

/* Block the calling fiber until fd is ready for `events` (POLLIN, POLLOUT or both), has an error
 * or hang-up, or timeout_ms passes (< 0: no timeout). The timeout is a deadline taken at the call:
 * signal handlers running meanwhile (EINTR underneath) neither end nor extend the wait. In thread
 * context it is poll(2), repeated with what is left after an EINTR.
 * Returns 0 when ready (the next read/write says how), ETIMEDOUT, ECANCELED (a cancelled fiber),
 * EINVAL (events not a non-empty subset of POLLIN|POLLOUT), EBADF, or an errno from epoll_ctl or
 * dup (EMFILE). Several fibers may
 * wait on one fd at once (a reader and a writer of a socket): the second and later each hold a
 * dup of it while they wait. Do not close the fd while fibers wait on it (the waits do not end);
 * shutdown(2) it to wake them. Files epoll cannot watch (regular files) are always ready. */
LACUNA_API int lacuna_fd_wait(int fd, short events, int timeout_ms);

/* lacuna_fd_wait until an absolute deadline (see "Deadlines"; LACUNA_NOWAIT polls once).
 * Returns as lacuna_fd_wait, and ECANCELED (a cancelled fiber that would have to wait). */
LACUNA_API int lacuna_fd_wait_until(int fd, short events, uint64_t deadline_ns);

/* ---------------------------------------------------------------------------------------------
 * Parked stacks give memory back
 *
 * A fiber that once went deep and then parks (waiting on a channel, a socket, a timer) keeps
 * every stack page it touched. The pages below its saved stack pointer are dead while it is
 * parked, so lacuna releases them in place, without moving the stack: they read zero and fault
 * back in (one minor fault a page) only if the fiber goes that deep again; its guard stays. Kept:
 * everything at and above the saved stack pointer minus LACUNA_FIBER_PARK_KEEP bytes (the
 * x86-64 red zone plus slack), rounded down to a page. Locals a parked fiber lent to others (a
 * pointer sent on a channel) are above its stack pointer, so they survive. Releases are batched
 * (one process_madvise per 128 fibers where the kernel has it) and never run in a context switch;
 * a fiber resumed while its pages are being released waits for that batch to finish.
 *
 * When: a fiber parked longer than lacuna_fiber_release_after's threshold (by default the stack
 * pool's decay, 1 s unless configured), checked by workers about to sleep (a runtime that never
 * idles does not age its fibers: call lacuna_fiber_release_idle); on lacuna_trim of a fiber stack
 * pool; and on lacuna_fiber_release_idle. With several workers this needs the membarrier system
 * call (Linux >= 4.14); without it (or LACUNA_FORCE_FALLBACK=membarrier) only fibers of a
 * runtime whose one worker is the calling thread are released.
 * ------------------------------------------------------------------------------------------- */

#define LACUNA_FIBER_PARK_KEEP 384 /* bytes below a parked fiber's saved stack pointer kept */
#define LACUNA_PARKED_KEEP_ALL ((unsigned)-1) /* lacuna_fiber_release_after: no aging */

/* Release now the stack pages below the saved stack pointer of every parked fiber of the
 * process (every runtime), counting only pages that were resident: fibers with none below their
 * stack pointer cost no release call. A fiber released before and not resumed since is skipped.
 * *released (may be NULL) gets the bytes released. Any thread or fiber (the caller's own stack is
 * never touched). One pass at a time in the process: a call from a fiber waits (its worker too)
 * while another thread's pass ends. Not async-signal-safe (it takes a lock and allocates), like
 * lacuna_fiber_stack_info, lacuna_fiber_each and lacuna_fiber_pressure. Returns 0, or the errno
 * of a failed release (earlier batches stay released). */
LACUNA_API int lacuna_fiber_release_idle(size_t *released);

/* Release a parked fiber's pages automatically once it has been parked for ms milliseconds (it
 * is released between ms and 2 * ms after it parked; 0 = the default: the stack pool's decay_ms;
 * LACUNA_PARKED_KEEP_ALL = only on lacuna_fiber_release_idle and lacuna_trim). Any thread. Returns
 * 0. */
LACUNA_API int lacuna_fiber_release_after(unsigned ms);

/* Respond to memory pressure: when the kernel's pressure-stall information says tasks stalled
 * waiting for memory for stall_ms or more within a 2 s window (/proc/pressure/memory, "some"),
 * release every parked fiber's pages (lacuna_fiber_release_idle) and trim every fiber stack pool
 * (lacuna_trim). A thread of lacuna's waits for the kernel's trigger in poll() (no cost until
 * then). stall_ms 0 stops watching; a new value replaces the old. Any thread. Returns 0, or
 *   EINVAL   stall_ms above 2000;
 *   ENOTSUP  no PSI here (kernel without CONFIG_PSI, booted with psi=0, or
 *            LACUNA_FORCE_FALLBACK=psi): lacuna_fiber_release_idle still works;
 *   EACCES, EPERM, EAGAIN ...  from opening the trigger or starting the thread. */
LACUNA_API int lacuna_fiber_pressure(unsigned stall_ms);

/* How many times lacuna_fiber_pressure's watcher has responded to pressure. Any thread. */
LACUNA_API unsigned long lacuna_fiber_pressure_events(void);

/* What a fiber's stack holds. Sizes in bytes. */
typedef struct lacuna_stack_info {
    size_t size;       /* of the stack (without its guard) */
    size_t used;       /* from the top down to its stack pointer: saved (parked or ready), or the
                          caller's own now; 0 while it runs on another worker */
    size_t resident;   /* of its pages in memory now */
    size_t high_water; /* deepest use seen, from the top: the lowest page ever found resident by
                          this call or by a release (a cheap census: a page below that was
                          touched and released between looks is missed, and a stack reused from
                          an ended fiber shows that fiber's pages until they are released) */
    size_t released;   /* released while it was parked, over its life */
    int running;       /* 1 while it runs (used is then the caller's own, or 0 elsewhere) */
} lacuna_stack_info;

/* Fill *info for fiber f (NULL: the calling fiber). One residency query (PAGEMAP_SCAN, or
 * mincore) of its stack. Any thread. Returns 0, or EINVAL (stale handle, info NULL, or f NULL
 * outside a fiber), or the errno of the query. */
LACUNA_API int lacuna_fiber_stack_info(lacuna_fiber *f, lacuna_stack_info *info);

/* Call fn(fiber, arg) for every live fiber of the process (any runtime), in no fixed order, until
 * fn returns non-zero (then that value is returned). Fibers spawned or ended meanwhile may or may
 * not be seen; a handle may go stale before fn uses it (calls on it then say EINVAL). For a
 * census: lacuna_fiber_stack_info on each. Returns 0, or fn's value, or EINVAL (fn NULL). */
LACUNA_API int lacuna_fiber_each(int (*fn)(lacuna_fiber *fiber, void *arg), void *arg);

/* ---------------------------------------------------------------------------------------------
 * Channels: typed by element size, FIFO, between fibers of any workers and plain threads
 * ------------------------------------------------------------------------------------------- */

/* A channel of elements of elem_size bytes holding up to capacity of them (0 = unbuffered: a send
 * completes only when a receiver takes it). NULL + errno: EINVAL (elem_size 0, or elem_size *
 * max(capacity, 1) larger than any object can be, PTRDIFF_MAX), ENOMEM. Any thread. */
LACUNA_API lacuna_chan *lacuna_chan_make(size_t elem_size, size_t capacity);

/* Copy *elem into the channel, blocking while the channel is full (unbuffered: until a receiver
 * takes it): a fiber blocks (its worker runs others), a plain thread blocks itself. Returns 0, or
 *   EPIPE   the channel is closed (also when it is closed while the sender waits: not delivered);
 *   EPERM   it would block a thread whose own runtime still has fibers (they could not run);
 *   ECANCELED  the caller is a cancelled fiber and would have to wait (nothing sent);
 *   EINVAL  chan or elem NULL, or the waiter it would wake is a fiber of an exited thread. */
LACUNA_API int lacuna_chan_send(lacuna_chan *chan, const void *elem);

/* Take the oldest element into *elem, blocking the calling fiber while there is none. Returns 0,
 * or EPIPE (closed and drained: *elem untouched), EPERM, ECANCELED, EINVAL as lacuna_chan_send. */
LACUNA_API int lacuna_chan_recv(lacuna_chan *chan, void *elem);

/* lacuna_chan_send / lacuna_chan_recv until a deadline (see "Deadlines"): as those, and
 *   ETIMEDOUT  the deadline passed while it waited (nothing sent / received), or it is
 *              LACUNA_NOWAIT and the call would have had to wait;
 *   ECANCELED  the caller is a cancelled fiber and would have to wait (nothing sent / received).
 * The plain forms return ECANCELED likewise. A thread outside the runtime waits on a futex with
 * the deadline. */
LACUNA_API int lacuna_chan_send_until(lacuna_chan *chan, const void *elem, uint64_t deadline_ns);
LACUNA_API int lacuna_chan_recv_until(lacuna_chan *chan, void *elem, uint64_t deadline_ns);

/* One case of lacuna_select: send *elem to chan, or receive from chan into *elem. */
#define LACUNA_SELECT_SEND 1
#define LACUNA_SELECT_RECV 2
typedef struct lacuna_select_case {
    lacuna_chan *chan; /* NULL: a case that is never ready (a disabled case, as Go's nil chan) */
    void *elem;        /* the element to send, or where to receive one (elem_size bytes) */
    int op;            /* LACUNA_SELECT_SEND or LACUNA_SELECT_RECV */
} lacuna_select_case;

/* Wait until one of n cases can complete, complete exactly that one, and say which in *chosen
 * (its index in cases). Among cases ready at once, each is picked with equal probability (they
 * are tried in a random order), so no ready case starves. A receive from a closed, drained
 * channel and a send to a closed channel are ready: they complete with EPIPE. Fibers block (their
 * worker runs others); a plain thread blocks on a futex, like a channel operation (and gets EPERM
 * where its own runtime still has fibers). The same channel may appear in several cases. Cases
 * of up to 8 channels need no allocation. Returns
 *   0          the case *chosen completed;
 *   EPIPE      the case *chosen found its channel closed (nothing sent / received);
 *   ETIMEDOUT  the deadline passed first (LACUNA_NOWAIT: no case was ready); *chosen untouched;
 *   ECANCELED  the caller is a cancelled fiber and would have had to wait;
 *   EINVAL     cases NULL with n > 0, chosen NULL, an unknown op, a NULL elem with a channel;
 *              n == 0 (or every chan NULL) with LACUNA_FOREVER, which could never end (with a
 *              deadline it sleeps until it and returns ETIMEDOUT); or a waiter to wake is a fiber
 *              of an exited thread (as lacuna_chan_send);
 *   EPERM      as lacuna_chan_send;  ENOMEM  more than 8 cases and no memory for their waiters. */
LACUNA_API int lacuna_select(lacuna_select_case *cases, size_t n, uint64_t deadline_ns,
                             size_t *chosen);

/* Close: later sends fail with EPIPE; receivers drain what is buffered, then get EPIPE. Waiting
 * senders and receivers are woken with EPIPE. Any thread. Returns 0, or EINVAL (NULL, or a waiter
 * is a fiber of an exited thread), EALREADY (closed before). */
LACUNA_API int lacuna_chan_close(lacuna_chan *chan);

/* Free a channel (buffered elements are dropped). NULL is a no-op. Returns 0, or EBUSY when a
 * fiber or thread still waits on it (nothing is freed). */
LACUNA_API int lacuna_chan_free(lacuna_chan *chan);

#ifdef __cplusplus
}
#endif

#endif /* LACUNA_FIBER_H */
