/* lacuna-bench churn: the stack-allocator workload. Each thread keeps --live regions live; each
 * cycle allocates a fresh region, touches P pages from its top as a stack would, puts it in a
 * random slot of the thread's own live set and frees the region that was there. Backends: the
 * naive ways (one mmap per region, with and without a guard; malloc), lacuna's policies, the
 * allocators a user would pick instead (tcmalloc, mimalloc, jemalloc: peers.c) and Boost.Context's
 * stack allocators (boost_peers.cpp).
 *
 * --threads T: T threads, each with an equal live set of its own (so T threads hold T times the
 * regions one thread holds, and their throughput compares with one thread's fairly). --cross PCT:
 * exactly PCT % of each thread's frees are done by another thread: the replaced region goes to
 * the next thread's inbox (a single-producer ring) and that thread frees it, as a server frees a
 * request's memory on another worker. Every region is allocated by the thread whose set holds it,
 * so every inbox free is a cross-thread free; the share is counted and reported. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* A cross-thread free goes through the freeing thread's inbox of INBOX regions, published in
 * batches of INBOX_BATCH. The inbox bounds the regions in flight (to about the default live set),
 * so the workload stays "1000 live per thread" while both threads run (then it holds a batch or
 * two). When the kernel deschedules one thread the other fills its inbox and waits: on a loaded
 * machine a run measures the scheduler too (a 4096-region inbox instead let bursts of thousands of
 * remote frees overflow lacuna's caches, and measured that). Measure cross-thread frees on a quiet
 * machine. */
#define INBOX       1024
#define INBOX_BATCH 32

typedef enum kind { NAIVE, NAIVE_NOGUARD, MALLOC, LACUNA, LIB, BOOST, FLOOR, FLOOR_OWNER } kind;

struct inbox;

typedef struct churn {
    const churn_cfg *cfg;
    kind kind;
    size_t page, guard;
    lacuna_pool *pool;
    peer_lib lib; /* tcmalloc, mimalloc, jemalloc */
    void *peer;   /* a Boost.Context allocator (boost-* backends) */
    char *floor;  /* "floor": the one mapping its regions are carved from */
    size_t floor_cap;
    _Atomic size_t floor_used;  /* regions carved so far */
    unsigned char *floor_owner; /* "floor-owner": the thread that carved each region */
    struct inbox *floor_back;   /* "floor-owner": threads * threads rings, [owner][freer] */
    char **live;                /* threads * live slots; thread i owns [i * live, (i + 1) * live) */
    _Atomic int failed;
    _Atomic size_t ready;    /* workers at the start line */
    _Atomic size_t finished; /* workers done with their cycles (their inboxes still drained) */
} churn;

/* ---- backends ---- */

#ifdef LACUNA_BENCH_BOOST /* tools/boost_peers.cpp */
void *boost_peer_create(const char *name, size_t region);
void *boost_peer_alloc(void *state);
void boost_peer_free(void *state, void *region);
#define BOOST_BACKENDS "boost-protected", "boost-pooled",
#else
#define BOOST_BACKENDS
#endif

/* clang-format off */
static const char *const backends[] = {
    "naive", "naive-noguard", "malloc", "lacuna", "lacuna-never", "lacuna-dontneed",
    "lacuna-free", "lacuna-zero", "tcmalloc", "mimalloc", "jemalloc", "jemalloc-tcache",
    BOOST_BACKENDS "floor", "floor-owner", NULL};
static const char *const choices[] = {
    "all", "naive", "naive-noguard", "malloc", "lacuna", "lacuna-never", "lacuna-dontneed",
    "lacuna-free", "lacuna-zero", "tcmalloc", "mimalloc", "jemalloc", "jemalloc-tcache",
    BOOST_BACKENDS "floor", "floor-owner", NULL};
/* clang-format on */

