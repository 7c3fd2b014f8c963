/* lacuna-bench wipe: zero a large, sparsely resident mapping with every strategy of lacuna_wipe and
 * the table modes (manual lines, automatic, manual pages), at several residencies.
 *
 * "Residency X %" is the state at wipe time: exactly the pages of a fixed set P (X % of the range,
 * scattered at random or in clustered runs) are resident and dirty. Two times per strategy, medians
 * over --runs cycles:
 *   wipe   lacuna_wipe (or lacuna_table_wipe) alone;
 *   cycle  the wipe plus writing one byte to every page of P again, which is what a reused table
 *          pays: a strategy that releases pages is cheap to call and pays a fault per page later.
 * Every measurement starts from the prepared state, re-made outside the timing (MADV_DONTNEED the
 * range, write P again); a table's is the state its last cycle left. The six lacuna_wipe strategies
 * run interleaved in one child process per residency (see measure_wipes), each table mode in a
 * child of its own. --runlen instead measures zeroing against releasing per run length: the
 * crossover wipe.c's policy is built on. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_PCTS 32
#define MAX_RUNS 101

static const char *const strategies[] = {"memset",       "dontneed",   "remap",
                                         "mincore",      "pagemap",    "auto",
                                         "table-manual", "table-auto", "table-pages"};
#define NSTRAT 9

typedef struct wipe_cfg {
    size_t size;
    double pct;
    bool clustered;
    int runs;
    int strategy; /* index into strategies */
} wipe_cfg;

typedef struct wipe_result {
    double wipe_ms, cycle_ms, wipe_min, wipe_max, cycle_min, cycle_max;
    char chosen[16];
    int err;
} wipe_result;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* The resident set P, as sorted page indices. Same seed for every strategy of a residency. */
static uint32_t *page_set(size_t pages, double pct, bool clustered, size_t *n)
{
    unsigned char *in = calloc(pages, 1);
    uint32_t *idx = malloc(pages * sizeof *idx);
    if (in == NULL || idx == NULL)
        abort();
    rng_state = 0x2545F4914F6CDD1Dull ^ (uint64_t)(pct * 1000);
    size_t want = (size_t)((double)pages * pct / 100.0 + 0.5), have = 0;
    if (want > pages)
        want = pages;
    if (want == pages) {
        memset(in, 1, pages);
        have = pages;
    } else if (!clustered) {
        /* Exactly `want` distinct pages, uniformly at random. */
        while (have < want) {
            size_t p = rnd() % pages;
            if (!in[p]) {
                in[p] = 1;
                have++;
            }
        }
    } else {
        /* Runs of 1-128 pages (64 on average) at random places. */
        while (have < want) {
            size_t at = rnd() % pages, len = 1 + rnd() % 128;
            for (size_t p = at; p < at + len && p < pages && have < want; p++)
                if (!in[p]) {
                    in[p] = 1;
                    have++;
                }
        }
    }
    size_t k = 0;
    for (size_t p = 0; p < pages; p++)
        if (in[p])
            idx[k++] = (uint32_t)p;
    free(in);
    *n = k;
    return idx;
}

static void touch(char *base, const uint32_t *idx, size_t n, size_t pg, lacuna_table *t)
{
    for (size_t i = 0; i < n; i++) {
        char *p = base + (size_t)idx[i] * pg;
        *(volatile char *)p = 1;
        if (t)
            lacuna_table_mark(t, p, 1);
    }
}

static const lacuna_wipe_strategy fixed[] = {LACUNA_WIPE_MEMSET,  LACUNA_WIPE_DONTNEED,
                                             LACUNA_WIPE_REMAP,   LACUNA_WIPE_MINCORE,
                                             LACUNA_WIPE_PAGEMAP, LACUNA_WIPE_AUTO};

static const char *strategy_name(lacuna_wipe_strategy s)
{
    switch (s) {
    case LACUNA_WIPE_MEMSET:
        return "memset";
    case LACUNA_WIPE_DONTNEED:
        return "dontneed";
    case LACUNA_WIPE_REMAP:
        return "remap";
    case LACUNA_WIPE_MINCORE:
        return "mincore";
    case LACUNA_WIPE_PAGEMAP:
        return "pagemap";
    default:
        return "auto";
    }
}

