/* parked.c — parked fibers give their stack pages back: the pages below a parked fiber's saved
 * stack pointer are released in place (lacuna_punch_many), on demand, on lacuna_trim of a stack
 * pool, and for fibers parked long enough; and a census of how deep stacks really go.
 *
 * Owns: the release protocol against concurrent resumes, the aging scan and its schedule, the
 * memory-pressure watcher (a PSI trigger and its thread), lacuna_fiber_release_idle /
 * _release_after / _stack_info / _each / _pressure.
 *
 * The protocol. Any thread may release any parked fiber's pages, while other workers may switch
 * into that fiber at any moment. A switch into a fiber (sched.c, resume_sp) stores NULL into its
 * saved sp, then loads its `punching` flag, with no fence. A release:
 *   1. samples a parked fiber: state PARKED and sp not NULL, so its context is saved (a switch
 *      out stores the sp as its very last use of the stack);
 *   2. claims it: punching 0 -> 1 (another releaser has it: skip);
 *   3. membarrier: a full barrier on every running thread. Now any switch into the fiber either
 *      made its NULL visible (step 4 sees it) or loads punching = 1 after this (it waits);
 *   4. checks that sp is still the one of step 1 and the fiber still parked: so it is saved at
 *      that sp now (it may have run and parked again at the same depth in between: no matter),
 *      and no switch into it can complete until step 6;
 *   5. counts the resident pages below sp - LACUNA_FIBER_PARK_KEEP and releases them, batched;
 *   6. punching = 0 (release): a waiting switch goes on, onto a stack whose live part is intact.
 * Without membarrier (old kernels, LACUNA_FORCE_FALLBACK=membarrier) step 3 is only sound when no
 * other thread can switch into the fiber: its runtime has one worker, the caller. The hot path
 * pays one store and one load a switch; `parks` (bumped on each park, not each switch) tells a
 * release what it has seen already.
 *
 * Aging: a worker about to sleep schedules a scan one threshold after it last ran fibers; a scan
 * releases the fibers it finds parked with the `parks` it saw at the scan before (parked all that
 * time) and schedules another while any parked fiber is still young. A fully idle process scans
 * at most twice after its last switch, then sleeps without timeout.
 *
 * Does not: release in a context switch (resume_sp only loads a flag), touch the running fiber,
 * free stacks (fiber.c, sched.c), or make syscalls itself (os.c, pool_punch.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define LAC_PARK_BATCH LAC_RELEASE_BATCH /* fibers claimed and released together */

_Static_assert(LACUNA_FIBER_PARK_KEEP >= 128, "the x86-64 red zone is kept");

static _Atomic unsigned release_ms; /* lacuna_fiber_release_after; 0 = the pool's decay */
static _Atomic uint64_t next_scan;  /* CLOCK_MONOTONIC ns of the next aging scan; 0 = none */
static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER; /* one release pass at a time */

void lac_parked_wait(lac_fiber *f)
{
    for (unsigned spins = 0; atomic_load_explicit(&f->punching, memory_order_acquire); spins++) {
        if (spins % 128 == 127)
            sched_yield(); /* the releaser is in a syscall, or preempted */
        else
            LAC_CPU_RELAX();
    }
}