static void *naive_get(churn *c, int guard)
{
    size_t g = guard ? c->guard : 0;
    char *p = mmap(NULL, c->cfg->region + g, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (g && mprotect(p, g, PROT_NONE) != 0) {
        munmap(p, c->cfg->region + g);
        return NULL;
    }
    return p + g;
}

/* One thread's inbox: regions another thread allocated, for this one to free. Single producer
 * (the previous thread), single consumer; head and tail on lines of their own. */
typedef struct inbox {
    _Alignas(64) _Atomic size_t head; /* consumer's */
    _Alignas(64) _Atomic size_t tail; /* producer's */
    _Alignas(64) char *slot[INBOX];
} inbox;

/* "floor": the cost of the workload itself, with an allocator that costs nothing. Each thread
 * keeps the regions it freed on a LIFO of its own (no metadata, no guard, no lock, no syscall)
 * and carves new ones from one mapping only when that is empty. Nothing any allocator does is
 * cheaper, so its row bounds what the others can reach: on 2 threads with cross-thread frees, the
 * hand-over and the cache lines a region brings from the other CPU. */
static __thread struct {
    char **r;
    size_t n, cap;
} floor_lifo;

static void *floor_get(churn *c)
{
    if (floor_lifo.n > 0)
        return floor_lifo.r[--floor_lifo.n];
    size_t i = atomic_fetch_add(&c->floor_used, 1);
    if (i >= c->floor_cap) {
        errno = ENOMEM;
        return NULL;
    }
    return c->floor + i * c->cfg->region;
}

static void floor_put(char *r)
{
    if (floor_lifo.n == floor_lifo.cap) {
        size_t cap = floor_lifo.cap ? 2 * floor_lifo.cap : 4096;
        char **grown = realloc(floor_lifo.r, cap * sizeof *grown);
        if (grown == NULL)
            return; /* the region is lost to this run only: its mapping ends with the child */
        floor_lifo.r = grown;
        floor_lifo.cap = cap;
    }
    floor_lifo.r[floor_lifo.n++] = r;
}

/* "floor-owner": the floor, but a region freed by another thread goes back to the thread that
 * carved it (mimalloc's model: remote frees return to their owner, in batches), so a region is
 * reused by the CPU that wrote it last. Each (owner, freer) pair has a single-producer ring
 * published every INBOX_BATCH regions; an owner drains its rings only when its LIFO is empty.
 * A full ring keeps the region with its freer (a floor never waits). It bounds the allocators
 * that return remote frees to their owner as "floor" bounds those that keep them. */
static __thread size_t floor_me;            /* this thread's worker index */
static __thread size_t floor_sent[64];      /* per owner: regions this thread put in its ring */
static __thread size_t floor_head_seen[64]; /* per owner: its ring's head as last read */

static void *floor_owner_get(churn *c)
{
    size_t t = c->cfg->threads;
    for (size_t from = 0; floor_lifo.n == 0 && from < t; from++) {
        inbox *q = &c->floor_back[floor_me * t + from];
        size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
        size_t e = atomic_load_explicit(&q->tail, memory_order_acquire);
        for (size_t i = h; i != e; i++)
            floor_put(q->slot[i % INBOX]);
        atomic_store_explicit(&q->head, e, memory_order_release);
    }
    if (floor_lifo.n > 0)
        return floor_lifo.r[--floor_lifo.n];
    char *r = floor_get(c);
    if (r)
        c->floor_owner[(size_t)(r - c->floor) / c->cfg->region] = (unsigned char)floor_me;
    return r;
}

static void floor_owner_put(churn *c, char *r)
{
    size_t t = c->cfg->threads, owner = c->floor_owner[(size_t)(r - c->floor) / c->cfg->region];
    if (owner == floor_me) {
        floor_put(r);
        return;
    }
    inbox *q = &c->floor_back[owner * t + floor_me];
    size_t n = floor_sent[owner];
    if (n - floor_head_seen[owner] == INBOX) {
        floor_head_seen[owner] = atomic_load_explicit(&q->head, memory_order_acquire);
        if (n - floor_head_seen[owner] == INBOX) {
            floor_put(r);
            return;
        }
    }
    q->slot[n % INBOX] = r;
    floor_sent[owner] = ++n;
    if (n % INBOX_BATCH == 0)
        atomic_store_explicit(&q->tail, n, memory_order_release);
}

static void *get(churn *c)
{
    switch (c->kind) {
    case LACUNA:
        return lacuna_alloc(c->pool);
    case MALLOC:
        return malloc(c->cfg->region);
    case FLOOR:
        return floor_get(c);
    case FLOOR_OWNER:
        return floor_owner_get(c);
    case LIB:
        return peer_lib_alloc(&c->lib);
#ifdef LACUNA_BENCH_BOOST
    case BOOST:
        return boost_peer_alloc(c->peer);
#endif
    default:
        return naive_get(c, c->kind == NAIVE);
    }
}

static void put(churn *c, void *r)
{
    switch (c->kind) {
    case LACUNA:
        lacuna_free(c->pool, r);
        break;
    case MALLOC:
        free(r);
        break;
    case FLOOR:
        floor_put(r);
        break;
    case FLOOR_OWNER:
        floor_owner_put(c, r);
        break;
    case LIB:
        peer_lib_free(&c->lib, r);
        break;
#ifdef LACUNA_BENCH_BOOST
    case BOOST:
        boost_peer_free(c->peer, r);
        break;
#endif
    default: {
        size_t g = c->kind == NAIVE ? c->guard : 0;
        munmap((char *)r - g, c->cfg->region + g);
    }
    }
}

static int setup(churn *c, char *why, size_t len)
{
    const char *b = c->cfg->backend;
    if (peer_is_lib(b)) {
        c->kind = LIB;
        return peer_lib_open(b, c->cfg->region, &c->lib, why, len) == 0 ? 0 : ENOENT;
    }
#ifdef LACUNA_BENCH_BOOST
    if (strncmp(b, "boost", 5) == 0) {
        c->kind = BOOST;
        return (c->peer = boost_peer_create(b, c->cfg->region)) ? 0 : EINVAL;
    }
#endif
    if (strcmp(b, "naive") == 0 || strcmp(b, "naive-noguard") == 0 || strcmp(b, "malloc") == 0) {
        c->kind = b[0] == 'm' ? MALLOC : b[5] == '\0' ? NAIVE : NAIVE_NOGUARD;
        return 0;
    }
    /* the live sets, the regions in flight to another thread, the thread caches, slack */
    size_t t = c->cfg->threads;
    if (strcmp(b, "floor") == 0 || strcmp(b, "floor-owner") == 0) {
        c->kind = b[5] ? FLOOR_OWNER : FLOOR;
        /* A thread carves only when its LIFO is empty, but cross-thread frees pile up on the
         * slower thread while the faster one carves, without bound (with --touch 0 a run carved
         * 4 times what is live or in flight and failed): room for a region per cycle on top
         * (address space only, MAP_NORESERVE, at most 32 TiB; a region costs memory once
         * touched). */
        c->floor_cap = 4 * (c->cfg->live * t + (t > 1 ? 2 * INBOX * t : 0)) + 1024;
        if (t > 1)
            c->floor_cap += c->cfg->cycles;
        if (c->floor_cap > ((size_t)1 << 45) / c->cfg->region)
            c->floor_cap = ((size_t)1 << 45) / c->cfg->region;
        c->floor = mmap(NULL, c->floor_cap * c->cfg->region, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (c->floor == MAP_FAILED)
            return errno;
        if (c->kind == FLOOR_OWNER) {
            c->floor_owner = calloc(c->floor_cap, 1);
            c->floor_back = aligned_alloc(64, t * t * sizeof *c->floor_back);
            if (c->floor_owner == NULL || c->floor_back == NULL)
                return ENOMEM;
            memset(c->floor_back, 0, t * t * sizeof *c->floor_back);
        }
        return 0;
    }
    c->kind = LACUNA;
    lacuna_pool_config pc = {.region_size = c->cfg->region,
                             .capacity =
                                 c->cfg->live * t + (t > 1 ? INBOX * t : 0) + 64 * t + 1024};
    if (strcmp(b, "lacuna-never") == 0)
        pc.release = LACUNA_RELEASE_NEVER;
    else if (strcmp(b, "lacuna-dontneed") == 0)
        pc.cache = LACUNA_CACHE_NONE;
    else if (strcmp(b, "lacuna-free") == 0)
        pc.release = LACUNA_RELEASE_FREE;
    else if (strcmp(b, "lacuna-zero") == 0)
        pc.flags = LACUNA_ZERO;
    else if (strcmp(b, "lacuna") != 0)
        return EINVAL;
    return lacuna_pool_create(&pc, &c->pool);
}

/* ---- the workload ---- */

static inline void touch(const churn *c, char *r)
{
    for (size_t k = 0; k < c->cfg->touch; k++)
        r[c->cfg->region - (k + 1) * c->page] = (char)k; /* from the top, as a stack grows */
}

/* Each worker on cache lines of its own. The workers are an array on churn_child's stack (only
 * 16-byte aligned, at an offset ASLR picks per invocation, which its forked runs inherit), and
 * each writes a counter every cycle (frees; cross_frees and out_tail per cross free) next to
 * fields the next worker reads every cycle. Unaligned (120 bytes each), worker 0's counters
 * shared a line with worker 1's set and cycles at 1 of the 4 offsets, and with cross frees at 3
 * of 4 (worker 1 also reads its w->c for every free it drains): 2 threads with private frees then
 * took 34-41 CPU ns a cycle instead of 16-25, and "floor" with cross frees 28-33 instead of
 * 17-19, in every run of that invocation. */
typedef struct worker {
    _Alignas(64) churn *c;
    size_t cycles;
    char **set;          /* this thread's live set: c->cfg->live regions */
    inbox *in, *next_in; /* this thread's inbox; the next thread's (NULL: no cross frees) */
    size_t threads;      /* workers that start together */
    size_t index;        /* picks its CPU: the index-th allowed CPU, modulo how many */
    uint64_t seed;
    uint64_t start, end; /* ns, this worker's own cycles and inbox */
    uint64_t cpu_ns;     /* CPU time this worker spent between start and end */
    uint64_t frees, cross_frees;
    size_t out_tail, out_head; /* the next thread's inbox: sent so far, freed as last seen */
} worker;

/* Pin the calling thread to the i-th CPU it may run on, when there are more than one. Without it
 * a new thread often started on its creator's CPU and stayed there for the few milliseconds of a
 * run (the balancer moves it later), so 2 threads measured 1 CPU's worth, or 2, by luck. */
static void pin_to_cpu(size_t i)
{
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return;
    size_t k = i % (size_t)CPU_COUNT(&allowed);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || k-- > 0)
            continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
        return;
    }
}

