/* lacuna/sync.h — what fiber programs synchronise with: non-blocking channel operations, a mutex,
 * a condition variable, a waitgroup, a counting semaphore, fiber-local storage and a wake-up
 * handle for threads and signal handlers outside the runtime.
 *
 * Included by <lacuna.h>; include that one. Conventions as in <lacuna/fiber.h>: 0 or a positive
 * errno value, pointer results NULL + errno, bad input EINVAL, never a crash.
 *
 * Deadlines and cancellation: every call that may wait has an _until form with an absolute
 * deadline, and fails with ECANCELED in a cancelled fiber where it would wait (see <lacuna/fiber.h>
 * "Deadlines" and "Cancellation"). A waiter that times out or is cancelled leaves the queue: the
 * next unlock, post or signal goes to the next waiter.
 *
 * Blocking: a fiber that must wait (mutex, cond, waitgroup, semaphore) parks; its worker runs other
 * fibers meanwhile, and the fiber may resume on another worker. A plain thread (thread context,
 * with no fibers of its own runtime left to run: e.g. a thread that never spawned, or main after
 * lacuna_run) blocks itself on a futex, like a channel operation from a plain thread. A thread
 * whose own runtime still has fibers is refused with EPERM where it would have to wait, since
 * blocking it would stop those fibers. Waiters are served first in, first out: an unlock hands the
 * mutex to the oldest waiter (no newcomer can take it first), a post hands its unit to the oldest
 * semaphore waiter, a signal wakes the oldest cond waiter. No call here reports spurious wake-ups,
 * but a cond waiter must still re-check its predicate (another fiber may take the mutex and change
 * the state between the signal and the waiter's return). A fiber or thread that ends (or a
 * runtime whose home thread exits) while it waits or holds a mutex leaves it waited or held for
 * ever: end only with nothing held. lacuna_run's deadlock verdict: a plain thread owning a mutex
 * that fibers wait for counts as one that will wake them; a plain thread that is merely running
 * (say, about to post a semaphore) does not, as with channels: when every remaining fiber waits
 * for such a thread, lacuna_run returns EDEADLK, and calling it again resumes them.
 *
 * Objects are plain structs the caller places anywhere (a global, a struct member, a fiber's
 * stack while nobody else uses it); a zero-filled object is an initialised, unlocked / empty one,
 * so `static lacuna_mutex m;` needs no init call. Their contents are private.
 *
 * Example: four fibers on two workers add to a counter under a mutex; main waits for them all.
 *
 *     static lacuna_mutex mu;
 *     static lacuna_waitgroup wg;
 *     static long total;
 *
 *     static void *add(void *arg)
 *     {
 *         int i;
 *         for (i = 0; i < 1000; i++) {
 *             lacuna_mutex_lock(&mu);
 *             total += (long)arg;
 *             lacuna_mutex_unlock(&mu);
 *         }
 *         lacuna_waitgroup_done(&wg);
 *         return NULL;
 *     }
 *
 *     int main(void)
 *     {
 *         long i;
 *         lacuna_set_workers(2);
 *         lacuna_waitgroup_add(&wg, 4);
 *         for (i = 1; i <= 4; i++)
 *             lacuna_detach(lacuna_go(add, (void *)i));
 *         lacuna_run();
 *         lacuna_waitgroup_wait(&wg);   (returns at once: the counter is 0; total is 10000)
 *         return lacuna_mutex_destroy(&mu);
 *     }
 *
 * And a thread outside the runtime (or a signal handler) waking a fiber:
 *
 *     lacuna_async *a = lacuna_async_make();
 *     ... in the fiber:          uint64_t n; while (lacuna_async_wait(a, &n) == 0) drain_queue();
 *     ... in the other thread:   push_to_queue(item); lacuna_async_send(a);
 *
 * Fiber-local storage, per fiber like pthread keys per thread:
 *
 *     static lacuna_fls_key conn_key;               (lacuna_fls_key_create(&conn_key, free))
 *     lacuna_fls_set(conn_key, malloc(64));         (freed by free() when the fiber ends)
 *     char *buf = lacuna_fls_get(conn_key);
 */
#ifndef LACUNA_SYNC_H
#define LACUNA_SYNC_H

#include "../lacuna.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Channels without waiting (see lacuna_chan_send / lacuna_chan_recv in <lacuna/fiber.h>)
 * ------------------------------------------------------------------------------------------- */