/* Min, max and median of the wipe times w[0..n) and cycle times cy[0..n) into r (sorts both). */
static void summarize(double *w, double *cy, int n, wipe_result *r)
{
    r->wipe_min = r->wipe_max = w[0];
    r->cycle_min = r->cycle_max = cy[0];
    for (int i = 1; i < n; i++) {
        r->wipe_min = w[i] < r->wipe_min ? w[i] : r->wipe_min;
        r->wipe_max = w[i] > r->wipe_max ? w[i] : r->wipe_max;
        r->cycle_min = cy[i] < r->cycle_min ? cy[i] : r->cycle_min;
        r->cycle_max = cy[i] > r->cycle_max ? cy[i] : r->cycle_max;
    }
    r->wipe_ms = bench_median(w, n);
    r->cycle_ms = bench_median(cy, n);
}

/* The six lacuna_wipe strategies in one process over one mapping, interleaved: run k measures
 * every strategy once, starting at strategy k mod 6, so drift in the machine (other tenants, page
 * placement, cache state) lands on all of them alike and AUTO is compared with the best fixed
 * strategy under the same conditions. out: wipe_result[6]. */
static void measure_wipes(void *arg, void *out)
{
    const wipe_cfg *c = arg;
    wipe_result *res = out;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), pages = c->size / pg, n;
    uint32_t *idx = page_set(pages, c->pct, c->clustered, &n);
    char *base = mmap(NULL, c->size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        res[0].err = errno;
        return;
    }
    madvise(base, c->size, MADV_NOHUGEPAGE);
    static double w[6][MAX_RUNS], cy[6][MAX_RUNS];
    int counts[6] = {0};
    for (int run = 0; run < c->runs; run++) {
        for (int k = 0; k < 6; k++) {
            int s = (run + k) % 6;
            /* The same state before every measurement: P resident, freshly faulted and
             * written. (Leaving each strategy the state its predecessor left, a strategy
             * following REMAP or DONTNEED met fresh pages and one following a zeroing wipe old
             * ones, and that alone moved MINCORE's cycle by 15 % against AUTO's.) */
            madvise(base, c->size, MADV_DONTNEED);
            touch(base, idx, n, pg, NULL);
            uint64_t t0 = bench_now_ns();
            int err = lacuna_wipe(base, c->size, fixed[s]);
            uint64_t t1 = bench_now_ns();
            touch(base, idx, n, pg, NULL);
            uint64_t t2 = bench_now_ns();
            if (err) {
                res[s].err = err;
                return;
            }
            if (fixed[s] == LACUNA_WIPE_AUTO)
                counts[lacuna_wipe_last()]++;
            w[s][run] = (double)(t1 - t0) / 1e6;
            cy[s][run] = (double)(t2 - t0) / 1e6;
        }
    }
    for (int s = 0; s < 6; s++)
        summarize(w[s], cy[s], c->runs, &res[s]);
    int best = 0;
    for (int i = 1; i < 6; i++)
        best = counts[i] > counts[best] ? i : best;
    snprintf(res[5].chosen, sizeof res[5].chosen, "%s", strategy_name((lacuna_wipe_strategy)best));
}

