/* lacuna-bench parked — a million parked fibers: N fibers alive at once, each blocked on its own
 * unbuffered channel, then all woken and joined (the shape of a server holding many idle
 * connections). Reports the time of each phase, RSS and page tables (VmPTE) while all are parked,
 * and the page-table floor: one 4 KiB page-table page maps 2 MiB of address space, so each parked
 * stack costs at least stride/512 bytes of page tables. tools/go/parked.go is Go's version; as
 * there, reading RSS and VmPTE between the phases is not timed. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static lacuna_chan **chans;

static void *parked(void *arg)
{
    long v;
    (void)lacuna_chan_recv(chans[(size_t)arg], &v);
    return NULL;
}

typedef struct {
    size_t n, stack;
    cli_progress *progress; /* spawning is about 3/4 of a run, waking and joining the rest */
    double spawn_ms, wake_ms, reads_ms;   /* reads: RSS and VmPTE between the phases, not timed */
    long rss_kib, pte_kib, rss_after_kib; /* after: all joined (lacuna gives stacks back) */
    int err;
} park_run;

static void *driver(void *arg)
{
    park_run *r = arg;
    lacuna_fiber **f = malloc(r->n * sizeof *f);
    if (f == NULL) {
        r->err = ENOMEM;
        return NULL;
    }
    lacuna_fiber_opts o = {.stack_size = r->stack};
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < r->n; i++) {
        if ((f[i] = lacuna_go_opts(&o, parked, (void *)i)) == NULL) { /* runs until it parks */
            r->err = errno;
            r->n = i;
            break;
        }
        if ((i & 65535) == 0)
            cli_progress_update(r->progress, 0.75 * (double)i / (double)r->n,
                                "parked: %zu of %zu fibers spawned", i, r->n);
    }
    uint64_t t1 = bench_now_ns();
    r->rss_kib = bench_rss_kib();
    r->pte_kib = bench_status_kib("VmPTE:");
    uint64_t t2 = bench_now_ns();
    long v = 1;
    for (size_t i = 0; i < r->n; i++)
        (void)lacuna_chan_send(chans[i], &v);
    for (size_t i = 0; i < r->n; i++) {
        (void)lacuna_join(f[i]);
        if ((i & 65535) == 0)
            cli_progress_update(r->progress, 0.8 + 0.2 * (double)i / (double)r->n,
                                "parked: %zu of %zu fibers woken and joined", i, r->n);
    }
    r->spawn_ms = (double)(t1 - t0) / 1e6;
    r->wake_ms = (double)(bench_now_ns() - t2) / 1e6;
    r->reads_ms = (double)(t2 - t1) / 1e6;
    r->rss_after_kib = bench_rss_kib();
    free(f);
    return NULL;
}

int bench_parked_main(int argc, char **argv)
{
    size_t n = 1000000, stack = 16 << 10;
    bool csv = false;
    const cli_opt opts[] = {
        {"n", CLI_COUNT, &n, 1, 10000000, "fibers parked at once", NULL},
        {"stack", CLI_SIZE, &stack, LACUNA_FIBER_STACK_MIN, LACUNA_FIBER_STACK_MAX,
         "stack size per fiber (lacuna_go_opts; a size class: a power of two)", NULL},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of text", NULL},
        {0}};
    cli_spec spec = {"lacuna-bench parked",
                     "N fibers alive at once, each blocked on its own channel, then all woken and "
                     "joined: time, RSS and page tables while parked.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    if (stack & (stack - 1)) /* a size class is a power of two: say so rather than round up */
        return cli_usage_error(&spec, "--stack %zu: must be a power of two (16K, 32K, ... 8M)",
                               stack);
    /* A parked fiber touches about one page of its stack; its channel and handle ~100 bytes. */
    if (cli_check_memory(&spec, (double)n * (4096 + 256), "a page of stack per parked fiber"))
        return CLI_FAILED;
    if (stack == 64 << 10) { /* the default pool: make it big enough */
        lacuna_pool_config c = {.region_size = stack, .capacity = n + 64};
        if (lacuna_fiber_configure(&c) != 0) {
            fprintf(stderr, "lacuna-bench parked: cannot make a pool of %zu stacks\n", n);
            return 1;
        }
    }
    lacuna_set_workers(1); /* beside Go's GOMAXPROCS=1 run (tools/bench.d/fibers.sh) */
    chans = malloc(n * sizeof *chans);
    for (size_t i = 0; chans && i < n; i++)
        if ((chans[i] = lacuna_chan_make(sizeof(long), 0)) == NULL)
            return 1;
    if (!csv) {
        printf("lacuna-bench parked: %zu fibers, %zu KiB stacks (+ a 4 KiB guard each)\n", n,
               stack >> 10);
        bench_machine(stdout, "");
        fflush(stdout);
    }
    cli_progress pr;
    cli_progress_start(&pr);
    park_run r = {.n = n, .stack = stack, .progress = &pr};
    uint64_t t0 = bench_now_ns();
    lacuna_fiber *d = lacuna_go(driver, &r);
    bool ok = d != NULL && lacuna_join(d) == NULL && r.err == 0;
    cli_progress_end(&pr);
    if (!ok) {
        fprintf(stderr, "lacuna-bench parked: failed after %zu fibers: %s\n", r.n,
                strerror(r.err ? r.err : errno));
        return 1;
    }
    double total = (double)(bench_now_ns() - t0) / 1e6 - r.reads_ms;
    double floor_kib = (double)n * (double)(stack + 4096) / 512 / 1024;
    if (csv) {
        bench_machine(stdout, "# ");
        printf("fibers,stack,spawn_ms,wake_join_ms,total_ms,rss_kib,vmpte_kib,vmpte_floor_kib,"
               "peak_rss_kib,rss_after_kib\n%zu,%zu,%.1f,%.1f,%.1f,%ld,%ld,%.0f,%ld,%ld\n",
               n, stack, r.spawn_ms, r.wake_ms, total, r.rss_kib, r.pte_kib, floor_kib,
               bench_status_kib("VmHWM:"), r.rss_after_kib);
        return 0;
    }
    printf("spawn and park: %.0f ms; wake and join: %.0f ms; total %.0f ms\n", r.spawn_ms,
           r.wake_ms, total);
    printf("while parked: RSS %.1f MiB (%.0f bytes per fiber), page tables (VmPTE) %.1f MiB "
           "(%.1fx the floor of %.1f MiB); peak RSS (VmHWM) %.1f MiB\n",
           (double)r.rss_kib / 1024, (double)r.rss_kib * 1024 / (double)n, (double)r.pte_kib / 1024,
           (double)r.pte_kib / floor_kib, floor_kib / 1024,
           (double)bench_status_kib("VmHWM:") / 1024);
    printf("all joined: RSS %.1f MiB (the stacks' pages went back to the kernel while joining)\n",
           (double)r.rss_after_kib / 1024);
    return 0;
}
