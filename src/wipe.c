/* wipe.c — sparse zeroing: lacuna_wipe's strategies and the tracked tables.
 *
 * Owns the policy only: which pages to zero and whether to memset or release them. Every syscall
 * on memory goes through os.c (lac_os_scan_ex, lac_os_resident, lac_os_release, lac_os_remap,
 * lac_os_wp_open, ...). Invariants:
 *   - lacuna_wipe validates the WHOLE range (/proc/self/maps, then guard markers) before it
 *     changes a byte, so bad input leaves memory untouched;
 *   - zeroing walks the range in address order in chunks whose scratch space lives on the stack
 *     (about 7 KiB at the deepest: wipes may run on small fiber stacks), so no wipe allocates;
 *   - a table's bitmap (manual tracking) is a separate mapping, never inside the table's pages,
 *     and for a shared table is itself shared, so marks made by one process are wiped by another.
 * Does not: keep any state between lacuna_wipe calls but the thread's last choice.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Measured crossovers; docs/wipe.md has the tables. Linux 6.18, 2 vCPU AMD EPYC KVM guest.
 *
 * Release vs zeroing a run of L resident pages (`lacuna-bench wipe --runlen`, which times this
 * file's two paths through lacuna_table_wipe): zeroing wins at every L from 1 to 32768 pages, for
 * the wipe alone (streaming stores, 45-60 ns/page, against 256-587 ns/page for batched
 * MADV_DONTNEED) and more so for the cycle (a released page faults back in: 1558-1818 ns/page
 * against 54-80). So no run is long enough to be worth releasing for speed: LAC_ZERO_MAX_RUN is
 * unlimited, and wipes release only when asked to give memory back (LACUNA_TABLE_RELEASE, SHARED,
 * residency tracking, the DONTNEED and REMAP strategies). */
#define LAC_ZERO_MAX_RUN SIZE_MAX /* pages; longer resident runs would be released, not zeroed */

/* When AUTO scans with mincore instead of PAGEMAP_SCAN. PAGEMAP_SCAN costs per present page
 * (~12 ns: it looks at each page's categories) and per run it reports; mincore costs a byte per
 * page, little when the pages are present. Timing the two calls alone on 1 GiB of random pages
 * (a throwaway program): PAGEMAP_SCAN 0.04/0.56/0.96/3.2/3.0/3.1 ms at 0/1/10/50/90/100 %,
 * mincore 0.22/3.1/2.7/2.5/0.74/0.30 ms. In whole wipe cycles (`lacuna-bench wipe`, random and
 * clustered, three runs each) mincore won from 70 % resident with clustered runs (~64 pages;
 * they tie at 50 %), and from 50 % when the runs were short (random pages: runs of 2-3).
 * Hence: mincore for a stretch >= LAC_AUTO_DENSE_PCT resident, or >= LAC_AUTO_MIXED_PCT
 * resident in runs shorter than LAC_AUTO_SHORT_RUN pages on average. */
#define LAC_AUTO_DENSE_PCT 60
#define LAC_AUTO_MIXED_PCT 40
#define LAC_AUTO_SHORT_RUN 8
/* Most pages one AUTO PAGEMAP_SCAN call reports, the mincore stretch AUTO takes, and the least
 * stretch AUTO judges density over: 16 MiB. */
#define LAC_CHUNK_PAGES 4096
#define LAC_BATCH       64   /* ranges per release call (1 KiB of iovecs on the stack) */
#define LAC_SCAN_RUNS   128  /* runs per PAGEMAP_SCAN call (lac_os_scan_ex's most) */
#define LAC_VEC_PAGES   2048 /* pages per mincore call (2 KiB of vector on the stack) */
#define LAC_TABLE_MAX   (1ull << 44)

struct lacuna_table {
    lacuna_table_head head; /* first: lacuna_table_mark reads it */
    lacuna_tracking tracking;
    int memfd;          /* LACUNA_TABLE_SHARED: the backing file; else -1 */
    int uffd;           /* LACUNA_TRACK_WRITTEN: the userfaultfd; else -1 */
    size_t bits_len;    /* bytes mapped for head.bits (page multiple), 0 without */
    size_t lines_len;   /* bytes mapped for head.lines (page multiple), 0 without */
    size_t last_zeroed; /* bytes the last wipe zeroed (tests read it) */
};

