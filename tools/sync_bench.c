/* lacuna-bench sync: the cost of <lacuna/sync.h>'s mutex.
 *
 * uncontended — one fiber (one worker) locks and unlocks a mutex nobody else wants, n times:
 * ns per lock+unlock pair (one compare-and-swap each way); also from thread context.
 * contended — 2 workers x 2 fibers, each taking one mutex n times around a short critical
 * section (two writes to a shared counter): ns per lock+unlock (total time / total locks), and
 * the same loop in Go (tools/go/mutex.go, sync.Mutex, GOMAXPROCS=2) in the same run when a `go`
 * command is on PATH (Debian: golang-go); otherwise a line says why it was skipped.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ns per lock+unlock: `fibers` fibers on `workers` workers (0 fibers: thread context). */
static double run_once(unsigned workers, int fibers, long n)
{
    loop_n = n;
    uint64_t t0 = bench_now_ns();
    if (fibers == 0) {
        lock_loop(n);
    } else {
        lacuna_set_workers(workers);
        for (int i = 0; i < fibers; i++)
            lacuna_detach(lacuna_go(lock_fiber, NULL));
        lacuna_run();
    }
    return (double)(bench_now_ns() - t0) / ((double)n * (fibers ? fibers : 1));
}

/* Go's figure from tools/go/mutex.go, or a negative value (reason printed). */
static double go_contended(long n, bool csv)
{
    if (system("command -v go >/dev/null 2>&1") != 0) {
        printf("%sgo: skipped: no `go` command on PATH (Debian: apt-get install golang-go)\n",
               csv ? "# " : "");
        return -1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s/tools/go' && go run mutex.go -n %ld 2>&1", LACUNA_SOURCE_DIR,
             n);
    FILE *p = popen(cmd, "r");
    double ns = -1;
    char line[512];
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "go_mutex_contended_ns %lf", &ns) != 1 && !csv)
            printf("go: %s", line);
    if (p)
        pclose(p);
    if (ns < 0)
        printf("%sgo: skipped: `go run tools/go/mutex.go` gave no figure\n", csv ? "# " : "");
    return ns;
}

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
                     "sync.Mutex (tools/go/mutex.go) in the same run.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bench_machine(stdout, csv ? "# " : "");
    double un[100], th[100], ct[100];
    run_once(1, 1, (long)n / 10); /* warm-up: the pool, the stacks, the scheduler */
    for (size_t r = 0; r < runs; r++) {
        un[r] = run_once(1, 1, (long)n);
        th[r] = run_once(0, 0, (long)n);
        ct[r] = run_once(2, 4, (long)cn);
    }
    double u = bench_median(un, (int)runs), t = bench_median(th, (int)runs),
           c = bench_median(ct, (int)runs);
    double g = no_go ? -1 : go_contended((long)cn, csv);
    if (csv) {
        printf("measure,ns,n,runs\n");
        printf("uncontended_fiber,%.2f,%zu,%zu\nuncontended_thread,%.2f,%zu,%zu\n", u, n, runs, t,
               n, runs);
        printf("contended_2x2,%.2f,%zu,%zu\n", c, cn, runs);
        if (g >= 0)
            printf("go_contended_2x2,%.2f,%zu,1\n", g, cn);
        return 0;
    }
    printf("uncontended lock+unlock, in a fiber:      %.2f ns (median of %zu)\n", u, runs);
    printf("uncontended lock+unlock, thread context:  %.2f ns\n", t);
    printf("contended, 2 workers x 2 fibers:          %.2f ns per lock+unlock (%.1f M/s)\n", c,
           1e3 / c);
    if (g >= 0)
        printf("Go sync.Mutex, GOMAXPROCS=2 x 2 goroutines each: %.2f ns (%.1f M/s); lacuna/Go "
               "throughput %.2fx\n",
               g, 1e3 / g, g / c);
    return 0;
}
