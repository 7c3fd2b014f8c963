/* wipe.c — sparse zeroing: the zeroing engine and lacuna_wipe's validation and strategies.
 *
 * Owns the policy only: which pages to zero and whether to memset or release them (the tables,
 * built on the same engine, are wipe_table.c's). Every syscall on memory goes through os.c and
 * os_wipe.c. Invariants:
 *   - lacuna_wipe validates the WHOLE range (what each mapping really is, asked of the kernel;
 *     then guard markers) before it changes a byte, so bad input leaves memory untouched;
 *   - no strategy changes a mapping's attributes: REMAP replaces a mapping only where a fresh one
 *     would be the same (THP advice is restored), and gives pages back with DONTNEED elsewhere;
 *     memory the kernel will not release (mlock) is zeroed in place;
 *   - zeroing walks the range in address order in chunks whose scratch space lives on the stack
 *     (about 7 KiB at the deepest: wipes may run on small fiber stacks), so no wipe allocates.
 * Does not: keep any state between lacuna_wipe calls but the thread's last choice.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <string.h>

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
#define LAC_VEC_PAGES   2048 /* pages per mincore call (2 KiB of vector on the stack) */

static _Thread_local lacuna_wipe_strategy last_used = LACUNA_WIPE_AUTO;

lacuna_wipe_strategy lacuna_wipe_last(void)
{
    return last_used;
}

/* ---- zeroing runs: zero now, or collect for one batched release -------------------------- */

void lac_zeroer_flush(lac_zeroer *z)
{
    lac_os_zero_fence();
    if (z->n == 0)
        return;
    size_t done = 0;
    (void)lac_os_release(z->iov, z->n, z->advice, &done, NULL); /* the rest: punched or memset */
    for (size_t i = done; i < z->n; i++) {
        uintptr_t off = (uintptr_t)z->iov[i].iov_base - z->memfd_base;
        if (z->memfd == NULL || lac_os_punch(z->memfd, off, z->iov[i].iov_len) != 0)
            memset(z->iov[i].iov_base, 0, z->iov[i].iov_len);
    }
    z->n = 0;
}

/* Collect [start, end) for the batched release (DONTNEED also drops swap entries). */
static void zeroer_queue(lac_zeroer *z, uintptr_t start, uintptr_t end)
{
    if (z->n > 0) {
        struct iovec *last = &z->iov[z->n - 1];
        if ((uintptr_t)last->iov_base + last->iov_len == start) {
            last->iov_len += end - start;
            return;
        }
    }
    if (z->n == LAC_WIPE_BATCH)
        lac_zeroer_flush(z);
    z->iov[z->n].iov_base = (void *)start;
    z->iov[z->n].iov_len = end - start;
    z->n++;
}

void lac_zeroer_run(lac_zeroer *z, uintptr_t start, uintptr_t end)
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

/* ---- finding resident pages ---------------------------------------------------------------- */

/* mincore over [start, start + npages pages) (npages <= LAC_VEC_PAGES); zero resident runs.
 * 0 or errno; *found += resident pages. */
static int mincore_once(lac_zeroer *z, uintptr_t start, size_t npages, size_t pg, size_t *found)
{
    unsigned char vec[LAC_VEC_PAGES];
    int err = lac_os_resident((const void *)start, npages * pg, vec);
    if (err)
        return err;
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
            lac_zeroer_run(z, start + i * pg, start + j * pg);
            *found += j - i;
        }
        i = j;
    }
    return 0;
}

/* mincore over [start, start + npages pages), LAC_VEC_PAGES at a time; zero resident runs.
 * 0 or errno; *found += resident pages. */
static int zero_by_mincore(lac_zeroer *z, uintptr_t start, size_t npages, size_t pg, size_t *found)
{
    for (size_t done = 0; done < npages;) {
        size_t n = npages - done < LAC_VEC_PAGES ? npages - done : LAC_VEC_PAGES;
        int err = mincore_once(z, start + done * pg, n, pg, found);
        if (err)
            return err;
        done += n;
    }
    return 0;
}

