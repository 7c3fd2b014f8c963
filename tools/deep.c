/* lacuna-bench deep — deep once, then parked (issue 13): N fibers each recurse about --depth bytes
 * once, return to a shallow frame and park on their own channel, as servers whose connections
 * once parsed a large request and now wait for minutes. Then:
 *   1. RSS with all parked (every page the recursion touched is still resident);
 *   2. lacuna_fiber_release_idle: its time and the bytes it reports, RSS after it;
 *   3. the census (lacuna_fiber_each + lacuna_fiber_stack_info over every live fiber): the pages
 *      the current frames need (sum of `used` rounded up to pages), the resident sum, and the
 *      histogram of high_water;
 *   4. all N resumed (each checks the canary in its shallow frame and parks again): per fiber
 *      µs and minor faults (getrusage);
 *   5. all N go deep again (the released pages fault back in as zero pages; every frame of the
 *      recursion is written and checked on the way up): per fiber µs and minor faults.
 * The baseline is the same program with N fibers that never went deep (--depth 0), run in its
 * own child process in the same lacuna-bench run: its RSS with all parked, less the stack pages
 * its census finds resident, is what the runtime needs besides stacks (code, libc, fiber records,
 * channels, the pool's bookkeeping). The target: RSS after the release <= 1.25 x (needed stack
 * pages + that baseline). Each measurement runs in a fresh child (bench_in_child), shallow and
 * deep alternated, --runs times; medians are reported (the census of the last deep run).
 * tools/go/deep.go is Go's version: built (go build) and run here, deep and never deep, when `go`
 * is on the PATH; else "SKIP go:" and the reason. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEEP_FRAME     1024 /* bytes of the buffer of one level of the recursion */
#define DEEP_MAX_PAGES 2048 /* histogram buckets: 8 MiB stacks of 4 KiB pages */

typedef struct deep_cfg {
    size_t n, depth, stack, workers;
} deep_cfg;

/* What one child measures and sends back (fixed size: bench_in_child copies it). */
typedef struct deep_run {
    int err;                              /* errno of what failed, or 0 */
    char what[96];                        /* what failed */
    size_t fibers;                        /* fibers in the census (the N and the driver) */
    long rss_parked_kib;                  /* all N parked, before any release */
    long rss_released_kib;                /* after lacuna_fiber_release_idle */
    long rss_resumed_kib;                 /* after all resumed and parked again */
    long rss_again_kib;                   /* after all went deep again, parked */
    double release_ms;                    /* the lacuna_fiber_release_idle call */
    size_t released;                      /* bytes it reported */
    double census_ms;                     /* the census after it (a stack_info per fiber) */
    double first_us, resume_us, again_us; /* per fiber: spawn + deep + park; resume; deep again */
    double first_flt, resume_flt, again_flt; /* minor faults per fiber, same phases */
    size_t bad; /* checked bytes of frames and canaries found changed: must be 0 */
    /* census: before the release, and after it */
    size_t used_pages_before, resident_before, used_pages, resident, high_water_max;
    size_t resident_min, resident_max; /* per fiber after the release, in pages */
    size_t used_min, used_max;         /* per parked fiber after the release, in bytes */
    size_t hist[DEEP_MAX_PAGES + 1];   /* fibers by high_water in pages (rounded up) */
} deep_run;

static lacuna_chan **wake; /* one per fiber */
static lacuna_chan *done;  /* capacity N: a fiber says it is parked again */
static size_t levels;      /* of the recursion: depth / DEEP_FRAME */
static size_t page;        /* bytes */
static deep_cfg cur;       /* the child's configuration */

/* One level of the recursion: write the buffer (a byte every 64: every page of it is touched),
 * go one deeper, check the buffer on the way up. Returns the bytes found changed. */
static __attribute__((noinline)) size_t dive(size_t level, unsigned seed)
{
    volatile unsigned char buf[DEEP_FRAME];
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = (unsigned char)(seed + level + i / 64);
    size_t bad = level > 1 ? dive(level - 1, seed) : 0;
    for (size_t i = 0; i < sizeof buf; i += 64)
        bad += buf[i] != (unsigned char)(seed + level + i / 64);
    return bad;
}

/* The fiber: deep once, then parked in a shallow frame with a canary; on its first wake-up it
 * checks the canary and parks again; on its second it goes deep again; on its third it ends. */