/* Free what other threads sent to this one. Returns how many. */
static size_t drain(worker *w)
{
    inbox *in = w->in;
    size_t h = atomic_load_explicit(&in->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&in->tail, memory_order_acquire);
    for (size_t i = h; i != t; i++)
        put(w->c, in->slot[i % INBOX]);
    atomic_store_explicit(&in->head, t, memory_order_release);
    w->frees += t - h;
    return t - h;
}

/* Publish what this thread sent to the next one. Batched (every INBOX_BATCH regions, and at the
 * end) so the two threads share the ring's tail line once per batch, not once per free: the
 * benchmark's own hand-over should cost little beside the frees it measures. */
static void publish(worker *w)
{
    atomic_store_explicit(&w->next_in->tail, w->out_tail, memory_order_release);
}

static void send_to_next(worker *w, char *r)
{
    inbox *out = w->next_in;
    while (w->out_tail - w->out_head == INBOX) {
        publish(w);
        w->out_head = atomic_load_explicit(&out->head, memory_order_acquire);
        if (w->out_tail - w->out_head == INBOX && drain(w) == 0)
            sched_yield(); /* the next thread is behind: do our own freeing meanwhile */
    }
    out->slot[w->out_tail++ % INBOX] = r;
    if (w->out_tail % INBOX_BATCH == 0)
        publish(w);
    w->cross_frees++;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    churn *c = w->c;
    uint64_t x = w->seed;
    size_t live = c->cfg->live, acc = 0;
    floor_me = w->index;
    if (w->threads > 1)
        pin_to_cpu(w->index);
    /* Fill this thread's live set here, so that a "private" run frees only regions its own
     * thread allocated (an allocator with per-thread heaps treats a region from another thread
     * as a remote free). Worker 0's set was filled by churn_child, which reports where it failed.
     */
    for (size_t i = 0; w->index > 0 && i < live; i++) {
        if ((w->set[i] = get(c)) == NULL) {
            atomic_store(&c->failed, errno ? errno : ENOMEM);
            w->cycles = 0; /* still meet the others at the start line */
            break;
        }
        touch(c, w->set[i]);
    }
    /* Start together, spinning, and time each worker's own cycles. */
    atomic_fetch_add(&c->ready, 1);
    while (atomic_load(&c->ready) < w->threads)
        sched_yield(); /* more workers than CPUs: let the late ones arrive */
    w->start = bench_now_ns();
    uint64_t cpu0 = thread_cpu_ns();
    for (size_t i = 0; i < w->cycles; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        size_t j = (size_t)(x % live);
        char *r = get(c);
        if (r == NULL) {
            atomic_store(&c->failed, errno ? errno : ENOMEM);
            break;
        }
        touch(c, r);
        char *old = w->set[j];
        w->set[j] = r;
        /* Exactly cross % of the frees go to the next thread: an error-diffusion count, not a
         * coin, so --cross 50 is 50 %, not 50 % on average. */
        acc += c->cfg->cross;
        if (w->next_in && acc >= 100) {
            acc -= 100;
            send_to_next(w, old);
        } else {
            put(c, old);
            w->frees++;
        }
        if (w->in && i % INBOX_BATCH == 0)
            drain(w);
    }
    if (w->next_in)
        publish(w);
    atomic_fetch_add(&c->finished, 1);
    /* The previous thread may still send: keep freeing until every thread is done. Read "done"
     * before draining, so nothing sent before it is left behind. */
    while (w->in) {
        bool done = atomic_load(&c->finished) == w->threads;
        if (drain(w) == 0 && done)
            break;
    }
    w->end = bench_now_ns();
    w->cpu_ns = thread_cpu_ns() - cpu0;
    return NULL;
}