int lac_zero_scan(lac_zeroer *z, uintptr_t start, uintptr_t end, const lac_scan_query *q,
                  size_t *found, uintptr_t *next)
{
    size_t pg = lac_os_features()->page_size;
    *found = 0;
    while (start < end) {
        lac_run runs[LAC_SCAN_MAX];
        size_t n;
        uintptr_t stop;
        int err =
            lac_os_scan_ex((const void *)start, end - start, q, runs, LAC_SCAN_MAX, &n, &stop);
        if (err)
            return err;
        for (size_t i = 0; i < n; i++) {
            if (z)
                lac_zeroer_run(z, runs[i].start, runs[i].end);
            *found += (runs[i].end - runs[i].start) / pg;
        }
        if (stop <= start || stop > end)
            return EIO; /* a walk that did not advance: never loop forever, never skip pages */
        start = stop;
        if (next) {
            *next = stop;
            break;
        }
    }
    return 0;
}

/* Resident pages, found by PAGEMAP_SCAN. Pages mapping the shared zero page (read, never written)
 * are left alone: they read as zero already and memsetting them would allocate memory. */
static const lac_scan_query present = {.anyof = LAC_PAGE_PRESENT | LAC_PAGE_SWAPPED,
                                       .excluded = LAC_PAGE_PFNZERO};

/* AUTO: PAGEMAP_SCAN while the last stretch of at least LAC_CHUNK_PAGES was sparse (one call
 * reports at most LAC_CHUNK_PAGES pages, so a dense range is noticed early), mincore in chunks of
 * LAC_CHUNK_PAGES while it was dense. */