static _Thread_local lacuna_wipe_strategy last_used = LACUNA_WIPE_AUTO;

lacuna_wipe_strategy lacuna_wipe_last(void)
{
    return last_used;
}

/* ---- zeroing runs: zero now, or collect for one batched release -------------------------- */

typedef struct zeroer {
    bool release;      /* give the pages back instead of zeroing them */
    bool swap;         /* the system has swap: a page mincore calls non-resident may be in swap
                          with old data, so non-resident runs are released (set per scan) */
    lac_advice advice; /* DONTNEED (private) or REMOVE (shared) */
    size_t n;
    struct iovec iov[LAC_BATCH];
    size_t bytes; /* bytes zeroed (memset or released), for lac_table_last_zeroed */
    size_t runs;  /* runs zeroed, for AUTO's choice of scanner */
    const struct lacuna_table *table; /* a shared table's wipe: hole punching is the fallback */
} zeroer;

static int table_memfd(const struct lacuna_table *t);

/* Fence the zeroing done so far (every wipe ends with a flush) and release what was collected.
 * Ranges the kernel would not release are punched out of a shared table's memfd instead
 * (fallocate), else memset, so the range always ends up zero; the memory simply stays resident
 * when only memset worked. */
static void zeroer_flush(zeroer *z)
{
    lac_os_zero_fence();
    if (z->n == 0)
        return;
    size_t done = 0;
    (void)lac_os_release(z->iov, z->n, z->advice, &done, NULL); /* the rest: punched or memset */
    int fd = z->table ? table_memfd(z->table) : -1;
    for (size_t i = done; i < z->n; i++) {
        uintptr_t off = (uintptr_t)z->iov[i].iov_base - (uintptr_t)lacuna_table_base(z->table);
        if (fd < 0 || lac_os_punch(fd, off, z->iov[i].iov_len) != 0)
            memset(z->iov[i].iov_base, 0, z->iov[i].iov_len);
    }
    z->n = 0;
}

static void zeroer_queue(zeroer *z, uintptr_t start, uintptr_t end);

static void zeroer_run(zeroer *z, uintptr_t start, uintptr_t end)
{
    if (end <= start)
        return;
    z->bytes += end - start;
    z->runs++;
    if (!z->release && (end - start) / lac_os_features()->page_size <= LAC_ZERO_MAX_RUN) {
        lac_os_zero((void *)start, end - start);
        return;
    }
    zeroer_queue(z, start, end);
}

/* Collect [start, end) for the batched release (DONTNEED also drops swap entries). */
static void zeroer_queue(zeroer *z, uintptr_t start, uintptr_t end)
{
    if (z->n > 0) {
        struct iovec *last = &z->iov[z->n - 1];
        if ((uintptr_t)last->iov_base + last->iov_len == start) {
            last->iov_len += end - start;
            return;
        }
    }
    if (z->n == LAC_BATCH)
        zeroer_flush(z);
    z->iov[z->n].iov_base = (void *)start;
    z->iov[z->n].iov_len = end - start;
    z->n++;
}

/* ---- finding resident pages ---------------------------------------------------------------- */

/* mincore over [start, start + npages pages) (npages <= LAC_VEC_PAGES); zero resident runs.
 * Returns resident pages found, or -errno. */
static long mincore_once(zeroer *z, uintptr_t start, size_t npages, size_t pg)
{
    unsigned char vec[LAC_VEC_PAGES];
    int err = lac_os_resident((const void *)start, npages * pg, vec);
    if (err)
        return -err;
    long found = 0;
    size_t i = 0;
    while (i < npages) {
        /* Skip non-resident pages eight at a time. */
        while (i + 8 <= npages) {
            uint64_t w;
            memcpy(&w, vec + i, 8);
            if (w & 0x0101010101010101ull)
                break;
            i += 8;
        }
        if (i < npages && !(vec[i] & 1)) {
            size_t j = i;
            while (j < npages && !(vec[j] & 1))
                j++;
            if (z->swap) /* maybe swapped out with old data: drop it, whatever it is */
                zeroer_queue(z, start + i * pg, start + j * pg);
            i = j;
            continue;
        }
        size_t j = i;
        while (j < npages && (vec[j] & 1))
            j++;
        if (j > i) {
            zeroer_run(z, start + i * pg, start + j * pg);
            found += (long)(j - i);
        }
        i = j;
    }
    return found;
}