static void churn_child(void *arg, void *out)
{
    const churn_cfg *cfg = arg;
    churn_result *res = out;
    churn c = {.cfg = cfg, .page = (size_t)sysconf(_SC_PAGESIZE)};
    c.guard = c.page;
    res->failed_at = -1;
    res->err = setup(&c, res->skipped, sizeof res->skipped);
    if (res->err)
        return;
    size_t nt = cfg->threads, total = cfg->live * nt;
    c.live = calloc(total, sizeof *c.live);
    inbox *boxes = nt > 1 && cfg->cross ? aligned_alloc(64, nt * sizeof *boxes) : NULL;
    if (c.live == NULL || (nt > 1 && cfg->cross && boxes == NULL)) {
        res->err = ENOMEM;
        return;
    }
    if (boxes)
        memset(boxes, 0, nt * sizeof *boxes);
    for (size_t i = 0; i < cfg->live; i++) { /* worker 0's set; each other worker fills its own */
        char *r = get(&c);
        if (r == NULL) {
            res->failed_at = (long)i;
            res->err = errno ? errno : ENOMEM;
            res->vmas_peak = bench_vmas();
            res->peak_rss_kib = bench_status_kib("VmHWM:");
            return;
        }
        touch(&c, r);
        c.live[i] = r;
    }
    long flt0 = bench_minflt();
    worker w[64];
    pthread_t t[64];
    cpu_set_t allowed; /* worker 0 is this thread, and pins it: restored afterwards */
    bool have_allowed = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
    /* Worker 0 is this thread; the others are created first and wait at the start line. */
    for (size_t i = 0; i < nt; i++)
        w[i] = (worker){.c = &c,
                        .cycles = cfg->cycles / nt,
                        .set = c.live + i * cfg->live,
                        .in = boxes ? &boxes[i] : NULL,
                        .next_in = boxes ? &boxes[(i + 1) % nt] : NULL,
                        .threads = nt,
                        .index = i,
                        .seed = 0x9E3779B97F4A7C15ull * (i + 1)};
    for (size_t i = 1; i < nt; i++)
        pthread_create(&t[i], NULL, run_worker, &w[i]);
    run_worker(&w[0]);
    for (size_t i = 1; i < nt; i++)
        pthread_join(t[i], NULL);
    if (nt > 1 && have_allowed) /* unpin: back to the CPUs this process was given */
        sched_setaffinity(0, sizeof allowed, &allowed);
    uint64_t t0 = w[0].start, t1 = w[0].end; /* wall time: first start to last end */
    uint64_t frees = 0, cross = 0, cpu = 0;
    for (size_t i = 0; i < nt; i++) {
        cpu += w[i].cpu_ns;
        t0 = w[i].start < t0 ? w[i].start : t0;
        t1 = w[i].end > t1 ? w[i].end : t1;
        frees += w[i].frees;
        cross += w[i].cross_frees;
    }
    res->minflt = bench_minflt() - flt0;
    res->ns_per_cycle = (double)(t1 - t0) / (double)(cfg->cycles / nt * nt);
    res->cpu_ns_per_cycle = (double)cpu / (double)(cfg->cycles / nt * nt);
    res->cross_pct = frees ? 100.0 * (double)cross / (double)frees : 0;
    res->vmas_peak = bench_vmas();
    if (atomic_load(&c.failed))
        res->err = atomic_load(&c.failed);
    for (size_t i = 0; i < total; i++)
        if (c.live[i]) /* NULL: a worker's fill failed there */
            put(&c, c.live[i]);
    if (c.pool) {
        lacuna_trim(c.pool);
        lacuna_stats st;
        lacuna_pool_stats(c.pool, &st);
        res->release_calls = st.release_calls;
        res->released_regions = st.released_regions;
    }
    if (c.kind == MALLOC)
        malloc_trim(0);
    res->end_rss_kib = bench_rss_kib();
    res->peak_rss_kib = bench_status_kib("VmHWM:");
}

