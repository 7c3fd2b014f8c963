/* lacuna_table: both tracking modes zero exactly what was written (read back, and counted), keep
 * working over thousands of cycles, fall back cleanly, and a shared table is wiped by any process
 * with its shmem pages really gone. */
#define _GNU_SOURCE
#include "internal.h"
#include "lacuna.h"
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t pgsz(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Write one byte somewhere in n distinct random pages, marking each; returns pages written. The
 * `seen` array (one byte per page) keeps them distinct. */
static size_t scribble(lacuna_table *t, size_t n, unsigned char *seen)
{
    char *base = lacuna_table_base(t);
    size_t pages = lacuna_table_size(t) / pgsz();
    memset(seen, 0, pages);
    size_t done = 0;
    while (done < n) {
        size_t p = next_rand() % pages;
        if (seen[p])
            continue;
        seen[p] = 1;
        size_t off = p * pgsz() + next_rand() % (pgsz() - 8);
        base[off] = (char)(1 + next_rand() % 255);
        lacuna_table_mark(t, base + off, 1);
        done++;
    }
    return done;
}

static lacuna_table *make(size_t bytes, unsigned flags)
{
    lacuna_table *t = NULL;
    CHECK_EQ(lacuna_table_create(bytes, flags, &t), 0);
    CHECK(t != NULL);
    CHECK(lacuna_table_base(t) != NULL);
    CHECK_EQ(lacuna_table_size(t), bytes);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    CHECK_EQ(madvise(lacuna_table_base(t), bytes, MADV_DONTNEED), 0); /* drop the zero-page reads */
    return t;
}

TEST(create_bad_input)
{
    lacuna_table *t = (lacuna_table *)0x1;
    CHECK_EQ(lacuna_table_create(4096, 0, NULL), EINVAL);
    CHECK_EQ(lacuna_table_create(0, 0, &t), EINVAL);
    CHECK_EQ(lacuna_table_create(SIZE_MAX, 0, &t), EINVAL);
    CHECK_EQ(lacuna_table_create(4096, 64, &t), EINVAL);
    CHECK_EQ(lacuna_table_create(4096, 8, &t), EINVAL); /* retired: line tracking is the default */
    CHECK(t == (lacuna_table *)0x1);
    CHECK_EQ(lacuna_table_wipe(NULL), EINVAL);
    CHECK(lacuna_table_base(NULL) == NULL);
    CHECK_EQ(lacuna_table_size(NULL), 0);
    CHECK_EQ(lacuna_table_tracking(NULL), 0);
    lacuna_table_mark(NULL, &t, 1);
    lacuna_table_destroy(NULL);
    /* Rounded up to the page size. */
    CHECK_EQ(lacuna_table_create(1, 0, &t), 0);
    CHECK_EQ(lacuna_table_size(t), pgsz());
    lacuna_table_destroy(t);
}

/* A manual table zeroes what was marked: with line masks (the default) the marked lines, with
 * LACUNA_TABLE_PAGES the marked pages. `unit` is what a one-byte mark costs. */
static void manual_exact(unsigned flags)
{
    size_t bytes = 64u << 20, unit = (flags & LACUNA_TABLE_PAGES) ? pgsz() : pgsz() / 64;
    lacuna_table *t = make(bytes, flags);
    CHECK_EQ(lacuna_table_tracking(t), LACUNA_TRACK_MANUAL);
    unsigned char *seen = malloc(bytes / pgsz());
    size_t n = scribble(t, 1000, seen);
    CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), n);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), n * unit);
    /* memset: the written pages stay resident, no other page was touched. */
    CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), n);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    /* Nothing marked since: nothing to do. */
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 0);
    /* Marks outside the table, of length 0, and straddling the end are safe. */
    char *base = lacuna_table_base(t);
    lacuna_table_mark(t, base - 1, 1);
    lacuna_table_mark(t, base + bytes, 4096);
    lacuna_table_mark(t, base, 0);
    base[bytes - 1] = 9;
    lacuna_table_mark(t, base + bytes - 1, 1u << 20);
    /* A mark spanning pages marks each one (the last line of one, the first of the next). */
    memset(base + 10 * pgsz() - 4, 1, 8);
    lacuna_table_mark(t, base + 10 * pgsz() - 4, 8);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 3 * unit);
    CHECK(lt_all_zero(base, bytes));
    free(seen);
    lacuna_table_destroy(t);
}