/* mincore over [start, start + npages pages), LAC_VEC_PAGES at a time; zero resident runs.
 * Returns resident pages found, or -errno. */
static long zero_by_mincore(zeroer *z, uintptr_t start, size_t npages, size_t pg)
{
    long found = 0;
    for (size_t done = 0; done < npages;) {
        size_t n = npages - done < LAC_VEC_PAGES ? npages - done : LAC_VEC_PAGES;
        long r = mincore_once(z, start + done * pg, n, pg);
        if (r < 0)
            return r;
        found += r;
        done += n;
    }
    return found;
}

/* One PAGEMAP_SCAN call from start (up to LAC_SCAN_RUNS runs, or q->max_pages pages); zero the runs
 * (unless z is NULL). Returns pages found and sets *next past what the call covered, or -errno
 * (-ENOTSUP without PAGEMAP_SCAN). */
static long scan_once(zeroer *z, uintptr_t start, uintptr_t end, const lac_scan_query *q,
                      uintptr_t *next)
{
    lac_run runs[LAC_SCAN_RUNS];
    long r = lac_os_scan_ex((const void *)start, end - start, q, runs, LAC_SCAN_RUNS, next);
    if (r < 0)
        return r;
    size_t pg = lac_os_features()->page_size;
    long found = 0;
    for (long i = 0; i < r; i++) {
        if (z)
            zeroer_run(z, runs[i].start, runs[i].end);
        found += (long)((runs[i].end - runs[i].start) / pg);
    }
    if (*next <= start || *next > end)
        return -EIO; /* a walk that did not advance: never loop forever, never skip pages */
    return found;
}

/* PAGEMAP_SCAN all of [start, end) for pages matching q; zero them. Pages found, or -errno. */
static long zero_by_scan(zeroer *z, uintptr_t start, uintptr_t end, const lac_scan_query *q)
{
    long found = 0;
    while (start < end) {
        uintptr_t next;
        long r = scan_once(z, start, end, q, &next);
        if (r < 0)
            return r;
        found += r;
        start = next;
    }
    return found;
}

/* Resident pages, found by PAGEMAP_SCAN. Pages mapping the shared zero page (read, never written)
 * are left alone: they read as zero already and memsetting them would allocate memory. */
static const lac_scan_query present = {.anyof = LAC_PAGE_PRESENT | LAC_PAGE_SWAPPED,
                                       .excluded = LAC_PAGE_PFNZERO};

/* Zero the resident pages of [addr, addr+len). how: MINCORE, PAGEMAP or AUTO: PAGEMAP_SCAN while
 * the last stretch of at least LAC_CHUNK_PAGES was sparse (one call reports at most
 * LAC_CHUNK_PAGES pages, so a dense range is noticed early), mincore in chunks of LAC_CHUNK_PAGES
 * while it was dense.
 * Returns 0 or errno; sets *used to the method that covered most of the range. */
static int zero_resident(zeroer *z, uintptr_t addr, size_t len, lacuna_wipe_strategy how,
                         bool shared, lacuna_wipe_strategy *used)
{
    size_t pg = lac_os_features()->page_size;
    bool can_scan = lac_os_features()->pagemap_scan && !shared;
    z->swap = lac_os_has_swap();
    bool adapt = how == LACUNA_WIPE_AUTO && can_scan;
    bool scan = can_scan && how != LACUNA_WIPE_MINCORE;
    lac_scan_query q = present;
    q.max_pages = adapt ? LAC_CHUNK_PAGES : 0;
    size_t scanned = 0, mincored = 0;     /* bytes covered by each method */
    size_t seen_pages = 0, seen_span = 0; /* resident pages and bytes since the last decision */
    size_t seen_runs = z->runs;           /* z->runs at the last decision */
    uintptr_t end = addr + len;
    for (uintptr_t cur = addr; cur < end;) {
        long found;
        size_t span;
        if (scan) {
            uintptr_t next;
            found = adapt ? scan_once(z, cur, end, &q, &next) : zero_by_scan(z, cur, end, &q);
            span = (adapt ? next : end) - cur;
            scanned += span;
        } else {
            span = end - cur < LAC_CHUNK_PAGES * pg ? end - cur : LAC_CHUNK_PAGES * pg;
            found = zero_by_mincore(z, cur, span / pg, pg);
            mincored += span;
        }
        if (found < 0)
            return (int)-found;
        cur += span;
        /* Judge over at least a chunk: one call may cover only a few clusters. */
        seen_pages += (size_t)found;
        seen_span += span;
        if (adapt && seen_span >= LAC_CHUNK_PAGES * pg) {
            size_t pct = seen_pages * 100 / (seen_span / pg);
            size_t runs = z->runs - seen_runs;
            bool short_runs = runs > 0 && seen_pages < runs * LAC_AUTO_SHORT_RUN;
            scan = !(pct >= LAC_AUTO_DENSE_PCT || (pct >= LAC_AUTO_MIXED_PCT && short_runs));
            seen_pages = seen_span = 0;
            seen_runs = z->runs;
        }
    }
    *used = scanned >= mincored && scanned > 0 ? LACUNA_WIPE_PAGEMAP : LACUNA_WIPE_MINCORE;
    return 0;
}