int lac_zero_resident(lac_zeroer *z, uintptr_t addr, size_t len, lacuna_wipe_strategy how,
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
        size_t found = 0, span;
        int err;
        if (scan) {
            uintptr_t next = end;
            err = lac_zero_scan(z, cur, end, &q, &found, adapt ? &next : NULL);
            span = next - cur;
            scanned += span;
        } else {
            span = end - cur < LAC_CHUNK_PAGES * pg ? end - cur : LAC_CHUNK_PAGES * pg;
            err = zero_by_mincore(z, cur, span / pg, pg, &found);
            mincored += span;
        }
        if (err)
            return err;
        cur += span;
        /* Judge over at least a chunk: one call may cover only a few clusters. */
        seen_pages += found;
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

typedef struct range_check {
    uintptr_t next;    /* first byte not yet covered by a good mapping */
    lac_mem_kind kind; /* of the first mapping (all must be the same); OTHER before it */
    unsigned attrs;    /* LAC_VMA_* of all the mappings together */
    unsigned thp;      /* THP advice of the first mapping */
    bool thp_mixed;    /* ...which another mapping did not share */
    bool bad;          /* a hole, memory that is not wipeable, a mix of kinds */
    int err;           /* the kernel could not say what a mapping is */
} range_check;

static bool check_mapping(void *ctx, const lac_mapping *m)
{
    range_check *c = ctx;
    lac_mem_kind kind = LAC_MEM_OTHER;
    if (m->start <= c->next && m->perms[0] == 'r' && m->perms[1] == 'w') {
        c->err = lac_os_mem_kind(m, &kind);
        if (c->err)
            return false;
    }
    if (kind == LAC_MEM_OTHER || (c->kind != LAC_MEM_OTHER && kind != c->kind)) {
        c->bad = true;
        return false;
    }
    unsigned thp = m->attrs & (LAC_VMA_THP_OFF | LAC_VMA_THP_ON);
    if (c->kind == LAC_MEM_OTHER)
        c->thp = thp;
    c->thp_mixed |= thp != c->thp;
    c->kind = kind;
    c->attrs |= m->attrs;
    c->next = m->end;
    return true;
}

/* 0, or EINVAL, or the errno of reading the maps / the guard scan. `attrs`: read each mapping's
 * attributes too (REMAP needs them). *empty is set when the guard scan also showed that no page of
 * the range is present (nothing to zero in private memory); the first walk looks for guards and
 * present pages at once, and stops at the first. */
static int check_range(void *addr, size_t len, bool attrs, range_check *c, bool *empty)
{
    *c = (range_check){.next = (uintptr_t)addr};
    *empty = false;
    int err = lac_os_maps(addr, len, attrs ? LAC_MAPS_ATTRS : 0, check_mapping, c);
    if (err == 0)
        err = c->err;
    if (err)
        return err;
    if (c->bad || c->next < (uintptr_t)addr + len)
        return EINVAL;
    if (!lac_os_can_see_guards())
        return 0;
    lac_run run;
    size_t n;
    uintptr_t next;
    /* max_pages 1: a run is extended while the pages match, so without it a resident range
     * would be walked whole (2.8 ms per GiB) to report its first page. */
    lac_scan_query q = {.anyof = LAC_PAGE_GUARD | LAC_PAGE_PRESENT | LAC_PAGE_SWAPPED,
                        .excluded = LAC_PAGE_PFNZERO,
                        .max_pages = 1};
    err = lac_os_scan_ex(addr, len, &q, &run, 1, &n, &next);
    if (err || n == 0) {
        *empty = err == 0;
        return err;
    }
    q = (lac_scan_query){.required = LAC_PAGE_GUARD};
    err = lac_os_scan_ex(addr, len, &q, &run, 1, &n, &next);
    return err ? err : n > 0 ? EINVAL : 0;
}

/* Whether a fresh mapping over the range would be the same mapping: no attribute REMAP would
 * drop (mlock, MADV_DONTDUMP, WIPEONFORK, userfaultfd, a name, ...), and one THP advice. */
static bool remap_keeps_attributes(const range_check *c)
{
    return c->kind == LAC_MEM_PRIVATE_ANON && !c->thp_mixed &&
           !(c->attrs & (LAC_VMA_NAMED | LAC_VMA_LOCKED | LAC_VMA_OTHER));
}

/* ---- lacuna_wipe ----------------------------------------------------------------------------- */

/* Give [addr, addr+len) back with DONTNEED (REMOVE on shared memory). Memory the kernel will
 * not release is zeroed in place: it answers EINVAL for mlocked memory (the range is known good),
 * which is not the caller's bad input. */
static int release_or_zero(lac_zeroer *z, void *addr, size_t len, bool shared,
                           lacuna_wipe_strategy *used)
{
    struct iovec iov = {addr, len};
    size_t done;
    int err = lac_os_release(&iov, 1, z->advice, &done, NULL);
    if (err != EINVAL)
        return err;
    err = lac_zero_resident(z, (uintptr_t)addr, len, LACUNA_WIPE_AUTO, shared, used);
    lac_zeroer_flush(z);
    return err;
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
    range_check c;
    bool empty;
    int err = check_range(addr, len, strategy == LACUNA_WIPE_REMAP, &c, &empty);
    if (err) {
        if (err == EINVAL)
            LAC_BAD_INPUT("lacuna_wipe", "range not wipeable memory", addr);
        return err;
    }
    bool shared = c.kind == LAC_MEM_SHMEM;
    lacuna_wipe_strategy used = strategy;
    lac_zeroer z = {.advice = shared ? LAC_ADV_REMOVE : LAC_ADV_DONTNEED};
    switch (strategy) {
    case LACUNA_WIPE_MEMSET:
        memset(addr, 0, len);
        break;
    case LACUNA_WIPE_REMAP:
        if (remap_keeps_attributes(&c)) {
            err = lac_os_remap(addr, len, c.thp);
            break;
        }
        /* A private mapping over shared memory would end the sharing, and over a mapping with
         * attributes would drop them: release in place instead. */
        used = LACUNA_WIPE_DONTNEED;
        __attribute__((fallthrough));
    case LACUNA_WIPE_DONTNEED:
        err = release_or_zero(&z, addr, len, shared, &used);
        break;
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
        err = lac_zero_resident(&z, a, len, strategy, shared, &used);
        lac_zeroer_flush(&z);
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
