/* fiber.c — green threads on pool stacks: spawn, switch, run queue, timers, fd waits, join.
 *
 * Owns: the process's shared stack pool (created on the first spawn), the table of fiber control
 * blocks, and one scheduler per OS thread (thread-local, created lazily, freed when it runs out
 * of fibers). Fibers never migrate, so a scheduler is touched by its own thread only and takes no
 * lock; the stack pool and the control-block table are the only shared state.
 *
 * Invariants:
 *   - A control block never lives in a stack region (those pages are released): blocks come from
 *     chunks of 4096 that are never freed, so a stale handle always points at readable memory.
 *     A handle is (generation << 32 | index); a block's generation is odd while it is in use and
 *     bumped when it is reclaimed, so stale handles are recognised, not followed.
 *   - A fiber's stack is freed as soon as the fiber ends, but never by that fiber (it is running
 *     on it): the ending fiber leaves itself in sched->zombie and whatever context runs next frees
 *     it right after the switch (reap), before any user code runs.
 *   - Fibers switch directly to one another. The thread's own stack (the "main" context, inside
 *     lacuna_run or a thread-context lacuna_join) runs only when the run queue is empty, when a
 *     thread-context join target ends, and every 64th switch while timers or fd waits are pending
 *     (so a fiber that keeps yielding cannot starve them). Main polls epoll and fires timers.
 *   - Run queue: a deque. A fiber preempted by its own spawn goes to the front (it runs right
 *     after the child blocks or ends); everything else goes to the back.
 *
 * Does not: move fibers between threads, preempt, or share channels across threads (chan.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#ifdef LACUNA_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#define LAC_VG_REGISTER(lo, hi) VALGRIND_STACK_REGISTER(lo, hi)
#define LAC_VG_DEREGISTER(id)   VALGRIND_STACK_DEREGISTER(id)
#else
#define LAC_VG_REGISTER(lo, hi) ((void)(lo), (void)(hi), 0u)
#define LAC_VG_DEREGISTER(id)   ((void)(id))
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LAC_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define LAC_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(LAC_ASAN)
#define LAC_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(LAC_TSAN)
#define LAC_TSAN 1
#endif
#ifdef LAC_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef LAC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

_Static_assert(sizeof(void *) == 8, "fiber handles pack a 32-bit index and generation");

#define LAC_DEF_STACK   (64u << 10) /* default stack: 64 KiB, one guard page below it */
#define LAC_CHUNK_SHIFT 12          /* control blocks per chunk: 4096 */
#define LAC_CHUNK_N     (1u << LAC_CHUNK_SHIFT)
#define LAC_CHUNKS      65536 /* up to 2^28 control blocks in use at once */
#define LAC_LOCAL_FREE  8192  /* free blocks a scheduler keeps; half spill past it */
#define LAC_POLL_EVERY  64    /* switches between polls while timers or fd waits pend */
#define LAC_NO_HEAP     SIZE_MAX

enum { F_FREE = 0, F_READY, F_RUNNING, F_PARKED, F_DONE };
enum { W_NONE = 0, W_TIMER, W_IO };

typedef struct lac_sched lac_sched;

