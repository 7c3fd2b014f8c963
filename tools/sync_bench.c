/* lacuna-bench sync: the cost of <lacuna/sync.h>'s mutex; lacuna-bench select: the cost of a
 * select.
 *
 * uncontended — one fiber (one worker) locks and unlocks a mutex nobody else wants, n times:
 * ns per lock+unlock pair (one compare-and-swap each way); also from thread context.
 * contended — 2 workers x 2 fibers, each taking one mutex n times around a short critical
 * section (two writes to a shared counter): ns per lock+unlock (total time / total locks), and
 * the same loop in Go (tools/go/mutex.go, sync.Mutex, GOMAXPROCS=2) in the same run when a `go`
 * command is on PATH (Debian: golang-go); otherwise a line says why it was skipped.
 *
 * select — one fiber (one worker) takes n elements from a channel holding them (buffered: no
 * wait, no other fiber), first by lacuna_chan_recv, then by lacuna_select over 4 receive cases of
 * which only that channel's is ready: ns per operation each, and their ratio (issue 11's target:
 * a select at most 2x a receive).
 */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <time.h>

static lacuna_mutex mu;
static volatile long shared; /* under mu */
static long loop_n;

static void lock_loop(long n)
{
    for (long i = 0; i < n; i++) {
        lacuna_mutex_lock(&mu);
        shared++;
        shared ^= i;
        lacuna_mutex_unlock(&mu);
    }
}

