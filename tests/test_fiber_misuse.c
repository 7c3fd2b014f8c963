/* Misuse the fiber runtime must refuse with an error instead of crashing or wedging: handles and
 * channels of a thread that has exited (glibc gives the next thread the dead one's stack and
 * TLS, so an identity made of an address would match), a fiber left by longjmp, and absurd
 * channel sizes. */
#define _GNU_SOURCE
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LT_ASAN 1
#endif
#ifdef LT_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* ---- handles and channels of an exited thread ------------------------------------------- */

static void *add_one(void *arg)
{
    return (void *)((uintptr_t)arg + 1);
}

static void *recv_forever(void *arg)
{
    int v;
    return (void *)(uintptr_t)lacuna_chan_recv(arg, &v);
}

static void *send_forever(void *arg)
{
    int v = 7;
    return (void *)(uintptr_t)lacuna_chan_send(arg, &v);
}

typedef struct dead {
    lacuna_chan *recv_waits, *send_waits; /* a fiber of the dead thread waits on each */
    lacuna_fiber *unrun;                  /* spawned, never ran */
    lacuna_fiber *ended;                  /* ran to its end, not joined */
    lacuna_fiber *blocked;                /* parked on recv_waits */
} dead;

static void *leave_fibers_behind(void *arg)
{
    dead *d = arg;
    d->ended = lacuna_go(add_one, (void *)1);
    d->blocked = lacuna_go(recv_forever, d->recv_waits);
    lacuna_detach(lacuna_go(send_forever, d->send_waits));
    CHECK_EQ(lacuna_run(), EDEADLK); /* ended has ended; the others wait for ever */
    d->unrun = lacuna_go(add_one, (void *)41);
    return NULL; /* the thread exits with its fibers */
}

/* A thread that spawned fibers, left them blocked, unjoined and unrun, and exited. Its
 * scheduler and blocked fibers leak by design (documented): LSan is told so. */
static dead dead_thread(void)
{
    dead d = {lacuna_chan_make(sizeof(int), 0), lacuna_chan_make(sizeof(int), 0), 0, 0, 0};
    CHECK(d.recv_waits && d.send_waits);
    pthread_t t;
#ifdef LT_ASAN
    __lsan_disable();
#endif
    CHECK_EQ(pthread_create(&t, NULL, leave_fibers_behind, &d), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
#ifdef LT_ASAN
    __lsan_enable();
#endif
    return d;
}

typedef struct {
    dead d;
    int with_scheduler; /* the new thread has fibers of its own first */
} heir_arg;

static void *heir_joins(void *arg)
{
    heir_arg *h = arg;
    lacuna_fiber *mine = NULL;
    if (h->with_scheduler)
        CHECK((mine = lacuna_go(add_one, (void *)0)) != NULL);
    lacuna_fiber *theirs[] = {h->d.unrun, h->d.ended, h->d.blocked};
    for (int i = 0; i < 3; i++) {
        errno = 0;
        CHECK(lacuna_join(theirs[i]) == NULL);
        CHECK_EQ(errno, EINVAL);
        CHECK_EQ(lacuna_detach(theirs[i]), EINVAL);
        CHECK_EQ(lacuna_fiber_set_name(theirs[i], "mine now?"), EINVAL);
    }
    if (mine)
        CHECK_EQ((uintptr_t)lacuna_join(mine), 1);
    return NULL;
}

static void from_new_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, fn, arg), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
}

TEST(join_detach_fibers_of_an_exited_thread)
{
    heir_arg h = {dead_thread(), 0};
    from_new_thread(heir_joins, &h);
}

TEST(join_detach_fibers_of_an_exited_thread_with_a_scheduler)
{
    heir_arg h = {dead_thread(), 1};
    from_new_thread(heir_joins, &h);
}

static void *heir_sends(void *arg)
{
    dead *d = arg;
    int v = 1;
    CHECK_EQ(lacuna_chan_send(d->recv_waits, &v), EINVAL); /* would wake a dead thread's fiber */
    CHECK_EQ(lacuna_chan_recv(d->send_waits, &v), EINVAL);
    return NULL;
}