static void *deep_fiber(void *arg)
{
    size_t i = (size_t)arg;
    unsigned char canary[64]; /* live across every park: must survive the release */
    for (size_t k = 0; k < sizeof canary; k++)
        canary[k] = (unsigned char)(i * 31 + k);
    __asm__ volatile("" : : "r"(canary) : "memory");
    size_t bad = levels ? dive(levels, (unsigned)i) : 0;
    for (int round = 0; round < 3; round++) {
        long v;
        if (lacuna_chan_recv(wake[i], &v) != 0)
            return (void *)1;
        __asm__ volatile("" : : "r"(canary) : "memory");
        for (size_t k = 0; k < sizeof canary; k++)
            bad += canary[k] != (unsigned char)(i * 31 + k);
        if (round == 1 && levels)
            bad += dive(levels, (unsigned)i + 7);
        if (round < 2 && lacuna_chan_send(done, &bad) != 0)
            return (void *)1;
    }
    return bad ? (void *)1 : NULL; /* the canary, checked once more */
}

typedef struct census_acc {
    deep_run *r;
    size_t fibers, used_pages, resident, rmin, rmax, umin, umax; /* umin, umax: parked only */
    bool hist;
    int err;
} census_acc;

static int census_one(lacuna_fiber *f, void *arg)
{
    census_acc *a = arg;
    lacuna_stack_info si;
    int err = lacuna_fiber_stack_info(f, &si);
    if (err == EINVAL)
        return 0; /* ended meanwhile */
    if (err) {
        a->err = err;
        return 1;
    }
    size_t rp = si.resident / page;
    a->fibers++;
    a->used_pages += (si.used + page - 1) / page;
    a->resident += rp;
    a->rmin = rp < a->rmin ? rp : a->rmin;
    a->rmax = rp > a->rmax ? rp : a->rmax;
    if (!si.running) {
        a->umin = si.used < a->umin ? si.used : a->umin;
        a->umax = si.used > a->umax ? si.used : a->umax;
    }
    if (a->hist) {
        size_t hw = (si.high_water + page - 1) / page;
        a->r->hist[hw < DEEP_MAX_PAGES ? hw : DEEP_MAX_PAGES]++;
        a->r->high_water_max =
            si.high_water > a->r->high_water_max ? si.high_water : a->r->high_water_max;
    }
    return 0;
}

static int census(deep_run *r, bool hist, census_acc *a)
{
    *a = (census_acc){.r = r, .rmin = SIZE_MAX, .umin = SIZE_MAX, .hist = hist};
    if (hist)
        memset(r->hist, 0, sizeof r->hist);
    int err = lacuna_fiber_each(census_one, a);
    return err ? err : a->err;
}

/* Wake every fiber (one message each) and wait until each says it is parked again (or, for the
 * last round, join them all). Adds what the fibers found changed to r->bad. */
static int wake_all(deep_run *r, lacuna_fiber **f, size_t n, bool last)
{
    long v = 1;
    for (size_t i = 0; i < n; i++)
        if (lacuna_chan_send(wake[i], &v) != 0)
            return EPIPE;
    for (size_t i = 0; i < n; i++) {
        if (last) {
            if (lacuna_join(f[i]) != NULL)
                r->bad++;
            continue;
        }
        size_t bad;
        if (lacuna_chan_recv(done, &bad) != 0)
            return EPIPE;
        r->bad += bad;
    }
    return 0;
}

/* wake_all (not the last time), timed: per fiber microseconds and minor faults, then RSS. */
static int wake_timed(deep_run *r, lacuna_fiber **f, size_t n, double *us, double *flt,
                      long *rss_kib)
{
    long flt0 = bench_minflt();
    uint64_t t = bench_now_ns();
    int err = wake_all(r, f, n, false);
    *us = (double)(bench_now_ns() - t) / 1e3 / (double)n;
    *flt = (double)(bench_minflt() - flt0) / (double)n;
    *rss_kib = bench_rss_kib();
    return err;
}

#define FAIL(e, ...)                                                                               \
    do {                                                                                           \
        r->err = (e) ? (e) : EIO;                                                                  \
        snprintf(r->what, sizeof r->what, __VA_ARGS__);                                            \
        goto out;                                                                                  \
    } while (0)