/* lacuna_chan_send if it needs no wait: copy *elem to a waiting receiver or into the buffer.
 * Any thread, any fiber; never blocks. Returns 0, or
 *   EAGAIN  the channel is full (unbuffered: no receiver waits): nothing sent;
 *   EPIPE   the channel is closed;
 *   EINVAL  chan or elem NULL, or the waiting receiver is a fiber of an exited thread. */
LACUNA_API int lacuna_chan_try_send(lacuna_chan *chan, const void *elem);

/* lacuna_chan_recv if it needs no wait: the oldest buffered element, or a waiting sender's.
 * Any thread, any fiber; never blocks. Returns 0, or
 *   EAGAIN  nothing to take now (*elem untouched);
 *   EPIPE   closed and drained (*elem untouched);
 *   EINVAL  chan or elem NULL, or the waiting sender is a fiber of an exited thread. */
LACUNA_API int lacuna_chan_try_recv(lacuna_chan *chan, void *elem);

/* Elements buffered now (0 for an unbuffered channel, whose elements pass straight from a sender
 * to a receiver), and the capacity given to lacuna_chan_make. Both 0 for NULL. The length is a
 * snapshot: other fibers may change it before the caller looks. */
LACUNA_API size_t lacuna_chan_len(const lacuna_chan *chan);
LACUNA_API size_t lacuna_chan_cap(const lacuna_chan *chan);

/* ---------------------------------------------------------------------------------------------
 * Mutex: one owner at a time; the owner (fiber or thread) alone unlocks; not recursive
 * ------------------------------------------------------------------------------------------- */

/* Uncontended, lock and unlock are one atomic compare-and-swap each. Contended, a locker on a
 * runtime with several workers (or a plain thread) spins briefly, then queues; an unlock with
 * waiters wakes the oldest and leaves the mutex free, so a locker already running may take it
 * first (the woken one then waits again, ahead of later waiters). A waiter kept waiting 1 ms or
 * more is handed the mutex by the next unlock instead, so none starves. This is how Go's
 * sync.Mutex is fair: a strict hand-off to the oldest on every unlock would cost every contended
 * lock a park and a wake-up. A fiber may hold a mutex across blocking calls and migrations: the
 * owner is the fiber, not its thread. */
typedef struct lacuna_mutex {
    uint64_t opaque[4];
} lacuna_mutex;

/* Make *mutex an unlocked mutex (the same as zero-filling it; also after lacuna_mutex_destroy).
 * 0, or EINVAL (NULL). Never call it on a mutex in use. */
LACUNA_API int lacuna_mutex_init(lacuna_mutex *mutex);

/* Take the mutex, blocking the calling fiber (or plain thread) while another owns it. Returns 0,
 * or EINVAL (NULL, destroyed), EDEADLK (the caller owns it already), EPERM (it would block a
 * thread whose own runtime still has fibers). */
LACUNA_API int lacuna_mutex_lock(lacuna_mutex *mutex);

/* lacuna_mutex_lock until a deadline (CLOCK_MONOTONIC ns, see <lacuna/fiber.h> "Deadlines"):
 * as it, and ETIMEDOUT (not taken by the deadline; LACUNA_NOWAIT: owned by another), ECANCELED
 * (a cancelled fiber that would have to wait). The plain form returns ECANCELED likewise. */
LACUNA_API int lacuna_mutex_lock_until(lacuna_mutex *mutex, uint64_t deadline_ns);

/* Take the mutex if nobody owns it. 0, or EBUSY (owned, by anyone, the caller too), EINVAL (NULL,
 * destroyed). Never blocks. */
LACUNA_API int lacuna_mutex_trylock(lacuna_mutex *mutex);

/* Release the mutex: the oldest waiter, if any, owns it now. 0, or EPERM (the caller does not own
 * it: not locked, or locked by another fiber or thread), EINVAL (NULL, destroyed). */
LACUNA_API int lacuna_mutex_unlock(lacuna_mutex *mutex);

/* Make the mutex unusable (later calls: EINVAL) until lacuna_mutex_init. 0, or EBUSY (owned or
 * waited for: nothing changes), EINVAL (NULL, destroyed already). */
LACUNA_API int lacuna_mutex_destroy(lacuna_mutex *mutex);

/* ---------------------------------------------------------------------------------------------
 * Condition variable: waiters queue with a mutex, as pthread_cond_t
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_cond {
    uint64_t opaque[3];
} lacuna_cond;

/* Make *cond an empty condition variable (the same as zero-filling it). 0, or EINVAL (NULL). */
LACUNA_API int lacuna_cond_init(lacuna_cond *cond);