/* Median of runs (after one warm-up) of one configuration. A failing run (e.g. naive hitting
 * vm.max_map_count) is returned as is, with where it failed. progress: the share of the whole
 * command done before this configuration, and this configuration's share of it. */
static int measure(const churn_cfg *cfg, int runs, churn_result *med, double *min, double *max,
                   cli_progress *pr, double before, double share)
{
    enum { MAX_RUNS = 32 };
    churn_result r[MAX_RUNS];
    double ns[MAX_RUNS], sorted[MAX_RUNS];
    unsigned n = runs < 1 ? 1 : runs > MAX_RUNS ? MAX_RUNS : (unsigned)runs;
    *min = *max = 0;
    for (unsigned i = 0; i <= n; i++) { /* run 0 is the warm-up */
        cli_progress_update(pr, before + share * i / (n + 1), "churn: %s, run %u of %u",
                            cfg->backend, i, n);
        churn_result tmp;
        if (bench_in_child(churn_child, (void *)cfg, &tmp, sizeof tmp) != 0)
            tmp = (churn_result){.err = EIO, .failed_at = -1};
        if (tmp.err) {
            *med = tmp;
            return tmp.err;
        }
        if (i > 0) {
            r[i - 1] = tmp;
            ns[i - 1] = sorted[i - 1] = tmp.ns_per_cycle;
        }
    }
    double m = bench_median(sorted, (int)n);
    *min = sorted[0];
    *max = sorted[n - 1];
    unsigned best = 0; /* the run closest to the median supplies the other columns */
    for (unsigned i = 1; i < n; i++)
        if (fabs(ns[i] - m) < fabs(ns[best] - m))
            best = i;
    *med = r[best];
    med->ns_per_cycle = m;
    return 0;
}