static void *driver(void *arg)
{
    deep_run *r = arg;
    const deep_cfg cfg = cur;
    size_t n = cfg.n;
    lacuna_fiber **f = calloc(n, sizeof *f);
    if (f == NULL)
        FAIL(ENOMEM, "fiber handles");
    lacuna_fiber_opts o = {.stack_size = cfg.stack};
    long flt = bench_minflt();
    uint64_t t = bench_now_ns();
    for (size_t i = 0; i < n; i++) /* each runs until it parks: spawned by a fiber */
        if ((f[i] = lacuna_go_opts(&o, deep_fiber, (void *)i)) == NULL)
            FAIL(errno, "lacuna_go_opts, fiber %zu", i);
    if (cfg.workers > 1) /* spawned fibers may be stolen: wait until each has parked */
        for (size_t i = 0; i < n; i++) {
            lacuna_stack_info si;
            while (lacuna_fiber_stack_info(f[i], &si) == 0 && si.running)
                lacuna_yield();
        }
    r->first_us = (double)(bench_now_ns() - t) / 1e3 / (double)n;
    r->first_flt = (double)(bench_minflt() - flt) / (double)n;
    r->rss_parked_kib = bench_rss_kib();
    census_acc a;
    int err = census(r, false, &a);
    if (err)
        FAIL(err, "census before the release");
    r->used_pages_before = a.used_pages;
    r->resident_before = a.resident;

    t = bench_now_ns();
    err = lacuna_fiber_release_idle(&r->released);
    r->release_ms = (double)(bench_now_ns() - t) / 1e6;
    if (err)
        FAIL(err, "lacuna_fiber_release_idle");
    r->rss_released_kib = bench_rss_kib();
    t = bench_now_ns();
    err = census(r, true, &a);
    r->census_ms = (double)(bench_now_ns() - t) / 1e6;
    if (err)
        FAIL(err, "census after the release");
    r->fibers = a.fibers;
    r->used_pages = a.used_pages;
    r->resident = a.resident;
    r->resident_min = a.rmin;
    r->resident_max = a.rmax;
    r->used_min = a.umin;
    r->used_max = a.umax;

    if ((err = wake_timed(r, f, n, &r->resume_us, &r->resume_flt, &r->rss_resumed_kib)) != 0)
        FAIL(err, "resume");
    if ((err = wake_timed(r, f, n, &r->again_us, &r->again_flt, &r->rss_again_kib)) != 0)
        FAIL(err, "deep again");
    if ((err = wake_all(r, f, n, true)) != 0)
        FAIL(err, "the end");
out:
    free(f);
    return NULL;
}

/* One measurement, in a child process: cfg in, deep_run out. */
static void run(void *arg, void *out)
{
    const deep_cfg *cfg = arg;
    deep_run *r = out;
    cur = *cfg;
    levels = cfg->depth / DEEP_FRAME;
    if (cfg->stack == 64 * KIB) { /* the default pool: make it big enough */
        lacuna_pool_config pc = {.region_size = cfg->stack, .capacity = cfg->n + 64};
        if (lacuna_fiber_configure(&pc) != 0) {
            r->err = ENOMEM;
            snprintf(r->what, sizeof r->what, "lacuna_fiber_configure");
            return;
        }
    }
    lacuna_set_workers((unsigned)cfg->workers);
    lacuna_fiber_release_after(LACUNA_PARKED_KEEP_ALL); /* only the measured call releases */
    wake = malloc(cfg->n * sizeof *wake);
    done = lacuna_chan_make(sizeof(size_t), cfg->n);
    if (wake == NULL || done == NULL) {
        r->err = ENOMEM;
        snprintf(r->what, sizeof r->what, "channels");
        return;
    }
    for (size_t i = 0; i < cfg->n; i++)
        if ((wake[i] = lacuna_chan_make(sizeof(long), 0)) == NULL) {
            r->err = errno;
            snprintf(r->what, sizeof r->what, "lacuna_chan_make");
            return;
        }
    lacuna_fiber *d = lacuna_go(driver, r);
    if (d == NULL || lacuna_run() != 0) {
        r->err = errno ? errno : EIO;
        snprintf(r->what, sizeof r->what, "lacuna_go / lacuna_run of the driver");
    }
}

static double mib(double kib)
{
    return kib / 1024;
}

/* Go's figures from tools/go/deep.go, built once (go build) and run twice, deep and never deep,
 * printed as they come; then lacuna's RSS after the release beside Go's. Skipped, with the
 * reason, where there is no `go`. */
