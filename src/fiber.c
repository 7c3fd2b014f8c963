/* fiber.c — fibers as the API sees them: control blocks and handles, the shared stack pool, spawn,
 * join (with a deadline), detach, cancel, names; and the fiber layer's fork hooks.
 *
 * Owns: the process's shared stack pool (created on the first spawn or lacuna_fiber_configure),
 * the table of fiber control blocks, and global_lock, the one lock of the fiber layer (pool
 * creation and the shared list of free blocks). Schedulers (sched.c) are per thread and take no
 * lock; the stack pool and the control-block table are the only shared state.
 *
 * Invariants:
 *   - A control block never lives in a stack region (those pages are released): blocks come from
 *     chunks of 4096 that are never freed, so a stale handle always points at readable memory.
 *     A handle is (generation << 32 | index); a block's generation is odd while it is in use and
 *     bumped when it is reclaimed, so stale handles are recognised, not followed.
 *   - An ended fiber's stack is kept as a spare for the next spawn (sched.c, lac_fiber_retire)
 *     or freed by lac_fiber_reap on the thread's own stack, never on another fiber's.
 *   - Lock order: global_lock, then the pool's locks (pool creation happens under global_lock).
 *
 * Does not: switch contexts or keep run queues (sched.c), keep timers or fds (wait.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(void *) == 8, "fiber handles pack a 32-bit index and generation");
_Static_assert((size_t)LAC_STACK_CLASS_MIN << (LAC_STACK_CLASSES - 1) == LACUNA_FIBER_STACK_MAX,
               "the size classes end at LACUNA_FIBER_STACK_MAX");

#define LAC_DEF_STACK         (64u << 10) /* default stack: 64 KiB, one guard page below it */
#define LAC_BLOCK_CHUNK_SHIFT 12          /* control blocks per chunk: 4096 */
#define LAC_BLOCK_CHUNK_N     (1u << LAC_BLOCK_CHUNK_SHIFT)
#define LAC_BLOCK_CHUNKS      65536 /* up to 2^28 control blocks in use at once */
#define LAC_LOCAL_FREE        8192  /* free blocks a scheduler keeps; half spill past it */

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
/* Stack pools: the default one (lacuna_fiber_configure's, else 64 KiB stacks), and one per size
 * class asked for through lacuna_go_opts, each created on first use and never destroyed. */
typedef struct lac_stacks {
    _Atomic(lacuna_pool *) pool; /* published last: the fields below are set before */
    size_t size;                 /* region size of the pool */
    _Atomic uint32_t *owner;     /* per region: index of the fiber running on it, or 0 */
    size_t count;                /* regions */
    bool spares;                 /* ended fibers' stacks may skip the pool (lac_fiber_spares_ok) */
} lac_stacks;
static lac_stacks stacks[1 + LAC_STACK_CLASSES]; /* [0]: the default; [1 + k]: 16 KiB << k */
static _Atomic(lac_fiber *) table[LAC_BLOCK_CHUNKS];
static _Atomic uint32_t table_n = 1; /* indices handed out so far (0 is reserved) */
static uint32_t global_free;         /* free list of reclaimed blocks (global_lock) */

/* What a debugger needs to find every fiber (internal.h, lac_debug_info): exported, and kept by
 * the linker even in a static link where nothing refers to it (used; it lives in this file so it
 * comes with any program that spawns). */