int churn_measure(const churn_cfg *cfg, int runs, churn_result *med, double *min, double *max)
{
    cli_progress pr;
    cli_progress_start(&pr);
    int err = measure(cfg, runs, med, min, max, &pr, 0, 1);
    cli_progress_end(&pr);
    return err;
}

void churn_csv_header(FILE *out)
{
    bench_machine(out, "# ");
    fprintf(
        out,
        "backend,region,live,cycles,touch,threads,cross,ns_per_cycle,ns_min,ns_max,peak_rss_kib,"
        "end_rss_kib,vmas_peak,minflt,release_calls,released_regions,failed_at,error,"
        "cross_measured,cpu_ns_per_cycle\n");
}

static const char *error_text(const churn_result *r)
{
    return r->skipped[0] ? r->skipped : r->err ? strerror(r->err) : "";
}

void churn_csv_row(FILE *out, const churn_cfg *cfg, const churn_result *r, double mn, double mx)
{
    fprintf(
        out,
        "%s,%zu,%zu,%zu,%zu,%zu,%zu,%.1f,%.1f,%.1f,%ld,%ld,%ld,%ld,%llu,%llu,%ld,%s,%.1f,%.1f\n",
        cfg->backend, cfg->region, cfg->live, cfg->cycles, cfg->touch, cfg->threads,
        cfg->threads > 1 ? cfg->cross : 0, r->ns_per_cycle, mn, mx, r->peak_rss_kib, r->end_rss_kib,
        r->vmas_peak, r->minflt, (unsigned long long)r->release_calls,
        (unsigned long long)r->released_regions, r->failed_at, error_text(r), r->cross_pct,
        r->cpu_ns_per_cycle);
}