static void high_water_note(lac_fiber *f, size_t depth)
{
    size_t hw = atomic_load_explicit(&f->high_water, memory_order_relaxed);
    while (depth > hw &&
           !atomic_compare_exchange_weak_explicit(&f->high_water, &hw, depth, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* ---- releasing ----------------------------------------------------------------------------- */

typedef struct claim {
    lac_fiber *f;
    void *sp;
    uint32_t parks;
} claim;

typedef struct pass {
    lac_sched *self;   /* the caller's scheduler, or NULL */
    bool fenced;       /* membarrier works: any fiber may be released */
    lacuna_pool *only; /* release only fibers whose stacks are in this pool (NULL: all) */
    size_t released;   /* bytes */
    int err;
    claim c[LAC_PARK_BATCH];
    size_t n;
    lacuna_punch_req req[LAC_PARK_BATCH]; /* release_batch's scratch: off the caller's stack */
    size_t bytes[LAC_PARK_BATCH];
    lac_fiber *who[LAC_PARK_BATCH];
} pass;

/* Whether the caller may release f without membarrier: nobody else can switch into it. */
static bool alone_with(const pass *ps, const lac_fiber *f)
{
    const lac_sched *s = ps->self;
    return s != NULL && !s->multi && f->rt == s->rt;
}

/* Step 1 and 2 of the protocol, for aging (aged: only fibers parked since the last scan) or not.
 * *young is set when a parked fiber is left for a later scan. */
static void sample(pass *ps, lac_fiber *f, bool aged, bool *young)
{
    if (!(atomic_load_explicit(&f->gen, memory_order_acquire) & 1) ||
        atomic_load_explicit(&f->state, memory_order_relaxed) != LAC_F_PARKED)
        return;
    void *sp = __atomic_load_n(&f->sp, __ATOMIC_RELAXED);
    uint32_t k = atomic_load_explicit(&f->parks, memory_order_acquire);
    if (sp == NULL || atomic_load_explicit(&f->parks_done, memory_order_relaxed) == k)
        return; /* running, or released since it last parked */
    if (aged && atomic_exchange_explicit(&f->parks_aged, k, memory_order_relaxed) != k) {
        *young = true; /* first seen parked like this: next scan */
        return;
    }
    if (!ps->fenced && !alone_with(ps, f))
        return;
    if (atomic_exchange_explicit(&f->punching, 1, memory_order_acquire) != 0)
        return; /* another releaser has it */
    ps->c[ps->n++] = (claim){f, sp, k};
}

/* Steps 3 to 6 for the claimed batch. */
static void release_batch(pass *ps)
{
    if (ps->n == 0)
        return;
    bool fence_ok = ps->fenced && lac_os_membarrier() == 0;
    lacuna_punch_req *req = ps->req;
    size_t *bytes = ps->bytes, nreq = 0;
    lac_fiber **who = ps->who;
    const size_t pg = lac_os_features()->page_size;
    for (size_t i = 0; i < ps->n; i++) {
        lac_fiber *f = ps->c[i].f;
        bool frozen = (fence_ok || alone_with(ps, f)) &&
                      __atomic_load_n(&f->sp, __ATOMIC_ACQUIRE) == ps->c[i].sp &&
                      atomic_load_explicit(&f->state, memory_order_relaxed) == LAC_F_PARKED;
        lacuna_pool *pool = frozen ? lac_fiber_stacks_pool(f->stacks) : NULL;
        if (pool == NULL || (ps->only && pool != ps->only)) {
            atomic_store_explicit(&f->punching, 0, memory_order_release);
            ps->c[i].f = NULL;
            continue;
        }
        uintptr_t lo = (uintptr_t)f->stack, top = lo + f->stack_size;
        uintptr_t keep = ((uintptr_t)ps->c[i].sp - LACUNA_FIBER_PARK_KEEP) & ~(uintptr_t)(pg - 1);
        size_t pages = 0;
        uintptr_t lowest = top;
        if (keep > lo && lac_resident_range(lo, keep, &pages, &lowest) == 0 && pages > 0) {
            high_water_note(f, top - lowest);
            req[nreq] = (lacuna_punch_req){f->stack, (const void *)keep};
            bytes[nreq] = pages * pg;
            who[nreq++] = f;
        }
        atomic_store_explicit(&f->parks_done, ps->c[i].parks, memory_order_relaxed);
    }
    /* One lacuna_punch_many per run of requests on the same pool (one process_madvise each). */
    for (size_t i = 0; i < nreq;) {
        lacuna_pool *pool = lac_fiber_stacks_pool(who[i]->stacks);
        size_t j = i + 1;
        while (j < nreq && lac_fiber_stacks_pool(who[j]->stacks) == pool)
            j++;
        int err = lacuna_punch_many(pool, req + i, j - i);
        if (err && ps->err == 0)
            ps->err = err;
        for (size_t k = i; k < j && err == 0; k++) {
            atomic_fetch_add_explicit(&who[k]->released, bytes[k], memory_order_relaxed);
            ps->released += bytes[k];
        }
        i = j;
    }
    for (size_t i = 0; i < ps->n; i++)
        if (ps->c[i].f)
            atomic_store_explicit(&ps->c[i].f->punching, 0, memory_order_release);
    ps->n = 0;
}

/* One pass over every control block. Returns whether a parked fiber was left young (aging). */
static bool release_pass(pass *ps, bool aged)
{
    bool young = false;
    uint32_t n = lac_fiber_blocks();
    for (uint32_t idx = 1; idx < n && ps->err == 0; idx++) {
        sample(ps, lac_fiber_block(idx), aged, &young);
        if (ps->n == LAC_PARK_BATCH)
            release_batch(ps);
    }
    release_batch(ps);
    return young;
}

/* One pass (scan_lock held) over the fibers of pool `only` (NULL: all); aged: only those parked
 * since the last aging scan. *young as release_pass's result (true when it could not run: try
 * again later), *released the bytes. 0, ENOMEM or a release's errno. */
static int pass_run(lacuna_pool *only, bool aged, bool *young, size_t *released)
{
    pass *ps = malloc(sizeof *ps); /* ~8 KiB: not on a fiber's stack */
    *young = true;
    *released = 0;
    if (ps == NULL)
        return ENOMEM;
    *ps = (pass){.self = lac_tls_sched, .fenced = lac_os_has_membarrier(), .only = only};
    *young = release_pass(ps, aged);
    *released = ps->released;
    int err = ps->err;
    free(ps);
    return err;
}

int lacuna_fiber_release_idle(size_t *released)
{
    bool young;
    size_t bytes;
    pthread_mutex_lock(&scan_lock);
    int err = pass_run(NULL, false, &young, &bytes);
    pthread_mutex_unlock(&scan_lock);
    if (released)
        *released = bytes;
    return err;
}

void lac_parked_trim(lacuna_pool *pool)
{
    bool young;
    size_t bytes;
    pthread_mutex_lock(&scan_lock);
    (void)pass_run(pool, false, &young, &bytes); /* a failure: the trim goes on without it */
    pthread_mutex_unlock(&scan_lock);
}

/* ---- aging --------------------------------------------------------------------------------- */

int lacuna_fiber_release_after(unsigned ms)
{
    atomic_store_explicit(&release_ms, ms, memory_order_relaxed);
    if (ms == LACUNA_PARKED_KEEP_ALL) /* a scan scheduled before would keep waking sleepers */
        atomic_store_explicit(&next_scan, 0, memory_order_relaxed);
    return 0;
}

/* The aging threshold in ns, or 0 for none. The default pool's decay is read once (its config
 * never changes; lacuna_pool_stats takes the pool's lock, too much for every idle). */
static uint64_t threshold_ns(void)
{
    static _Atomic unsigned pool_decay; /* 0 until the default pool exists */
    unsigned ms = atomic_load_explicit(&release_ms, memory_order_relaxed);
    if (ms == 0 && (ms = atomic_load_explicit(&pool_decay, memory_order_relaxed)) == 0) {
        lacuna_pool *def = lac_fiber_stacks_pool(0);
        lacuna_stats st = {0};
        if (def == NULL)
            return 1000000000u;
        lacuna_pool_stats(def, &st);
        ms = st.decay_ms ? st.decay_ms : 1000;
        atomic_store_explicit(&pool_decay, ms, memory_order_relaxed);
    }
    return ms == LACUNA_PARKED_KEEP_ALL ? 0 : (uint64_t)ms * 1000000u;
}

/* A scan at `at` at the latest. */
static void schedule(uint64_t at)
{
    uint64_t cur = atomic_load_explicit(&next_scan, memory_order_relaxed);
    while ((cur == 0 || at < cur) &&
           !atomic_compare_exchange_weak_explicit(&next_scan, &cur, at, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

uint64_t lac_parked_due(void)
{
    uint64_t at = atomic_load_explicit(&next_scan, memory_order_relaxed);
    return at && atomic_load_explicit(&release_ms, memory_order_relaxed) != LACUNA_PARKED_KEEP_ALL
               ? at
               : UINT64_MAX;
}

void lac_parked_idle(lac_sched *s)
{
    uint64_t wait = threshold_ns();
    if (wait == 0)
        return;
    uint64_t now = lac_now_ns();
    if (s->tick != s->aged_tick) { /* it ran fibers since it last came here: some may park */
        s->aged_tick = s->tick;
        schedule(now + wait);
    }
    uint64_t due = atomic_load_explicit(&next_scan, memory_order_relaxed);
    if (due == 0 || now < due)
        return;
    if (pthread_mutex_trylock(&scan_lock) != 0) {
        /* Another pass runs (a release call, a trim): look again in 1 ms, not at once (a past
         * deadline would keep every sleeping worker polling). */
        (void)atomic_compare_exchange_strong(&next_scan, &due, now + 1000000u);
        return;
    }
    if (!atomic_compare_exchange_strong(&next_scan, &due, 0)) { /* another worker scanned */
        pthread_mutex_unlock(&scan_lock);
        return;
    }
    bool young;
    size_t bytes;
    (void)pass_run(NULL, true, &young, &bytes); /* on ENOMEM, young: try again later */
    pthread_mutex_unlock(&scan_lock);
    if (young)
        schedule(now + wait);
}

/* ---- census -------------------------------------------------------------------------------- */

int lacuna_fiber_stack_info(lacuna_fiber *h, lacuna_stack_info *info)
{
    lac_sched *s = lac_tls_sched;
    lac_fiber *f = h ? lac_fiber_lookup(h) : s ? s->cur : NULL;
    if (f == NULL || info == NULL) {
        LAC_BAD_INPUT("lacuna_fiber_stack_info",
                      info ? "stale handle or not in a fiber" : "NULL info", h);
        return EINVAL;
    }
    char *stack = __atomic_load_n(&f->stack, __ATOMIC_RELAXED);
    if (stack == NULL)
        return EINVAL; /* ended meanwhile */
    uintptr_t lo = (uintptr_t)stack, top = lo + f->stack_size;
    bool self = s != NULL && s->cur == f;
    uintptr_t sp = self ? (uintptr_t)&s : (uintptr_t)__atomic_load_n(&f->sp, __ATOMIC_RELAXED);
    size_t pages = 0;
    uintptr_t lowest = top;
    int err = lac_resident_range(lo, top, &pages, &lowest);
    if (err)
        return err;
    high_water_note(f, top - lowest);
    *info = (lacuna_stack_info){
        .size = f->stack_size,
        .used = sp > lo && sp <= top ? top - sp : 0,
        .resident = pages * lac_os_features()->page_size,
        .high_water = atomic_load_explicit(&f->high_water, memory_order_relaxed),
        .released = atomic_load_explicit(&f->released, memory_order_relaxed),
        .running = self || sp == 0,
    };
    if (info->used > info->high_water)
        info->high_water = info->used;
    return 0;
}

int lacuna_fiber_each(int (*fn)(lacuna_fiber *, void *), void *arg)
{
    if (fn == NULL) {
        LAC_BAD_INPUT("lacuna_fiber_each", "NULL fn", NULL);
        return EINVAL;
    }
    uint32_t n = lac_fiber_blocks();
    for (uint32_t idx = 1; idx < n; idx++) {
        lac_fiber *f = lac_fiber_block(idx);
        uint32_t gen = atomic_load_explicit(&f->gen, memory_order_acquire);
        uint8_t st = atomic_load_explicit(&f->state, memory_order_relaxed);
        if (!(gen & 1) || st == LAC_F_DONE || st == LAC_F_FREE)
            continue;
        int r = fn(lac_fiber_handle(f), arg);
        if (r)
            return r;
    }
    return 0;
}

/* ---- memory pressure ----------------------------------------------------------------------- */

/* A thread blocked in poll() on a PSI trigger, not the workers' epolls: pressure comes when the
 * machine is busiest, and a worker that never idles would not see it for a long time; the thread
 * costs nothing until the kernel wakes it. */
static pthread_mutex_t psi_lock = PTHREAD_MUTEX_INITIALIZER; /* psi_* below */
static int psi_fd = -1, psi_stop[2] = {-1, -1};
static pthread_t psi_thread;
static _Atomic unsigned long psi_events;

/* The response: every parked fiber's pages in one pass, then every fiber stack pool's warm
 * regions (lacuna_trim, whose hook passes again but claims nothing: each fiber is marked released
 * since it last parked). */
void lac_parked_pressure_respond(void)
{
    (void)lacuna_fiber_release_idle(NULL);
    for (unsigned which = 0; which <= LAC_STACK_CLASSES; which++) {
        lacuna_pool *p = lac_fiber_stacks_pool(which);
        if (p)
            (void)lacuna_trim(p);
    }
    atomic_fetch_add_explicit(&psi_events, 1, memory_order_relaxed);
}

static void *psi_main(void *arg)
{
    (void)arg;
    struct pollfd pf[2] = {{.fd = psi_fd, .events = POLLPRI},
                           {.fd = psi_stop[0], .events = POLLIN}};
    for (;;) {
        int n = poll(pf, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (pf[1].revents & (POLLIN | POLLHUP)) || (pf[0].revents & (POLLERR | POLLNVAL)))
            return NULL;
        if (pf[0].revents & POLLPRI)
            lac_parked_pressure_respond();
    }
}

/* Open a PSI trigger: woken when tasks stalled on memory for stall_us within window_us. */
static int psi_open(unsigned stall_us, unsigned window_us, int *fd)
{
    if (lac_os_forced("psi"))
        return ENOTSUP;
    int f = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (f < 0)
        return errno == ENOENT || errno == EOPNOTSUPP ? ENOTSUP : errno;
    char trig[64];
    int len = snprintf(trig, sizeof trig, "some %u %u", stall_us, window_us);
    if (write(f, trig, (size_t)len + 1) < 0) {
        int err = errno;
        close(f);
        return err == EOPNOTSUPP ? ENOTSUP : err;
    }
    *fd = f;
    return 0;
}

static void psi_close_locked(void)
{
    if (psi_fd < 0)
        return;
    ssize_t w = write(psi_stop[1], "x", 1);
    (void)w;
    pthread_join(psi_thread, NULL);
    close(psi_fd);
    close(psi_stop[0]);
    close(psi_stop[1]);
    psi_fd = psi_stop[0] = psi_stop[1] = -1;
}

int lacuna_fiber_pressure(unsigned stall_ms)
{
    if (stall_ms > 2000) {
        LAC_BAD_INPUT("lacuna_fiber_pressure", "stall_ms above the 2 s window", NULL);
        return EINVAL;
    }
    pthread_mutex_lock(&psi_lock);
    psi_close_locked();
    int err = 0;
    if (stall_ms > 0) {
        /* A 2 s window: unprivileged processes may only use multiples of 2 s. */
        err = psi_open(stall_ms * 1000u, 2000000u, &psi_fd);
        if (err == 0 && pipe2(psi_stop, O_CLOEXEC) != 0)
            err = errno;
        if (err == 0)
            err = pthread_create(&psi_thread, NULL, psi_main, NULL);
        if (err) {
            if (psi_fd >= 0)
                close(psi_fd);
            for (int i = 0; i < 2; i++)
                if (psi_stop[i] >= 0)
                    close(psi_stop[i]);
            psi_fd = psi_stop[0] = psi_stop[1] = -1;
        }
    }
    pthread_mutex_unlock(&psi_lock);
    return err;
}

unsigned long lacuna_fiber_pressure_events(void)
{
    return atomic_load_explicit(&psi_events, memory_order_relaxed);
}

/* ---- fork ---------------------------------------------------------------------------------- */

/* The outermost locks of the library (process.c): the watcher's, then the release pass's. A pass
 * holds release flags only under scan_lock, so a child never inherits a flag left set. */
void lac_parked_fork_prepare(void)
{
    pthread_mutex_lock(&psi_lock);
    pthread_mutex_lock(&scan_lock);
}

void lac_parked_fork_parent(void)
{
    pthread_mutex_unlock(&scan_lock);
    pthread_mutex_unlock(&psi_lock);
}

/* The child has no watcher thread: its trigger and pipe are closed (lacuna_fiber_pressure starts
 * a new watcher when called again). */
void lac_parked_fork_child(void)
{
    pthread_mutex_unlock(&scan_lock);
    if (psi_fd >= 0) {
        close(psi_fd);
        close(psi_stop[0]);
        close(psi_stop[1]);
        psi_fd = psi_stop[0] = psi_stop[1] = -1;
    }
    pthread_mutex_unlock(&psi_lock);
}
