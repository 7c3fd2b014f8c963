/* wipe_table.c — lacuna_table: a zero-filled mapping that remembers what was written.
 *
 * Owns the tables: their memory, their tracking (the caller's marks, the kernel's write tracking,
 * or residency) and the descriptors behind them (a shared table's memfd, a tracked table's
 * userfaultfd). Zeroing itself is wipe.c's engine (lac_zeroer, lac_zero_resident). Invariants:
 *   - a table's bitmap (manual tracking) is a separate mapping, never inside the table's pages,
 *     and for a shared table is itself shared, so marks made by one process are wiped by another;
 *   - every tracking state has a way forward: kernel tracking that was lost (the program closed
 *     the userfaultfd, remapped the table's memory, or forked: a child inherits none) is noticed
 *     by the wipe that re-protects, which has zeroed every present page by then (a page outside a
 *     tracked range reports WRITTEN), and re-armed, or replaced by residency tracking;
 *   - a descriptor the program may have closed (and whose number it may have reused) is used or
 *     closed only after lac_os_fd_ours says it is still the table's.
 * Does not: lock. A table is not thread-safe against its writers or other wipes of it.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LAC_TABLE_MAX (1ull << 44)

struct lacuna_table {
    lacuna_table_head head; /* first: lacuna_table_mark reads it */
    lacuna_tracking tracking;
    lac_fd memfd;       /* LACUNA_TABLE_SHARED: the backing file; else none */
    lac_fd uffd;        /* LACUNA_TRACK_WRITTEN: the userfaultfd; else none */
    size_t bits_len;    /* bytes mapped for head.bits (page multiple), 0 without */
    size_t lines_len;   /* bytes mapped for head.lines (page multiple), 0 without */
    size_t last_zeroed; /* bytes the last wipe zeroed (tests read it) */
};

static int table_create(size_t bytes, unsigned flags, lacuna_table **out)
{
    const lacuna_features *f = lac_os_features();
    size_t pg = f->page_size;
    const unsigned known =
        LACUNA_TABLE_AUTO | LACUNA_TABLE_SHARED | LACUNA_TABLE_RELEASE | LACUNA_TABLE_PAGES;
    if (out == NULL || bytes == 0 || bytes > LAC_TABLE_MAX || (flags & ~known) ||
        ((flags & LACUNA_TABLE_PAGES) && (flags & LACUNA_TABLE_AUTO))) {
        LAC_BAD_INPUT("lacuna_table_create", "bytes or flags", (void *)bytes);
        return EINVAL;
    }
    bytes = (bytes + pg - 1) & ~(pg - 1);
    lacuna_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return ENOMEM;
    t->memfd = t->uffd = LAC_FD_NONE;
    t->head.bytes = bytes;
    t->head.flags = flags;
    t->head.page_shift = (unsigned)__builtin_ctzl(pg);
    t->head.line_shift = t->head.page_shift - 6; /* 64 lines per page, one mask word */
    bool shared = flags & LACUNA_TABLE_SHARED;
    void *base = NULL;
    int err = shared ? lac_os_memfd(bytes, &t->memfd) : 0;
    if (err == 0)
        err = shared ? lac_os_map_shared(t->memfd.fd, bytes, &base) : lac_os_reserve(bytes, &base);
    if (err)
        goto fail;
    t->head.base = base;
    if (!(flags & LACUNA_TABLE_AUTO)) {
        size_t pages = bytes / pg;
        void *bits = NULL, *lines = NULL;
        t->bits_len = ((pages + 63) / 64 * 8 + pg - 1) & ~(pg - 1);
        err =
            shared ? lac_os_map_shared(-1, t->bits_len, &bits) : lac_os_reserve(t->bits_len, &bits);
        if (err)
            goto fail;
        t->head.bits = bits;
        /* Line masks only where wipes zero: releases are whole pages. */
        if (!(flags & (LACUNA_TABLE_PAGES | LACUNA_TABLE_RELEASE | LACUNA_TABLE_SHARED))) {
            t->lines_len = (pages * 8 + pg - 1) & ~(pg - 1);
            err = lac_os_reserve(t->lines_len, &lines);
            if (err)
                goto fail;
            t->head.lines = lines;
        }
        t->tracking = LACUNA_TRACK_MANUAL;
    } else {
        /* Kernel write tracking sees one process only: a shared table tracks by residency. */
        bool tracked = !shared && lac_os_wp_open(t->head.base, bytes, &t->uffd) == 0;
        t->tracking = tracked ? LACUNA_TRACK_WRITTEN : LACUNA_TRACK_RESIDENT;
    }
    *out = t;
    return 0;
fail:
    lacuna_table_destroy(t);
    return err;
}

