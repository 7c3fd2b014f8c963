/* lacuna-bench census — how deep do live stacks really go? N live regions, each touched from its
 * top down to a depth drawn from a seeded spread (most shallow, a long tail of deep ones, as
 * coroutines that once recursed), then lacuna_resident over every live region: the histogram of
 * resident pages. Then the punch a runtime would do for parked stacks (keep the top --keep pages,
 * release the rest), measured two ways, medians of 3 rounds (every round re-touches the regions):
 *   blind        lacuna_punch_many over every region;
 *   check-first  lacuna_resident per region, then lacuna_punch_many over those with pages below
 *                the kept top.
 * Also the time of the census itself (one lacuna_resident per region).
 * --fibers: the same over parked fibers (issue 13's census): N fibers go to a drawn depth, park;
 * histograms of resident pages now and of the high-water mark (lacuna_fiber_stack_info over
 * lacuna_fiber_each), then resident pages after lacuna_fiber_release_idle. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct census {
    lacuna_pool *pool;
    char **r;
    size_t *depth; /* pages touched, from the top */
    size_t n, pages, pg;
    lacuna_punch_req *req;
} census;

/* Depth in pages: 1 + a geometric draw (p = 1/3), capped; 1 region in 50 goes to the bottom. */
static size_t draw_depth(uint64_t *seed, size_t pages)
{
    *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t x = (uint32_t)(*seed >> 33);
    if (x % 50 == 0)
        return pages;
    size_t d = 1;
    while (d < pages && (x /= 3) % 3 == 0)
        d++;
    return d;
}

static void touch_all(census *c)
{
    for (size_t i = 0; i < c->n; i++)
        memset(c->r[i] + c->pages * c->pg - c->depth[i] * c->pg, 0x5a, c->depth[i] * c->pg);
}

/* ns per region of one census pass; fills hist (pages + 1 buckets). 0 or errno. */
static int count(census *c, size_t *hist, double *ns)
{
    memset(hist, 0, (c->pages + 1) * sizeof *hist);
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c->n; i++) {
        size_t k;
        int err = lacuna_resident(c->pool, c->r[i], &k);
        if (err)
            return err;
        hist[k <= c->pages ? k : c->pages]++;
    }
    *ns = (double)(bench_now_ns() - t0) / (double)c->n;
    return 0;
}

/* One punch round: ns per region; *punched = regions given to lacuna_punch_many. */
static int punch_round(census *c, size_t keep, bool check_first, double *ns, size_t *punched)
{
    touch_all(c);
    uint64_t t0 = bench_now_ns();
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (check_first) {
            size_t k;
            int err = lacuna_resident(c->pool, c->r[i], &k);
            if (err)
                return err;
            if (k <= keep)
                continue; /* nothing (or only the kept top) resident */
        }
        c->req[m++] = (lacuna_punch_req){c->r[i], c->r[i] + (c->pages - keep) * c->pg};
    }
    int err = lacuna_punch_many(c->pool, c->req, m);
    *ns = (double)(bench_now_ns() - t0) / (double)c->n;
    *punched = m;
    return err;
}

/* ---- --fibers: the same census over live fibers (lacuna_fiber_stack_info) ----------------- */

typedef struct fib_census {
    lacuna_chan *park; /* every fiber parks in a receive here */
    size_t pg, pages;
    size_t *resident, *high; /* histograms, pages + 1 buckets */
    size_t counted;
} fib_census;

/* Go `bytes` deep in 1 KiB frames, each written, then come back. */
static __attribute__((noinline)) unsigned fib_deep(size_t bytes)
{
    volatile unsigned char frame[1000];
    frame[0] = frame[sizeof frame - 1] = (unsigned char)bytes;
    unsigned r = bytes > 1024 ? fib_deep(bytes - 1024) : 0;
    return r + frame[0];
}

typedef struct fib_arg {
    fib_census *c;
    size_t depth; /* pages */
} fib_arg;