static const char churn_more[] =
    "backends (all = each in turn):\n"
    "  naive, naive-noguard  an mmap (+ mprotect guard) and a munmap per region\n"
    "  malloc                glibc malloc\n"
    "  lacuna                the defaults: a warm cache, batched release past its bound\n"
    "  lacuna-never          never release   lacuna-dontneed  no cache: release on every free\n"
    "  lacuna-free           MADV_FREE       lacuna-zero      LACUNA_ZERO (regions read zero)\n"
    "  tcmalloc, mimalloc, jemalloc  loaded with dlopen, skipped (with the reason) if missing\n"
    "  jemalloc-tcache       jemalloc with its thread cache raised to the region size\n"
#ifdef LACUNA_BENCH_BOOST
    "  boost-protected, boost-pooled  Boost.Context's stack allocators\n"
#endif
    "  floor                 no allocator: a per-thread LIFO of pointers into one mapping (no\n"
    "                        guard, no metadata, no lock): the workload's own cost, a bound\n"
    "  floor-owner           the floor, but other threads' frees go back to the region's\n"
    "                        owner in batches: the bound for owner-return allocators\n"
    "naive rows pay an mmap and a munmap per cycle while lacuna's reuse a warm cache: compare\n"
    "lacuna-dontneed (pages released on every free) for the cost of giving memory back each "
    "time.\n";

