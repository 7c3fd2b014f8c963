/* lacuna-bench burst: the picture of "punching holes". Live regions ramp 0 -> 100,000 -> 0 three
 * times (each region touching 2 pages, as a new green thread's stack would), with an idle pause
 * after each ramp down; a sampler thread reads RSS (/proc/self/statm) and the page tables
 * (VmPTE in /proc/self/status) every 10 ms. Each backend runs in its own process. A table of
 * peaks and end states by default: how long after the last ramp down RSS and VmPTE came back
 * within BACK_RSS_KIB and BACK_PTE_KIB of the start (with no call into the allocator: for lacuna
 * its LACUNA_BACKGROUND thread), and what is left over the start after the last ramp down and
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
/* "Back": RSS and VmPTE within these of the start, after every region was freed (issue 12's
 * bound for an idle process: the regions' pages, guards and page tables given back). */
#define BACK_RSS_KIB 2048
#define BACK_PTE_KIB 1024

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
    long back_ms; /* from the last ramp down's end until back within the bound for good, or -1 */
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
    _Atomic uint64_t down_ns; /* when the last ramp down ended (its idle pause began), or 0 */
    uint64_t t0;
} sampler;

static void *sample(void *arg)
{
    sampler *s = arg;
    static const char *names[] = {"up", "hold", "down", "idle"};
    while (!atomic_load(&s->stop)) {
        long rss = bench_rss_kib(), pte = bench_status_kib("VmPTE:");
        uint64_t now = bench_now_ns(), down = atomic_load(&s->down_ns);
        s->out->peak_rss = rss > s->out->peak_rss ? rss : s->out->peak_rss;
        s->out->peak_pte = pte > s->out->peak_pte ? pte : s->out->peak_pte;
        if (down != 0) { /* the first sample of a stretch within the bound that lasts */
            bool back =
                rss <= s->out->start_rss + BACK_RSS_KIB && pte <= s->out->start_pte + BACK_PTE_KIB;
            if (!back)
                s->out->back_ms = -1;
            else if (s->out->back_ms < 0)
                s->out->back_ms = (long)((now - down) / 1000000);
        }
        if (s->cfg->csv)
            printf("%s,%.0f,%s,%zu,%ld,%ld\n", s->cfg->backend, (double)(now - s->t0) / 1e6,
                   names[atomic_load(&s->phase)], atomic_load(&s->live), rss, pte);
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
    o->back_ms = -1;
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
        if (round + 1 == cfg->rounds)
            atomic_store(&s.down_ns, bench_now_ns());
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
        printf("%-14s %12s %12s %14s %12s %12s %10s %14s %14s\n", "backend", "peak RSS",
               "peak VmPTE", "PTE per region", "idle +RSS", "idle +VmPTE", "back in",
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
            /* page tables the regions added at the peak, per live region; what stays over the
             * start after every region is freed and the idle pause (once the background thread
             * has released lacuna's warm cache), when it got within the bound, and what is left
             * over the start after a trim */
            char back[32];
            if (o.back_ms < 0)
                snprintf(back, sizeof back, "never");
            else
                snprintf(back, sizeof back, "%ld ms", o.back_ms);
            printf("%-14s %8.1f MiB %8ld KiB %8.0f bytes %8ld KiB %8ld KiB %10s %10ld KiB "
                   "%10ld KiB\n",
                   one.backend, o.peak_rss / 1024.0, o.peak_pte,
                   (double)(o.peak_pte - o.start_pte) * 1024 / (double)cfg.peak,
                   o.end_rss - o.start_rss, o.end_pte - o.start_pte, back, o.trim_rss - o.start_rss,
                   o.trim_pte - o.start_pte);
        }
        fflush(stdout);
    }
    cli_progress_end(&pr);
    if (!cfg.csv)
        printf(
            "\nPTE per region: page tables the live regions added at the peak. idle: RSS and "
            "VmPTE over\nthe start (taken before the first region: the %zu KiB array of pointers "
            "counts) at the\nend of the last idle pause of %zu ms, no call made: for "
            "lacuna what its background\nthread has not given back (lacuna-never and "
            "lacuna-free keep every page). back in: from\nthe end of the last ramp down until "
            "RSS and VmPTE were within %d and %d KiB of the\nstart for the rest of the pause "
            "(10 ms samples; lacuna's decay_ms is 1000). trimmed: the\nsame after a trim "
            "(lacuna_trim, malloc_trim for malloc), which gives back the guards,\npage tables "
            "and state lines of lacuna's free slots and its thread's cache.\n",
            cfg.peak * sizeof(char *) / KIB, cfg.idle_ms, BACK_RSS_KIB, BACK_PTE_KIB);
    return rc;
}