int lacuna_table_create(size_t bytes, unsigned flags, lacuna_table **out)
{
    int saved = errno;
    int err = table_create(bytes, flags, out);
    errno = saved;
    return err;
}

void *lacuna_table_base(const lacuna_table *t)
{
    return t ? t->head.base : NULL;
}

size_t lacuna_table_size(const lacuna_table *t)
{
    return t ? t->head.bytes : 0;
}

lacuna_tracking lacuna_table_tracking(const lacuna_table *t)
{
    return t ? t->tracking : (lacuna_tracking)0;
}

void lacuna_table_destroy(lacuna_table *t)
{
    if (t == NULL)
        return;
    int saved = errno;
    lac_os_fd_close(&t->uffd);
    if (t->head.base)
        (void)lac_os_unreserve(t->head.base, t->head.bytes);
    if (t->head.bits)
        (void)lac_os_unreserve(t->head.bits, t->bits_len);
    if (t->head.lines)
        (void)lac_os_unreserve(t->head.lines, t->lines_len);
    lac_os_fd_close(&t->memfd);
    free(t);
    errno = saved;
}

/* The marked lines of page p, cleared for the next round; all of them when the table keeps no
 * line masks (LACUNA_TABLE_PAGES, or a table that releases whole pages) or none is marked. */
static uint64_t take_lines(lacuna_table *t, size_t p)
{
    if (t->head.lines == NULL)
        return ~(uint64_t)0;
    /* No exchange: marks must not race with a wipe, and a locked op per page costs here. */
    uint64_t m = __atomic_load_n(&t->head.lines[p], __ATOMIC_RELAXED);
    __atomic_store_n(&t->head.lines[p], 0, __ATOMIC_RELAXED);
    return m ? m : ~(uint64_t)0;
}

/* Zero the lines of mask m (not all set) in the page at `page`, a run of set bits at a time. */
static void zero_lines(const lacuna_table *t, lac_zeroer *z, uintptr_t page, uint64_t m)
{
    unsigned ls = t->head.line_shift;
    while (m) {
        unsigned lo = (unsigned)__builtin_ctzll(m);
        uint64_t rest = ~(m >> lo); /* zeros where the run of set bits from lo continues */
        unsigned n = rest ? (unsigned)__builtin_ctzll(rest) : 64 - lo;
        lac_zeroer_run(z, page + ((uintptr_t)lo << ls), page + ((uintptr_t)(lo + n) << ls));
        m = n + lo >= 64 ? 0 : m & (~(uint64_t)0 << (lo + n));
    }
}

/* Manual tracking: zero the marked pages in runs of whole pages, or only their marked lines,
 * clearing the marks as they are consumed. */
static void wipe_marked(lacuna_table *t, lac_zeroer *z)
{
    uint64_t *bits = t->head.bits;
    size_t pg = (size_t)1 << t->head.page_shift;
    uintptr_t base = (uintptr_t)t->head.base;
    size_t words = ((t->head.bytes / pg) + 63) / 64;
    size_t run_start = 0, run_end = 0; /* whole pages; empty when equal */
    for (size_t w = 0; w < words; w++) {
        uint64_t v = __atomic_load_n(&bits[w], __ATOMIC_RELAXED);
        if (v == 0)
            continue;
        __atomic_store_n(&bits[w], 0, __ATOMIC_RELAXED);
        while (v) {
            size_t p = w * 64 + (size_t)__builtin_ctzll(v);
            v &= v - 1;
            uint64_t m = take_lines(t, p); /* all set for tables that release */
            if (m != ~(uint64_t)0) {
                zero_lines(t, z, base + p * pg, m);
                continue;
            }
            if (p != run_end) {
                lac_zeroer_run(z, base + run_start * pg, base + run_end * pg);
                run_start = p;
            }
            run_end = p + 1;
        }
    }
    lac_zeroer_run(z, base + run_start * pg, base + run_end * pg);
}

