/* lacuna-bench burst: the picture of "punching holes". Live regions ramp 0 -> 100,000 -> 0 three
 * times (each region touching 2 pages, as a new green thread's stack would), with an idle pause
 * after each ramp down; a sampler thread reads RSS (/proc/self/statm) and the page tables
 * (VmPTE in /proc/self/status) every 10 ms. Each backend runs in its own process. A table of
 * peaks and end states by default, and what is left over the start after the last ramp down and
 * a trim (lacuna_trim; malloc_trim for malloc): lacuna's pools grow (capacity 0) and give back
 * the page tables of free runs. With --csv the samples, rows
 * backend,t_ms,phase,live,rss_kib,pte_kib (tools/plots.sh draws them). */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define REGION (64 * KIB)

typedef struct burst_cfg {
    const char *backend;
    size_t peak, rounds, idle_ms;
    bool csv; /* the child prints every sample */
} burst_cfg;

/* What a backend's run comes to, for the table. */
typedef struct burst_out {
    int err;
    long start_rss, peak_rss, end_rss; /* KiB: before the first region, highest, after the run */
    long start_pte, peak_pte, end_pte; /* KiB of page tables, the same moments */
    long trim_rss, trim_pte;           /* KiB after the run and a trim */
} burst_out;

static const char *const burst_backends[] = {"naive-noguard", "malloc",      "lacuna-never",
                                             "lacuna",        "lacuna-free", NULL};
static const char *const burst_choices[] = {"all",    "naive-noguard", "malloc", "lacuna-never",
                                            "lacuna", "lacuna-free",   NULL};

typedef struct sampler {
    const burst_cfg *cfg;
    burst_out *out;
    _Atomic size_t live;
    _Atomic int phase; /* 0 up, 1 hold, 2 down, 3 idle */
    _Atomic int stop;
    uint64_t t0;
} sampler;