/* ---- lacuna_wipe: validation --------------------------------------------------------------- */

enum { KIND_NONE = 0, KIND_PRIVATE, KIND_SHARED };

typedef struct range_check {
    uintptr_t next; /* first byte not yet covered by a good mapping */
    int kind;
    bool bad;
} range_check;

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool check_mapping(void *ctx, uintptr_t start, uintptr_t end, const char *perms,
                          unsigned long inode, const char *path)
{
    range_check *c = ctx;
    int kind = KIND_NONE;
    if (perms[0] == 'r' && perms[1] == 'w') {
        /* Private anonymous: no file ([heap], [stack], [anon:name] are anonymous too). A private
         * file mapping would read the file again after a release, not zeros. */
        if (perms[3] == 'p' && inode == 0 && (path[0] == '\0' || path[0] == '['))
            kind = KIND_PRIVATE;
        /* Shared memory that MADV_REMOVE can punch: shmem behind every one of these. */
        else if (perms[3] == 's' && (starts(path, "/dev/zero") || starts(path, "/memfd:") ||
                                     starts(path, "/SYSV") || starts(path, "/dev/shm/")))
            kind = KIND_SHARED;
    }
    if (start > c->next || kind == KIND_NONE || (c->kind != KIND_NONE && kind != c->kind)) {
        c->bad = true; /* a hole, the wrong kind, or a mix of kinds */
        return false;
    }
    c->kind = kind;
    c->next = end;
    return true;
}

/* 0 and *kind, or EINVAL, or the errno of reading the maps / the guard scan. *empty is set when
 * the guard scan also showed that no page of the range is present (nothing to zero in private
 * memory); the first walk looks for guards and present pages at once, and stops at the first. */
static int check_range(void *addr, size_t len, int *kind, bool *empty)
{
    range_check c = {.next = (uintptr_t)addr};
    *empty = false;
    int err = lac_os_maps(addr, len, check_mapping, &c);
    if (err)
        return err;
    if (c.bad || c.next < (uintptr_t)addr + len)
        return EINVAL;
    if (lac_os_can_see_guards()) {
        lac_run run;
        uintptr_t next;
        /* max_pages 1: a run is extended while the pages match, so without it a resident range
         * would be walked whole (2.8 ms per GiB) to report its first page. */
        lac_scan_query q = {.anyof = LAC_PAGE_GUARD | LAC_PAGE_PRESENT | LAC_PAGE_SWAPPED,
                            .excluded = LAC_PAGE_PFNZERO,
                            .max_pages = 1};
        long r = lac_os_scan_ex(addr, len, &q, &run, 1, &next);
        if (r == 0) {
            *empty = true;
        } else if (r > 0) {
            q = (lac_scan_query){.required = LAC_PAGE_GUARD};
            r = lac_os_scan_ex(addr, len, &q, &run, 1, &next);
            if (r > 0)
                return EINVAL;
        }
        if (r < 0 && r != -ENOTSUP)
            return (int)-r;
    }
    *kind = c.kind;
    return 0;
}