struct lac_fiber {
    void *sp;        /* saved stack pointer while not running */
    lac_fiber *next; /* run queue link */
    void *(*fn)(void *);
    void *arg;            /* fn's argument, then its result */
    char *stack;          /* lowest byte of the stack region; NULL once freed */
    lac_fiber *joiner;    /* fiber blocked in lacuna_join on this one */
    uint64_t deadline;    /* CLOCK_MONOTONIC ns, while in the timer heap */
    size_t heap_pos;      /* index in the timer heap, or LAC_NO_HEAP */
    _Atomic uint32_t gen; /* odd while in use; bumped on spawn and on reclaim */
    uint32_t idx;         /* index in the block table (0 is never used) */
    uint32_t next_free;   /* free-list link (an index) */
    uint8_t state;        /* F_* */
    uint8_t wait;         /* W_*: what a parked fiber waits for besides a wake-up */
    uint8_t timed_out;    /* a timed wait ended by its deadline */
    uint8_t detached;
    int io_fd;                   /* while in lacuna_fd_wait: the fd and its epoll events, so a */
    uint32_t io_events;          /* forked child can register them in an epoll of its own */
    _Atomic(const void *) owner; /* the thread (its tls_token address) that spawned it */
    long region;                 /* stack region index in the pool */
    unsigned vg_id;              /* valgrind stack id */
#ifdef LAC_ASAN
    void *asan_fake; /* ASan fake stack saved across a switch */
#endif
#ifdef LAC_TSAN
    void *tsan; /* TSan fiber */
#endif
    char name[LACUNA_FIBER_NAME_MAX]; /* read by the SIGSEGV handler: always NUL-terminated */
};

struct lac_sched {
    lac_fiber *cur;         /* running fiber; NULL while on the thread's own stack */
    lac_fiber *head, *tail; /* run queue */
    lac_fiber *zombie;      /* ended fiber whose stack the next context frees */
    lac_fiber *main_join;   /* the fiber a thread-context lacuna_join waits for */
    void *main_sp;          /* the thread's own context while a fiber runs */
    size_t live;            /* fibers spawned here that have not ended */
    size_t nio;             /* fibers in lacuna_fd_wait */
    lac_fiber **heap;       /* timer min-heap on deadline */
    size_t nheap, heap_cap;
    unsigned tick;             /* scheduling decisions while waits pend: LAC_POLL_EVERY */
    int epfd;                  /* -1 until the first fd wait */
    uint32_t free_head, nfree; /* control blocks free for reuse here */
#ifdef LAC_ASAN
    void *main_fake;
    const void *main_bottom; /* the thread stack, as ASan reports it on the first switch */
    size_t main_size;
    bool from_main; /* the switch now completing started on the thread's stack */
#endif
#ifdef LAC_TSAN
    void *tsan_main;
#endif
};

static __thread lac_sched *tls_sched;
static __thread char tls_token; /* its address names the thread */

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(lacuna_pool *) stack_pool;
static size_t stack_size;              /* region size of stack_pool; set before it is published */
static _Atomic uint32_t *region_owner; /* per region: index of the fiber running on it, or 0 */
static size_t region_count;
static _Atomic(lac_fiber *) table[LAC_CHUNKS];
static _Atomic uint32_t table_n = 1; /* indices handed out so far (0 is reserved) */
static uint32_t global_free;         /* free list of reclaimed blocks (global_lock) */

/* ---- the stack pool ---------------------------------------------------------------------- */

static const char *stack_namer(void *ctx, size_t index);

/* Create the pool (global_lock held). 0 or errno. */
static int pool_create_locked(const lacuna_pool_config *config)
{
    lacuna_pool *pool;
    int err = lacuna_pool_create(config, &pool);
    if (err)
        return err;
    lacuna_stats st;
    lacuna_pool_stats(pool, &st);
    _Atomic uint32_t *owner = calloc(st.capacity, sizeof *owner);
    if (owner == NULL) {
        lacuna_pool_destroy(pool);
        return ENOMEM;
    }
    region_owner = owner;
    region_count = st.capacity;
    stack_size = st.region_size;
    lac_pool_set_namer(pool, stack_namer, NULL);
    atomic_store_explicit(&stack_pool, pool, memory_order_release);
    return 0;
}

static lacuna_pool *pool_get(void)
{
    lacuna_pool *p = atomic_load_explicit(&stack_pool, memory_order_acquire);
    if (LAC_LIKELY(p != NULL))
        return p;
    pthread_mutex_lock(&global_lock);
    int err = 0;
    if (atomic_load_explicit(&stack_pool, memory_order_relaxed) == NULL) {
        lacuna_pool_config c = {.region_size = LAC_DEF_STACK};
        err = pool_create_locked(&c);
    }
    pthread_mutex_unlock(&global_lock);
    if (err) {
        errno = err;
        return NULL;
    }
    return atomic_load_explicit(&stack_pool, memory_order_acquire);
}