static void *sample(void *arg)
{
    sampler *s = arg;
    static const char *names[] = {"up", "hold", "down", "idle"};
    while (!atomic_load(&s->stop)) {
        long rss = bench_rss_kib(), pte = bench_status_kib("VmPTE:");
        s->out->peak_rss = rss > s->out->peak_rss ? rss : s->out->peak_rss;
        s->out->peak_pte = pte > s->out->peak_pte ? pte : s->out->peak_pte;
        if (s->cfg->csv)
            printf("%s,%.0f,%s,%zu,%ld,%ld\n", s->cfg->backend,
                   (double)(bench_now_ns() - s->t0) / 1e6, names[atomic_load(&s->phase)],
                   atomic_load(&s->live), rss, pte);
        struct timespec t = {0, 10 * 1000000};
        nanosleep(&t, NULL);
    }
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

static void burst_child(void *arg, void *out)
{
    const burst_cfg *cfg = arg;
    burst_out *o = out;
    int *err = &o->err;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    lacuna_pool *pool = NULL;
    const char *b = cfg->backend;
    bool lac = strncmp(b, "lacuna", 6) == 0;
    if (lac) {
        lacuna_pool_config c = {.region_size = REGION}; /* capacity 0: grows to the peak */
        if (strcmp(b, "lacuna") == 0)
            c.flags = LACUNA_BACKGROUND; /* an idle process gives memory back too */
        else if (strcmp(b, "lacuna-never") == 0)
            c.release = LACUNA_RELEASE_NEVER;
        else
            c.release = LACUNA_RELEASE_FREE;
        if ((*err = lacuna_pool_create(&c, &pool)) != 0)
            return;
    }
    char **live = calloc(cfg->peak, sizeof *live);
    if (live == NULL) {
        *err = ENOMEM;
        return;
    }
    o->start_rss = bench_rss_kib();
    o->start_pte = bench_status_kib("VmPTE:");
    sampler s = {.cfg = cfg, .out = o, .t0 = bench_now_ns()};
    pthread_t th;
    pthread_create(&th, NULL, sample, &s);
    uint64_t x = 88172645463325252ull;
    for (size_t round = 0; round < cfg->rounds; round++) {
        atomic_store(&s.phase, 0);
        for (size_t i = 0; i < cfg->peak; i++) {
            char *r;
            if (lac)
                r = lacuna_alloc(pool);
            else if (strcmp(b, "malloc") == 0)
                r = malloc(REGION);
            else
                r = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (r == NULL || r == MAP_FAILED) {
                *err = errno ? errno : ENOMEM;
                goto out;
            }
            r[REGION - 1] = 1;
            r[REGION - 1 - pg] = 1;
            live[i] = r;
            atomic_store_explicit(&s.live, i + 1, memory_order_relaxed);
        }
        atomic_store(&s.phase, 1);
        sleep_ms(100);
        atomic_store(&s.phase, 2);
        for (size_t i = cfg->peak; i > 1; i--) { /* free in random order */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t j = (size_t)(x % i);
            char *t = live[j];
            live[j] = live[i - 1];
            live[i - 1] = t;
        }
        for (size_t i = 0; i < cfg->peak; i++) {
            if (lac)
                lacuna_free(pool, live[i]);
            else if (strcmp(b, "malloc") == 0)
                free(live[i]);
            else
                munmap(live[i], REGION);
            atomic_store_explicit(&s.live, cfg->peak - i - 1, memory_order_relaxed);
        }
        atomic_store(&s.phase, 3);
        sleep_ms((unsigned)cfg->idle_ms); /* no calls: only a background release gives back */
    }
out:
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    o->end_rss = bench_rss_kib();
    o->end_pte = bench_status_kib("VmPTE:");
    if (lac)
        (void)lacuna_trim(pool);
    else if (strcmp(b, "malloc") == 0)
        (void)malloc_trim(0);
    o->trim_rss = bench_rss_kib();
    o->trim_pte = bench_status_kib("VmPTE:");
    fflush(stdout);
    lacuna_pool_destroy(pool);
}

int bench_burst_main(int argc, char **argv)
{
    burst_cfg cfg = {.backend = "all", .peak = 100000, .rounds = 3, .idle_ms = 1500};
    const cli_opt opts[] = {
        {"backend", CLI_CHOICE, &cfg.backend, 0, 0, "what allocates the regions", burst_choices},
        {"peak", CLI_COUNT, &cfg.peak, 1, 100000000, "live 64 KiB regions at the top", NULL},
        {"rounds", CLI_COUNT, &cfg.rounds, 1, 100, "ramps up and down", NULL},
        {"idle-ms", CLI_COUNT, &cfg.idle_ms, 0, 600000, "pause after each ramp down", NULL},
        {"csv", CLI_FLAG, &cfg.csv, 0, 0, "every 10 ms sample as CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench burst",
                     "Live 64 KiB regions ramp 0 -> peak -> 0: RSS and page tables (VmPTE) "
                     "over time, per backend.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char what[96];
    snprintf(what, sizeof what, "%zu live regions of 64 KiB, 2 pages touched each", cfg.peak);
    /* 2 touched pages, a page-table page per 2 MiB of slots, the pointer array */
    if ((rc = cli_check_memory(&spec, (double)cfg.peak * (2.0 * pg + (REGION + pg) / 512 + 8),
                               what)) != 0)
        return rc;
    bench_machine(stdout, "# ");
    printf("# burst: live 0 -> %zu -> 0, %zu rounds, 2 pages touched per 64 KiB region, RSS and "
           "VmPTE sampled every 10 ms; lacuna = defaults + LACUNA_BACKGROUND\n",
           cfg.peak, cfg.rounds);
    if (cfg.csv)
        printf("backend,t_ms,phase,live,rss_kib,pte_kib\n");
    else
        printf("%-14s %12s %12s %12s %14s %12s %15s %14s %14s\n", "backend", "peak RSS",
               "RSS after", "peak VmPTE", "PTE per region", "VmPTE after", "kept per region",
               "trimmed +RSS", "trimmed +VmPTE");
    fflush(stdout);
    rc = 0;
    cli_progress pr;
    cli_progress_start(&pr);
    for (int i = 0; burst_backends[i]; i++) {
        if (strcmp(cfg.backend, "all") != 0 && strcmp(cfg.backend, burst_backends[i]) != 0)
            continue;
        cli_progress_update(&pr, i / 5.0, "burst: %s", burst_backends[i]);
        burst_cfg one = cfg;
        one.backend = burst_backends[i];
        burst_out o = {0};
        if (bench_in_child(burst_child, &one, &o, sizeof o) != 0 || o.err) {
            cli_progress_end(&pr);
            printf("%s%s failed: %s\n", cfg.csv ? "# " : "", one.backend,
                   o.err ? strerror(o.err) : "crashed");
            rc = 1;
        } else if (!cfg.csv) {
            cli_progress_end(&pr);
            /* page tables the regions added at the peak, per live region */
            /* and what stays resident after every region is freed, per region of the peak
             * (once the background thread has released lacuna's warm cache), and what is left
             * over the start after a trim */
            printf("%-14s %8.1f MiB %8.1f MiB %8ld KiB %8.0f bytes %8ld KiB %9.0f bytes %10ld KiB "
                   "%10ld KiB\n",
                   one.backend, o.peak_rss / 1024.0, o.end_rss / 1024.0, o.peak_pte,
                   (double)(o.peak_pte - o.start_pte) * 1024 / (double)cfg.peak, o.end_pte,
                   (double)(o.end_rss - o.start_rss) * 1024 / (double)cfg.peak,
                   o.trim_rss - o.start_rss, o.trim_pte - o.start_pte);
        }
        fflush(stdout);
    }
    cli_progress_end(&pr);
    if (!cfg.csv)
        printf("\nPTE per region: page tables the live regions added at the peak. kept per region: "
               "RSS after\nthe run less RSS before it, per region of the peak, before any trim: "
               "for lacuna what\nits background thread has not given back yet; lacuna-never and "
               "lacuna-free keep every\npage. trimmed: RSS and VmPTE over the start after the "
               "run and a trim (lacuna_trim,\nmalloc_trim for malloc), which gives back the "
               "guards, page tables and state lines of\nlacuna's free slots.\n");
    return rc;
}