int bench_churn_main(int argc, char **argv)
{
    churn_cfg cfg = {.backend = "all",
                     .region = 64 * KIB,
                     .live = 1000,
                     .cycles = 1000000,
                     .touch = 1,
                     .threads = 1,
                     .cross = 0};
    size_t runs = 5, page = (size_t)sysconf(_SC_PAGESIZE);
    bool csv = false;
    const cli_opt opts[] = {
        {"backend", CLI_CHOICE, &cfg.backend, 0, 0, "what allocates the regions", choices},
        {"region", CLI_SIZE, &cfg.region, page, 1 * GIB, "region size", NULL},
        {"live", CLI_COUNT, &cfg.live, 1, 1000000000, "regions live per thread", NULL},
        {"cycles", CLI_COUNT, &cfg.cycles, 1, 100000000000ull, "cycles in all threads", NULL},
        {"touch", CLI_COUNT, &cfg.touch, 0, 262144, "pages touched per region", NULL},
        {"threads", CLI_COUNT, &cfg.threads, 1, 64, "threads, each with its own live set", NULL},
        {"cross", CLI_COUNT, &cfg.cross, 0, 100, "% of frees done by another thread", NULL},
        {"runs", CLI_COUNT, &runs, 1, 32, "measured runs (after a warm-up); median", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench churn",
                     "Free a random live region, allocate one, touch pages from its top; "
                     "ns per cycle, RSS, VMAs, faults.",
                     opts, NULL, churn_more};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    char a[32];
    if (cfg.touch * page > cfg.region)
        return cli_usage_error(&spec, "--touch %zu: a %s region has only %zu pages", cfg.touch,
                               cli_size_str(cfg.region, a), cfg.region / page);
    if (cfg.cycles < cfg.threads)
        return cli_usage_error(&spec, "--cycles %zu: fewer than --threads %zu", cfg.cycles,
                               cfg.threads);
    if (cfg.threads == 1 && cfg.cross > 0) /* nobody else to free: say so, never ignore it */
        return cli_usage_error(&spec, "--cross %zu: needs --threads 2 or more", cfg.cross);
    /* Resident at the peak: the touched pages (plus malloc's header page), a page-table page per
     * 2 MiB of mappings, the slot array. */
    double regions = (double)cfg.live * (double)cfg.threads;
    double need = regions * ((double)(cfg.touch + 1) * (double)page +
                             (double)(cfg.region + page) / 512 + sizeof(void *));
    char what[160];
    snprintf(what, sizeof what, "%zu thread(s) x %zu live regions of %s, %zu page(s) touched each",
             cfg.threads, cfg.live, cli_size_str(cfg.region, a), cfg.touch);
    if ((rc = cli_check_memory(&spec, need, what)) != 0)
        return rc;
    bool all = strcmp(cfg.backend, "all") == 0;
    if (all || strncmp(cfg.backend, "jemalloc", 8) == 0)
        bench_need_static_tls(); /* may re-execute this command */
    if (csv)
        churn_csv_header(stdout);
    else {
        bench_machine(stdout, "");
        printf("churn: region %s, %zu live per thread, %zu cycles, %zu page(s) touched, %zu "
               "thread(s), %zu%% of frees cross-thread, median of %zu runs\n\n",
               cli_size_str(cfg.region, a), cfg.live, cfg.cycles, cfg.touch, cfg.threads, cfg.cross,
               runs);
        printf("%-16s %12s %17s %8s %10s %10s %8s %9s %9s%s\n", "backend", "ns/cycle", "(min-max)",
               "CPU ns", "peak RSS", "end RSS", "VMAs", "minflt", "releases",
               cfg.threads > 1 ? "   cross" : "");
    }
    int nb = 0, measured = 0, failed = 0;
    while (backends[nb])
        nb++;
    cli_progress pr;
    cli_progress_start(&pr);
    for (int b = 0; backends[b]; b++) {
        if (!all && strcmp(backends[b], cfg.backend) != 0)
            continue;
        churn_cfg one = cfg;
        one.backend = backends[b];
        churn_result r;
        double mn, mx;
        measure(&one, (int)runs, &r, &mn, &mx, &pr, all ? (double)b / nb : 0, all ? 1.0 / nb : 1);
        cli_progress_end(&pr);
        failed += r.err != 0 && !r.skipped[0];
        measured += r.err == 0;
        if (csv) {
            churn_csv_row(stdout, &one, &r, mn, mx);
        } else if (r.skipped[0]) {
            printf("%-16s %s\n", one.backend, r.skipped);
        } else if (r.err && r.failed_at >= 0) {
            printf("%-16s failed: %s after %ld live regions (VMAs %ld)\n", one.backend,
                   strerror(r.err), r.failed_at, r.vmas_peak);
        } else if (r.err) {
            printf("%-16s failed during the run: %s\n", one.backend, strerror(r.err));
        } else {
            char range[64], cross[16] = "";
            snprintf(range, sizeof range, "(%.0f-%.0f)", mn, mx);
            if (cfg.threads > 1)
                snprintf(cross, sizeof cross, " %6.1f%%", r.cross_pct);
            printf("%-16s %12.1f %17s %8.1f %7ld KiB %6ld KiB %8ld %9ld %9llu%s\n", one.backend,
                   r.ns_per_cycle, range, r.cpu_ns_per_cycle, r.peak_rss_kib, r.end_rss_kib,
                   r.vmas_peak, r.minflt, (unsigned long long)r.release_calls, cross);
        }
        fflush(stdout);
    }
    if (!csv && all)
        printf("\nnaive rows map and unmap a region per cycle; lacuna's reuse a warm cache. "
               "lacuna-dontneed\ngives the pages back on every free: the row to compare for "
               "releasing each time.\n");
    if (!csv && cfg.threads > 1)
        printf("\nCPU ns: CPU time per cycle, all threads together. ns/cycle x threads well above "
               "it means\nthe threads waited for a CPU (a busy machine): their scaling is then "
               "the machine's, not the\nallocator's.\n");
    /* A backend that ran out (naive at vm.max_map_count) is a finding of the run, not a failure
     * of it, when all were asked for; asked for alone, a failure or a skip is exit 1. */
    if (!all && measured == 0)
        return CLI_FAILED;
    return failed && !all ? CLI_FAILED : CLI_OK;
}
