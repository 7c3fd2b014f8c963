/* lacuna/wipe.h — sparse zeroing: make a huge, sparsely touched mapping read all-zero again in the
 * time its touched pages need, and tables that remember which pages were written.
 *
 * Included by lacuna.h; usable on its own. Conventions as in lacuna.h: calls that can fail return
 * 0 or a positive errno value; bad input (NULL, a length of 0, an address or length that is not a
 * multiple of the page size, a range touching an unmapped page, a guard or memory of the wrong
 * kind) is EINVAL with memory left untouched, never a crash.
 *
 * What is measured on the project machine (Linux 6.18, see docs/wipe.md for the numbers and the
 * commands): zeroing a resident page (45-60 ns with streaming stores) is always cheaper than
 * giving it back to the kernel (256-587 ns for batched MADV_DONTNEED, plus ~1.3 us to fault it in
 * again when it is reused), at every run length up to 128 MiB. So AUTO never releases: it finds
 * the resident pages as cheaply as the kernel allows (PAGEMAP_SCAN when few are resident or the
 * runs are long, mincore when most are) and zeroes them. Releasing is for giving memory back: the
 * DONTNEED and REMAP strategies, tables made with LACUNA_TABLE_RELEASE or LACUNA_TABLE_SHARED, and
 * tables tracking by residency.
 */
#ifndef LACUNA_WIPE_H
#define LACUNA_WIPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef LACUNA_API
#define LACUNA_API __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------------------------------------
 * Wiping an arbitrary range
 * ------------------------------------------------------------------------------------------- */

typedef enum lacuna_wipe_strategy {
    LACUNA_WIPE_AUTO = 0, /* find resident pages (PAGEMAP_SCAN, or mincore over stretches found
                             dense, judged every 16 MiB) and zero them */
    LACUNA_WIPE_MEMSET,   /* memset everything (faults in every page that was not resident) */
    LACUNA_WIPE_DONTNEED, /* madvise(MADV_DONTNEED) the whole range; MADV_REMOVE on shared memory.
                             Memory the kernel will not release (mlocked) is zeroed in place
                             instead: it stays locked (lacuna_wipe_last says MINCORE/PAGEMAP) */
    LACUNA_WIPE_REMAP,    /* mmap(MAP_FIXED) fresh anonymous memory over the range (restoring its
                             THP advice), where a fresh mapping would be the same mapping. Where it
                             would lose something — mlock, MADV_DONTDUMP, WIPEONFORK, DONTFORK,
                             KSM, a userfaultfd registration, a name ([anon:x], [heap], [stack]),
                             exec permission, a protection key, mixed THP advice — and on shared
                             memory (a private mapping over it would end the sharing), it is
                             DONTNEED instead (lacuna_wipe_last says so). Reads /proc/self/smaps,
                             which costs with the process's resident memory */
    LACUNA_WIPE_MINCORE,  /* mincore, then memset only resident pages */
    LACUNA_WIPE_PAGEMAP   /* PAGEMAP_SCAN, then memset only present runs. Falls back to MINCORE
                             without PAGEMAP_SCAN (Linux < 6.7, or LACUNA_FORCE_FALLBACK=scan) and
                             on shared memory (another process's pages are not present here) */
} lacuna_wipe_strategy;

/* Make every byte of [addr, addr+len) read 0. addr and len must be multiples of the page size,
 * len > 0, and the whole range mapped read-write as either private anonymous memory or shared
 * memory (MAP_SHARED|MAP_ANONYMOUS, a memfd, SysV shm, a file on tmpfs such as /dev/shm), all of
 * one kind; it may span several mappings. What each mapping is, is asked of the kernel, never read
 * from its name: private anonymous = no file behind it; shared memory = a file on the kernel's
 * shmem mount or on a tmpfs (fstatfs through /proc/self/map_files, or, without the
 * CAP_SYS_ADMIN / CAP_CHECKPOINT_RESTORE that needs, the file's device looked up in
 * /proc/self/mountinfo). A file on a disk filesystem — whatever its name (/memfd:x, a disk
 * directory bind-mounted at /dev/shm) — is refused with EINVAL, as is hugetlbfs. Then, where the
 * kernel can report them (Linux >= 6.15), guard markers (MADV_GUARD_INSTALL, as a lacuna pool
 * uses) are refused too. Validation reads /proc/self/maps (0.03-0.1 ms; lines of any length).
 * Returns 0; EINVAL for bad input (nothing changed); ENOMEM when the kernel could not do a
 * remap/release (the range may be partly zeroed then; a retry with LACUNA_WIPE_MEMSET finishes
 * it); or the errno of reading /proc or of a residency scan failing. Never changes a mapping's
 * attributes (see LACUNA_WIPE_REMAP); mlocked memory stays locked. Uses about 7 KiB of stack and
 * allocates nothing. The caller's errno is left alone (true of every call here). Descriptors the
 * library keeps for this (/proc/self/pagemap) survive the program closing every fd
 * (close_range, closefrom) and fork: they are reopened, never a number the program reuses.
 * Thread-safe for disjoint ranges. Another thread writing into the range while it is wiped gets
 * no guarantee about its write. On shared memory, pages are zeroed for every process mapping them.
 * On kernels 6.13-6.14, guard markers exist but cannot be seen: a range over one would fault with
 * MEMSET and lose the guard with REMAP. */