TEST(manual_zeroes_exactly_the_marked_lines)
{
    manual_exact(0);
}

TEST(manual_pages_zeroes_exactly_the_marked_pages)
{
    manual_exact(LACUNA_TABLE_PAGES);
}

TEST(release_flag_gives_memory_back)
{
    size_t bytes = 16u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_RELEASE);
    unsigned char *seen = malloc(bytes / pgsz());
    size_t n = scribble(t, 500, seen);
    CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), n);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), n * pgsz());
    CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), 0);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    free(seen);
    lacuna_table_destroy(t);
}

static void auto_mode(void)
{
    size_t bytes = 64u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_AUTO);
    lacuna_tracking tr = lacuna_table_tracking(t);
    CHECK(tr == LACUNA_TRACK_WRITTEN || tr == LACUNA_TRACK_RESIDENT);
    lacuna_features f;
    lacuna_features_get(&f);
    if (strstr(f.forced, "uffd") || strstr(f.forced, "all"))
        CHECK_EQ(tr, LACUNA_TRACK_RESIDENT);
    unsigned char *seen = malloc(bytes / pgsz());
    for (int round = 0; round < 3; round++) {
        size_t n = scribble(t, 1000, seen);
        CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), n);
        CHECK_EQ(lacuna_table_wipe(t), 0);
        CHECK_EQ(lac_table_last_zeroed(t), n * pgsz());
        if (tr == LACUNA_TRACK_WRITTEN)
            CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), n); /* memset */
        else
            CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), 0); /* released */
        /* Nothing written since: nothing zeroed (before reading it back, which maps zero pages). */
        CHECK_EQ(lacuna_table_wipe(t), 0);
        CHECK_EQ(lac_table_last_zeroed(t), 0);
        CHECK(lt_all_zero(lacuna_table_base(t), bytes));
        CHECK_EQ(lacuna_table_wipe(t), 0); /* reads are not writes... */
        if (tr == LACUNA_TRACK_WRITTEN)
            CHECK_EQ(lac_table_last_zeroed(t), 0);
        /* ...though with residency tracking the zero pages just mapped count as resident. */
        CHECK_EQ(madvise(lacuna_table_base(t), bytes, MADV_DONTNEED), 0);
        CHECK_EQ(lacuna_table_wipe(t), 0);
    }
    free(seen);
    lacuna_table_destroy(t);
}

TEST(auto_zeroes_exactly_what_was_written)
{
    auto_mode();
}

TEST(auto_without_userfaultfd_tracks_residency)
{
    setenv("LACUNA_FORCE_FALLBACK", "uffd", 1); /* before the first probe of this process */
    auto_mode();
}

static void cycles(unsigned flags, int n)
{
    size_t bytes = 8u << 20;
    lacuna_table *t = make(bytes, flags);
    unsigned char *seen = malloc(bytes / pgsz());
    char *base = lacuna_table_base(t);
    for (int c = 0; c < n; c++) {
        size_t k = 1 + next_rand() % 40;
        scribble(t, k, seen);
        CHECK_EQ(lacuna_table_wipe(t), 0);
        size_t z = lac_table_last_zeroed(t);
        if (lacuna_table_tracking(t) == LACUNA_TRACK_RESIDENT)
            CHECK(z >= k * pgsz());
        else if (lacuna_table_tracking(t) == LACUNA_TRACK_MANUAL &&
                 !(flags & (LACUNA_TABLE_PAGES | LACUNA_TABLE_RELEASE)))
            CHECK_EQ(z, k * (pgsz() / 64)); /* one byte per page: one line */
        else
            CHECK_EQ(z, k * pgsz());
        for (size_t p = 0; p < bytes / pgsz(); p++)
            if (seen[p])
                CHECK(lt_all_zero(base + p * pgsz(), pgsz()));
    }
    CHECK(lt_all_zero(base, bytes));
    free(seen);
    lacuna_table_destroy(t);
}