int lacuna_fiber_configure(const lacuna_pool_config *config)
{
    if (config == NULL)
        return EINVAL;
    pthread_mutex_lock(&global_lock);
    int err = atomic_load(&stack_pool) ? EBUSY : pool_create_locked(config);
    pthread_mutex_unlock(&global_lock);
    return err;
}

lacuna_pool *lacuna_fiber_pool(void)
{
    return atomic_load_explicit(&stack_pool, memory_order_acquire);
}

/* ---- control blocks ---------------------------------------------------------------------- */

static inline lac_fiber *block_at(uint32_t idx)
{
    lac_fiber *chunk = atomic_load_explicit(&table[idx >> LAC_CHUNK_SHIFT], memory_order_acquire);
    return &chunk[idx & (LAC_CHUNK_N - 1)];
}

static inline lacuna_fiber *handle_of(const lac_fiber *f)
{
    uint64_t gen = atomic_load_explicit(&f->gen, memory_order_relaxed);
    return (lacuna_fiber *)(uintptr_t)(gen << 32 | f->idx);
}

/* The block a handle names, if it is still in use; NULL for NULL, forged or stale handles. */
static lac_fiber *lookup(const lacuna_fiber *h)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t idx = (uint32_t)v, gen = (uint32_t)(v >> 32);
    if (idx == 0 || idx >= atomic_load_explicit(&table_n, memory_order_acquire) || !(gen & 1))
        return NULL;
    lac_fiber *chunk = atomic_load_explicit(&table[idx >> LAC_CHUNK_SHIFT], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    lac_fiber *f = &chunk[idx & (LAC_CHUNK_N - 1)];
    return atomic_load_explicit(&f->gen, memory_order_acquire) == gen ? f : NULL;
}

/* Refill a scheduler's free list: a batch of reclaimed blocks, else a new chunk. 0 or ENOMEM. */
static int blocks_refill(lac_sched *s)
{
    pthread_mutex_lock(&global_lock);
    for (int n = 0; n < 256 && global_free != 0; n++) {
        lac_fiber *f = block_at(global_free);
        global_free = f->next_free;
        f->next_free = s->free_head;
        s->free_head = f->idx;
        s->nfree++;
    }
    if (s->nfree == 0) {
        uint32_t first = atomic_load_explicit(&table_n, memory_order_relaxed);
        uint32_t c = first >> LAC_CHUNK_SHIFT;
        lac_fiber *chunk = c < LAC_CHUNKS ? calloc(LAC_CHUNK_N, sizeof *chunk) : NULL;
        if (chunk == NULL) {
            pthread_mutex_unlock(&global_lock);
            return ENOMEM;
        }
        uint32_t end = (c + 1) << LAC_CHUNK_SHIFT;
        for (uint32_t i = end; i-- > first;) {
            lac_fiber *f = &chunk[i & (LAC_CHUNK_N - 1)];
            f->idx = i;
            f->next_free = s->free_head;
            s->free_head = i;
            s->nfree++;
        }
        atomic_store_explicit(&table[c], chunk, memory_order_release);
        atomic_store_explicit(&table_n, end, memory_order_release);
    }
    pthread_mutex_unlock(&global_lock);
    return 0;
}

/* Move up to n blocks of a local free list to the global one. */
static void blocks_spill(lac_sched *s, uint32_t n)
{
    pthread_mutex_lock(&global_lock);
    while (n-- > 0 && s->free_head != 0) {
        lac_fiber *f = block_at(s->free_head);
        s->free_head = f->next_free;
        s->nfree--;
        f->next_free = global_free;
        global_free = f->idx;
    }
    pthread_mutex_unlock(&global_lock);
}