/* Kernel tracking was lost (EPERM from the re-protecting walk: the range, or part of it, is no
 * longer registered). The walk before found every present page of the unregistered part WRITTEN
 * and zeroed it, so the table reads zero: register it afresh (which protects every page), or
 * track by residency from now on should that fail (userfaultfd refused, or the range still held
 * by a copy of the old descriptor in another process: EBUSY). Our old descriptor (inherited from
 * the parent in a forked child, or still open after a remap) is closed if still ours. */
static void rearm(lacuna_table *t)
{
    lac_os_fd_close(&t->uffd);
    if (lac_os_wp_open(t->head.base, t->head.bytes, &t->uffd) != 0) {
        t->uffd = LAC_FD_NONE;
        t->tracking = LACUNA_TRACK_RESIDENT;
    }
}

/* Kernel tracking: zero the written pages, then write-protect them again. Protecting in the same
 * scan that reports them would make the memset itself count as a write (and cost a protection
 * fault per page), so every once-written page would be wiped forever after. */
static int wipe_written(lacuna_table *t, lac_zeroer *z)
{
    uintptr_t start = (uintptr_t)t->head.base, end = start + t->head.bytes;
    /* Only pages with memory: a page emptied by a release has no write protection and reports
     * WRITTEN, yet reads as zero; so does one mapping the zero page. */
    lac_scan_query q = {.required = LAC_PAGE_WRITTEN,
                        .anyof = LAC_PAGE_PRESENT | LAC_PAGE_SWAPPED,
                        .excluded = LAC_PAGE_PFNZERO};
    size_t found;
    int err = lac_zero_scan(z, start, end, &q, &found, NULL);
    if (err)
        return err;
    lac_zeroer_flush(z);
    if (found == 0)
        return 0;
    /* The same walk again, protecting what it reports (the pages just memset); nothing zeroed. */
    q.flags = LAC_SCAN_REPROTECT;
    err = lac_zero_scan(NULL, start, end, &q, &found, NULL);
    if (err == EPERM) {
        rearm(t);
        return 0;
    }
    return err;
}

static int table_wipe(lacuna_table *t)
{
    if (t == NULL) {
        LAC_BAD_INPUT("lacuna_table_wipe", "table", NULL);
        return EINVAL;
    }
    bool shared = t->head.flags & LACUNA_TABLE_SHARED;
    lac_zeroer z = {
        /* Residency tracking must release: a memset page stays resident, so it would be wiped
         * again at every later wipe. */
        .release = shared || (t->head.flags & LACUNA_TABLE_RELEASE) ||
                   t->tracking == LACUNA_TRACK_RESIDENT,
        .advice = shared ? LAC_ADV_REMOVE : LAC_ADV_DONTNEED,
        .memfd = shared ? &t->memfd : NULL,
        .memfd_base = (uintptr_t)t->head.base,
    };
    int err = 0;
    lacuna_wipe_strategy used;
    switch (t->tracking) {
    case LACUNA_TRACK_MANUAL:
        wipe_marked(t, &z);
        break;
    case LACUNA_TRACK_WRITTEN:
        err = wipe_written(t, &z);
        break;
    case LACUNA_TRACK_RESIDENT:
        err = lac_zero_resident(&z, (uintptr_t)t->head.base, t->head.bytes, LACUNA_WIPE_AUTO,
                                shared, &used);
        break;
    }
    lac_zeroer_flush(&z);
    t->last_zeroed = z.bytes;
    return err;
}

size_t lac_table_last_zeroed(const lacuna_table *t)
{
    return t->last_zeroed;
}

int lacuna_table_wipe(lacuna_table *t)
{
    int saved = errno;
    int err = table_wipe(t);
    errno = saved;
    return err;
}