static int wipe(void *addr, size_t len, lacuna_wipe_strategy strategy)
{
    size_t pg = lac_os_features()->page_size;
    uintptr_t a = (uintptr_t)addr;
    if (addr == NULL || len == 0 || (a & (pg - 1)) || (len & (pg - 1)) || a + len < a ||
        (unsigned)strategy > LACUNA_WIPE_PAGEMAP) {
        LAC_BAD_INPUT("lacuna_wipe", "range", addr);
        return EINVAL;
    }
    int kind = KIND_NONE;
    bool empty;
    int err = check_range(addr, len, &kind, &empty);
    if (err) {
        if (err == EINVAL)
            LAC_BAD_INPUT("lacuna_wipe", "range not wipeable memory", addr);
        return err;
    }
    bool shared = kind == KIND_SHARED;
    lacuna_wipe_strategy used = strategy;
    zeroer z = {.advice = shared ? LAC_ADV_REMOVE : LAC_ADV_DONTNEED};
    switch (strategy) {
    case LACUNA_WIPE_MEMSET:
        memset(addr, 0, len);
        break;
    case LACUNA_WIPE_REMAP:
        if (!shared) {
            err = lac_os_remap(addr, len);
            break;
        }
        /* A private mapping over shared memory would end the sharing: punch instead. */
        __attribute__((fallthrough));
    case LACUNA_WIPE_DONTNEED: {
        struct iovec iov = {addr, len};
        size_t done;
        err = lac_os_release(&iov, 1, z.advice, &done, NULL);
        break;
    }
    case LACUNA_WIPE_MINCORE:
    case LACUNA_WIPE_PAGEMAP:
    case LACUNA_WIPE_AUTO:
        /* The guard check's walk already found nothing present: done (private memory only:
         * shared pages may be in the file without being mapped here). */
        if (empty && !shared && strategy != LACUNA_WIPE_MINCORE &&
            lac_os_features()->pagemap_scan) {
            used = LACUNA_WIPE_PAGEMAP;
            break;
        }
        err = zero_resident(&z, a, len, strategy, shared, &used);
        zeroer_flush(&z);
        break;
    }
    if (err == 0)
        last_used = used;
    return err;
}

/* The public entry points return errno values and leave the caller's errno alone. */
int lacuna_wipe(void *addr, size_t len, lacuna_wipe_strategy strategy)
{
    int saved = errno;
    int err = wipe(addr, len, strategy);
    errno = saved;
    return err;
}

/* ---- tables ------------------------------------------------------------------------------- */

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
    t->memfd = -1;
    t->uffd = -1;
    t->head.bytes = bytes;
    t->head.flags = flags;
    t->head.page_shift = (unsigned)__builtin_ctzl(pg);
    t->head.line_shift = t->head.page_shift - 6; /* 64 lines per page, one mask word */
    bool shared = flags & LACUNA_TABLE_SHARED;
    int err = ENOMEM;
    if (shared) {
        t->memfd = lac_os_memfd(bytes);
        if (t->memfd < 0) {
            err = -t->memfd;
            goto fail;
        }
        t->head.base = lac_os_map_shared(t->memfd, bytes);
    } else {
        void *base = NULL;
        errno = lac_os_reserve(bytes, &base);
        t->head.base = base;
    }
    if (t->head.base == NULL) {
        err = errno ? errno : ENOMEM;
        goto fail;
    }
    if (!(flags & LACUNA_TABLE_AUTO)) {
        size_t pages = bytes / pg;
        t->bits_len = ((pages + 63) / 64 * 8 + pg - 1) & ~(pg - 1);
        void *bits = NULL;
        if (shared)
            bits = lac_os_map_shared(-1, t->bits_len);
        else
            errno = lac_os_reserve(t->bits_len, &bits);
        t->head.bits = bits;
        if (t->head.bits == NULL) {
            err = errno ? errno : ENOMEM;
            goto fail;
        }
        /* Line masks only where wipes zero: releases are whole pages. */
        if (!(flags & (LACUNA_TABLE_PAGES | LACUNA_TABLE_RELEASE | LACUNA_TABLE_SHARED))) {
            t->lines_len = (pages * 8 + pg - 1) & ~(pg - 1);
            void *lines = NULL;
            errno = lac_os_reserve(t->lines_len, &lines);
            t->head.lines = lines;
            if (t->head.lines == NULL) {
                err = errno ? errno : ENOMEM;
                goto fail;
            }
        }
        t->tracking = LACUNA_TRACK_MANUAL;
    } else {
        /* Kernel write tracking sees one process only: a shared table tracks by residency. */
        int fd = shared ? -ENOTSUP : lac_os_wp_open(t->head.base, bytes);
        t->uffd = fd >= 0 ? fd : -1;
        t->tracking = fd >= 0 ? LACUNA_TRACK_WRITTEN : LACUNA_TRACK_RESIDENT;
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
    lac_os_wp_close(t->uffd);
    if (t->head.base)
        (void)lac_os_unreserve(t->head.base, t->head.bytes);
    if (t->head.bits)
        (void)lac_os_unreserve(t->head.bits, t->bits_len);
    if (t->head.lines)
        (void)lac_os_unreserve(t->head.lines, t->lines_len);
    if (t->memfd >= 0)
        close(t->memfd);
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
static void zero_lines(const lacuna_table *t, zeroer *z, uintptr_t page, uint64_t m)
{
    unsigned ls = t->head.line_shift;
    while (m) {
        unsigned lo = (unsigned)__builtin_ctzll(m);
        uint64_t rest = ~(m >> lo); /* zeros where the run of set bits from lo continues */
        unsigned n = rest ? (unsigned)__builtin_ctzll(rest) : 64 - lo;
        zeroer_run(z, page + ((uintptr_t)lo << ls), page + ((uintptr_t)(lo + n) << ls));
        m = n + lo >= 64 ? 0 : m & (~(uint64_t)0 << (lo + n));
    }
}

/* Manual tracking: zero the marked pages in runs of whole pages, or only their marked lines,
 * clearing the marks as they are consumed. */
static void wipe_marked(lacuna_table *t, zeroer *z)
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
                zeroer_run(z, base + run_start * pg, base + run_end * pg);
                run_start = p;
            }
            run_end = p + 1;
        }
    }
    zeroer_run(z, base + run_start * pg, base + run_end * pg);
}