extern const lac_debug_info lacuna_debug_info;
__attribute__((visibility("default"), used)) const lac_debug_info lacuna_debug_info = {
    .magic = "lacuna",
    .version = LAC_DEBUG_VERSION,
    .size = sizeof(lac_debug_info),
    .fiber_size = sizeof(lac_fiber),
    .chunk_shift = LAC_BLOCK_CHUNK_SHIFT,
    .chunks = LAC_BLOCK_CHUNKS,
    .name_max = sizeof(((lac_fiber *)0)->name),
    .off_sp = offsetof(lac_fiber, sp),
    .off_stack = offsetof(lac_fiber, stack),
    .off_stack_size = offsetof(lac_fiber, stack_size),
    .off_state = offsetof(lac_fiber, state),
    .off_wait = offsetof(lac_fiber, wait),
    .off_name = offsetof(lac_fiber, name),
    .off_gen = offsetof(lac_fiber, gen),
    .off_idx = offsetof(lac_fiber, idx),
    .off_deadline = offsetof(lac_fiber, deadline),
    .off_io = offsetof(lac_fiber, io),
    .off_worker = offsetof(lac_fiber, worker),
    .off_sched_idx = offsetof(lac_sched, idx),
    .off_io_fd = LAC_IO_WAIT_FD_OFF,
    .off_io_events = LAC_IO_WAIT_EVENTS_OFF,
    .f_free = LAC_F_FREE,
    .f_ready = LAC_F_READY,
    .f_running = LAC_F_RUNNING,
    .f_parked = LAC_F_PARKED,
    .f_done = LAC_F_DONE,
    .w_none = LAC_W_NONE,
    .w_timer = LAC_W_TIMER,
    .w_io = LAC_W_IO,
    .table = table,
    .table_n = &table_n,
};

/* ---- the stack pool ---------------------------------------------------------------------- */

static const char *stack_namer(void *ctx, size_t index);

/* Create a stack pool (global_lock held). 0 or errno. */
static int stacks_create_locked(lac_stacks *st, const lacuna_pool_config *config)
{
    lacuna_pool *pool;
    int err = lacuna_pool_create(config, &pool);
    if (err)
        return err;
    lacuna_stats ps;
    lacuna_pool_stats(pool, &ps);
    _Atomic uint32_t *owner = calloc(ps.capacity_max, sizeof *owner);
    if (owner == NULL) {
        lacuna_pool_destroy(pool);
        return ENOMEM;
    }
    st->owner = owner;
    st->count = ps.capacity_max;
    st->size = ps.region_size;
    st->spares = !(ps.flags & LACUNA_ZERO) && ps.cache != 0;
    lac_pool_set_namer(pool, stack_namer, st);
    lac_pool_set_trim_hook(pool, lac_parked_trim);
    lac_pool_set_prefault(pool, 1); /* a fiber's first frame: the top page, written at spawn */
    atomic_store_explicit(&st->pool, pool, memory_order_release);
    return 0;
}

/* A class's pool grows on demand like the default one (capacity 0: reservation by reservation,
 * up to the pool's ceiling), so no size class has a wall of its own. */
static lacuna_pool_config class_config(unsigned k)
{
    return (lacuna_pool_config){.region_size = (size_t)LAC_STACK_CLASS_MIN << k};
}

/* The stack pool at `which` (0: the default), created on first use. NULL + errno. */
static lac_stacks *stacks_get(unsigned which)
{
    lac_stacks *st = &stacks[which];
    if (LAC_LIKELY(atomic_load_explicit(&st->pool, memory_order_acquire) != NULL))
        return st;
    pthread_mutex_lock(&global_lock);
    int err = 0;
    if (atomic_load_explicit(&st->pool, memory_order_relaxed) == NULL) {
        lacuna_pool_config c =
            which ? class_config(which - 1) : (lacuna_pool_config){.region_size = LAC_DEF_STACK};
        err = stacks_create_locked(st, &c);
    }
    pthread_mutex_unlock(&global_lock);
    if (err) {
        errno = err;
        return NULL;
    }
    return st;
}

int lacuna_fiber_configure(const lacuna_pool_config *config)
{
    if (config == NULL)
        return EINVAL;
    pthread_mutex_lock(&global_lock);
    int err = atomic_load(&stacks[0].pool) ? EBUSY : stacks_create_locked(&stacks[0], config);
    pthread_mutex_unlock(&global_lock);
    return err;
}

lacuna_pool *lacuna_fiber_pool(void)
{
    return atomic_load_explicit(&stacks[0].pool, memory_order_acquire);
}

/* Which pool a stack size asks for: 0 (the default: size 0, or the default pool's size), or
 * 1 + its class; -1: larger than the largest class. */
static int stacks_which(size_t size)
{
    if (size == 0)
        return 0;
    lacuna_pool *def = atomic_load_explicit(&stacks[0].pool, memory_order_acquire);
    if (size == (def ? stacks[0].size : LAC_DEF_STACK))
        return 0;
    for (unsigned k = 0; k < LAC_STACK_CLASSES; k++)
        if (size <= (size_t)LAC_STACK_CLASS_MIN << k)
            return (int)k + 1;
    return -1;
}