TEST(thousands_of_cycles_manual)
{
    cycles(0, 3000);
}

TEST(thousands_of_cycles_auto)
{
    cycles(LACUNA_TABLE_AUTO, 3000);
}

TEST(thousands_of_cycles_release)
{
    cycles(LACUNA_TABLE_RELEASE, 2000);
}

TEST(many_tables_no_leak)
{
    long fds_before = 0, fds_after = 0;
    for (int i = 0; i < 200; i++) {
        lacuna_table *t;
        /* Every combination of AUTO, SHARED, RELEASE and PAGES. */
        unsigned flags = ((unsigned)i & 7) | ((i & 8) ? LACUNA_TABLE_PAGES : 0);
        if ((flags & LACUNA_TABLE_PAGES) && (flags & LACUNA_TABLE_AUTO)) {
            CHECK_EQ(lacuna_table_create(1u << 20, flags, &t), EINVAL);
            continue;
        }
        CHECK_EQ(lacuna_table_create(1u << 20, flags, &t), 0);
        ((char *)lacuna_table_base(t))[i * 64] = 1;
        lacuna_table_mark(t, (char *)lacuna_table_base(t) + i * 64, 1);
        CHECK_EQ(lacuna_table_wipe(t), 0);
        CHECK(lt_all_zero(lacuna_table_base(t), 1u << 20));
        lacuna_table_destroy(t);
        if (i == 16)
            fds_before = lt_vma_count();
    }
    fds_after = lt_vma_count();
    CHECK_EQ(fds_after, fds_before);
    /* Every fd closed: the next one opened is a low number. */
    int fd = dup(0);
    CHECK(fd >= 0 && fd < 16);
    close(fd);
}

typedef struct marker_arg {
    lacuna_table *t;
    size_t line; /* the line of each page this thread writes */
} marker_arg;

static void *marker(void *arg)
{
    marker_arg *a = arg;
    char *base = lacuna_table_base(a->t);
    for (size_t p = 0; p < 100; p++) {
        char *at = base + p * pgsz() + a->line * (pgsz() / 64);
        *at = 1;
        lacuna_table_mark(a->t, at, 1);
    }
    return NULL;
}

/* Four threads mark different lines of the same 100 pages: they share bitmap words and line
 * masks, and no mark may be lost. */