/* Kernel tracking: zero the written pages, then write-protect them again. Protecting in the same
 * scan that reports them would make the memset itself count as a write (and cost a protection
 * fault per page), so every once-written page would be wiped forever after. */
static int wipe_written(lacuna_table *t, zeroer *z)
{
    uintptr_t start = (uintptr_t)t->head.base, end = start + t->head.bytes;
    /* Only pages with memory: a page emptied by a release has no write protection and reports
     * WRITTEN, yet reads as zero; so does one mapping the zero page. */
    lac_scan_query q = {.required = LAC_PAGE_WRITTEN,
                        .anyof = LAC_PAGE_PRESENT | LAC_PAGE_SWAPPED,
                        .excluded = LAC_PAGE_PFNZERO};
    long r = zero_by_scan(z, start, end, &q);
    if (r < 0)
        return (int)-r;
    zeroer_flush(z);
    if (r == 0)
        return 0;
    /* The same walk again, protecting what it reports (the pages just memset); nothing zeroed. */
    q.flags = LAC_SCAN_REPROTECT;
    for (uintptr_t cur = start; cur < end;) {
        uintptr_t next;
        long n = scan_once(NULL, cur, end, &q, &next);
        if (n < 0)
            return (int)-n;
        cur = next;
    }
    return 0;
}

static int table_wipe(lacuna_table *t)
{
    if (t == NULL) {
        LAC_BAD_INPUT("lacuna_table_wipe", "table", NULL);
        return EINVAL;
    }
    bool shared = t->head.flags & LACUNA_TABLE_SHARED;
    zeroer z = {
        /* Residency tracking must release: a memset page stays resident, so it would be wiped
         * again at every later wipe. */
        .release = shared || (t->head.flags & LACUNA_TABLE_RELEASE) ||
                   t->tracking == LACUNA_TRACK_RESIDENT,
        .advice = shared ? LAC_ADV_REMOVE : LAC_ADV_DONTNEED,
        .table = t,
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
        err = zero_resident(&z, (uintptr_t)t->head.base, t->head.bytes, LACUNA_WIPE_AUTO, shared,
                            &used);
        break;
    }
    zeroer_flush(&z);
    t->last_zeroed = z.bytes;
    return err;
}

static int table_memfd(const struct lacuna_table *t)
{
    return t->memfd;
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