/* Atomically release mutex (which the caller owns) and block until a signal or broadcast picks
 * this waiter, then take the mutex again before returning (waiting for it like lacuna_mutex_lock).
 * Re-check the predicate in a loop: others may run between the signal and the return. Returns 0,
 * or EPERM (the caller does not own mutex; or it would block a thread whose own runtime still has
 * fibers: the mutex stays held), EINVAL (NULL, cond destroyed). */
LACUNA_API int lacuna_cond_wait(lacuna_cond *cond, lacuna_mutex *mutex);

/* lacuna_cond_wait until a deadline: as it, and ETIMEDOUT (no signal picked it by the deadline),
 * ECANCELED (a cancelled fiber: at once, or cancelled while it waited). Whatever the result, the
 * caller owns the mutex again on return (taking it back ignores a cancel, so cleanup can unlock
 * it); with LACUNA_NOWAIT or a cancel seen at the call it was never released. The plain form
 * returns ECANCELED likewise. */
LACUNA_API int lacuna_cond_wait_until(lacuna_cond *cond, lacuna_mutex *mutex, uint64_t deadline_ns);

/* Wake the oldest waiter / every waiter (none: nothing happens; a later wait is not affected).
 * Callable with or without the mutex held, from any fiber or thread (not a signal handler).
 * 0, or EINVAL (NULL, destroyed). */
LACUNA_API int lacuna_cond_signal(lacuna_cond *cond);
LACUNA_API int lacuna_cond_broadcast(lacuna_cond *cond);

/* 0, or EBUSY (someone waits: nothing changes), EINVAL (NULL, destroyed already). */
LACUNA_API int lacuna_cond_destroy(lacuna_cond *cond);

/* ---------------------------------------------------------------------------------------------
 * Waitgroup: wait until a counter of outstanding tasks drops to zero (Go's sync.WaitGroup)
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_waitgroup {
    uint64_t opaque[4];
} lacuna_waitgroup;

/* Counter 0, no waiters (the same as zero-filling it). 0, or EINVAL (NULL). */
LACUNA_API int lacuna_waitgroup_init(lacuna_waitgroup *wg);

/* Add delta (may be negative) to the counter; when it reaches 0, every waiter is woken. 0, or
 * EINVAL (NULL, destroyed, or the counter would go negative: it is left unchanged), EOVERFLOW
 * (above INT64_MAX). Any fiber or thread (not a signal handler). */
LACUNA_API int lacuna_waitgroup_add(lacuna_waitgroup *wg, long delta);

/* lacuna_waitgroup_add(wg, -1). */
LACUNA_API int lacuna_waitgroup_done(lacuna_waitgroup *wg);

/* Block until the counter is 0 (at once if it is). 0, or EINVAL (NULL, destroyed), EPERM (it
 * would block a thread whose own runtime still has fibers). */
LACUNA_API int lacuna_waitgroup_wait(lacuna_waitgroup *wg);

/* lacuna_waitgroup_wait until a deadline: as it, and ETIMEDOUT (the counter was not 0 by then),
 * ECANCELED (a cancelled fiber that would have to wait). The plain form returns ECANCELED
 * likewise. */
LACUNA_API int lacuna_waitgroup_wait_until(lacuna_waitgroup *wg, uint64_t deadline_ns);

/* 0, or EBUSY (someone waits), EINVAL (NULL, destroyed already). */
LACUNA_API int lacuna_waitgroup_destroy(lacuna_waitgroup *wg);

/* ---------------------------------------------------------------------------------------------
 * Counting semaphore
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_sem {
    uint64_t opaque[4];
} lacuna_sem;

/* A semaphore with `value` units (zero-filling gives one with 0). 0, or EINVAL (NULL). */
LACUNA_API int lacuna_sem_init(lacuna_sem *sem, unsigned long value);

/* Give a unit back: to the oldest waiter if any (FIFO), else to the count. 0, or EINVAL (NULL,
 * destroyed), EOVERFLOW (the count is at its maximum). Any fiber or thread (not a signal
 * handler: use lacuna_async_send there). */
LACUNA_API int lacuna_sem_post(lacuna_sem *sem);

/* Take a unit, blocking while there is none. 0, or EINVAL (NULL, destroyed), EPERM (it would block
 * a thread whose own runtime still has fibers). */
LACUNA_API int lacuna_sem_wait(lacuna_sem *sem);

/* lacuna_sem_wait until a deadline: as it, and ETIMEDOUT (no unit by then: none taken),
 * ECANCELED (a cancelled fiber that would have to wait). The plain form returns ECANCELED
 * likewise. */
