/* lacuna-bench churn: the stack-allocator workload. N regions live; each cycle frees a random
 * live one and allocates a fresh one, touching P pages from its top as a stack would. Backends:
 * the naive ways (one mmap per region, with and without a guard; malloc) and lacuna's policies.
 * With --threads T each thread owns a slice of the live set; with --cross PCT (default 50) a
 * cycle instead swaps into a random slot of the whole set, whose old region another thread
 * probably allocated: a cross-thread free. --cross 0 measures the allocator with private sets. */
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
#include <unistd.h>

typedef struct churn {
    const churn_cfg *cfg;
    size_t page, guard;
    lacuna_pool *pool;
    void *peer; /* a Boost.Context allocator (boost-* backends) */
    _Atomic(char *) *live;
    _Atomic int failed;
    _Atomic size_t ready; /* workers at the start line */
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

static void *get(churn *c)
{
    const char *b = c->cfg->backend;
    if (strncmp(b, "lacuna", 6) == 0)
        return lacuna_alloc(c->pool);
    if (strcmp(b, "malloc") == 0)
        return malloc(c->cfg->region);
#ifdef LACUNA_BENCH_BOOST
    if (strncmp(b, "boost", 5) == 0)
        return boost_peer_alloc(c->peer);
#endif
    return naive_get(c, strcmp(b, "naive") == 0);
}

static void put(churn *c, void *r)
{
    const char *b = c->cfg->backend;
    if (strncmp(b, "lacuna", 6) == 0) {
        lacuna_free(c->pool, r);
    } else if (strcmp(b, "malloc") == 0) {
        free(r);
#ifdef LACUNA_BENCH_BOOST
    } else if (strncmp(b, "boost", 5) == 0) {
        boost_peer_free(c->peer, r);
#endif
    } else {
        size_t g = strcmp(b, "naive") == 0 ? c->guard : 0;
        munmap((char *)r - g, c->cfg->region + g);
    }
}

static int setup(churn *c)
{
    const char *b = c->cfg->backend;
#ifdef LACUNA_BENCH_BOOST
    if (strncmp(b, "boost", 5) == 0)
        return (c->peer = boost_peer_create(b, c->cfg->region)) ? 0 : EINVAL;
#endif
    if (strncmp(b, "lacuna", 6) != 0)
        return 0;
    lacuna_pool_config pc = {.region_size = c->cfg->region,
                             .capacity = c->cfg->live + 64 * c->cfg->threads + 1024};
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

/* clang-format off */
static const char *const backends[] = {
    "naive", "naive-noguard", "malloc", "lacuna", "lacuna-never", "lacuna-dontneed",
    "lacuna-free", "lacuna-zero", BOOST_BACKENDS NULL};
/* clang-format on */

/* ---- the workload ---- */

static inline void touch(const churn *c, char *r)
{
    for (size_t k = 0; k < c->cfg->touch; k++)
        r[c->cfg->region - (k + 1) * c->page] = (char)k; /* from the top, as a stack grows */
}

typedef struct worker {
    churn *c;
    size_t cycles, lo, n; /* this thread's slice of the live set: [lo, lo + n) */
    size_t threads;       /* workers that start together */
    struct worker *self0; /* the first worker: this one's index picks its CPU (the index-th
                             allowed CPU, modulo how many are allowed) */
    uint64_t seed;
    uint64_t start, end; /* ns, this worker's own cycles */
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

static void *run_worker(void *arg)
{
    worker *w = arg;
    churn *c = w->c;
    uint64_t x = w->seed;
    if (w->threads > 1)
        pin_to_cpu((size_t)(w - w->self0));
    /* Start together, spinning, and time each worker's own cycles. */
    atomic_fetch_add(&c->ready, 1);
    while (atomic_load(&c->ready) < w->threads)
        sched_yield(); /* more workers than CPUs: let the late ones arrive */
    w->start = bench_now_ns();
    for (size_t i = 0; i < w->cycles; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        bool cross = (x >> 56) * 100 < c->cfg->cross * 256u;
        size_t j = cross ? (size_t)(x % c->cfg->live) : w->lo + (size_t)(x % w->n);
        char *r = get(c);
        if (r == NULL) {
            atomic_store(&c->failed, errno ? errno : ENOMEM);
            break;
        }
        touch(c, r);
        char *old = atomic_exchange_explicit(&c->live[j], r, memory_order_acq_rel);
        put(c, old);
    }
    w->end = bench_now_ns();
    return NULL;
}

static void churn_child(void *arg, void *out)
{
    const churn_cfg *cfg = arg;
    churn_result *res = out;
    churn c = {.cfg = cfg, .page = (size_t)sysconf(_SC_PAGESIZE)};
    c.guard = c.page;
    res->failed_at = -1;
    res->err = setup(&c);
    if (res->err)
        return;
    c.live = calloc(cfg->live, sizeof *c.live);
    for (size_t i = 0; i < cfg->live; i++) {
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
    size_t nt = cfg->threads < 64 ? cfg->threads : 64;
    /* Worker 0 is this thread; the others are created first and wait at the start line. */
    for (size_t i = 0; i < nt; i++) {
        size_t lo = cfg->live * i / nt, hi = cfg->live * (i + 1) / nt;
        w[i] = (worker){&c,
                        cfg->cycles / nt,
                        lo,
                        hi > lo ? hi - lo : 1,
                        nt,
                        w,
                        0x9E3779B97F4A7C15ull * (i + 1),
                        0,
                        0};
    }
    for (size_t i = 1; i < nt; i++)
        pthread_create(&t[i], NULL, run_worker, &w[i]);
    run_worker(&w[0]);
    for (size_t i = 1; i < nt; i++)
        pthread_join(t[i], NULL);
    if (nt > 1 && have_allowed) /* unpin: back to the CPUs this process was given */
        sched_setaffinity(0, sizeof allowed, &allowed);
    uint64_t t0 = w[0].start, t1 = w[0].end; /* wall time: first start to last end */
    for (size_t i = 1; i < nt; i++) {
        t0 = w[i].start < t0 ? w[i].start : t0;
        t1 = w[i].end > t1 ? w[i].end : t1;
    }
    res->minflt = bench_minflt() - flt0;
    res->ns_per_cycle = (double)(t1 - t0) / (double)(cfg->cycles / nt * nt);
    res->vmas_peak = bench_vmas();
    if (atomic_load(&c.failed))
        res->err = atomic_load(&c.failed);
    for (size_t i = 0; i < cfg->live; i++)
        put(&c, c.live[i]);
    if (c.pool) {
        lacuna_trim(c.pool);
        lacuna_stats st;
        lacuna_pool_stats(c.pool, &st);
        res->release_calls = st.release_calls;
        res->released_regions = st.released_regions;
    }
    if (strcmp(cfg->backend, "malloc") == 0)
        malloc_trim(0);
    res->end_rss_kib = bench_rss_kib();
    res->peak_rss_kib = bench_status_kib("VmHWM:");
}

/* Median of runs (after one warm-up) of one configuration. A failing run (e.g. naive hitting
 * vm.max_map_count) is returned as is, with where it failed. */
int churn_measure(const churn_cfg *cfg, int runs, churn_result *med, double *min, double *max)
{
    enum { MAX_RUNS = 32 };
    churn_result r[MAX_RUNS];
    double ns[MAX_RUNS], sorted[MAX_RUNS];
    unsigned n = runs < 1 ? 1 : runs > MAX_RUNS ? MAX_RUNS : (unsigned)runs;
    *min = *max = 0;
    for (unsigned i = 0; i <= n; i++) { /* run 0 is the warm-up */
        bench_progress("churn: %s region=%zuK live=%zu touch=%zu threads=%zu: run %u of %u",
                       cfg->backend, cfg->region / KIB, cfg->live, cfg->touch, cfg->threads, i, n);
        churn_result tmp;
        if (bench_in_child(churn_child, (void *)cfg, &tmp, sizeof tmp) != 0)
            tmp = (churn_result){.err = EIO, .failed_at = -1};
        if (tmp.err) {
            bench_progress("%s", "");
            *med = tmp;
            return tmp.err;
        }
        if (i > 0) {
            r[i - 1] = tmp;
            ns[i - 1] = sorted[i - 1] = tmp.ns_per_cycle;
        }
    }
    bench_progress("%s", "");
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

void churn_csv_header(FILE *out)
{
    bench_machine(out, "# ");
    fprintf(
        out,
        "backend,region,live,cycles,touch,threads,cross,ns_per_cycle,ns_min,ns_max,peak_rss_kib,"
        "end_rss_kib,vmas_peak,minflt,release_calls,released_regions,failed_at,error\n");
}

void churn_csv_row(FILE *out, const churn_cfg *cfg, const churn_result *r, double mn, double mx)
{
    fprintf(out, "%s,%zu,%zu,%zu,%zu,%zu,%zu,%.1f,%.1f,%.1f,%ld,%ld,%ld,%ld,%llu,%llu,%ld,%s\n",
            cfg->backend, cfg->region, cfg->live, cfg->cycles, cfg->touch, cfg->threads,
            cfg->threads > 1 ? cfg->cross : 0, r->ns_per_cycle, mn, mx, r->peak_rss_kib,
            r->end_rss_kib, r->vmas_peak, r->minflt, (unsigned long long)r->release_calls,
            (unsigned long long)r->released_regions, r->failed_at, r->err ? strerror(r->err) : "");
}

static void churn_usage(FILE *out)
{
    fprintf(out,
            "usage: lacuna-bench churn [--backend B|all] [--region 64K] [--live 1000]\n"
            "                          [--cycles 1000000] [--touch 1] [--threads 1] [--cross 50]\n"
            "                          [--runs 5] [--csv]\n"
            "backends:");
    for (int i = 0; backends[i]; i++)
        fprintf(out, " %s", backends[i]);
    fprintf(out, "\n");
}

int bench_churn_main(int argc, char **argv)
{
    churn_cfg cfg = {.backend = "all",
                     .region = 64 * KIB,
                     .live = 1000,
                     .cycles = 1000000,
                     .touch = 1,
                     .threads = 1};
    int runs = 5, csv = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t n;
        if (strcmp(a, "--csv") == 0) {
            csv = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            churn_usage(stdout);
            return 0;
        }
        if (v == NULL) {
            churn_usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--backend") == 0) {
            cfg.backend = v;
            continue;
        }
        if (bench_parse_size(v, &n) != 0) {
            fprintf(stderr, "lacuna-bench churn: bad value '%s' for %s\n", v, a);
            return 2;
        }
        if (strcmp(a, "--region") == 0)
            cfg.region = n;
        else if (strcmp(a, "--live") == 0)
            cfg.live = n;
        else if (strcmp(a, "--cycles") == 0)
            cfg.cycles = n;
        else if (strcmp(a, "--touch") == 0)
            cfg.touch = n;
        else if (strcmp(a, "--threads") == 0)
            cfg.threads = n;
        else if (strcmp(a, "--cross") == 0)
            cfg.cross = n;
        else if (strcmp(a, "--runs") == 0)
            runs = (int)n;
        else {
            churn_usage(stderr);
            return 2;
        }
    }
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    if (cfg.region < pg || cfg.live == 0 || cfg.threads == 0 || cfg.threads > 64 || runs < 1 ||
        cfg.touch * pg > cfg.region || cfg.cycles < cfg.threads || cfg.cross > 100 ||
        cfg.live < cfg.threads) {
        fprintf(stderr, "lacuna-bench churn: need region >= 1 page, live >= 1, 1 <= threads <= 64,"
                        " runs >= 1, touch <= region pages, cycles >= threads, live >= threads,"
                        " cross <= 100\n");
        return 2;
    }
    bool all = strcmp(cfg.backend, "all") == 0;
    if (!all) {
        int known = 0;
        for (int i = 0; backends[i]; i++)
            known |= strcmp(backends[i], cfg.backend) == 0;
        if (!known) {
            fprintf(stderr, "lacuna-bench churn: unknown backend '%s'\n", cfg.backend);
            churn_usage(stderr);
            return 2;
        }
    }
    if (csv)
        churn_csv_header(stdout);
    else {
        bench_machine(stdout, "");
        printf("churn: region %zu KiB, %zu live, %zu cycles, %zu page(s) touched, %zu thread(s) "
               "(%zu%% cross-thread), median of %d runs\n\n",
               cfg.region / KIB, cfg.live, cfg.cycles, cfg.touch, cfg.threads,
               cfg.threads > 1 ? cfg.cross : 0, runs);
        printf("%-16s %12s %17s %10s %10s %8s %9s %9s\n", "backend", "ns/cycle", "(min-max)",
               "peak RSS", "end RSS", "VMAs", "minflt", "releases");
    }
    for (int b = 0; backends[b]; b++) {
        if (!all && strcmp(backends[b], cfg.backend) != 0)
            continue;
        churn_cfg one = cfg;
        one.backend = backends[b];
        churn_result r;
        double mn, mx;
        churn_measure(&one, runs, &r, &mn, &mx);
        if (csv) {
            churn_csv_row(stdout, &one, &r, mn, mx);
        } else if (r.err) {
            printf("%-16s failed: %s after %ld live regions (VMAs %ld)\n", one.backend,
                   strerror(r.err), r.failed_at, r.vmas_peak);
        } else {
            char range[64];
            snprintf(range, sizeof range, "(%.0f-%.0f)", mn, mx);
            printf("%-16s %12.1f %17s %7ld KiB %6ld KiB %8ld %9ld %9llu\n", one.backend,
                   r.ns_per_cycle, range, r.peak_rss_kib, r.end_rss_kib, r.vmas_peak, r.minflt,
                   (unsigned long long)r.release_calls);
        }
        fflush(stdout);
    }
    return 0;
}