LACUNA_API int lacuna_wipe(void *addr, size_t len, lacuna_wipe_strategy strategy);

/* The strategy the calling thread's last successful lacuna_wipe really used: AUTO resolved to
 * PAGEMAP or MINCORE (the one that scanned most of the range), PAGEMAP that fell back reported as
 * MINCORE. LACUNA_WIPE_AUTO before any wipe. For benchmarks and logs. */
LACUNA_API lacuna_wipe_strategy lacuna_wipe_last(void);

/* ---------------------------------------------------------------------------------------------
 * Tables: a zero-filled mapping that remembers what was written since the last wipe
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_table lacuna_table;

/* Flags for lacuna_table_create. 0 = manual tracking: lacuna_table_mark records one bit per page
 * (the page was written since the last wipe) and, within it, one bit per line (page size / 64:
 * 64 bytes with 4 KiB pages); wipes zero only the marked lines, so a page holding one small
 * record costs a line, not a page. The line masks take 8 bytes of side table per page, touched
 * only for pages marked.
 *
 * LACUNA_TABLE_PAGES: manual tracking of whole pages only (no line masks): marks cost one
 *   atomic OR instead of two and the side table is 1 bit per page, but a wipe zeroes every
 *   marked page whole, unmarked bytes in it included. For callers that write pages densely, or
 *   that mark one byte to stand for a page. Not with LACUNA_TABLE_AUTO.
 * LACUNA_TABLE_AUTO: the kernel tracks writes (userfaultfd asynchronous write-protect and
 *   PAGEMAP_SCAN PAGE_IS_WRITTEN, Linux >= 6.7): no marking; lacuna_table_mark is a no-op.
 *   Without it (old kernel, userfaultfd not permitted, LACUNA_FORCE_FALLBACK=uffd or scan) the
 *   table tracks by residency: every resident page counts as written and is released at each
 *   wipe. lacuna_table_tracking says which. Kernel tracking can be lost: in a forked child (it
 *   is not inherited), when the program closes the table's userfaultfd (close_range), or when it
 *   maps over the table's memory itself. The next lacuna_table_wipe then zeroes every resident
 *   page (a page outside tracking counts as written) and tracks afresh for this process, or, if
 *   the kernel refuses that, switches to LACUNA_TRACK_RESIDENT; it returns 0 either way.
 *   lacuna_wipe (any strategy, REMAP included) never ends the tracking.
 * LACUNA_TABLE_SHARED: memfd-backed, mapped MAP_SHARED: processes forked after
 *   lacuna_table_create share the contents and the marks, and any of them may wipe. Wipes punch
 *   holes (MADV_REMOVE; fallocate PUNCH_HOLE on the memfd should that fail), so the shmem pages
 *   really go (should the program close the memfd, memset is the fallback). With
 *   LACUNA_TABLE_AUTO it tracks by residency of the shared file (userfaultfd
 *   sees one process only). Marks are kept per page (holes are whole pages).
 * LACUNA_TABLE_RELEASE: wipes give written pages back to the kernel instead of zeroing them: RSS
 *   falls to zero after each wipe, at the price of a page fault per page written again (about
 *   10x the time). Marks are kept per page. */
#define LACUNA_TABLE_AUTO    1u
#define LACUNA_TABLE_SHARED  2u
#define LACUNA_TABLE_RELEASE 4u
/* 8 is not used: before line tracking became the default it asked for it. */
#define LACUNA_TABLE_PAGES 16u

/* How a table knows what was written (lacuna_table_tracking). */
typedef enum lacuna_tracking {
    LACUNA_TRACK_MANUAL = 1, /* the caller's lacuna_table_mark calls */
    LACUNA_TRACK_WRITTEN,    /* kernel write tracking (userfaultfd async write-protect) */
    LACUNA_TRACK_RESIDENT    /* every resident page is wiped (PAGEMAP_SCAN or mincore) and
                                released, so residency stays the set written since the last wipe */
} lacuna_tracking;

/* The first fields of every lacuna_table, so lacuna_table_mark can be inline. Read-only for the
 * caller; never depend on anything else in the table. */
typedef struct lacuna_table_head {
    unsigned char *base; /* first byte of the table (page-aligned) */
    size_t bytes;        /* table size (a multiple of the page size) */
    uint64_t *bits;      /* one bit per page, set = written since the last wipe; NULL unless
                            the tracking is LACUNA_TRACK_MANUAL */
    uint64_t *lines;     /* per page, one bit per line marked; NULL with LACUNA_TABLE_PAGES,
                            RELEASE or SHARED, or when not tracking manually */
    unsigned page_shift; /* log2 of the page size */
    unsigned line_shift; /* log2 of the line size (page size / 64) */
    unsigned flags;      /* flags in force */
} lacuna_table_head;