LACUNA_API int lacuna_sem_wait_until(lacuna_sem *sem, uint64_t deadline_ns);

/* Take a unit if one is there. 0, or EAGAIN (none), EINVAL (NULL, destroyed). Never blocks. */
LACUNA_API int lacuna_sem_trywait(lacuna_sem *sem);

/* The units available now, into *value (a snapshot). 0, or EINVAL (NULL, destroyed). */
LACUNA_API int lacuna_sem_value(lacuna_sem *sem, unsigned long *value);

/* 0, or EBUSY (someone waits), EINVAL (NULL, destroyed already). */
LACUNA_API int lacuna_sem_destroy(lacuna_sem *sem);

/* ---------------------------------------------------------------------------------------------
 * Fiber-local storage and the fiber id
 * ------------------------------------------------------------------------------------------- */

#define LACUNA_FLS_KEYS_MAX 128 /* keys that may exist at once */

/* A key names one value per fiber (0 is never a key). A deleted key's number is not reused for
 * the next 2^24 keys of its slot, so a stale key is refused rather than aliasing a new one. */
typedef uint32_t lacuna_fls_key;

/* Create a key; every fiber's value for it starts NULL. destructor (may be NULL) runs with the
 * fiber's non-NULL value when the fiber ends: on the fiber's own stack, after its function
 * returned and before it counts as ended (a joiner sees its effects; it may block, but must not
 * need the joiner). Values that destructors set again get up to 4 rounds, then are dropped, as
 * with pthread keys. Any thread. 0, or EINVAL (key NULL), EAGAIN (LACUNA_FLS_KEYS_MAX keys
 * exist). */
LACUNA_API int lacuna_fls_key_create(lacuna_fls_key *key, void (*destructor)(void *value));

/* Delete a key: its values are forgotten (no destructor runs; free them first if they own
 * memory), later gets return NULL and sets EINVAL. 0, or EINVAL (not a key, deleted already). */
LACUNA_API int lacuna_fls_key_delete(lacuna_fls_key key);

/* The calling fiber's value for key; NULL if none, the key is not valid, or the caller is not a
 * fiber (thread context). Never fails otherwise; no errno. */
LACUNA_API void *lacuna_fls_get(lacuna_fls_key key);

/* Set the calling fiber's value for key. 0, or EINVAL (not a key), EPERM (thread context: use
 * pthread keys there), ENOMEM (its first value: a small table is allocated). */
LACUNA_API int lacuna_fls_set(lacuna_fls_key key, const void *value);

/* The calling fiber's id: stable for its life (also across workers), never 0, and equal to
 * (uint64_t)(uintptr_t)lacuna_self(); an id may come back after its fiber is reclaimed only after
 * about 2^31 further fibers used the same control block. 0 in thread context. */
LACUNA_API uint64_t lacuna_fiber_id(void);

/* ---------------------------------------------------------------------------------------------
 * Async: a plain thread or a signal handler wakes a fiber (libuv's uv_async_send)
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_async lacuna_async;

/* A handle with no sends pending (an eventfd underneath). NULL + errno: ENOMEM, or eventfd's
 * EMFILE/ENFILE. Any thread. */
LACUNA_API lacuna_async *lacuna_async_make(void);

/* Record one send and wake a waiter. Async-signal-safe: no lock, no allocation (one atomic add,
 * and one write(2) to the eventfd when no earlier send is pending); errno is preserved. Sends
 * coalesce: several before a wait wake it once. Any thread, fiber or signal handler. 0, or EINVAL
 * (NULL). */
LACUNA_API int lacuna_async_send(lacuna_async *async);

/* Block until at least one send happened since the previous wait returned (at once if one did),
 * and take them all: *count (if not NULL) gets how many. A fiber blocks (lacuna_fd_wait); a
 * thread blocks in poll(2). Several waiters may wait: one takes the sends, the others keep
 * waiting. 0, or EINVAL (NULL), an errno from lacuna_fd_wait (EMFILE). */
LACUNA_API int lacuna_async_wait(lacuna_async *async, uint64_t *count);

/* Close and free (NULL: a no-op). Sends after (or during) it are undefined: stop the senders
 * first. 0, or EBUSY (someone is in lacuna_async_wait: nothing freed). */
LACUNA_API int lacuna_async_free(lacuna_async *async);

#ifdef __cplusplus
}
#endif

#endif /* LACUNA_SYNC_H */