TEST(send_recv_on_channels_of_an_exited_thread)
{
    dead d = dead_thread();
    from_new_thread(heir_sends, &d);
}

static void *heir_closes(void *arg)
{
    dead *d = arg;
    CHECK_EQ(lacuna_chan_close(d->recv_waits), EINVAL);
    CHECK_EQ(lacuna_chan_close(d->send_waits), EINVAL);
    CHECK_EQ(lacuna_chan_free(d->recv_waits), EBUSY);
    return NULL;
}

TEST(close_channels_of_an_exited_thread)
{
    dead d = dead_thread();
    from_new_thread(heir_closes, &d);
}

/* The same calls from a fiber of the new thread (its scheduler must not get the dead fibers). */
static void *in_a_fiber(void *arg)
{
    dead *d = arg;
    heir_sends(d);
    heir_closes(d);
    heir_arg h = {*d, 0};
    heir_joins(&h);
    return NULL;
}

static void *heir_fiber(void *arg)
{
    CHECK(lacuna_join(lacuna_go(in_a_fiber, arg)) == NULL);
    CHECK_EQ(lacuna_run(), 0);
    return NULL;
}

TEST(fibers_of_a_new_thread_meet_an_exited_thread)
{
    dead d = dead_thread();
    from_new_thread(heir_fiber, &d);
}

/* ---- leaving a fiber by longjmp ------------------------------------------------------------- */

static jmp_buf escape;

static void *escaper(void *arg)
{
    (void)arg;
    longjmp(escape, 1); /* undefined by fiber.h; what the runtime can tell, it reports */
}

TEST(longjmp_out_of_a_fiber_is_reported)
{
#if LT_SANITIZED
    SKIP("the sanitizers' longjmp interceptors refuse a jump between fiber stacks (TSan aborts)");
#endif
    lacuna_fiber *f = lacuna_go(escaper, NULL);
    lacuna_fiber *other = lacuna_go(add_one, (void *)1);
    if (setjmp(escape) == 0) {
        lacuna_run();
        CHECK(0); /* not reached: the escaper jumps back here */
    }
    /* On the thread's stack again, while the scheduler still thinks escaper runs. */
    CHECK_EQ(lacuna_run(), ENOTRECOVERABLE);
    CHECK_EQ(lacuna_run(), ENOTRECOVERABLE); /* stays so: not EPERM, not a hang */
    errno = 0;
    CHECK(lacuna_join(other) == NULL);
    CHECK_EQ(errno, ENOTRECOVERABLE);
    errno = 0;
    CHECK(lacuna_join(f) == NULL);
    CHECK_EQ(errno, ENOTRECOVERABLE);
}

static void *run_from_fiber(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)lacuna_run();
}

TEST(run_from_a_fiber_is_still_eperm)
{
    CHECK_EQ((uintptr_t)lacuna_join(lacuna_go(run_from_fiber, NULL)), EPERM);
}

/* ---- absurd channel sizes ----------------------------------------------------------------- */

TEST(chan_make_absurd_sizes)
{
    struct {
        size_t elem, cap;
    } bad[] = {{0, 0},
               {0, 4},
               {SIZE_MAX, 0},
               {SIZE_MAX, 1},
               {SIZE_MAX / 2, 0},
               {SIZE_MAX / 2, 4},
               {PTRDIFF_MAX, 0},
               {1, SIZE_MAX},
               {8, SIZE_MAX / 4},
               {SIZE_MAX / 4, 8}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK(lacuna_chan_make(bad[i].elem, bad[i].cap) == NULL);
        CHECK_EQ(errno, EINVAL);
    }
    lacuna_chan *c = lacuna_chan_make(1 << 20, 0); /* large but real: fine */
    CHECK(c != NULL);
    CHECK_EQ(lacuna_chan_free(c), 0);
}
