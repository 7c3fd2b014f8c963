/* lacuna/sync.h — what fiber programs synchronise with: non-blocking channel operations, a mutex,
 * a condition variable, a waitgroup, a counting semaphore, fiber-local storage and a wake-up
 * handle for threads and signal handlers outside the runtime.
 *
 * Included by <lacuna.h>; include that one. Conventions as in <lacuna/fiber.h>: 0 or a positive
 * errno value, pointer results NULL + errno, bad input EINVAL, never a crash.
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
 * ever: end only with nothing held.
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

#ifdef __cplusplus
}
#endif

#endif /* LACUNA_SYNC_H */