static void threads_mark(unsigned flags)
{
    size_t bytes = 8u << 20;
    lacuna_table *t = make(bytes, flags);
    pthread_t th[4];
    marker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (marker_arg){t, (size_t)i * 9};
        CHECK_EQ(pthread_create(&th[i], NULL, marker, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    size_t want = (flags & LACUNA_TABLE_PAGES) ? 100 * pgsz() : 400 * (pgsz() / 64);
    CHECK_EQ(lac_table_last_zeroed(t), want);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    lacuna_table_destroy(t);
}

TEST(threads_mark_concurrently)
{
    threads_mark(0);
}

TEST(threads_mark_concurrently_pages)
{
    threads_mark(LACUNA_TABLE_PAGES);
}

/* ---- shared tables ---- */

typedef struct shared_arg {
    lacuna_table *t;
    size_t n;
} shared_arg;

static void child_writes(void *arg)
{
    shared_arg *a = arg;
    unsigned char *seen = malloc(lacuna_table_size(a->t) / pgsz());
    scribble(a->t, a->n, seen);
    free(seen);
}

static void child_wipes(void *arg)
{
    shared_arg *a = arg;
    if (lacuna_table_wipe(a->t) != 0)
        _exit(3);
}

static void shared_mode(unsigned flags)
{
    size_t bytes = 32u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_SHARED | flags);
    CHECK_EQ(lacuna_table_tracking(t),
             flags & LACUNA_TABLE_AUTO ? LACUNA_TRACK_RESIDENT : LACUNA_TRACK_MANUAL);
    char err[512];
    shared_arg a = {t, 2000};
    for (int round = 0; round < 3; round++) {
        /* A child writes (and marks); the parent wipes. */
        CHECK_EQ(lt_fork_run(child_writes, &a, err, sizeof err), 0);
        CHECK(!lt_all_zero(lacuna_table_base(t), bytes));
        long before = lt_status_kib("RssShmem:"); /* the parent now maps every page it read */
        CHECK(before >= (long)(2000 * pgsz() / 1024));
        CHECK_EQ(lacuna_table_wipe(t), 0);
        CHECK(lac_table_last_zeroed(t) >= 2000 * pgsz());
        long after = lt_status_kib("RssShmem:");
        CHECK(after <= before - (long)(2000 * pgsz() / 1024) + 64);
        CHECK(lt_all_zero(lacuna_table_base(t), bytes));

        /* The parent writes and maps the pages; a child wipes; the parent's pages go. */
        unsigned char *seen = malloc(bytes / pgsz());
        scribble(t, 2000, seen);
        free(seen);
        before = lt_status_kib("RssShmem:");
        CHECK_EQ(lt_fork_run(child_wipes, &a, err, sizeof err), 0);
        after = lt_status_kib("RssShmem:");
        CHECK(after <= before - (long)(2000 * pgsz() / 1024) + 64);
        CHECK(lt_all_zero(lacuna_table_base(t), bytes));
        /* Marks were consumed by the child's wipe: nothing left for the parent. (With residency
         * tracking, the reads above allocated shmem pages: those are wiped.) */
        CHECK_EQ(lacuna_table_wipe(t), 0);
        if (!(flags & LACUNA_TABLE_AUTO))
            CHECK_EQ(lac_table_last_zeroed(t), 0);
    }
    lacuna_table_destroy(t);
}

TEST(shared_manual_any_process_wipes)
{
    shared_mode(0);
}

TEST(shared_auto_any_process_wipes)
{
    shared_mode(LACUNA_TABLE_AUTO);
}

TEST(injected_release_failure_still_zeroes)
{
#ifndef LACUNA_FAULT_INJECTION
    SKIP("built without LACUNA_FAULT_INJECTION");
#else
    size_t bytes = 4u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_RELEASE);
    unsigned char *seen = malloc(bytes / pgsz());
    size_t n = scribble(t, 100, seen);
    lac_fault_inject(LAC_OP_RELEASE, 1, ENOMEM);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    /* The failed batch was memset instead (stays resident); later batches were released. */
    size_t res = lt_resident_pages(lacuna_table_base(t), bytes);
    CHECK(res > 0 && res <= n);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    free(seen);
    lacuna_table_destroy(t);
#endif
}

TEST(injected_scan_failure_reported_then_recovers)
{
#ifndef LACUNA_FAULT_INJECTION
    SKIP("built without LACUNA_FAULT_INJECTION");
#else
    size_t bytes = 4u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_AUTO);
    unsigned char *seen = malloc(bytes / pgsz());
    size_t n = scribble(t, 50, seen);
    lac_fault_inject(LAC_OP_SCAN, 1, EIO);
    CHECK_EQ(lacuna_table_wipe(t), EIO);
    /* Nothing was lost: the next wipe zeroes every written page. */
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK(lac_table_last_zeroed(t) >= n * pgsz());
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    free(seen);
    lacuna_table_destroy(t);
#endif
}

