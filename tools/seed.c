/* lacuna-bench seed: the question lacuna exists to answer, settled in one table. One 64 KiB region
 * has 4 of its pages written; each row is one answer to "give these pages back". Per row:
 *   apply_us  the answer alone;  cycle_us  the answer plus writing the 4 pages again (what a
 *             reused stack pays);  rss_drop  did the process RSS fall by the 4 pages;
 *   shmem_drop  (shared rows) did the shared pages themselves go (the memfd's allocated blocks,
 *             exact where the system-wide Shmem counter is noisy);  refaults  minor faults when the
 * pages are written again;  zero  did the old bytes read back as zero;  vmas  VMAs added while
 * applied. Medians of 5 runs of 500 cycles, each row in a fresh child process. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define REGION (64 * KIB)
#define PAGES  4
#define CYCLES 500

typedef enum {
    R_MUNMAP,
    R_FIXED,
    R_MPROTECT,
    R_DONTNEED,
    R_FREE,
    R_FREE_PAGEOUT,
    R_REMOVE_SHARED,
    R_DONTNEED_SHARED,
    R_MEMSET,
    R_MINCORE,
    R_TABLE,
    R_LACUNA,
    R_COUNT
} row_id;

static const struct {
    const char *name, *proves;
} rows[R_COUNT] = {
    {"munmap+mmap", "gives pages back; a syscall pair per region and a new address"},
    {"mmap(MAP_FIXED)", "atomic zero-fill in place; takes the mmap write lock"},
    {"mprotect(NONE)+RW", "protection is not release: pages and data stay"},
    {"MADV_DONTNEED", "pages gone now and refault as zero: the release lacuna uses"},
    {"MADV_FREE", "no pressure: RSS and old data stay; reuse costs no fault"},
    {"MADV_FREE+PAGEOUT", "under pressure (MADV_PAGEOUT) lazily freed pages do go"},
    {"MADV_REMOVE shared", "on shmem/memfd the hole punch frees the shared pages"},
    {"MADV_DONTNEED shared", "on shmem only unmaps: the shared pages and old data stay"},
    {"memset", "zeroes but keeps every page: RSS never falls"},
    {"mincore+memset", "zeroes only resident pages: a syscall; RSS stays"},
    {"page table+memset", "zeroes pages the program marked: no syscall; RSS stays"},
    {"lacuna_free (no cache)", "lacuna's release path: one madvise; guard and slot kept"},
};

typedef struct seed_result {
    double apply_us, cycle_us;
    double apply_min, apply_max, cycle_min, cycle_max;
    long rss_drop_kib, shmem_drop_kib, refaults, vmas;
    int zero;
} seed_result;

typedef struct seed_ctx {
    row_id row;
    char *r;
    int fd;
    size_t pg;
    lacuna_pool *pool;
    unsigned char touched[REGION / 4096];
} seed_ctx;

static void write_pages(seed_ctx *c)
{
    for (size_t k = 0; k < PAGES; k++) {
        memset(c->r + REGION - (k + 1) * c->pg, 0x5A, 64);
        c->touched[REGION / c->pg - 1 - k] = 1;
    }
}

static int shared(row_id r)
{
    return r == R_REMOVE_SHARED || r == R_DONTNEED_SHARED;
}

static char *map_region(seed_ctx *c)
{
    if (shared(c->row))
        return mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
    if (c->row == R_MPROTECT || c->row == R_FIXED) { /* the middle of three, as inside a pool */
        char *m =
            mmap(NULL, 3 * REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m == MAP_FAILED ? m : m + REGION;
    }
    return mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* Apply the row's answer to c->r. */
