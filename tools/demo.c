/* lacuna-bench demo: what `make demo` shows. Hold 100,000 guarded 64 KiB "stacks" (one page of
 * each touched, as a fresh green thread would), then free them all — the naive way (an mmap and
 * an mprotect guard per stack), with malloc (no guard), and with lacuna. Each approach runs in a
 * fresh child process so its peak RSS and VMA count are its own. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define STACKS 100000
#define STACK  (64 * KIB)

typedef struct demo_row {
    long held, vmas, pte_kib, peak_kib, after_kib, minflt;
    double alloc_ms, free_ms;
    int err;
    char mode[48];
} demo_row;

typedef enum { NAIVE, MALLOC, LACUNA } approach;

static void run(void *arg, void *out)
{
    approach a = *(approach *)arg;
    demo_row *row = out;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    static char *stk[STACKS];
    lacuna_pool *pool = NULL;
    if (a == LACUNA) {
        lacuna_pool_config c = {.region_size = STACK, .capacity = STACKS};
        if ((row->err = lacuna_pool_create(&c, &pool)) != 0)
            return;
        lacuna_stats st;
        lacuna_pool_stats(pool, &st);
        snprintf(row->mode, sizeof row->mode, "%s guards",
                 st.guard == LACUNA_GUARD_MARKER ? "marker" : "mprotect");
    }
    long flt0 = bench_minflt();
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < STACKS; i++) {
        char *s = NULL;
        if (a == NAIVE) {
            char *m = mmap(NULL, STACK + pg, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m != MAP_FAILED && mprotect(m, pg, PROT_NONE) == 0)
                s = m + pg;
            else if (m != MAP_FAILED)
                munmap(m, STACK + pg);
        } else if (a == MALLOC) {
            s = malloc(STACK);
        } else {
            s = lacuna_alloc(pool);
        }
        if (s == NULL) {
            row->err = errno;
            break;
        }
        s[STACK - 1] = 1; /* the top page: where a stack starts */
        stk[row->held++] = s;
    }
    uint64_t t1 = bench_now_ns();
    row->vmas = bench_vmas();
    row->pte_kib = bench_status_kib("VmPTE:");
    row->minflt = bench_minflt() - flt0;
    for (long i = 0; i < row->held; i++) {
        if (a == NAIVE)
            munmap(stk[i] - pg, STACK + pg);
        else if (a == MALLOC)
            free(stk[i]);
        else
            lacuna_free(pool, stk[i]);
    }
    if (a == LACUNA)
        lacuna_trim(pool);
    uint64_t t2 = bench_now_ns();
    row->alloc_ms = (double)(t1 - t0) / 1e6;
    row->free_ms = (double)(t2 - t1) / 1e6;
    row->after_kib = bench_rss_kib();
    row->peak_kib = bench_status_kib("VmHWM:");
}

int bench_demo_main(int argc, char **argv)
{
    bool csv = false;
    const cli_opt opts[] = {{"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL}, {0}};
    cli_spec spec = {"lacuna-bench demo",
                     "100,000 guarded 64 KiB stacks: the naive way, malloc and lacuna, each in a "
                     "fresh process (what `make demo` runs).",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    if ((rc = cli_check_memory(&spec, STACKS * (2.0 * pg + (STACK + pg) / 512),
                               "100000 stacks of 64 KiB, 1 page touched each")) != 0)
        return rc;
    static const char *names[] = {"naive: mmap + mprotect guard", "malloc (no guard)",
                                  "lacuna (one reservation)"};
    lacuna_features f;
    lacuna_features_get(&f);
    if (csv) {
        bench_machine(stdout, "# ");
        printf("approach,stacks,alloc_ms,free_ms,vmas,peak_rss_kib,rss_after_kib,minflt,"
               "vmpte_kib,error\n");
    } else {
        bench_machine(stdout, "");
        printf("vm.max_map_count = %zu; guard markers %s, batched release %s\n\n", f.max_map_count,
               f.guard_marker ? "yes" : "no", f.batch_release ? "yes" : "no");
        printf("Goal: %d live stacks of 64 KiB, each with a guard page below it and its top page "
               "touched;\nthen free them all. Each approach runs in a fresh process.\n\n",
               STACKS);
        printf("%-30s %8s %9s %9s %8s %10s %10s %9s %8s\n", "approach", "stacks", "alloc ms",
               "free ms", "VMAs", "peak RSS", "RSS after", "minflt", "VmPTE");
    }
    rc = 0;
    for (approach a = NAIVE; a <= LACUNA; a++) {
        demo_row r;
        if (bench_in_child(run, &a, &r, sizeof r) != 0) {
            printf(csv ? "%s,,,,,,,,,crashed\n" : "%-30s crashed\n", names[a]);
            rc = CLI_FAILED;
            continue;
        }
        if (csv) {
            printf("%s,%ld,%.1f,%.1f,%ld,%ld,%ld,%ld,%ld,%s\n", names[a], r.held, r.alloc_ms,
                   r.free_ms, r.vmas, r.peak_kib, r.after_kib, r.minflt, r.pte_kib,
                   r.err ? strerror(r.err) : "");
            continue;
        }
        printf("%-30s %8ld %9.1f %9.1f %8ld %6ld MiB %6ld MiB %9ld %4ld KiB\n", names[a], r.held,
               r.alloc_ms, r.free_ms, r.vmas, r.peak_kib / 1024, r.after_kib / 1024, r.minflt,
               r.pte_kib);
        if (r.err)
            printf("%-30s ^ stopped: %s (vm.max_map_count: 2 VMAs per guarded stack)\n", "",
                   strerror(r.err));
        else if (r.mode[0])
            printf("%-30s ^ %s; freed pages went back to the kernel\n", "", r.mode);
    }
    if (!csv)
        printf("\nRead: naive guarded stacks run out of VMAs; malloc has no guards; lacuna holds "
               "them all\nin one mapping and gives the memory back. More: lacuna-bench churn "
               "--help\n");
    return rc;
}