/* One table mode (c->strategy 6, 7 or 8) in its own process. out: wipe_result. */
static void measure_table(void *arg, void *out)
{
    const wipe_cfg *c = arg;
    wipe_result *r = out;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), pages = c->size / pg, n;
    uint32_t *idx = page_set(pages, c->pct, c->clustered, &n);
    unsigned flags = c->strategy == 7   ? LACUNA_TABLE_AUTO
                     : c->strategy == 8 ? LACUNA_TABLE_PAGES
                                        : 0;
    lacuna_table *t;
    if ((r->err = lacuna_table_create(c->size, flags, &t)) != 0)
        return;
    char *base = lacuna_table_base(t);
    static const char *const tr[] = {"?", "manual", "written", "resident"};
    snprintf(r->chosen, sizeof r->chosen, "%s", tr[lacuna_table_tracking(t) & 3]);
    static double w[MAX_RUNS], cy[MAX_RUNS];
    touch(base, idx, n, pg, t);
    for (int run = 0; run < c->runs; run++) {
        uint64_t t0 = bench_now_ns();
        int err = lacuna_table_wipe(t);
        uint64_t t1 = bench_now_ns();
        touch(base, idx, n, pg, t);
        uint64_t t2 = bench_now_ns();
        if (err) {
            r->err = err;
            return;
        }
        w[run] = (double)(t1 - t0) / 1e6;
        cy[run] = (double)(t2 - t0) / 1e6;
    }
    summarize(w, cy, c->runs, r);
}

/* ---- --runlen: zeroing against releasing, per run length ---- */

/* One way of wiping the runs: a table (LACUNA_TABLE_PAGES zeroes the marked runs with streaming
 * stores, PAGES|RELEASE gives them back in batched process_madvise calls: the two paths a
 * table wipe chooses between per run), or plain memset / one madvise(MADV_DONTNEED) per run. */
typedef struct runlen_way {
    lacuna_table *table; /* NULL: plain, over mem */
    char *mem;
    bool release;
} runlen_way;

static void runlen_wipe(const runlen_way *w, size_t L, size_t runs, size_t pg)
{
    if (w->table) {
        if (lacuna_table_wipe(w->table) != 0)
            abort();
        return;
    }
    for (size_t r = 0; r < runs; r++) {
        char *p = w->mem + r * 2 * L * pg;
        if (w->release)
            madvise(p, L * pg, MADV_DONTNEED);
        else
            memset(p, 0, L * pg);
    }
}

/* ns per page to wipe runs of L pages every 2L pages (the first `runs` of them), and to wipe and
 * write every page of them again: out[0], out[1]. Median of 5. */
static void runlen_measure(const runlen_way *w, size_t L, size_t runs, size_t pg, double out[2])
{
    char *m = w->table ? lacuna_table_base(w->table) : w->mem;
    double wv[5], cv[5];
    for (int rep = 0; rep < 5; rep++) {
        for (size_t r = 0; r < runs; r++) {
            memset(m + r * 2 * L * pg, 1, L * pg);
            lacuna_table_mark(w->table, m + r * 2 * L * pg, L * pg); /* no-op on NULL */
        }
        uint64_t a = bench_now_ns();
        runlen_wipe(w, L, runs, pg);
        uint64_t b = bench_now_ns();
        for (size_t r = 0; r < runs; r++)
            for (size_t i = 0; i < L; i++)
                *(volatile char *)(m + (r * 2 * L + i) * pg + 8) = 2;
        uint64_t c = bench_now_ns();
        wv[rep] = (double)(b - a) / (double)(runs * L);
        cv[rep] = (double)(c - a) / (double)(runs * L);
    }
    out[0] = bench_median(wv, 5);
    out[1] = bench_median(cv, 5);
}

static void runlen_header(size_t size);

static int runlen_main(size_t size, bool csv)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), pages = size / pg;
    lacuna_table *zt, *rt;
    if (lacuna_table_create(size, LACUNA_TABLE_PAGES, &zt) != 0 ||
        lacuna_table_create(size, LACUNA_TABLE_PAGES | LACUNA_TABLE_RELEASE, &rt) != 0) {
        fprintf(stderr, "lacuna-bench wipe: lacuna_table_create failed\n");
        return 1;
    }
    char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    madvise(m, size, MADV_NOHUGEPAGE);
    if (csv) {
        bench_machine(stdout, "# ");
        printf("L,runs,zero_ns,zero_cycle_ns,release_ns,release_cycle_ns,memset_ns,"
               "memset_cycle_ns,dontneed_ns,dontneed_cycle_ns\n");
    } else {
        runlen_header(size);
    }
    cli_progress pr;
    cli_progress_start(&pr);
    for (size_t L = 1; L * 2 <= pages; L *= 2) {
        size_t runs = pages / (2 * L);
        if (runs > 32768)
            runs = 32768; /* enough for a stable median, a few ms */
        const runlen_way ways[4] = {
            {zt, NULL, false}, {rt, NULL, true}, {NULL, m, false}, {NULL, m, true}};
        double r[4][2];
        cli_progress_update(&pr, (double)L * 2 / (double)pages, "wipe --runlen: L = %zu", L);
        for (int i = 0; i < 4; i++)
            runlen_measure(&ways[i], L, runs, pg, r[i]);
        cli_progress_end(&pr);
        printf(csv ? "%zu,%zu,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f\n"
                   : "%8zu %7zu | %9.0f %9.0f %9.0f %9.0f | %9.0f %9.0f %9.0f %9.0f\n",
               L, runs, r[0][0], r[0][1], r[1][0], r[1][1], r[2][0], r[2][1], r[3][0], r[3][1]);
        fflush(stdout);
    }
    munmap(m, size);
    lacuna_table_destroy(zt);
    lacuna_table_destroy(rt);
    return 0;
}