static void *lock_fiber(void *arg)
{
    (void)arg;
    lock_loop(loop_n);
    return NULL;
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ns per lock+unlock: `fibers` fibers on `workers` workers (0 fibers: thread context); into *busy
 * (NULL: not wanted) CPU time over wall time: how many workers were busy at once. */
static double run_once(unsigned workers, int fibers, long n, double *busy)
{
    loop_n = n;
    uint64_t c0 = process_cpu_ns();
    uint64_t t0 = bench_now_ns();
    if (fibers == 0) {
        lock_loop(n);
    } else {
        lacuna_set_workers(workers);
        for (int i = 0; i < fibers; i++)
            lacuna_detach(lacuna_go(lock_fiber, NULL));
        lacuna_run();
    }
    uint64_t wall = bench_now_ns() - t0;
    if (busy)
        *busy = (double)(process_cpu_ns() - c0) / (double)wall;
    return (double)wall / ((double)n * (fibers ? fibers : 1));
}

/* Go's side of a round: tools/go/mutex.go (built once by bench_go_build), run right after
 * lacuna's contended run. */
typedef struct go_mutex {
    double ns, busy; /* ns per lock+unlock; CPU time over wall time */
} go_mutex;

static void go_mutex_line(const char *text, void *ctx)
{
    go_mutex *g = ctx;
    if (sscanf(text, "go_mutex_contended_ns %lf", &g->ns) != 1)
        (void)sscanf(text, "go_mutex_cpu_per_wall %lf", &g->busy);
}

/* One run of Go's loop (ns per lock+unlock, and *busy), or a negative value. */
static double go_contended(const char *dir, long n, double *busy)
{
    char count[32];
    snprintf(count, sizeof count, "%ld", n);
    const char *args[] = {"-n", count, NULL};
    go_mutex g = {-1, -1};
    if (bench_go_run(dir, "mutex", args, 2, go_mutex_line, &g) < 0)
        return -1;
    *busy = g.busy;
    return g.ns;
}

/* CPU time over wall time at which a contended run counts as spread over both cores. */
#define SPREAD 1.3

/* The rounds of one kind (by where each side ran), with their ratios. */
typedef struct kind {
    const char *what, *csv; /* in the table; in a CSV measure's name */
    double ratio[100];
    size_t n;
} kind;

int bench_sync_main(int argc, char **argv)
{
    size_t n = 20000000, cn = 2000000, runs = 5;
    bool csv = false, no_go = false;
    const cli_opt opts[] = {
        {"n", CLI_COUNT, &n, 1, 100000000000ull, "uncontended lock+unlock pairs per run", NULL},
        {"contended", CLI_COUNT, &cn, 1, 100000000000ull, "locks per fiber, contended", NULL},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs; the median is reported", NULL},
        {"no-go", CLI_FLAG, &no_go, 0, 0, "skip Go's sync.Mutex", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench sync",
                     "ns per lacuna_mutex lock+unlock: uncontended (a fiber; thread context) and "
                     "contended (2 workers x 2 fibers, short critical section), beside Go's "
                     "sync.Mutex (tools/go/mutex.go) run in every round, before lacuna's "
                     "contended run in odd rounds and after it in even ones.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bench_machine(stdout, csv ? "# " : "");
    char dirbuf[PATH_MAX];
    const char *go = no_go ? NULL : bench_go_build("mutex", dirbuf, sizeof dirbuf, csv ? "# " : "");
    double un[100], th[100], ct[100], gt[100], ratio[100], busy[100], gbusy[100];
    kind kinds[3] = {{"both on one core at a time", "both_one_core", {0}, 0},
                     {"lacuna on one core, Go on both", "go_both_cores", {0}, 0},
                     {"lacuna on both cores", "lacuna_both_cores", {0}, 0}};
    size_t gruns = 0;
    run_once(1, 1, (long)n / 10, NULL); /* warm-up: the pool, the stacks, the scheduler */
    for (size_t r = 0; r < runs; r++) {
        un[r] = run_once(1, 1, (long)n, NULL);
        th[r] = run_once(0, 0, (long)n, NULL);
        /* Alternate which side goes first: the later one may find the host's pages warm. */
        double gb_r = -1, g = go && r % 2 ? go_contended(go, (long)cn, &gb_r) : -1;
        ct[r] = run_once(2, 4, (long)cn, &busy[r]);
        if (go && r % 2 == 0)
            g = go_contended(go, (long)cn, &gb_r);
        if (g >= 0) {
            ratio[gruns] = g / ct[r]; /* lacuna's throughput over Go's, this round */
            kind *k = &kinds[busy[r] >= SPREAD ? 2 : gb_r >= SPREAD ? 1 : 0];
            k->ratio[k->n++] = ratio[gruns];
            gbusy[gruns] = gb_r;
            gt[gruns++] = g;
        }
    }
    if (go) {
        bench_go_clean(go);
        if (gruns < runs)
            printf("%sgo: %zu of %zu runs gave no figure\n", csv ? "# " : "", runs - gruns, runs);
    }
    double u = bench_median(un, (int)runs), t = bench_median(th, (int)runs),
           c = bench_median(ct, (int)runs), g = gruns ? bench_median(gt, (int)gruns) : -1,
           rt = gruns ? bench_median(ratio, (int)gruns) : -1, b = bench_median(busy, (int)runs),
           gb = gruns ? bench_median(gbusy, (int)gruns) : -1;
    if (csv) {
        printf("measure,value,n,runs\n");
        printf("uncontended_fiber_ns,%.2f,%zu,%zu\nuncontended_thread_ns,%.2f,%zu,%zu\n", u, n,
               runs, t, n, runs);
        printf("contended_2x2_ns,%.2f,%zu,%zu\ncontended_cpu_per_wall,%.2f,%zu,%zu\n", c, cn, runs,
               b, cn, runs);
        if (g >= 0)
            printf("go_contended_2x2_ns,%.2f,%zu,%zu\ngo_cpu_per_wall,%.2f,%zu,%zu\n"
                   "throughput_vs_go,%.2f,%zu,%zu\n",
                   g, cn, gruns, gb, cn, gruns, rt, cn, gruns);
        for (int k = 0; k < 3; k++)
            if (kinds[k].n)
                printf("throughput_vs_go_%s,%.2f,%zu,%zu\n", kinds[k].csv,
                       bench_median(kinds[k].ratio, (int)kinds[k].n), cn, kinds[k].n);
        return 0;
    }
    printf("uncontended lock+unlock, in a fiber:      %.2f ns (median of %zu)\n", u, runs);
    printf("uncontended lock+unlock, thread context:  %.2f ns\n", t);
    printf("contended, 2 workers x 2 fibers:          %.2f ns per lock+unlock (%.1f M/s)\n", c,
           1e3 / c);
    printf(
        "  CPU time / wall time of those runs:     %.2f (2: both workers busy throughout; 1: one "
        "at a time)\n",
        b);
    if (g < 0)
        return 0;
    printf("Go sync.Mutex, GOMAXPROCS=2 x 2 goroutines each: %.2f ns (%.1f M/s; median of %zu, "
           "one run per round)\n"
           "  CPU time / wall time of Go's runs:      %.2f\n"
           "lacuna/Go throughput (median of per-round ratios): %.2fx (target >= 1x)\n",
           g, 1e3 / g, gruns, gb, rt);
    /* The rounds by where each side ran (CPU/wall under or over SPREAD): only rounds of the first
     * kind compare the same scheduling. */
    for (int k = 0; k < 3; k++)
        if (kinds[k].n)
            printf("  rounds with %s: %zu, lacuna/Go %.2fx\n", kinds[k].what, kinds[k].n,
                   bench_median(kinds[k].ratio, (int)kinds[k].n));
        else
            printf("  rounds with %s: none\n", kinds[k].what);
    return 0;
}

/* ---- select ------------------------------------------------------------------------------ */

static lacuna_chan *sel_c[4];
static size_t sel_n;
static double sel_ns[2]; /* recv, select */

static void *select_fiber(void *arg)
{
    (void)arg;
    int v = 0;
    long sum = 0;
    for (size_t i = 0; i < sel_n; i++)
        lacuna_chan_try_send(sel_c[2], &v);
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < sel_n; i++) {
        lacuna_chan_recv(sel_c[2], &v);
        sum += v;
    }
    sel_ns[0] = (double)(bench_now_ns() - t0) / (double)sel_n;
    for (size_t i = 0; i < sel_n; i++)
        lacuna_chan_try_send(sel_c[2], &v);
    int w[4];
    lacuna_select_case k[4];
    for (int j = 0; j < 4; j++)
        k[j] = (lacuna_select_case){.chan = sel_c[j], .elem = &w[j], .op = LACUNA_SELECT_RECV};
    size_t chosen;
    t0 = bench_now_ns();
    for (size_t i = 0; i < sel_n; i++) {
        lacuna_select(k, 4, LACUNA_FOREVER, &chosen);
        sum += w[chosen];
    }
    sel_ns[1] = (double)(bench_now_ns() - t0) / (double)sel_n;
    return (void *)sum;
}

int bench_select_main(int argc, char **argv)
{
    size_t n = 1000000, runs = 5;
    bool csv = false;
    const cli_opt opts[] = {
        {"n", CLI_COUNT, &n, 1, 100000000, "operations per run (elements buffered at once)", NULL},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs; the median is reported", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench select",
                     "ns per lacuna_select over 4 receive cases with one ready, beside ns per "
                     "lacuna_chan_recv from the same channel (one fiber, one worker, no waits).",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bench_machine(stdout, csv ? "# " : "");
    for (int j = 0; j < 4; j++)
        if ((sel_c[j] = lacuna_chan_make(sizeof(int), j == 2 ? n : 1)) == NULL) {
            fprintf(stderr, "lacuna-bench select: no memory for %zu elements\n", n);
            return 1;
        }
    lacuna_set_workers(1);
    double rv[100], sv[100], ratio[100];
    sel_n = n / 10 ? n / 10 : 1; /* warm-up */
    lacuna_detach(lacuna_go(select_fiber, NULL));
    lacuna_run();
    sel_n = n;
    for (size_t r = 0; r < runs; r++) {
        lacuna_detach(lacuna_go(select_fiber, NULL));
        lacuna_run();
        rv[r] = sel_ns[0];
        sv[r] = sel_ns[1];
        ratio[r] = sel_ns[1] / sel_ns[0];
    }
    double recv = bench_median(rv, (int)runs), sel = bench_median(sv, (int)runs),
           q = bench_median(ratio, (int)runs);
    if (csv) {
        printf("measure,ns,n,runs\nrecv,%.2f,%zu,%zu\nselect4_one_ready,%.2f,%zu,%zu\n", recv, n,
               runs, sel, n, runs);
        printf("ratio,%.3f,%zu,%zu\n", q, n, runs);
    } else {
        printf("lacuna_chan_recv, element ready:            %.2f ns (median of %zu)\n", recv, runs);
        printf("lacuna_select, 4 receive cases, one ready:  %.2f ns\n", sel);
        printf("select / recv (median of per-run ratios):   %.2fx (target <= 2x)\n", q);
    }
    for (int j = 0; j < 4; j++)
        lacuna_chan_free(sel_c[j]);
    return 0;
}