static void apply(seed_ctx *c)
{
    char *r = c->r;
    switch (c->row) {
    case R_MUNMAP:
        munmap(r, REGION);
        c->r = map_region(c);
        break;
    case R_FIXED:
        mmap(r, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        break;
    case R_MPROTECT:
        mprotect(r, REGION, PROT_NONE);
        mprotect(r, REGION, PROT_READ | PROT_WRITE);
        break;
    case R_DONTNEED:
    case R_DONTNEED_SHARED:
        madvise(r, REGION, MADV_DONTNEED);
        break;
    case R_FREE:
        madvise(r, REGION, MADV_FREE);
        break;
    case R_FREE_PAGEOUT:
        madvise(r, REGION, MADV_FREE);
        madvise(r, REGION, MADV_PAGEOUT); /* the pressure: reclaim this range now */
        break;
    case R_REMOVE_SHARED:
        madvise(r, REGION, MADV_REMOVE);
        break;
    case R_MEMSET:
        memset(r, 0, REGION);
        break;
    case R_MINCORE: {
        unsigned char vec[REGION / 4096];
        mincore(r, REGION, vec);
        for (size_t i = 0; i < REGION / c->pg; i++)
            if (vec[i] & 1)
                memset(r + i * c->pg, 0, c->pg);
        break;
    }
    case R_TABLE:
        for (size_t i = 0; i < REGION / c->pg; i++)
            if (c->touched[i]) {
                memset(r + i * c->pg, 0, c->pg);
                c->touched[i] = 0;
            }
        break;
    case R_LACUNA:
        lacuna_free(c->pool, r);
        c->r = lacuna_alloc(c->pool);
        break;
    case R_COUNT:
        break;
    }
}

static long memfd_kib(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 ? (long)st.st_blocks / 2 : 0;
}

static void seed_child(void *arg, void *out)
{
    seed_ctx c = {.row = *(row_id *)arg, .pg = (size_t)sysconf(_SC_PAGESIZE), .fd = -1};
    seed_result *res = out;
    if (shared(c.row)) {
        c.fd = memfd_create("lacuna-seed", MFD_CLOEXEC);
        if (c.fd < 0 || ftruncate(c.fd, REGION) != 0)
            return;
    }
    if (c.row == R_LACUNA) {
        lacuna_pool_config pc = {.region_size = REGION, .capacity = 4, .cache = LACUNA_CACHE_NONE};
        if (lacuna_pool_create(&pc, &c.pool) != 0)
            return;
        c.r = lacuna_alloc(c.pool);
    } else {
        c.r = map_region(&c);
        if (c.row != R_MPROTECT && c.row != R_FIXED)
            madvise(c.r, REGION, MADV_NOHUGEPAGE);
    }
    /* effects, measured once */
    write_pages(&c);
    (void)bench_rss_kib(); /* warm stdio's buffers so the readings below allocate nothing */
    long rss0 = bench_rss_kib(), shm0 = memfd_kib(c.fd), vma0 = bench_vmas();
    if (c.row == R_MPROTECT) { /* while protected: inside one mapping that is the split */
        mprotect(c.r, REGION, PROT_NONE);
        res->vmas = bench_vmas() - vma0;
        mprotect(c.r, REGION, PROT_READ | PROT_WRITE);
    }
    apply(&c);
    res->rss_drop_kib = rss0 - bench_rss_kib();
    res->shmem_drop_kib = shm0 - memfd_kib(c.fd);
    if (c.row != R_MPROTECT)
        res->vmas = bench_vmas() - vma0;
    res->zero = 1;
    for (size_t k = 0; k < PAGES; k++) /* reading may fault a page in: counted separately */
        res->zero &= c.r[REGION - (k + 1) * c.pg] == 0;
    write_pages(&c);
    apply(&c);
    long f0 = bench_minflt();
    write_pages(&c);
    res->refaults = bench_minflt() - f0;

    /* times */
    double apply_t[5], cycle_t[5];
    for (int run = 0; run < 5; run++) {
        uint64_t a = 0, t0 = bench_now_ns();
        for (int i = 0; i < CYCLES; i++) {
            write_pages(&c);
            uint64_t s = bench_now_ns();
            apply(&c);
            a += bench_now_ns() - s;
        }
        uint64_t t1 = bench_now_ns();
        /* cycle = apply + the rewrite that follows it: total minus nothing (writes included) */
        apply_t[run] = (double)a / CYCLES / 1000;
        cycle_t[run] = (double)(t1 - t0) / CYCLES / 1000;
    }
    res->apply_us = bench_median(apply_t, 5); /* sorts: [0] is the min, [4] the max */
    res->cycle_us = bench_median(cycle_t, 5);
    res->apply_min = apply_t[0], res->apply_max = apply_t[4];
    res->cycle_min = cycle_t[0], res->cycle_max = cycle_t[4];
}

int bench_seed_main(int argc, char **argv)
{
    bool csv = false;
    const cli_opt opts[] = {{"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", NULL}, {0}};
    cli_spec spec = {"lacuna-bench seed",
                     "Every answer to 'give these pages back' applied to one 64 KiB region with 4 "
                     "pages written.",
                     opts, NULL, NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    bench_machine(stdout, csv ? "# " : "");
    printf("%sone 64 KiB region, %d pages written, each answer applied; medians of 5 x %d "
           "cycles; cycle = apply + rewrite the %d pages\n",
           csv ? "# " : "", PAGES, CYCLES, PAGES);
    if (csv)
        printf("answer,apply_us,cycle_us,rss_drop_kib,shmem_drop_kib,refaults,zero,vmas_added,"
               "proves,apply_min,apply_max,cycle_min,cycle_max\n");
    else
        printf("\n%-22s %8s %8s %9s %11s %8s %5s %5s  %s\n", "answer", "apply µs", "cycle µs",
               "RSS drop", "shmem freed", "refaults", "zero", "VMAs+", "what it proves");
    cli_progress pr;
    cli_progress_start(&pr);
    for (row_id r = 0; r < R_COUNT; r++) {
        cli_progress_update(&pr, (double)r / R_COUNT, "seed: %s", rows[r].name);
        seed_result res;
        if (bench_in_child(seed_child, &r, &res, sizeof res) != 0) {
            cli_progress_end(&pr);
            printf(csv ? "%s,failed,,,,,,,\n" : "%-22s failed\n", rows[r].name);
            rc = CLI_FAILED;
            continue;
        }
        cli_progress_end(&pr);
        if (csv)
            printf("%s,%.2f,%.2f,%ld,%ld,%ld,%s,%ld,%s,%.2f,%.2f,%.2f,%.2f\n", rows[r].name,
                   res.apply_us, res.cycle_us, res.rss_drop_kib, shared(r) ? res.shmem_drop_kib : 0,
                   res.refaults, res.zero ? "yes" : "no", res.vmas, rows[r].proves, res.apply_min,
                   res.apply_max, res.cycle_min, res.cycle_max);
        else
            printf("%-22s %8.2f %8.2f %5ld KiB %7ld KiB %8ld %5s %5ld  %s\n", rows[r].name,
                   res.apply_us, res.cycle_us, res.rss_drop_kib, shared(r) ? res.shmem_drop_kib : 0,
                   res.refaults, res.zero ? "yes" : "no", res.vmas, rows[r].proves);
        fflush(stdout);
    }
    cli_progress_end(&pr);
    return rc < 0 ? 0 : rc;
}