static void runlen_header(size_t size)
{
    bench_machine(stdout, "");
    printf("zero or release, by run length: runs of L resident pages every 2L pages of a %zu MiB "
           "range;\nns per page, median of 5; cycle = wipe + writing every page of the runs "
           "again.\nlacuna: lacuna_table_wipe zeroing (streaming stores) vs releasing (batched "
           "process_madvise);\nplain: memset vs one madvise(MADV_DONTNEED) per run\n\n",
           size / MIB);
    printf("%8s %7s | %9s %9s %9s %9s | %9s %9s %9s %9s\n", "", "", "lacuna", "", "", "", "plain",
           "", "", "");
    printf("%8s %7s | %9s %9s %9s %9s | %9s %9s %9s %9s\n", "L", "runs", "zero", "z.cycle",
           "release", "r.cycle", "memset", "m.cycle", "dontneed", "d.cycle");
}

static const char *const patterns[] = {"random", "clustered", NULL};

int bench_wipe_main(int argc, char **argv)
{
    size_t size = 1ul << 30, runs = 5;
    double pcts[MAX_PCTS] = {0, 0.1, 1, 10, 30, 50, 70, 90, 100};
    int npcts = 9;
    bool csv = false, runlen = false;
    const char *resident = NULL, *pattern = "random";
    const cli_opt opts[] = {
        {"size", CLI_SIZE, &size, 1 * MIB, 1ul << 40, "the range wiped", NULL},
        {"resident", CLI_TEXT, &resident, 0, 0,
         "residencies in percent, comma-separated (default 0,0.1,1,10,30,50,70,90,100)", NULL},
        {"pattern", CLI_CHOICE, &pattern, 0, 0, "where the resident pages lie", patterns},
        {"runs", CLI_COUNT, &runs, 1, MAX_RUNS, "cycles per strategy; medians reported", NULL},
        {"runlen", CLI_FLAG, &runlen, 0, 0, "zeroing vs releasing per run length instead", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench wipe",
                     "Zero a sparsely resident range with every lacuna_wipe strategy and table "
                     "mode, per residency.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bool clustered = strcmp(pattern, "clustered") == 0;
    if (resident) {
        npcts = 0;
        char *copy = strdup(resident), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *end;
            double p = strtod(tok, &end);
            if (*end != '\0' || end == tok || !(p >= 0 && p <= 100) || npcts == MAX_PCTS) {
                rc = cli_usage_error(&spec,
                                     "--resident %s: '%s' must be a percentage from 0 to 100 "
                                     "(at most %d of them)",
                                     resident, tok, MAX_PCTS);
                free(copy);
                return rc;
            }
            pcts[npcts++] = p;
        }
        free(copy);
        if (npcts == 0)
            return cli_usage_error(&spec, "--resident '%s': no residency given", resident);
    }
    double top = 0;
    for (int k = 0; k < npcts; k++)
        top = pcts[k] > top ? pcts[k] : top;
    char a[32], what[128];
    /* the resident pages at the highest residency, plus the page-set arrays (5 bytes a page);
     * --runlen keeps half of each of its three ranges resident */
    double need = runlen ? 1.5 * (double)size : (double)size * top / 100 + (double)size / 4096 * 5;
    snprintf(what, sizeof what, "a %s range, %g %% of it resident", cli_size_str(size, a),
             runlen ? 50.0 : top);
    if ((rc = cli_check_memory(&spec, need, what)) != 0)
        return rc;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + pg - 1) & ~(pg - 1);
    if (runlen)
        return runlen_main(size, csv);
    if (csv) {
        bench_machine(stdout, "# "); /* as the other cases' CSVs: the machine in a comment */
        printf("size,resident_pct,pattern,strategy,wipe_ms,cycle_ms,wipe_min_ms,wipe_max_ms,"
               "cycle_min_ms,cycle_max_ms,chosen\n");
    } else {
        bench_machine(stdout, "");
        lacuna_features f;
        lacuna_features_get(&f);
        printf("wipe: %zu MiB, %s pattern, median of %zu cycles (cycle = wipe + rewrite the same "
               "pages); PAGEMAP_SCAN %s%s%s\n",
               size / MIB, pattern, runs, f.pagemap_scan ? "yes" : "no",
               *f.forced ? ", LACUNA_FORCE_FALLBACK=" : "", f.forced);
    }
    rc = 0;
    cli_progress pr;
    cli_progress_start(&pr);
    for (int k = 0; k < npcts; k++) {
        wipe_result res[NSTRAT];
        if (!csv)
            printf("\nresident %g %%\n%-13s %10s %10s %10s  %s\n", pcts[k], "strategy", "wipe ms",
                   "cycle ms", "vs best", "(wipe min-max) chosen");
        int best = -1;
        wipe_cfg cfg = {size, pcts[k], clustered, (int)runs, 0};
        cli_progress_update(&pr, (double)k / npcts, "wipe %g%%: lacuna_wipe", pcts[k]);
        if (bench_in_child(measure_wipes, &cfg, res, 6 * sizeof res[0]) != 0)
            for (int s = 0; s < 6; s++)
                res[s].err = res[s].err ? res[s].err : EIO;
        for (int s = 6; s < NSTRAT; s++) {
            cfg.strategy = s;
            cli_progress_update(&pr, (k + (s - 5) / 4.0) / npcts, "wipe %g%%: %s", pcts[k],
                                strategies[s]);
            if (bench_in_child(measure_table, &cfg, &res[s], sizeof res[s]) != 0 && res[s].err == 0)
                res[s].err = EIO;
        }
        for (int s = 0; s < 5; s++)
            if (res[s].err == 0 && (best < 0 || res[s].cycle_ms < res[best].cycle_ms))
                best = s;
        cli_progress_end(&pr);
        for (int s = 0; s < NSTRAT; s++) {
            wipe_result *r = &res[s];
            if (r->err) {
                rc = 1;
                if (csv)
                    printf("%zu,%g,%s,%s,,,,,,,error %d\n", size, pcts[k], pattern, strategies[s],
                           r->err);
                else
                    printf("%-13s failed: %s\n", strategies[s], strerror(r->err));
                continue;
            }
            if (csv) {
                printf("%zu,%g,%s,%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%s\n", size, pcts[k], pattern,
                       strategies[s], r->wipe_ms, r->cycle_ms, r->wipe_min, r->wipe_max,
                       r->cycle_min, r->cycle_max, s == 5 || s >= 6 ? r->chosen : "");
            } else {
                char vs[16] = "";
                if (best >= 0)
                    snprintf(vs, sizeof vs, "%.2fx", r->cycle_ms / res[best].cycle_ms);
                printf("%-13s %10.3f %10.3f %10s  (%.3f-%.3f)%s%s%s\n", strategies[s], r->wipe_ms,
                       r->cycle_ms, vs, r->wipe_min, r->wipe_max, s == 5 || s >= 6 ? " " : "",
                       s == 5 || s >= 6 ? r->chosen : "", s == best ? " <- best fixed" : "");
            }
        }
        fflush(stdout);
    }
    return rc;
}
