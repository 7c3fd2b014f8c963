/* lacuna-bench keep: is it cheaper to keep the hot top of a released stack resident (and memset
 * it to zero, as LACUNA_ZERO requires) or to release it and take the page faults when the next
 * owner touches it? Per 64 KiB region, for 1, 2 and 4 top pages: (a) madvise(DONTNEED) of those
 * pages then rewrite them (refaults), (b) memset them then rewrite them. Median of 5 runs. */
#define _GNU_SOURCE
#include "bench.h"

#include <stdio.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGIONS 2000

static double per_region_ns(size_t pages, int use_memset)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), region = 64 * KIB;
    char *m = mmap(NULL, REGIONS * region, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    madvise(m, REGIONS * region, MADV_NOHUGEPAGE);
    size_t len = pages * pg;
    for (size_t i = 0; i < REGIONS; i++)
        memset(m + i * region + region - len, 1, len);
    uint64_t t0 = bench_now_ns();
    for (size_t i = 0; i < REGIONS; i++) {
        char *top = m + i * region + region - len;
        if (use_memset)
            memset(top, 0, len);
        else
            madvise(top, len, MADV_DONTNEED);
        for (size_t k = 0; k < pages; k++) /* the next owner touches the same pages */
            top[k * pg] = 1;
    }
    uint64_t t1 = bench_now_ns();
    munmap(m, REGIONS * region);
    return (double)(t1 - t0) / REGIONS;
}

int bench_keep_main(int argc, char **argv)
{
    bool csv = false;
    const cli_opt opts[] = {{"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL}, {0}};
    cli_spec spec = {"lacuna-bench keep",
                     "Per 64 KiB region: release its top pages and refault them, or keep them "
                     "and memset; median of 5.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bench_machine(stdout, csv ? "# " : "");
    if (csv)
        printf("# per 64 KiB region: release+refault vs keep+memset of its top pages, median of "
               "5\npages,release_refault_ns,keep_memset_ns,cheaper,release_min,release_max,"
               "keep_min,keep_max\n");
    else
        printf("per 64 KiB region, %d regions, median of 5 (min-max)\n\n%9s %24s %24s  %s\n",
               REGIONS, "top pages", "release + refault ns", "keep + memset ns", "cheaper");
    for (size_t pages = 1; pages <= 4; pages *= 2) {
        double a[5], b[5];
        for (int r = 0; r < 5; r++) {
            a[r] = per_region_ns(pages, 0);
            b[r] = per_region_ns(pages, 1);
            if (a[r] < 0 || b[r] < 0) {
                fprintf(stderr, "lacuna-bench keep: mmap failed\n");
                return CLI_FAILED;
            }
        }
        double ma = bench_median(a, 5), mb = bench_median(b, 5);
        const char *cheaper = mb < ma ? "keep+memset" : "release";
        /* bench_median sorted them: [0] is the min, [4] the max */
        if (csv) {
            printf("%zu,%.0f,%.0f,%s,%.0f,%.0f,%.0f,%.0f\n", pages, ma, mb, cheaper, a[0], a[4],
                   b[0], b[4]);
        } else {
            char ra[48], rb[48];
            snprintf(ra, sizeof ra, "%.0f (%.0f-%.0f)", ma, a[0], a[4]);
            snprintf(rb, sizeof rb, "%.0f (%.0f-%.0f)", mb, b[0], b[4]);
            printf("%9zu %24s %24s  %s\n", pages, ra, rb, cheaper);
        }
    }
    return 0;
}