static lac_fiber *block_get(lac_sched *s)
{
    if (LAC_UNLIKELY(s->free_head == 0) && blocks_refill(s) != 0)
        return NULL;
    lac_fiber *f = block_at(s->free_head);
    s->free_head = f->next_free;
    s->nfree--;
    atomic_store_explicit(&f->gen, atomic_load_explicit(&f->gen, memory_order_relaxed) + 1,
                          memory_order_release);
    return f;
}

/* Reclaim a block: its handles go stale. s = the calling thread's scheduler, or NULL. */
static void block_put(lac_sched *s, lac_fiber *f)
{
    f->state = F_FREE;
    atomic_store_explicit(&f->gen, atomic_load_explicit(&f->gen, memory_order_relaxed) + 1,
                          memory_order_release);
    if (s == NULL) {
        pthread_mutex_lock(&global_lock);
        f->next_free = global_free;
        global_free = f->idx;
        pthread_mutex_unlock(&global_lock);
        return;
    }
    f->next_free = s->free_head;
    s->free_head = f->idx;
    if (++s->nfree > LAC_LOCAL_FREE)
        blocks_spill(s, LAC_LOCAL_FREE / 2);
}

/* ---- the overflow namer (async-signal-safe: atomic loads only) ---------------------------- */

static const char *stack_namer(void *ctx, size_t index)
{
    (void)ctx;
    if (index >= region_count)
        return NULL;
    uint32_t idx = atomic_load_explicit(&region_owner[index], memory_order_relaxed);
    if (idx == 0)
        return NULL;
    const lac_fiber *f = block_at(idx);
    return f->name[0] ? f->name : "(unnamed)";
}

static void name_copy(lac_fiber *f, const char *name)
{
    size_t n = name ? strnlen(name, sizeof f->name - 1) : 0;
    if (n > 0)
        memcpy(f->name, name, n);
    f->name[n] = '\0';
}

/* ---- run queue and timers ------------------------------------------------------------------ */

static inline void push_back(lac_sched *s, lac_fiber *f)
{
    f->state = F_READY;
    f->next = NULL;
    if (s->tail)
        s->tail->next = f;
    else
        s->head = f;
    s->tail = f;
}

static inline void push_front(lac_sched *s, lac_fiber *f)
{
    f->state = F_READY;
    f->next = s->head;
    s->head = f;
    if (s->tail == NULL)
        s->tail = f;
}