static void go_peer(const deep_cfg *c, bool csv, double lacuna_after_kib)
{
    const char *p = csv ? "# " : "";
    if (system("command -v go >/dev/null 2>&1") != 0) {
        printf("%sSKIP go: no `go` command on PATH (Debian: apt-get install golang-go)\n", p);
        return;
    }
    char dir[] = "/tmp/lacuna-deep-go.XXXXXX", cmd[2048];
    if (mkdtemp(dir) == NULL) {
        printf("%sSKIP go: mkdtemp: %s\n", p, strerror(errno));
        return;
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s/tools/go' && { [ -n \"${GOCACHE:-}${XDG_CACHE_HOME:-}${HOME:-}\" ] || "
             "export GOCACHE='%s/cache'; } && go build -o '%s/deep-go' deep.go 2>&1 && "
             "GOMAXPROCS=%zu '%s/deep-go' -fibers %zu -depth %zu %s 2>&1 && "
             "GOMAXPROCS=%zu '%s/deep-go' -fibers %zu -depth 0 %s 2>&1",
             LACUNA_SOURCE_DIR, dir, dir, c->workers, dir, c->n, c->depth, csv ? "-csv" : "",
             c->workers, dir, c->n, csv ? "-csv" : "");
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    char line[512], key[64];
    double gc1 = -1, flat = -1, v;
    int sections = 0;
    while (f && fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        sections += strncmp(line, csv ? "# go deep:" : "go deep:", csv ? 10 : 8) == 0;
        if (sections != 1) /* the deep run's figures; the second is the never-deep one */
            continue;
        if (csv) {
            snprintf(key, sizeof key, "go_d%zu_rss_after_gc,%%lf", c->depth);
            if (sscanf(line, key, &v) == 1)
                gc1 = v / 1024;
            snprintf(key, sizeof key, "go_d%zu_rss_after_gc_until_flat,%%lf", c->depth);
            if (sscanf(line, key, &v) == 1)
                flat = v / 1024;
        } else if (strlen(line) > 45 && sscanf(line + 44, "%lf", &v) == 1) {
            if (strncmp(line, "RSS after runtime.GC() x1", 25) == 0)
                gc1 = v;
            else if (strncmp(line, "RSS after FreeOSMemory until flat", 33) == 0)
                flat = v;
        }
    }
    int st = f ? pclose(f) : -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("%s(could not remove %s)\n", p, dir);
    if (sections == 0 || st != 0) {
        printf("%sSKIP go: building or running tools/go/deep.go failed (status %d)\n", p, st);
        return;
    }
    double l = lacuna_after_kib / 1024;
    if (gc1 > 0 && flat > 0)
        printf("%slacuna after one lacuna_fiber_release_idle: %.1f MiB = %.2fx Go's RSS after "
               "runtime.GC() x1 (%.1f MiB), %.2fx Go's after GCs until flat (%.1f MiB)\n",
               p, l, l / gc1, gc1, l / flat, flat);
}

