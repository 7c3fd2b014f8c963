/* lacuna-bench census — how deep do live stacks really go? N live regions, each touched from its
 * top down to a depth drawn from a seeded spread (most shallow, a long tail of deep ones, as
 * coroutines that once recursed), then lacuna_resident over every live region: the histogram of
 * resident pages. Then the punch a runtime would do for parked stacks (keep the top --keep pages,
 * release the rest), measured two ways, medians of 3 rounds (every round re-touches the regions):
 *   blind        lacuna_punch_many over every region;
 *   check-first  lacuna_resident per region, then lacuna_punch_many over those with pages below
 *                the kept top.
 * Also the time of the census itself (one lacuna_resident per region). */
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

int bench_census_main(int argc, char **argv)
{
    size_t n = 20000, region = 64 * KIB, keep = 2, seed = 1;
    bool csv = false;
    const cli_opt opts[] = {
        {"regions", CLI_COUNT, &n, 1, 10000000, "live regions", NULL},
        {"region", CLI_SIZE, &region, 16 * KIB, 8 * MIB, "region size", NULL},
        {"keep", CLI_COUNT, &keep, 0, 2048, "top pages a punch keeps (a parked stack's frames)",
         NULL},
        {"seed", CLI_COUNT, &seed, 0, SIZE_MAX, "seed of the depth spread", NULL},
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