static inline lac_fiber *pop_front(lac_sched *s)
{
    lac_fiber *f = s->head;
    s->head = f->next;
    if (s->head == NULL)
        s->tail = NULL;
    return f;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

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

/* ---- switching ----------------------------------------------------------------------------- */

static void reap(lac_sched *s);

/* Sanitizer bookkeeping around lac_ctx_switch. `from` NULL = the thread's own stack; a `from`
 * in state F_DONE never resumes, so ASan may drop its fake stack. */
static inline void san_before(lac_sched *s, lac_fiber *from, lac_fiber *to)
{
    (void)s, (void)from, (void)to;
#ifdef LAC_ASAN
    void **fake = from == NULL ? &s->main_fake : from->state == F_DONE ? NULL : &from->asan_fake;
    s->from_main = from == NULL;
    if (to)
        __sanitizer_start_switch_fiber(fake, to->stack, stack_size);
    else
        __sanitizer_start_switch_fiber(fake, s->main_bottom, s->main_size);
#endif
#ifdef LAC_TSAN
    __tsan_switch_to_fiber(to ? to->tsan : s->tsan_main, 0);
#endif
}

/* Now running `self` (NULL = the thread's own stack) after a switch. */
static inline void san_after(lac_sched *s, lac_fiber *self)
{
    (void)s, (void)self;
#ifdef LAC_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(self ? self->asan_fake : s->main_fake, &bottom, &size);
    if (s->from_main) {
        s->main_bottom = bottom;
        s->main_size = size;
    }
#endif
}

/* Switch from the running context `from` (NULL: the thread's own stack) to `to` (NULL: the
 * thread's own stack). Returns when something switches back to `from`. */
static inline void switch_to(lac_sched *s, lac_fiber *from, lac_fiber *to)
{
    s->cur = to;
    if (to == from) {
        if (to)
            to->state = F_RUNNING;
        return;
    }
    if (to)
        to->state = F_RUNNING;
    san_before(s, from, to);
    lac_ctx_switch(from ? &from->sp : &s->main_sp, to ? to->sp : s->main_sp);
    san_after(s, from);
    if (s->zombie)
        reap(s);
}

/* Where a fiber giving up the CPU goes: the next runnable fiber, or NULL for the thread's own
 * stack (queue empty, or time to poll timers and fds). */
static inline lac_fiber *pick_next(lac_sched *s)
{
    if (LAC_UNLIKELY(s->nheap + s->nio > 0) && ++s->tick % LAC_POLL_EVERY == 0)
        return NULL;
    return s->head ? pop_front(s) : NULL;
}

/* Free an ended fiber's stack (the context that ran it has switched away for good). */
static void reap(lac_sched *s)
{
    lac_fiber *f = s->zombie;
    s->zombie = NULL;
    atomic_store_explicit(&region_owner[f->region], 0, memory_order_relaxed);
    LAC_VG_DEREGISTER(f->vg_id);
#ifdef LAC_TSAN
    __tsan_destroy_fiber(f->tsan);
#endif
    (void)lacuna_free(atomic_load_explicit(&stack_pool, memory_order_relaxed), f->stack);
    f->stack = NULL;
    if (f->detached)
        block_put(s, f);
}

static __attribute__((noreturn)) void fiber_entry(void *arg)
{
    lac_fiber *f = arg;
    lac_sched *s = tls_sched;
    san_after(s, f);
    if (s->zombie)
        reap(s);
    f->arg = f->fn(f->arg); /* the same thread's scheduler still: fibers never migrate */

    f->state = F_DONE;
    s->live--;
    if (f->joiner) {
        push_back(s, f->joiner);
        f->joiner = NULL;
    }
    s->zombie = f;
    switch_to(s, f, s->main_join == f ? NULL : pick_next(s));
    abort(); /* an ended fiber is never switched back to */
}

/* ---- the scheduler ------------------------------------------------------------------------- */

/* fork() copies the scheduler of the forking thread, epoll descriptor included, but an epoll
 * instance is shared between parent and child: each would take the other's events. The child
 * gets one of its own, with the fd waits of its (inherited) parked fibers registered again. */
void lac_fiber_fork_prepare(void)
{
    pthread_mutex_lock(&global_lock);
}

void lac_fiber_fork_parent(void)
{
    pthread_mutex_unlock(&global_lock);
}

void lac_fiber_fork_child(void)
{
    pthread_mutex_unlock(&global_lock);
    lac_sched *s = tls_sched;
    if (s == NULL || s->epfd < 0)
        return;
    close(s->epfd);
    s->epfd = s->nio > 0 ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (s->epfd < 0)
        return; /* no fd waits pending, or no epoll: the next lacuna_fd_wait makes one */
    uint32_t n = atomic_load(&table_n);
    for (uint32_t i = 1; i < n; i++) {
        lac_fiber *f = block_at(i);
        if (f->state == F_PARKED && f->wait == W_IO &&
            atomic_load_explicit(&f->owner, memory_order_relaxed) == &tls_token) {
            struct epoll_event ev = {.events = f->io_events, .data.ptr = f};
            (void)epoll_ctl(s->epfd, EPOLL_CTL_ADD, f->io_fd, &ev);
        }
    }
}

static lac_sched *sched_get(void)
{
    lac_sched *s = tls_sched;
    if (LAC_LIKELY(s != NULL))
        return s;
    int err = lacuna_overflow_handler_install(); /* also gives this thread its altstack */
    if (err) {
        errno = err;
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    s->epfd = -1;
#ifdef LAC_TSAN
    s->tsan_main = __tsan_get_current_fiber();
#endif
    tls_sched = s;
    return s;
}

static void sched_free(lac_sched *s)
{
    if (s->nfree)
        blocks_spill(s, s->nfree);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->heap);
    free(s);
    tls_sched = NULL;
}

static void ready(lac_sched *s, lac_fiber *f, bool timed_out)
{
    f->timed_out = timed_out;
    f->wait = W_NONE;
    if (f->heap_pos != LAC_NO_HEAP)
        heap_remove(s, f);
    push_back(s, f);
}

/* Poll fds and fire due timers. block: wait for the first of them. 0 or an epoll errno. */
static int poll_events(lac_sched *s, bool block)
{
    int timeout = 0;
    if (block && s->nheap > 0) {
        uint64_t now = now_ns(), due = s->heap[0]->deadline;
        uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
        timeout = ms > INT_MAX ? INT_MAX : (int)ms;
    } else if (block) {
        timeout = -1;
    }
    if (s->nio > 0) {
        struct epoll_event ev[128];
        int n = epoll_wait(s->epfd, ev, 128, timeout);
        if (n < 0 && errno != EINTR)
            return errno;
        for (int i = 0; i < n; i++) {
            lac_fiber *f = ev[i].data.ptr;
            if (f->state == F_PARKED && f->wait == W_IO)
                ready(s, f, false);
        }
    } else if (timeout > 0) {
        uint64_t due = s->heap[0]->deadline;
        struct timespec t = {.tv_sec = (time_t)(due / 1000000000u),
                             .tv_nsec = (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
            ;
    }
    if (s->nheap > 0) {
        uint64_t now = now_ns();
        while (s->nheap > 0 && s->heap[0]->deadline <= now)
            ready(s, s->heap[0], true);
    }
    return 0;
}

/* The thread's own context: run fibers until `until` ends (NULL: until none is left). */
static int sched_loop(lac_sched *s, lac_fiber *until)
{
    for (;;) {
        if (until && until->state == F_DONE)
            return 0;
        if (s->head) {
            if (s->nheap + s->nio > 0) {
                int err = poll_events(s, false);
                if (err)
                    return err;
            }
            switch_to(s, NULL, pop_front(s));
            continue;
        }
        if (s->live == 0)
            return 0;
        if (s->nheap + s->nio == 0)
            return EDEADLK;
        int err = poll_events(s, true);
        if (err)
            return err;
    }
}

int lacuna_run(void)
{
    lac_sched *s = tls_sched;
    if (s == NULL)
        return 0;
    if (s->cur)
        return EPERM;
    int saved = errno; /* the result is the error: keep the caller's errno */
    int err = sched_loop(s, NULL);
    if (err == 0)
        sched_free(s);
    errno = saved;
    return err;
}

/* ---- fibers -------------------------------------------------------------------------------- */

static lacuna_fiber *spawn(const char *name, void *(*fn)(void *), void *arg)
{
    if (fn == NULL) {
        LAC_BAD_INPUT("lacuna_go", "NULL fn", NULL);
        errno = EINVAL;
        return NULL;
    }
    lacuna_pool *pool = pool_get();
    lac_sched *s = pool ? sched_get() : NULL;
    if (s == NULL)
        return NULL;
    char *stack = lacuna_alloc(pool);
    if (stack == NULL)
        return NULL; /* errno: ENOMEM */
    lac_fiber *f = block_get(s);
    if (f == NULL) {
        (void)lacuna_free(pool, stack);
        errno = ENOMEM;
        return NULL;
    }
    f->fn = fn;
    f->arg = arg;
    f->stack = stack;
    f->joiner = NULL;
    f->heap_pos = LAC_NO_HEAP;
    f->wait = W_NONE;
    f->detached = 0;
    atomic_store_explicit(&f->owner, &tls_token, memory_order_relaxed);
    name_copy(f, name);
    f->region = lacuna_region_index(pool, stack);
    atomic_store_explicit(&region_owner[f->region], f->idx, memory_order_relaxed);
    f->sp = lac_ctx_init(stack + stack_size, fiber_entry, f);
    f->vg_id = LAC_VG_REGISTER(stack, stack + stack_size);
#ifdef LAC_ASAN
    f->asan_fake = NULL;
#endif
#ifdef LAC_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
    s->live++;
    lacuna_fiber *h = handle_of(f);
    lac_fiber *self = s->cur;
    if (self) { /* runs now; the spawner right after it */
        push_front(s, self);
        switch_to(s, self, f);
    } else {
        push_back(s, f);
    }
    return h;
}

lacuna_fiber *lacuna_go(void *(*fn)(void *), void *arg)
{
    return spawn(NULL, fn, arg);
}

lacuna_fiber *lacuna_go_named(const char *name, void *(*fn)(void *), void *arg)
{
    return spawn(name, fn, arg);
}

/* The block of a live handle of this thread's fiber, or NULL. */
static lac_fiber *local_lookup(const lacuna_fiber *h)
{
    lac_fiber *f = lookup(h);
    if (f == NULL || atomic_load_explicit(&f->owner, memory_order_relaxed) != &tls_token)
        return NULL;
    return f;
}

int lacuna_fiber_set_name(lacuna_fiber *h, const char *name)
{
    lac_sched *s = tls_sched;
    lac_fiber *f = h ? local_lookup(h) : s ? s->cur : NULL;
    if (f == NULL)
        return EINVAL;
    name_copy(f, name);
    return 0;
}

lacuna_fiber *lacuna_self(void)
{
    lac_sched *s = tls_sched;
    return s && s->cur ? handle_of(s->cur) : NULL;
}

void lacuna_yield(void)
{
    lac_sched *s = tls_sched;
    if (s == NULL || s->cur == NULL || (s->head == NULL && s->nheap + s->nio == 0))
        return;
    lac_fiber *self = s->cur;
    push_back(s, self);
    switch_to(s, self, pick_next(s));
}

void *lacuna_join(lacuna_fiber *h)
{
    lac_fiber *f = local_lookup(h);
    if (f == NULL || f->detached || f->joiner) {
        LAC_BAD_INPUT("lacuna_join", "stale, detached, foreign or already joined fiber", h);
        errno = EINVAL;
        return NULL;
    }
    lac_sched *s = tls_sched;
    if (f->state != F_DONE) {
        if (s->cur == f) {
            errno = EDEADLK;
            return NULL;
        }
        if (s->main_join == f) { /* the thread itself is joining it */
            errno = EINVAL;
            return NULL;
        }
        if (s->cur) {
            lac_fiber *self = s->cur;
            f->joiner = self;
            self->state = F_PARKED;
            switch_to(s, self, pick_next(s));
        } else {
            s->main_join = f;
            int err = sched_loop(s, f);
            s->main_join = NULL;
            if (err) {
                errno = err;
                return NULL;
            }
            if (s->live == 0)
                sched_free(s);
        }
    }
    void *result = f->arg;
    block_put(tls_sched, f);
    return result;
}

int lacuna_detach(lacuna_fiber *h)
{
    lac_fiber *f = local_lookup(h);
    if (f == NULL || f->detached || f->joiner || (tls_sched && tls_sched->main_join == f)) {
        LAC_BAD_INPUT("lacuna_detach", "stale, detached, foreign or joined fiber", h);
        return EINVAL;
    }
    if (f->state == F_DONE)
        block_put(tls_sched, f);
    else
        f->detached = 1;
    return 0;
}

static int sleep_ms(unsigned ms)
{
    lac_sched *s = tls_sched;
    if (s == NULL || s->cur == NULL) {
        struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        while (nanosleep(&t, &t) != 0 && errno == EINTR)
            ;
        return 0;
    }
    if (ms == 0) {
        lacuna_yield();
        return 0;
    }
    lac_fiber *self = s->cur;
    self->deadline = now_ns() + (uint64_t)ms * 1000000u;
    if (heap_push(s, self) != 0) { /* no memory for the heap: sleep the thread instead */
        struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        while (nanosleep(&t, &t) != 0 && errno == EINTR)
            ;
        return 0;
    }
    self->wait = W_TIMER;
    self->state = F_PARKED;
    switch_to(s, self, pick_next(s));
    return 0;
}

/* End a wait's registration: delete it before closing a dup, since epoll drops a registration
 * only when the last descriptor of its file is closed, and would report the closed number. */
static void io_unregister(lac_sched *s, int fd, int wfd)
{
    (void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, wfd, NULL);
    if (wfd != fd)
        close(wfd);
}

static int fd_wait(int fd, short events, int timeout_ms)
{
    if (events == 0 || (events & ~(POLLIN | POLLOUT)))
        return EINVAL;
    if (fd < 0)
        return EBADF;
    lac_sched *s = tls_sched;
    if (s == NULL || s->cur == NULL || timeout_ms == 0) {
        struct pollfd p = {.fd = fd, .events = events};
        int n;
        while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
            ;
        if (n < 0)
            return errno;
        if (n == 0)
            return ETIMEDOUT;
        return p.revents & POLLNVAL ? EBADF : 0;
    }
    if (s->epfd < 0) {
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
            return errno;
    }
    lac_fiber *self = s->cur;
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = self};
    if (events & POLLIN)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & POLLOUT)
        ev.events |= EPOLLOUT;
    /* epoll keeps one registration per (file, fd number): a second fiber waiting on the same fd
     * (a reader and a writer of one socket, say) registers a dup of it, its own until it wakes. */
    int wfd = fd;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (errno == EPERM) /* a regular file or directory: always ready */
            return 0;
        if (errno != EEXIST)
            return errno;
        if ((wfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) /* never 0-2: stdio stays stdio */
            return errno;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, wfd, &ev) != 0) {
            int err = errno;
            close(wfd);
            return err;
        }
    }
    if (timeout_ms > 0) {
        self->deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
        if (heap_push(s, self) != 0) {
            io_unregister(s, fd, wfd);
            return ENOMEM;
        }
    }
    self->wait = W_IO;
    self->state = F_PARKED;
    self->io_fd = wfd;
    self->io_events = ev.events;
    s->nio++;
    switch_to(s, self, pick_next(s));
    s->nio--;
    io_unregister(s, fd, wfd);
    return self->timed_out ? ETIMEDOUT : 0;
}

/* Both return their error: the caller's errno survives the syscalls made underneath. */
int lacuna_sleep_ms(unsigned ms)
{
    int saved = errno;
    int err = sleep_ms(ms);
    errno = saved;
    return err;
}

int lacuna_fd_wait(int fd, short events, int timeout_ms)
{
    int saved = errno;
    int err = fd_wait(fd, events, timeout_ms);
    errno = saved;
    return err;
}

/* ---- for chan.c ---------------------------------------------------------------------------- */

lac_fiber *lac_fiber_self(void)
{
    lac_sched *s = tls_sched;
    return s ? s->cur : NULL;
}

void lac_fiber_park(void)
{
    lac_sched *s = tls_sched;
    lac_fiber *self = s->cur;
    self->state = F_PARKED;
    switch_to(s, self, pick_next(s));
}

void lac_fiber_ready(lac_fiber *f)
{
    ready(tls_sched, f, false);
}

bool lac_fiber_local(const lac_fiber *f)
{
    return atomic_load_explicit(&f->owner, memory_order_relaxed) == &tls_token;
}