int bench_deep_main(int argc, char **argv)
{
    deep_cfg c = {.n = 10000, .depth = 48 * KIB, .stack = 64 * KIB, .workers = 1};
    size_t runs = 3;
    bool csv = false, no_go = false;
    const cli_opt opts[] = {
        {"fibers", CLI_COUNT, &c.n, 1, 1000000, "fibers, each deep once and then parked", NULL},
        {"depth", CLI_SIZE, &c.depth, 0, LACUNA_FIBER_STACK_MAX,
         "how deep each recurses once, in 1 KiB frames (at most the stack less 8K)", NULL},
        {"stack", CLI_SIZE, &c.stack, LACUNA_FIBER_STACK_MIN, LACUNA_FIBER_STACK_MAX,
         "stack size per fiber (a size class: a power of two)", NULL},
        {"workers", CLI_COUNT, &c.workers, 1, 64, "M:N workers (Go: GOMAXPROCS)", NULL},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs of each (shallow, deep); medians reported", NULL},
        {"no-go", CLI_FLAG, &no_go, 0, 0, "skip Go's version (tools/go/deep.go)", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table (rows measure,value,unit)", NULL},
        {0}};
    cli_spec spec = {
        "lacuna-bench deep",
        "Deep once, then parked: N fibers recurse --depth once, return and park on a channel; "
        "RSS before and after lacuna_fiber_release_idle, the stack census, the cost of resuming "
        "them and of going deep again; beside Go's goroutines (tools/go/deep.go).",
        opts, NULL,
        "baseline: the RSS of the same program whose fibers never went deep (--depth 0, a child\n"
        "process of the same run), less the stack pages its census finds resident.\n"};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    lacuna_features ft;
    lacuna_features_get(&ft);
    page = ft.page_size;
    if (c.stack & (c.stack - 1))
        return cli_usage_error(&spec, "--stack %zu: must be a power of two (16K, 32K, ... 8M)",
                               c.stack);
    char dbuf[32];
    if (c.depth + 8 * KIB > c.stack)
        return cli_usage_error(&spec,
                               "--depth %s: deeper than the %zu KiB stack less 8 KiB for the "
                               "fiber's own frames and the lacuna calls it makes",
                               cli_size_str(c.depth, dbuf), c.stack >> 10);
    if (cli_check_memory(&spec, (double)c.n * (double)(c.depth + 16 * KIB),
                         "every fiber's deep pages resident before the release"))
        return CLI_FAILED;
    deep_cfg shallow_cfg = c;
    shallow_cfg.depth = 0;
    static deep_run shallow[100], deep[100];
    for (size_t i = 0; i < runs; i++) {
        deep_run *pair[2] = {&shallow[i], &deep[i]};
        const deep_cfg *cfgs[2] = {&shallow_cfg, &c};
        for (int k = 0; k < 2; k++) {
            int j = (int)(i % 2) ^ k; /* alternate which goes first */
            if (bench_in_child(run, (void *)cfgs[j], pair[j], sizeof *pair[j]) != 0) {
                fprintf(stderr, "lacuna-bench deep: the %s run died\n", j ? "deep" : "shallow");
                return CLI_FAILED;
            }
            if (pair[j]->err) {
                fprintf(stderr, "lacuna-bench deep: %s run: %s: %s\n", j ? "deep" : "shallow",
                        pair[j]->what, strerror(pair[j]->err));
                return CLI_FAILED;
            }
        }
    }
    /* Medians over the runs. */
    double v[100];
#define MED(arr, field)                                                                            \
    (__extension__({                                                                               \
        for (size_t i_ = 0; i_ < runs; i_++)                                                       \
            v[i_] = (double)(arr)[i_].field;                                                       \
        bench_median(v, (int)runs);                                                                \
    }))
    const deep_run *last = &deep[runs - 1];
    double pg_kib = (double)page / 1024;
    double s_rss = MED(shallow, rss_parked_kib);
    double s_stack = MED(shallow, resident_before) * pg_kib;
    double base = s_rss - s_stack; /* the runtime besides stacks */
    double before = MED(deep, rss_parked_kib), after = MED(deep, rss_released_kib);
    double needed = (double)last->used_pages * pg_kib;
    double resident = (double)last->resident * pg_kib;
    double ratio = after / (needed + base);
    double rel_ms = MED(deep, release_ms), rel_mib = MED(deep, released) / MIB;
    double census_ms = MED(deep, census_ms);
    double first_us = MED(deep, first_us), first_flt = MED(deep, first_flt);
    double res_us = MED(deep, resume_us), res_flt = MED(deep, resume_flt);
    double ag_us = MED(deep, again_us), ag_flt = MED(deep, again_flt);
    double resumed = MED(deep, rss_resumed_kib), again = MED(deep, rss_again_kib);
    size_t bad = 0;
    for (size_t i = 0; i < runs; i++)
        bad += deep[i].bad + shallow[i].bad;
    if (csv) {
        bench_machine(stdout, "# ");
        printf("# lacuna-bench deep --fibers %zu --depth %zu --stack %zu --workers %zu --runs %zu"
               "\nmeasure,value,unit\n",
               c.n, c.depth, c.stack, c.workers, runs);
        printf("rss_shallow_parked,%.0f,KiB\nshallow_stack_resident,%.0f,KiB\n"
               "runtime_baseline,%.0f,KiB\n",
               s_rss, s_stack, base);
        printf("rss_parked,%.0f,KiB\nrss_released,%.0f,KiB\nrelease_call,%.3f,ms\n"
               "release_reported,%.0f,KiB\ncensus_call,%.3f,ms\n",
               before, after, rel_ms, rel_mib * 1024, census_ms);
        printf("census_fibers,%zu,fibers\nneeded_pages,%.0f,KiB\nresident_after,%.0f,KiB\n"
               "resident_before,%.0f,KiB\nratio_rss_to_needed_plus_baseline,%.3f,x\n"
               "ratio_rss_to_shallow,%.3f,x\nused_min,%zu,bytes\nused_max,%zu,bytes\n"
               "high_water_max,%zu,bytes\n",
               last->fibers, needed, resident, (double)last->resident_before * pg_kib, ratio,
               after / s_rss, last->used_min, last->used_max, last->high_water_max);
        printf("first_deep,%.2f,us_per_fiber\nfirst_deep_faults,%.2f,per_fiber\n"
               "resume,%.3f,us_per_fiber\nresume_faults,%.3f,per_fiber\n"
               "rss_resumed,%.0f,KiB\ndeep_again,%.2f,us_per_fiber\n"
               "deep_again_faults,%.2f,per_fiber\nrss_deep_again,%.0f,KiB\n"
               "frames_changed,%zu,bytes\n",
               first_us, first_flt, res_us, res_flt, resumed, ag_us, ag_flt, again, bad);
        for (size_t k = 0; k <= DEEP_MAX_PAGES; k++)
            if (last->hist[k])
                printf("high_water_%zu_pages,%zu,fibers\n", k, last->hist[k]);
    } else {
        printf("lacuna-bench deep: %zu fibers each %zu KiB deep once (%zu frames of 1 KiB), then "
               "parked; %zu KiB stacks, %zu worker%s; medians of %zu runs (each a fresh child)\n",
               c.n, c.depth >> 10, c.depth / DEEP_FRAME, c.stack >> 10, c.workers,
               c.workers == 1 ? "" : "s", runs);
        bench_machine(stdout, "");
        printf("baseline (same program, fibers never deep): RSS %.1f MiB, of which stack pages "
               "%.1f MiB (census) -> runtime baseline %.1f MiB\n",
               mib(s_rss), mib(s_stack), mib(base));
        printf("%-44s %10s\n", "", "MiB");
        printf("%-44s %10.1f (census: %.1f MiB of stack pages resident)\n",
               "RSS, all parked, before the release", mib(before),
               (double)last->resident_before * pg_kib / 1024);
        printf("%-44s %10.1f in %.2f ms (it reported %.1f MiB released)\n",
               "RSS after lacuna_fiber_release_idle", mib(after), rel_ms, rel_mib);
        printf("%-44s %10.1f %zu fibers (the N and the driver): sum of used (%zu..%zu bytes "
               "a parked fiber), rounded up to pages\n",
               "needed: pages the current frames need", mib(needed), last->fibers, last->used_min,
               last->used_max);
        printf("%-44s %10.1f %zu..%zu pages per fiber\n", "resident stack pages after the release",
               mib(resident), last->resident_min, last->resident_max);
        printf("%-44s %10.3fx (target <= 1.25x)\n", "ratio RSS after / (needed + baseline)", ratio);
        printf("%-44s %10.3fx\n", "ratio RSS after / RSS of the never-deep run", after / s_rss);
        printf("high_water of the census (deepest use seen, in pages; the census took %.2f ms, "
               "%.2f us a fiber):\n",
               census_ms, census_ms * 1e3 / (double)last->fibers);
        size_t top = 0;
        for (size_t k = 0; k <= DEEP_MAX_PAGES; k++)
            top = last->hist[k] > top ? last->hist[k] : top;
        for (size_t k = 0; k <= DEEP_MAX_PAGES; k++) {
            if (last->hist[k] == 0)
                continue;
            char bar[41];
            size_t w = top ? last->hist[k] * 40 / top : 0;
            memset(bar, '#', w);
            bar[w] = '\0';
            printf("  %5zu pages (%5zu KiB) %8zu fibers %s\n", k, k * page >> 10, last->hist[k],
                   bar);
        }
        printf("per fiber:                                    us  minor faults\n");
        printf("  spawn, go deep, park (first time)  %13.2f %13.2f\n", first_us, first_flt);
        printf("  resume after the release, park     %13.3f %13.3f   (RSS then %.1f MiB)\n", res_us,
               res_flt, mib(resumed));
        printf("  go deep again, park                %13.2f %13.2f   (RSS then %.1f MiB)\n", ag_us,
               ag_flt, mib(again));
        printf("every frame and canary checked after the release and after going deep again: "
               "%s\n",
               bad ? "CHANGED" : "unchanged");
    }
    if (!no_go)
        go_peer(&c, csv, after);
    if (bad) {
        fprintf(stderr, "lacuna-bench deep: %zu bytes of live frames changed\n", bad);
        return CLI_FAILED;
    }
    return CLI_OK;
}