static void *fib_main(void *arg)
{
    fib_arg *a = arg;
    /* The drawn depth less the top page a fiber's own frames and the runtime's take anyway. */
    size_t bytes = a->depth > 1 ? (a->depth - 1) * a->c->pg : 0;
    (void)fib_deep(bytes);
    int v;
    (void)lacuna_chan_recv(a->c->park, &v);
    return NULL;
}

static int fib_count(lacuna_fiber *f, void *arg)
{
    fib_census *c = arg;
    lacuna_stack_info in;
    if (lacuna_fiber_stack_info(f, &in) != 0 || in.running)
        return 0; /* ended meanwhile, or the driver */
    size_t r = in.resident / c->pg, h = (in.high_water + c->pg - 1) / c->pg;
    c->resident[r <= c->pages ? r : c->pages]++;
    c->high[h <= c->pages ? h : c->pages]++;
    c->counted++;
    return 0;
}

static void fib_print(const fib_census *c, const char *what, const size_t *hist, bool csv)
{
    size_t top = 0;
    for (size_t k = 0; k <= c->pages; k++)
        top = hist[k] > top ? hist[k] : top;
    if (!csv)
        printf("%14s %10s %7s   (%s)\n", "pages", "fibers", "share", what);
    for (size_t k = 0; k <= c->pages; k++) {
        if (hist[k] == 0)
            continue;
        if (csv) {
            printf("%s,%zu,%zu\n", what, k, hist[k]);
            continue;
        }
        char bar[41];
        size_t w = top ? hist[k] * 40 / top : 0;
        memset(bar, '#', w);
        bar[w] = '\0';
        printf("%14zu %10zu %6.2f%% %s\n", k, hist[k], 100.0 * (double)hist[k] / (double)c->counted,
               bar);
    }
}

typedef struct fib_run {
    size_t n, seed;
    bool csv;
    int rc;
} fib_run;

static void *fib_driver(void *arg)
{
    fib_run *run = arg;
    lacuna_features f;
    lacuna_features_get(&f);
    lacuna_pool *pool = lacuna_fiber_pool();
    lacuna_stats st;
    lacuna_pool_stats(pool, &st);
    fib_census c = {.park = lacuna_chan_make(sizeof(int), 0), .pg = f.page_size};
    c.pages = st.region_size / c.pg;
    c.resident = calloc(c.pages + 1, sizeof *c.resident);
    c.high = calloc(c.pages + 1, sizeof *c.high);
    fib_arg *args = malloc(run->n * sizeof *args);
    lacuna_fiber **fs = malloc(run->n * sizeof *fs);
    if (!c.park || !c.resident || !c.high || !args || !fs) {
        run->rc = CLI_FAILED;
        return NULL;
    }
    uint64_t s = run->seed;
    for (size_t i = 0; i < run->n; i++) {
        args[i] = (fib_arg){&c, draw_depth(&s, c.pages - 2)}; /* room for the guard's margin */
        if ((fs[i] = lacuna_go(fib_main, &args[i])) == NULL) {
            fprintf(stderr, "lacuna-bench census: lacuna_go #%zu: %s\n", i, strerror(errno));
            run->rc = CLI_FAILED;
            return NULL;
        }
    }
    lacuna_sleep_ms(1); /* every fiber has run to its receive: this one was queued behind them */
    uint64_t t0 = bench_now_ns();
    (void)lacuna_fiber_each(fib_count, &c);
    double ns = (double)(bench_now_ns() - t0) / (double)(c.counted ? c.counted : 1);
    if (run->csv) {
        printf("histogram,pages,fibers\n");
    } else {
        printf("lacuna-bench census --fibers: %zu parked fibers, %zu KiB stacks, seed %zu\n",
               run->n, st.region_size >> 10, run->seed);
        bench_machine(stdout, "");
    }
    fib_print(&c, "resident now", c.resident, run->csv);
    fib_print(&c, "high water", c.high, run->csv);
    long rss0 = bench_rss_kib();
    size_t released = 0;
    uint64_t t1 = bench_now_ns();
    int err = lacuna_fiber_release_idle(&released);
    double ms = (double)(bench_now_ns() - t1) / 1e6;
    long rss1 = bench_rss_kib();
    memset(c.resident, 0, (c.pages + 1) * sizeof *c.resident);
    memset(c.high, 0, (c.pages + 1) * sizeof *c.high);
    c.counted = 0;
    (void)lacuna_fiber_each(fib_count, &c);
    fib_print(&c, "resident after lacuna_fiber_release_idle", c.resident, run->csv);
    if (!run->csv)
        printf(
            "census: %zu fibers, %.0f ns a fiber (lacuna_fiber_stack_info, %s); release: %.1f ms, "
            "%.1f MiB released, RSS %.1f -> %.1f MiB\n",
            c.counted, ns, f.pagemap_scan ? "PAGEMAP_SCAN" : "mincore", ms,
            (double)released / (1 << 20), (double)rss0 / 1024, (double)rss1 / 1024);
    if (err) {
        fprintf(stderr, "lacuna-bench census: lacuna_fiber_release_idle: %s\n", strerror(err));
        run->rc = CLI_FAILED;
    }
    lacuna_chan_close(c.park);
    for (size_t i = 0; i < run->n; i++)
        (void)lacuna_join(fs[i]);
    lacuna_chan_free(c.park);
    free(args);
    free(fs);
    free(c.resident);
    free(c.high);
    return NULL;
}