/* Create a table of `bytes` (rounded up to the page size) that reads all zero. flags: 0 (manual
 * tracking) or an OR of LACUNA_TABLE_*. Returns 0 and sets *table, or EINVAL (table NULL, bytes 0
 * or absurd, unknown flag, PAGES with AUTO), ENOMEM (no memory or address space), or the errno of
 * memfd_create for a shared table. Without LACUNA_TABLE_SHARED the
 * memory is private and reserved like a pool (MAP_NORESERVE, no transparent huge pages), so a
 * 1 GiB table costs nothing until written. */
LACUNA_API int lacuna_table_create(size_t bytes, unsigned flags, lacuna_table **table);

/* First byte of the table; NULL for a NULL table. */
LACUNA_API void *lacuna_table_base(const lacuna_table *table);

/* Size of the table in bytes; 0 for a NULL table. */
LACUNA_API size_t lacuna_table_size(const lacuna_table *table);

/* The tracking in force (AUTO may have fallen back to RESIDENT); 0 for a NULL table. */
LACUNA_API lacuna_tracking lacuna_table_tracking(const lacuna_table *table);

/* Say "I wrote [addr, addr+len)" (manual tracking). Mark everything written: with line tracking
 * (the default) a wipe zeroes only the marked lines, so an unmarked byte in a marked page
 * survives it (with LACUNA_TABLE_PAGES, the whole page is zeroed). Bytes outside the table are
 * ignored (a range straddling either end counts for its part inside), as is len 0 and any table
 * not tracking manually. Inline: per page, a load of its bit and of its line mask and, the first
 * time a page (or line) is marked after a wipe, an atomic OR — cheap enough for every insert.
 * Thread-safe (also across processes for a shared table); must not race with
 * lacuna_table_wipe. */
LACUNA_INLINE void lacuna_table_mark(lacuna_table *table, const void *addr, size_t len)
{
    /* C89-clean (declarations first, no for-loop declarations): lacuna.h is included by C89 and
     * C++98 programs too. */
    const lacuna_table_head *h = (const lacuna_table_head *)table;
    uintptr_t a, b, off, end, in_page;
    size_t first, last, p;
    if (table == NULL || h->bits == NULL || len == 0)
        return;
    a = (uintptr_t)addr;
    b = (uintptr_t)h->base;
    if (a < b) { /* starts before the table: keep the part inside, if any */
        if (len <= b - a)
            return;
        len -= b - a;
        a = b;
    }
    off = a - b;
    if (off >= h->bytes)
        return;
    if (len > h->bytes - off)
        len = h->bytes - off;
    end = off + len - 1; /* last byte */
    first = off >> h->page_shift;
    last = end >> h->page_shift;
    in_page = ((uintptr_t)1 << h->page_shift) - 1;
    for (p = first; p <= last; p++) {
        uint64_t bit = (uint64_t)1 << (p & 63);
        if (!(__atomic_load_n(&h->bits[p >> 6], __ATOMIC_RELAXED) & bit))
            __atomic_fetch_or(&h->bits[p >> 6], bit, __ATOMIC_RELAXED);
        if (h->lines != NULL) {
            unsigned lo = p == first ? (unsigned)((off & in_page) >> h->line_shift) : 0;
            unsigned hi = p == last ? (unsigned)((end & in_page) >> h->line_shift) : 63;
            uint64_t m = (~(uint64_t)0 >> (63 - hi)) & (~(uint64_t)0 << lo);
            if ((__atomic_load_n(&h->lines[p], __ATOMIC_RELAXED) & m) != m)
                __atomic_fetch_or(&h->lines[p], m, __ATOMIC_RELAXED);
        }
    }
}

/* Zero every line (or page) written since the last wipe (as marked, as the kernel saw, or as
 * resident, according to the tracking) and start tracking afresh. Afterwards the whole table
 * reads 0, provided every byte written was marked (manual tracking: see lacuna_table_mark). A
 * release the kernel refuses (mlocked memory, for one) is made up by hole punching (shared) or
 * memset, so it is not an error; neither is lost kernel tracking (see LACUNA_TABLE_AUTO). Returns
 * 0, EINVAL (NULL), or the errno of a failed scan (PAGEMAP_SCAN, mincore, or re-protecting written
 * pages); the pages not yet zeroed are then still tracked, and a retry finishes. Uses about 7 KiB
 * of stack. Not thread-safe against writers of the table or other wipes of it (in any process). */
LACUNA_API int lacuna_table_wipe(lacuna_table *table);

/* Unmap the table; NULL is a no-op. A shared table stays alive in the processes that still map
 * it (each of them destroys its own copy). */
LACUNA_API void lacuna_table_destroy(lacuna_table *table);

#ifdef __cplusplus
}
#endif

#endif /* LACUNA_WIPE_H */