TEST(forced_scan_fallback_alone)
{
    setenv("LACUNA_FORCE_FALLBACK", "scan", 1); /* before the first probe of this process */
    lacuna_features f;
    lacuna_features_get(&f);
    CHECK_EQ(f.pagemap_scan, 0);
    size_t bytes = 8u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_AUTO);
    /* Kernel write tracking reads PAGE_IS_WRITTEN with PAGEMAP_SCAN: residency without it. */
    CHECK_EQ(lacuna_table_tracking(t), LACUNA_TRACK_RESIDENT);
    unsigned char *seen = malloc(bytes / pgsz());
    size_t n = scribble(t, 100, seen);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), n * pgsz());
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    char *m = lacuna_table_base(t);
    m[0] = 1;
    CHECK_EQ(lacuna_wipe(m, bytes, LACUNA_WIPE_PAGEMAP), 0);
    CHECK_EQ(lacuna_wipe_last(), LACUNA_WIPE_MINCORE);
    CHECK(lt_all_zero(m, bytes));
    free(seen);
    lacuna_table_destroy(t);
}

/* ---- line granularity ---- */

TEST(lines_zero_exactly_the_marked_lines)
{
    size_t bytes = 32u << 20, pg = pgsz(), line = pg / 64;
    lacuna_table *t;
    CHECK_EQ(lacuna_table_create(bytes, LACUNA_TABLE_PAGES | LACUNA_TABLE_AUTO, &t), EINVAL);
    t = make(bytes, 0);
    CHECK_EQ(lacuna_table_tracking(t), LACUNA_TRACK_MANUAL);
    char *base = lacuna_table_base(t);
    size_t pages = bytes / pg;
    unsigned char *marked = calloc(pages * 64, 1); /* per line */
    for (int round = 0; round < 50; round++) {
        memset(marked, 0, pages * 64);
        size_t nlines = 0;
        for (int k = 0; k < 500; k++) {
            /* A record of 1-200 bytes anywhere (it may straddle lines and pages). */
            size_t off = next_rand() % (bytes - 200), len = 1 + next_rand() % 200;
            memset(base + off, 0x5a, len);
            lacuna_table_mark(t, base + off, len);
            for (size_t l = off / line; l <= (off + len - 1) / line; l++)
                if (!marked[l]) {
                    marked[l] = 1;
                    nlines++;
                }
        }
        /* An unmarked write in an unmarked line of a marked page must survive: line granular. */
        size_t sentinel = SIZE_MAX;
        for (size_t l = 0; l + 1 < pages * 64 && sentinel == SIZE_MAX; l++)
            if (marked[l] && !marked[l + 1] && (l + 1) % 64 != 0)
                sentinel = l + 1;
        CHECK(sentinel != SIZE_MAX);
        base[sentinel * line] = 7;
        CHECK_EQ(lacuna_table_wipe(t), 0);
        CHECK_EQ(lac_table_last_zeroed(t), nlines * line);
        CHECK_EQ(base[sentinel * line], 7);
        base[sentinel * line] = 0;
        CHECK(lt_all_zero(base, bytes));
        CHECK_EQ(madvise(base, bytes, MADV_DONTNEED), 0); /* drop the read-back's zero pages */
    }
    /* Marking whole pages zeroes them whole. */
    memset(base + 3 * pg, 1, 3 * pg);
    lacuna_table_mark(t, base + 3 * pg, 3 * pg);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 3 * pg);
    CHECK(lt_all_zero(base, bytes));
    free(marked);
    lacuna_table_destroy(t);
}

/* A mark that straddles the start or end of the table counts for its part inside. */
TEST(marks_straddling_either_end_keep_the_inside_part)
{
    size_t bytes = 1u << 20, line = pgsz() / 64;
    for (int pages = 0; pages < 2; pages++) {
        lacuna_table *t = make(bytes, pages ? LACUNA_TABLE_PAGES : 0);
        char *base = lacuna_table_base(t);
        memset(base, 3, 8);
        lacuna_table_mark(t, base - 8, 16);
        memset(base + bytes - 8, 4, 8);
        lacuna_table_mark(t, base + bytes - 8, 16);
        lacuna_table_mark(t, base - 16, 16); /* wholly outside: ignored */
        CHECK_EQ(lacuna_table_wipe(t), 0);
        CHECK_EQ(lac_table_last_zeroed(t), pages ? 2 * pgsz() : 2 * line);
        CHECK(lt_all_zero(base, bytes));
        lacuna_table_destroy(t);
    }
}