static int census_fibers(size_t n, size_t seed, bool csv)
{
    fib_run run = {n, seed, csv, CLI_OK};
    lacuna_fiber *d = lacuna_go(fib_driver, &run);
    if (d == NULL || lacuna_run() != 0) {
        fprintf(stderr, "lacuna-bench census: the fibers did not run: %s\n", strerror(errno));
        return CLI_FAILED;
    }
    return run.rc;
}

int bench_census_main(int argc, char **argv)
{
    size_t n = 20000, region = 64 * KIB, keep = 2, seed = 1;
    bool csv = false, fibers = false;
    const cli_opt opts[] = {
        {"regions", CLI_COUNT, &n, 1, 10000000, "live regions", NULL},
        {"region", CLI_SIZE, &region, 16 * KIB, 8 * MIB, "region size", NULL},
        {"keep", CLI_COUNT, &keep, 0, 2048, "top pages a punch keeps (a parked stack's frames)",
         NULL},
        {"seed", CLI_COUNT, &seed, 0, SIZE_MAX, "seed of the depth spread", NULL},
        {"fibers", CLI_FLAG, &fibers, 0, 0,
         "the census over --regions parked fibers instead (64 KiB stacks; lacuna_fiber_stack_info "
         "on each, then lacuna_fiber_release_idle)",
         NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table (rows pages,regions)", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench census",
                     "live regions touched to a spread of depths: the histogram of resident pages "
                     "over live regions (lacuna_resident), and punching them (lacuna_punch_many).",
                     opts, NULL,
                     "LACUNA_FORCE_FALLBACK=scan counts with mincore instead of PAGEMAP_SCAN.\n"};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    if (fibers) {
        if (cli_check_memory(&spec, (double)n * 64 * KIB / 4, "a quarter of every stack"))
            return CLI_FAILED;
        return census_fibers(n, seed, csv);
    }
    census c = {.n = n, .pg = 4096};
    lacuna_features f;
    lacuna_features_get(&f);
    c.pg = f.page_size;
    region = (region + c.pg - 1) / c.pg * c.pg;
    c.pages = region / c.pg;
    if (keep > c.pages)
        return cli_usage_error(&spec, "--keep %zu: more than the %zu pages of a region", keep,
                               c.pages);
    if (cli_check_memory(&spec, (double)n * (double)region / 4, "a quarter of every region"))
        return CLI_FAILED;
    lacuna_pool_config cfg = {.region_size = region, .capacity = n + 64};
    if ((errno = lacuna_pool_create(&cfg, &c.pool)) != 0) {
        fprintf(stderr, "lacuna-bench census: lacuna_pool_create: %s\n", strerror(errno));
        return CLI_FAILED;
    }
    c.r = malloc(n * sizeof *c.r);
    c.depth = malloc(n * sizeof *c.depth);
    c.req = malloc(n * sizeof *c.req);
    size_t *hist = calloc(c.pages + 1, sizeof *hist);
    if (!c.r || !c.depth || !c.req || !hist)
        return CLI_FAILED;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        if ((c.r[i] = lacuna_alloc(c.pool)) == NULL) {
            fprintf(stderr, "lacuna-bench census: lacuna_alloc #%zu: %s\n", i, strerror(errno));
            return CLI_FAILED;
        }
        c.depth[i] = draw_depth(&s, c.pages);
    }
    touch_all(&c);
    double ns_count;
    int err = count(&c, hist, &ns_count);
    if (err) {
        fprintf(stderr, "lacuna-bench census: lacuna_resident: %s\n", strerror(err));
        return CLI_FAILED;
    }
    /* The histogram must be the touched depths: lacuna_resident is checked here too. */
    size_t *want = calloc(c.pages + 1, sizeof *want);
    for (size_t i = 0; want && i < n; i++)
        want[c.depth[i]]++;
    bool exact = want && memcmp(want, hist, (c.pages + 1) * sizeof *hist) == 0;
    free(want);

    if (csv) {
        printf("resident_pages,regions\n");
        for (size_t k = 0; k <= c.pages; k++)
            if (hist[k])
                printf("%zu,%zu\n", k, hist[k]);
    } else {
        printf("lacuna-bench census: %zu live regions of %zu KiB, seed %zu\n", n, region >> 10,
               seed);
        bench_machine(stdout, "");
        printf("%14s %10s %7s\n", "resident pages", "regions", "share");
        size_t top = 0;
        for (size_t k = 0; k <= c.pages; k++)
            top = hist[k] > top ? hist[k] : top;
        for (size_t k = 0; k <= c.pages; k++) {
            if (hist[k] == 0)
                continue;
            char bar[41];
            size_t w = top ? hist[k] * 40 / top : 0;
            memset(bar, '#', w);
            bar[w] = '\0';
            printf("%14zu %10zu %6.2f%% %s\n", k, hist[k], 100.0 * (double)hist[k] / (double)n,
                   bar);
        }
        printf("histogram %s the touched depths; census: %.0f ns per region (%s)\n",
               exact ? "matches" : "DOES NOT MATCH", ns_count,
               f.pagemap_scan ? "PAGEMAP_SCAN" : "mincore");
    }
    if (!exact) {
        fprintf(stderr, "lacuna-bench census: resident counts differ from the touched depths\n");
        return CLI_FAILED;
    }
    /* Punch: blind vs check-first, alternating, medians of 3. */
    double blind[3], checked[3];
    size_t nb = 0, nc = 0;
    for (int round = 0; round < 3; round++) {
        if ((err = punch_round(&c, keep, false, &blind[round], &nb)) != 0 ||
            (err = punch_round(&c, keep, true, &checked[round], &nc)) != 0) {
            fprintf(stderr, "lacuna-bench census: punch: %s\n", strerror(err));
            return CLI_FAILED;
        }
    }
    touch_all(&c);
    long rss1 = bench_rss_kib();
    double ns;
    (void)punch_round(&c, keep, false, &ns, &nb); /* touches again: rss1 is the level */
    long rss2 = bench_rss_kib();
    double mb = bench_median(blind, 3), mc = bench_median(checked, 3);
    if (csv) {
        printf("punch,ns_per_region,regions_punched\nblind,%.0f,%zu\ncheck-first,%.0f,%zu\n", mb,
               nb, mc, nc);
    } else {
        printf("punch keeping the top %zu pages (medians of 3): blind %.0f ns/region (%zu "
               "punched), check-first %.0f ns/region (%zu punched): check-first is %.2fx blind\n",
               keep, mb, nb, mc, nc, mc / mb);
        printf("RSS with every region touched %.1f MiB, after the punch %.1f MiB\n",
               (double)rss1 / 1024, (double)rss2 / 1024);
    }
    for (size_t i = 0; i < n; i++)
        (void)lacuna_free(c.pool, c.r[i]);
    lacuna_pool_destroy(c.pool);
    free(c.r);
    free(c.depth);
    free(c.req);
    free(hist);
    return CLI_OK;
}