lacuna_pool *lacuna_fiber_pool_for(size_t stack_size)
{
    int which = stacks_which(stack_size);
    if (which < 0) {
        errno = EINVAL;
        return NULL;
    }
    lac_stacks *st = stacks_get((unsigned)which);
    return st ? atomic_load_explicit(&st->pool, memory_order_acquire) : NULL;
}

/* ---- control blocks ---------------------------------------------------------------------- */

static inline lac_fiber *block_at(uint32_t idx)
{
    lac_fiber *chunk =
        atomic_load_explicit(&table[idx >> LAC_BLOCK_CHUNK_SHIFT], memory_order_acquire);
    return &chunk[idx & (LAC_BLOCK_CHUNK_N - 1)];
}

static inline lacuna_fiber *handle_of(const lac_fiber *f)
{
    uint64_t gen = atomic_load_explicit(&f->gen, memory_order_relaxed);
    return (lacuna_fiber *)(uintptr_t)(gen << 32 | f->idx);
}

/* The block a handle names, if it is still in use; NULL for NULL, forged or stale handles. */
static inline __attribute__((always_inline)) lac_fiber *lookup(const lacuna_fiber *h)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t idx = (uint32_t)v, gen = (uint32_t)(v >> 32);
    if (idx == 0 || idx >= atomic_load_explicit(&table_n, memory_order_acquire) || !(gen & 1))
        return NULL;
    lac_fiber *chunk =
        atomic_load_explicit(&table[idx >> LAC_BLOCK_CHUNK_SHIFT], memory_order_acquire);
    if (chunk == NULL)
        return NULL;
    lac_fiber *f = &chunk[idx & (LAC_BLOCK_CHUNK_N - 1)];
    if (atomic_load_explicit(&f->gen, memory_order_acquire) != gen || lac_fiber_orphan(f))
        return NULL; /* stale, or its runtime's thread has exited */
    return f;
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
        uint32_t c = first >> LAC_BLOCK_CHUNK_SHIFT;
        /* Aligned, so each block's first line (what a cross-worker wake touches) is a whole
         * line: by hand, since calloc's fresh mapping needs no memset (aligned_alloc's would).
         * Chunks are never freed. */
        char *mem = c < LAC_BLOCK_CHUNKS
                        ? calloc(1, LAC_BLOCK_CHUNK_N * sizeof(lac_fiber) + _Alignof(lac_fiber))
                        : NULL;
        lac_fiber *chunk = mem ? (lac_fiber *)(((uintptr_t)mem + _Alignof(lac_fiber) - 1) &
                                               ~(uintptr_t)(_Alignof(lac_fiber) - 1))
                               : NULL;
        if (chunk == NULL) {
            pthread_mutex_unlock(&global_lock);
            return ENOMEM;
        }
        uint32_t end = (c + 1) << LAC_BLOCK_CHUNK_SHIFT;
        for (uint32_t i = end; i-- > first;) {
            lac_fiber *f = &chunk[i & (LAC_BLOCK_CHUNK_N - 1)];
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
    lac_state_set(f, LAC_F_FREE);
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

uint32_t lac_fiber_blocks(void)
{
    return atomic_load_explicit(&table_n, memory_order_acquire);
}

lac_fiber *lac_fiber_block(uint32_t idx)
{
    return block_at(idx);
}

lac_fiber *lac_fiber_lookup(const lacuna_fiber *h)
{
    return lookup(h);
}

lacuna_fiber *lac_fiber_handle(const lac_fiber *f)
{
    return handle_of(f);
}

lacuna_pool *lac_fiber_stacks_pool(unsigned which)
{
    return atomic_load_explicit(&stacks[which].pool, memory_order_acquire);
}

/* ---- the overflow namer (async-signal-safe: atomic loads only) ---------------------------- */

static const char *stack_namer(void *ctx, size_t index)
{
    const lac_stacks *st = ctx;
    (void)ctx;
    if (index >= st->count)
        return NULL;
    uint32_t idx = atomic_load_explicit(&st->owner[index], memory_order_relaxed);
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

/* ---- fibers -------------------------------------------------------------------------------- */

static lacuna_fiber *spawn(const lacuna_fiber_opts *o, void *(*fn)(void *), void *arg)
{
    int which = stacks_which(o->stack_size);
    if (fn == NULL || which < 0 || (o->flags & ~LACUNA_FIBER_PINNED)) {
        LAC_BAD_INPUT("lacuna_go", fn ? "bad options" : "NULL fn", NULL);
        errno = EINVAL;
        return NULL;
    }
    lac_stacks *st = stacks_get((unsigned)which);
    lac_sched *s = st ? lac_sched_get() : NULL;
    if (s == NULL)
        return NULL;
    lacuna_pool *pool = atomic_load_explicit(&st->pool, memory_order_relaxed);
    long region;
    char *stack = lac_sched_spare_take(s, (unsigned)which, &region);
    if (stack == NULL) {
        if ((stack = lacuna_alloc(pool)) == NULL)
            return NULL; /* errno: ENOMEM */
        region = lacuna_region_index(pool, stack);
    }
    lac_fiber *f = block_get(s);
    if (f == NULL) {
        (void)lacuna_free(pool, stack);
        errno = ENOMEM;
        return NULL;
    }
    f->fn = fn;
    f->arg = arg;
    __atomic_store_n(&f->stack, stack, __ATOMIC_RELAXED); /* parked.c reads blocks' stacks */
    f->stack_size = st->size;
    f->stacks = (uint8_t)which;
    f->joiner = NULL;
    f->heap_pos = LAC_NO_HEAP;
    f->io = NULL;
    f->wait = LAC_W_NONE;
    f->detached = 0;
    f->tjoin = 0;
    f->tsched = NULL;
    f->wp.fiber = f;
    f->wp.rt = s->rt;
    atomic_store_explicit(&f->wp.state, LAC_PARK_IDLE, memory_order_relaxed);
    atomic_store_explicit(&f->cancelled, 0, memory_order_relaxed);
    f->pin = (o->flags & LACUNA_FIBER_PINNED) ? (uint16_t)(s->idx + 1) : 0;
    atomic_store_explicit(&f->done, 0, memory_order_relaxed);
    atomic_store_explicit(&f->high_water, 0, memory_order_relaxed); /* its own life's (parked.c) */
    atomic_store_explicit(&f->released, 0, memory_order_relaxed);
    name_copy(f, o->name);
    f->region = region;
    atomic_store_explicit(&st->owner[f->region], f->idx, memory_order_relaxed);
    lacuna_fiber *h = handle_of(f);
    lac_sched_start(s, f);
    return h;
}

lacuna_fiber *lacuna_go(void *(*fn)(void *), void *arg)
{
    lacuna_fiber_opts o = {0};
    return spawn(&o, fn, arg);
}

lacuna_fiber *lacuna_go_named(const char *name, void *(*fn)(void *), void *arg)
{
    lacuna_fiber_opts o = {.name = name};
    return spawn(&o, fn, arg);
}

lacuna_fiber *lacuna_go_opts(const lacuna_fiber_opts *opts, void *(*fn)(void *), void *arg)
{
    lacuna_fiber_opts o = {0};
    return spawn(opts ? opts : &o, fn, arg);
}

lac_fiber *lac_fiber_finish(lac_sched *s, lac_fiber *f, lac_spare *sp)
{
    *sp =
        (lac_spare){.stack = f->stack, .stacks = f->stacks, .vg_id = f->vg_id, .region = f->region};
#ifdef LAC_TSAN
    sp->tsan = f->tsan;
#endif
    atomic_store_explicit(&stacks[f->stacks].owner[f->region], 0, memory_order_relaxed);
    __atomic_store_n(&f->stack, NULL, __ATOMIC_RELAXED);
    lac_state_set(f, LAC_F_DONE);
    lac_spin_lock(&f->lk);
    lac_fiber *joiner = f->joiner;
    f->joiner = NULL;
    /* A joining fiber whose wait timed out or was cancelled is left alone: it cleans up itself. */
    if (joiner && !lac_park_claim(&joiner->wp))
        joiner = NULL;
    bool detached = f->detached, thread_joins = f->tjoin;
    if (thread_joins)
        f->tjoin = 2; /* committed: a thread's join that times out now waits for the wake */
    else              /* else set by the wake below: the joiner may reuse f once it reads it */
        atomic_store_explicit(&f->done, 1, memory_order_release);
    lac_spin_unlock(&f->lk);
    if (joiner) { /* its context is saved once its switch released plk (wait.c) */
        lac_spin_lock(&joiner->plk);
        lac_spin_unlock(&joiner->plk);
    }
    if (detached) {
        block_put(s, f);
    } else if (thread_joins) {
        atomic_fetch_sub_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
        lac_thread_wake(&f->done);
    }
    return joiner;
}

bool lac_fiber_spares_ok(const lac_fiber *f)
{
    return stacks[f->stacks].spares;
}

void lac_fiber_stack_free(char *stack, unsigned which)
{
    (void)lacuna_free(atomic_load_explicit(&stacks[which].pool, memory_order_relaxed), stack);
}

void lac_fiber_blocks_drop(lac_sched *s)
{
    if (s->nfree)
        blocks_spill(s, s->nfree);
}

int lacuna_fiber_set_name(lacuna_fiber *h, const char *name)
{
    lac_sched *s = lac_tls_sched;
    lac_fiber *f = h ? lookup(h) : s ? s->cur : NULL;
    if (f == NULL)
        return EINVAL;
    name_copy(f, name);
    return 0;
}

lacuna_fiber *lacuna_self(void)
{
    lac_sched *s = lac_tls_sched;
    return s && s->cur ? handle_of(s->cur) : NULL;
}

/* Wait for f to end, until a deadline (f->lk held; released here). 0 or errno. */
static int join_wait(lac_sched *s, lac_fiber *f, uint64_t deadline)
{
    lac_fiber *self = s ? s->cur : NULL;
    if (self) { /* a fiber parks; the ending fiber makes it ready */
        if (lac_sched_escaped(s)) {
            lac_spin_unlock(&f->lk);
            return ENOTRECOVERABLE;
        }
        lac_park *p = &self->wp;
        int err = lac_park_arm(p, deadline, 0);
        if (err) {
            lac_spin_unlock(&f->lk);
            return err;
        }
        f->joiner = self;
        lac_spin_unlock(&f->lk);
        err = lac_park_block(p, deadline);
        if (err) { /* timed out or cancelled: f stays joinable */
            lac_spin_lock(&f->lk);
            if (f->joiner == self)
                f->joiner = NULL;
            lac_spin_unlock(&f->lk);
        }
        return err;
    }
    if (s && s->rt == f->rt) { /* the thread f's runtime lives in: run it until f ends */
        if (deadline != LAC_FOREVER) {
            lac_spin_unlock(&f->lk);
            return EINVAL; /* its loop runs until f ends (documented) */
        }
        s->main_join = f;
        lac_spin_unlock(&f->lk);
        int err = lac_sched_loop(s, f);
        s->main_join = NULL;
        if (err)
            return err;
        if (lac_rt_live(s->rt) == 0)
            lac_sched_free(s);
        return 0;
    }
    /* A thread outside f's runtime: block it until f ends. */
    if (deadline == 0) {
        lac_spin_unlock(&f->lk);
        return ETIMEDOUT;
    }
    f->tjoin = 1;
    atomic_fetch_add_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
    lac_spin_unlock(&f->lk);
    if (deadline == LAC_FOREVER) {
        lac_thread_wait(&f->done);
        return 0;
    }
    if (lac_thread_wait_until(&f->done, deadline))
        return 0;
    lac_spin_lock(&f->lk);
    bool mine = f->tjoin == 1; /* the end has not committed to waking us */
    if (mine)
        f->tjoin = 0;
    lac_spin_unlock(&f->lk);
    if (!mine) {
        lac_thread_wait(&f->done);
        return 0;
    }
    atomic_fetch_sub_explicit(&lac_foreign_blocked, 1, memory_order_relaxed);
    return ETIMEDOUT;
}

/* Lock f for a join or detach (s: the caller's scheduler, or NULL): false, unlocked, when there
 * is no f or someone has claimed it already (detached, joined by a fiber or a thread). */
static bool claim(lac_fiber *f, const lac_sched *s)
{
    if (f == NULL)
        return false;
    lac_spin_lock(&f->lk);
    if (f->detached || f->joiner || f->tjoin || (s && s->main_join == f)) {
        lac_spin_unlock(&f->lk);
        return false;
    }
    return true;
}

static int join_until(lacuna_fiber *h, uint64_t deadline, void **result)
{
    lac_fiber *f = lookup(h);
    lac_sched *s = lac_tls_sched;
    if (f != NULL && s != NULL && s->cur == f)
        return lac_sched_escaped(s) ? ENOTRECOVERABLE : EDEADLK;
    if (!claim(f, s)) {
        LAC_BAD_INPUT("lacuna_join", "stale, detached or already joined fiber", h);
        return EINVAL;
    }
    if (atomic_load_explicit(&f->done, memory_order_acquire)) {
        lac_spin_unlock(&f->lk);
    } else {
        lac_fiber *self = s ? s->cur : NULL;
        int err = join_wait(s, f, deadline);
        if (err)
            return err;
        s = self ? self->worker : lac_tls_sched; /* a fiber may resume on another worker */
    }
    *result = f->arg;
    block_put(s, f);
    return 0;
}

void *lacuna_join(lacuna_fiber *h)
{
    void *result;
    int err = join_until(h, LAC_FOREVER, &result);
    if (err) {
        lac_set_errno(err);
        return NULL;
    }
    return result;
}

int lacuna_join_until(lacuna_fiber *h, uint64_t deadline_ns, void **result)
{
    void *r;
    int err = join_until(h, deadline_ns, &r);
    if (err == 0 && result)
        *result = r;
    return err;
}

int lacuna_cancel(lacuna_fiber *h)
{
    lac_fiber *f = lookup(h);
    if (f == NULL) {
        LAC_BAD_INPUT("lacuna_cancel", "NULL or stale fiber", h);
        return EINVAL;
    }
    /* Under f->lk, a fiber that has not ended cannot be reclaimed (its end marks it done, or
     * commits to a joining thread, under this lock), so the block is still the handle's. */
    lac_spin_lock(&f->lk);
    if (atomic_load_explicit(&f->gen, memory_order_relaxed) != (uint32_t)((uintptr_t)h >> 32)) {
        lac_spin_unlock(&f->lk);
        return EINVAL;
    }
    if (!atomic_load_explicit(&f->done, memory_order_relaxed) && f->tjoin != 2) {
        atomic_store_explicit(&f->cancelled, 1, memory_order_relaxed);
        lac_park_cancel(f);
    }
    lac_spin_unlock(&f->lk);
    return 0;
}

int lacuna_detach(lacuna_fiber *h)
{
    lac_fiber *f = lookup(h);
    lac_sched *s = lac_tls_sched;
    if (!claim(f, s)) {
        LAC_BAD_INPUT("lacuna_detach", "stale, detached or joined fiber", h);
        return EINVAL;
    }
    bool done = atomic_load_explicit(&f->done, memory_order_acquire);
    if (!done)
        f->detached = 1;
    lac_spin_unlock(&f->lk);
    if (done)
        block_put(s, f);
    return 0;
}

/* ---- fork ---------------------------------------------------------------------------------- */

/* global_lock is held across fork(), so the child never inherits it locked by a thread that was
 * not copied (its first spawn would wait for it forever). */
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
    lac_sched *s = lac_tls_sched;
    if (s == NULL)
        return;
    /* The child has one thread. Its runtime, if it is this thread's own, goes on with one worker;
     * a helper worker's child keeps nothing it can run (documented: exec or _exit). */
    if (lac_sched_is_home(s)) {
        lac_rt *rt = s->rt;
        pthread_mutex_init(&rt->lock, NULL);
        for (unsigned i = 1; i < LAC_WORKERS_MAX; i++)
            rt->w[i] = NULL;
        rt->nw = 1;
        rt->whi = 1;
        rt->nidle = 0;
        rt->stop = LAC_STOP_NONE;
        s->multi = false;
        s->sleeping = false;
        s->qlock.v = 0;
    }
    lac_wait_fork_child(s);
}