/* One mark over a partial first page, whole middle pages and a partial last page: lines at the
 * ends, a run of whole pages between them. */
TEST(one_mark_mixes_lines_and_whole_pages)
{
    size_t bytes = 1u << 20, pg = pgsz(), line = pg / 64;
    lacuna_table *t = make(bytes, 0);
    char *base = lacuna_table_base(t);
    char *from = base + pg - 4; /* the last line of page 0 ... */
    size_t len = 2 * pg + 8;    /* ... all of pages 1 and 2 ... the first line of page 3 */
    memset(from, 9, len);
    lacuna_table_mark(t, from, len);
    base[0] = 7; /* unmarked, in a marked page: line tracking leaves it */
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 2 * line + 2 * pg);
    CHECK_EQ(base[0], 7);
    base[0] = 0;
    CHECK(lt_all_zero(base, bytes));
    lacuna_table_destroy(t);
}

TEST(release_releases_whole_pages)
{
    size_t bytes = 8u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_RELEASE);
    unsigned char *seen = malloc(bytes / pgsz());
    size_t n = scribble(t, 200, seen);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), n * pgsz());
    CHECK_EQ(lt_resident_pages(lacuna_table_base(t), bytes), 0);
    char *b = lacuna_table_base(t);
    b[100] = 1;
    lacuna_table_mark(t, b + 100, 1);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), pgsz()); /* released: whole pages */
    CHECK(lt_all_zero(b, bytes));
    free(seen);
    lacuna_table_destroy(t);
}

TEST(thousands_of_cycles_pages)
{
    cycles(LACUNA_TABLE_PAGES, 3000);
}

TEST(shared_punches_whole_pages)
{
    size_t bytes = 4u << 20;
    lacuna_table *t = make(bytes, LACUNA_TABLE_SHARED);
    char err[512];
    shared_arg a = {t, 300};
    CHECK_EQ(lt_fork_run(child_writes, &a, err, sizeof err), 0);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 300 * pgsz()); /* shared: whole pages punched */
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    lacuna_table_destroy(t);
}

TEST(shared_release_failure_falls_back_to_punch_then_memset)
{
#ifndef LACUNA_FAULT_INJECTION
    SKIP("built without LACUNA_FAULT_INJECTION");
#else
    size_t bytes = 4u << 20, pg = pgsz();
    lacuna_table *t;
    CHECK_EQ(lacuna_table_create(bytes, LACUNA_TABLE_SHARED, &t), 0);
    char *b = lacuna_table_base(t);
    for (int round = 0; round < 2; round++) {
        for (size_t p = 0; p < 80; p += 2) { /* 40 separate runs: one release batch */
            b[p * pg] = 1;
            lacuna_table_mark(t, b + p * pg, 1);
        }
        long before = lt_status_kib("RssShmem:");
        lac_fault_inject(LAC_OP_RELEASE, 1, ENOMEM);
        if (round == 1)
            lac_fault_inject(LAC_OP_REMAP, 1, EIO); /* the first punch fails too */
        CHECK_EQ(lacuna_table_wipe(t), 0);
        long after = lt_status_kib("RssShmem:");
        /* Punched: the pages are gone; in round 1 one range was memset and stays. */
        long gone = (long)((round == 0 ? 40 : 39) * pg / 1024);
        CHECK(after <= before - gone + 16);
        if (round == 1)
            CHECK(after >= before - gone - 16);
        CHECK(lt_all_zero(b, bytes));
    }
    lacuna_table_destroy(t);
#endif
}
