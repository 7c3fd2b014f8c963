/* lacuna — many short-lived, guarded memory regions (green-thread stacks first of all) carved from
 * ONE reserved mapping, whose pages go back to the kernel when the regions are freed.
 *
 * Reading order: this header (the pool, then the overflow handler), then examples/stacks.c, then
 * src/pool.c and src/os.c.
 *
 * Conventions, for every function here:
 *   - calls that can fail return 0 or a positive errno value (EINVAL, ENOMEM, ...), as pthreads do;
 *   - calls that hand out memory return NULL and set errno, as malloc does;
 *   - bad input (NULL, a foreign pointer, a double free, an absurd size) is reported with EINVAL
 * and never crashes or corrupts a pool. Builds with -DLACUNA_DEBUG also print the call and value.
 *   - a zero-initialised config struct gives good defaults.
 *
 * Linux only. Kernel features are probed at run time (see lacuna_features); nothing here depends
 * on the kernel headers the program was built with.
 */
#ifndef LACUNA_H
#define LACUNA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LACUNA_API __attribute__((visibility("default")))

/* Inline functions of the headers: static inline in C99 and C++, the GNU spelling in C89 (the
 * headers are C89- and C++98-clean: tests/consumer_c89.c). */
#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
#define LACUNA_INLINE static inline
#else
#define LACUNA_INLINE static __inline__
#endif

#define LACUNA_VERSION_MAJOR 0
#define LACUNA_VERSION_MINOR 1
#define LACUNA_VERSION_PATCH 0

/* ---------------------------------------------------------------------------------------------
 * The region pool
 *
 * A pool is one or more reservations of slots. Each slot is [guard][region]: the guard lies
 * BELOW the region, where a downward-growing stack overflows into it. lacuna_alloc returns the
 * lowest usable byte of a region; a stack's initial stack pointer is that plus region_size.
 * With capacity 0 (the default) the pool grows on demand, a reservation at a time (each doubling
 * the slots, placed right after the last where the address space allows, so the kernel merges
 * them into one VMA), up to a ceiling of 16,777,216 slots (and 16 TiB of address space); an
 * explicit capacity is one reservation of exactly that many slots.
 *
 * Freed regions first go to a warm cache (most recently freed is reused first: its pages are the
 * hottest). Past the cache bound, or after decay_ms unused, regions are released to the kernel
 * in batches (one process_madvise per 128 regions where the kernel allows it; neighbouring
 * regions as one range, across the guard markers between them, which stay).
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_pool lacuna_pool;

/* What happens to a freed region's pages when it leaves the warm cache. */
typedef enum lacuna_release {
    LACUNA_RELEASE_DEFAULT = 0, /* = LACUNA_RELEASE_DONTNEED */
    LACUNA_RELEASE_DONTNEED,    /* pages dropped now; RSS falls; next touch faults in a zero page */
    LACUNA_RELEASE_FREE,        /* MADV_FREE: kernel reclaims lazily; reuse before that costs no
                                   fault. Old bytes may survive. Under LACUNA_ZERO this becomes
                                   DONTNEED (zeroing lazily-freed pages would fault them all in). */
    LACUNA_RELEASE_NEVER        /* keep every page (a plain pool): RSS stays at its peak */
} lacuna_release;

/* How each region's guard is made. Modes actually in force are reported in lacuna_stats. */
typedef enum lacuna_guard {
    LACUNA_GUARD_DEFAULT = 0, /* best available: kernel guard markers, else mprotect (bounded),
                                 else none */
    LACUNA_GUARD_MARKER,      /* MADV_GUARD_INSTALL (Linux >= 6.13) only: no VMA split.
                                 lacuna_pool_create fails with ENOTSUP without it */
    LACUNA_GUARD_MPROTECT,    /* mprotect(PROT_NONE): 2 VMAs per guard, so bounded by a budget
                                 (lacuna_features.mprotect_guard_budget); past it regions are
                                 handed out unguarded and counted in lacuna_stats.unguarded */
    LACUNA_GUARD_NONE /* no guard; guard_size bytes are still left unused below each region */
} lacuna_guard;

/* Flags for lacuna_pool_config.flags. */
#define LACUNA_ZERO                                                                                \
    1u /* every region handed out reads as all zero bytes. Without it the                          \
          contents of a region are undefined (old data, or zero). A thread                         \
          reusing its own freed regions pays one mincore per ~16-32 allocs                         \
          (its cached regions are zeroed together) and sysinfo once a second. */
#define LACUNA_BACKGROUND                                                                          \
    2u /* start a thread that releases warm regions of the shared cache, and                       \
          gives back the guards and page tables of the free runs they leave,                       \
          once idle between 15/16 of decay_ms and decay_ms, so an idle process                     \
          gives memory back too. Threads' own caches (up to 32 regions each)                       \
          stay until their owners call again. Off unless asked for; stopped                        \
          and joined by lacuna_pool_destroy. */
#define LACUNA_STRICT_GUARD                                                                        \
    4u /* never hand out a region without its guard: where one cannot be                           \
          made (the mprotect budget is spent, vm.max_map_count is reached,                         \
          the kernel refuses), lacuna_alloc fails with ENOMEM instead, and                         \
          lacuna_stats.guard_error says why. With LACUNA_GUARD_NONE:                               \
          lacuna_pool_create fails with EINVAL. */

/* Named values for the fields whose 0 means "default". */
#define LACUNA_CACHE_NONE ((size_t)-1) /* cache: keep no warm regions; release on every free */
#define LACUNA_DECAY_NEVER                                                                         \
    ((unsigned)-1) /* decay_ms: never release warm regions for being idle                          \
                    */

typedef struct lacuna_pool_config {
    size_t region_size;     /* usable bytes per region; required; rounded up to the page size */
    size_t capacity;        /* most regions live at once; 0 = grow on demand (up to 16,777,216
                               slots or 16 TiB of address space, whichever comes first) */
    size_t guard_size;      /* guard bytes BELOW each region; 0 = one page; rounded up to pages */
    lacuna_guard guard;     /* 0 = best available */
    lacuna_release release; /* 0 = DONTNEED */
    size_t cache;           /* freed regions kept warm in the shared cache; 0 = min(1024, 64 MiB
                               of regions); LACUNA_CACHE_NONE = none, release on every free.
                               With cache >= 64 (or RELEASE_NEVER) each thread also keeps up to
                               32 regions of its own: the lock-free warm path. Below that every
                               alloc and free takes the pool lock (e.g. 2 MiB regions by default:
                               cache 32; set cache to 64 or more for the fast path). */
    size_t keep_resident;   /* bytes at the TOP of a region never released (memset to zero instead
                               under LACUNA_ZERO); rounded up to pages, and must then leave at
                               least one page of the (rounded) region to release */
    unsigned decay_ms;      /* warm regions unused this long are released; 0 = 1000 ms;
                               LACUNA_DECAY_NEVER = never */
    unsigned flags;         /* LACUNA_ZERO | LACUNA_BACKGROUND | LACUNA_STRICT_GUARD */
} lacuna_pool_config;

/* Counters and geometry of a pool, filled by lacuna_pool_stats. Counters are exact when no other
 * thread is using the pool, and a consistent-enough snapshot otherwise. */
typedef struct lacuna_stats {
    size_t live;           /* regions handed out and not yet freed */
    size_t warm;           /* freed regions whose pages are kept (shared cache + thread caches) */
    size_t released;       /* free slots holding no pages: released, or guarded but unused */
    size_t used;           /* slots handed out and not given back since (never-used and
                              given-back slots cost nothing: see given_back) */
    size_t capacity;       /* slots reserved now: a growing pool's grows with it */
    size_t region_size;    /* usable bytes per region (page-rounded) */
    size_t guard_size;     /* bytes below each region */
    size_t stride;         /* guard_size + region_size: distance between regions */
    size_t reserved_bytes; /* address space reserved for regions now: capacity * stride (the
                              side tables, ~80 bytes a slot of capacity_max, come on top) */
    size_t cache;          /* the shared warm-cache bound in force */
    size_t keep_resident;  /* bytes kept at the top of a released region */
    unsigned decay_ms;     /* decay in force (LACUNA_DECAY_NEVER = none) */
    uint64_t allocs;       /* successful lacuna_alloc calls */
    uint64_t frees;        /* successful lacuna_free calls */
    uint64_t released_regions; /* regions whose pages went back to the kernel, counted each time */
    uint64_t release_calls;    /* syscalls spent releasing (one process_madvise counts once) */
    uint64_t guard_calls;      /* syscalls spent installing guards */
    uint64_t unguarded;        /* regions handed out without a guard (mprotect budget exhausted) */
    uint64_t release_errors;   /* release syscalls that failed (those regions stayed warm) */
    lacuna_guard guard;        /* mode in force after probing: MARKER, MPROTECT or NONE */
    lacuna_release release;    /* mode in force: DONTNEED, FREE or NEVER */
    unsigned flags;            /* flags in force */
    size_t capacity_max;       /* the most slots the pool can have: capacity as configured, or
                                  a growing pool's ceiling */
    uint64_t given_back;       /* free slots whose guard, page tables and state line were given
                                  back to the kernel (long free runs, after release rounds) */
    uint64_t guard_failures;   /* guard installs that failed: the region was held back (and
                                  lacuna_alloc failed with ENOMEM if it had no other), or, past
                                  the mprotect budget without LACUNA_STRICT_GUARD, handed out
                                  unguarded (then counted in unguarded too) */
    int guard_error;           /* why the last guard install failed: ENOSPC the mprotect guard
                                  budget is spent; ENOMEM the kernel is out of memory or
                                  vm.max_map_count is reached; EINVAL the pool's memory is locked
                                  (mlock); 0 none failed */
} lacuna_stats;

/* Create a pool. Returns 0 and sets *pool, or:
 *   EINVAL  config or pool NULL, region_size 0, keep_resident >= region_size, unknown enum value
 *           or flag, capacity * stride overflowing or larger than the address space allows,
 *           LACUNA_STRICT_GUARD with LACUNA_GUARD_NONE;
 *   ENOTSUP guard = LACUNA_GUARD_MARKER and the kernel has no working MADV_GUARD_INSTALL;
 *   ENOMEM  the reservation (or its side tables) could not be made;
 *   EAGAIN  (LACUNA_BACKGROUND) the background thread could not be started.
 * On failure nothing stays mapped or allocated. Cost is O(1) in capacity: no page of a region is
 * touched and no guard is installed until its slot is first handed out. */
LACUNA_API int lacuna_pool_create(const lacuna_pool_config *config, lacuna_pool **pool);

/* Unmap the whole reservation and free the pool; NULL is a no-op. Every region of the pool is
 * invalid afterwards. The caller must ensure no other thread is using the pool. (Another thread
 * that used it keeps the pool's small struct, ~1.5 KiB, until that thread uses other pools or
 * exits: at most 4 per thread. So no new pool is made at that address while the thread's cache
 * could still take it for the old one.) */
LACUNA_API void lacuna_pool_destroy(lacuna_pool *pool);

/* Hand out a region: returns its lowest usable byte, or NULL with errno set to
 *   EINVAL  pool is NULL;
 *   ENOMEM  no slot is free in the shared lists: every slot is live or sits in another thread's
 *           cache or on its way back to the thread that allocated it (a thread holds at most 32
 *           in its cache, 16 freed it has not handed back, and 63 others handed back to it;
 *           regions handed back and not yet taken are taken first; the pool keeps
 *           working: free one and retry), a growing
 *           pool is at its ceiling or could not reserve more address space, or a guard could not
 *           be installed (guard markers and the kernel is out of memory; or LACUNA_STRICT_GUARD
 *           and no guard of any kind could be made: lacuna_stats.guard_error says why);
 *   ENOTSUP LACUNA_GUARD_MARKER and the kernel refuses markers in this pool's memory because it
 *           is locked (mlock, mlockall(MCL_FUTURE)); said once on stderr. A LACUNA_GUARD_DEFAULT
 *           pool falls back to mprotect guards instead (also said once), and keeps working.
 * Thread-safe. The warm path (a region this thread freed recently) takes no lock, no syscall.
 * Each thread's cache is handed back when the thread exits (a pthread key destructor); should
 * the process have no pthread key left, threads simply go without a cache. */
LACUNA_API void *lacuna_alloc(lacuna_pool *pool);

/* Give a region back. Returns 0, or EINVAL when pool is NULL, region is NULL, not the start of a
 * region of this pool (outside it, inside a guard, misaligned), or not live (a double free);
 * the pool is unchanged then. Thread-safe; a region may be freed by any thread. */
LACUNA_API int lacuna_free(lacuna_pool *pool, void *region);

/* Release every warm region of the shared cache and of the calling thread's cache now, in
 * batches (then give back the guards and page tables of long runs of free slots, which get their
 * guard again when next handed out), and ask every other thread's cache (at most 32 regions each)
 * to do the same: each does it on its owner's next slow path (within 256 of that thread's
 * allocations, or a free that finds its cache full), so a thread that makes no calls keeps its
 * cache until it does or exits. Returns 0, EINVAL (NULL pool, or the kernel refuses to release
 * locked memory: mlock, mlockall), or the errno of another failed release syscall (those regions
 * stay warm and are retried later). Release keeps working when the program closes every descriptor
 * (close_range, closefrom): lacuna needs none where the kernel has PIDFD_SELF, and renews its pidfd
 * otherwise. */
LACUNA_API int lacuna_trim(lacuna_pool *pool);

/* Fill *stats. NULL pool or stats: stats is left unchanged / nothing happens. */
LACUNA_API void lacuna_pool_stats(const lacuna_pool *pool, lacuna_stats *stats);

/* Region index of a pointer inside one of the pool's regions (any byte, not only the start), or
 * -1 if it is not inside a region. Handy to name a region in logs; O(1). */
LACUNA_API long lacuna_region_index(const lacuna_pool *pool, const void *addr);

/* ---- holes in live regions, residency ---- */

/* Release the pages of a LIVE region below keep_from (rounded down to a page), keeping every byte
 * at and above it, and the guard: for a parked stack, keep_from is its saved stack pointer minus
 * a red zone (128 bytes on x86-64). Released pages read zero when next touched and leave RSS now
 * (MADV_DONTNEED whatever the pool's release mode; RELEASE_NEVER pools too: the caller asked).
 * keep_from may be anything from region (nothing released) to region + region_size (all of it).
 * Returns 0, or
 *   EINVAL  pool NULL, region not the start of a live region of this pool, keep_from outside
 *           [region, region + region_size]; or the kernel refused (locked memory: mlock);
 *   ENOMEM and other madvise errno values from the kernel.
 * The caller must own the region (no concurrent lacuna_free of it). Thread-safe otherwise. */
LACUNA_API int lacuna_punch(lacuna_pool *pool, void *region, const void *keep_from);

/* One punch request of lacuna_punch_many. */
typedef struct lacuna_punch_req {
    void *region;          /* start of a live region */
    const void *keep_from; /* as lacuna_punch's */
} lacuna_punch_req;

/* lacuna_punch for n regions at once, batched (one process_madvise per 128 regions where the
 * kernel allows it): a fiber runtime punches thousands of parked stacks per round this way.
 * Every request is checked first: on EINVAL (pool NULL, reqs NULL with n > 0, any request bad
 * as for lacuna_punch) nothing is released. A kernel error stops at that batch (earlier batches
 * were released; punching again is harmless). n = 0 is a no-op. */
LACUNA_API int lacuna_punch_many(lacuna_pool *pool, const lacuna_punch_req *reqs, size_t n);

/* How many pages of a live region are resident now (PAGEMAP_SCAN, or mincore on kernels before
 * 6.7 or with LACUNA_FORCE_FALLBACK=scan). Pages released lazily with MADV_FREE count as resident
 * until the kernel takes them. Returns 0 and *pages, or EINVAL (pool or pages NULL, region not
 * the start of a live region of this pool), or the errno of the query. */
LACUNA_API int lacuna_resident(const lacuna_pool *pool, const void *region, size_t *pages);

/* ---- freeing the stack you run on, freeing by top ---- */

/* Free a region the calling thread may be running on right now (a finished coroutine's stack):
 * the region stays untouched until this thread's next lacuna_alloc or lacuna_free on the SAME
 * pool, or lacuna_flush(pool), or the thread's exit, and is freed then, as by lacuna_free. So
 * the caller must have left the region (switched to another stack) before making any of those
 * calls on this pool. Deferrals are per thread: another thread's calls never free this thread's
 * deferred regions; a thread may defer any number, of any pools. A deferred region is no longer
 * live: lacuna_free, lacuna_punch or a second lacuna_free_deferred of it is EINVAL. Until it is
 * freed it counts as live in lacuna_stats. No syscall and no pool lock (the thread's list grows
 * with realloc). Returns 0, or EINVAL (pool NULL, region not the start of a live region of this
 * pool), ENOMEM (no memory for this thread's list of deferrals) or EAGAIN (the process has no
 * pthread key left, so a deferral could not be freed at thread exit); nothing changed then. */
LACUNA_API int lacuna_free_deferred(lacuna_pool *pool, void *region);

/* Free now every region the calling thread deferred on this pool (the other threads' stay
 * deferred), and hand back the regions of other threads it freed that still wait in its batch
 * (such regions go back to the thread that allocated them, 16 at a time). Returns
 * 0, or EINVAL when pool is NULL. */
LACUNA_API int lacuna_flush(lacuna_pool *pool);

/* lacuna_free by a region's top: the address one past its last byte (region + region_size),
 * which is what Boost.Context and libdill keep for a stack. Only that exact address: an interior
 * address (a saved stack pointer, say) is EINVAL, because a stale pointer into a region must
 * never free it; lacuna_region_index maps an interior address to its region when that is meant.
 * Returns as lacuna_free does. */
LACUNA_API int lacuna_free_top(lacuna_pool *pool, void *top);

/* ---------------------------------------------------------------------------------------------
 * Kernel features, probed once per process
 * ------------------------------------------------------------------------------------------- */

typedef struct lacuna_features {
    int guard_marker;  /* MADV_GUARD_INSTALL works (probed by effect: a write() from a guarded
                          page fails with EFAULT) */
    int batch_release; /* process_madvise on self works for DONTNEED/FREE */
    int pagemap_scan;  /* PAGEMAP_SCAN ioctl on /proc/self/pagemap works */
    int madv_free;     /* MADV_FREE accepted */
    size_t page_size;
    size_t max_map_count;         /* vm.max_map_count (65530 when unreadable) */
    size_t mprotect_guard_budget; /* mprotect guards allowed process-wide: a quarter of
                                     max_map_count VMAs, 2 VMAs per guard */
    const char *forced;           /* LACUNA_FORCE_FALLBACK as read, or "" */
    uint64_t pidfd_renewals;      /* times lacuna found the pidfd it releases memory through
                                     closed by the program (close_range, closefrom) and opened a
                                     new one; always 0 where the kernel has PIDFD_SELF (Linux
                                     >= 6.15), which needs no descriptor */
} lacuna_features;

/* Probe (once) and report. LACUNA_FORCE_FALLBACK=all, or a comma list of
 * guard,batch,scan,free,uffd,pidfd_self,map_files,membarrier,psi,prefault, makes the older path be
 * used even where the kernel has the newer one (for testing; pidfd_self: batch through a pidfd of
 * our own, not PIDFD_SELF; map_files: tell shared memory apart through /proc/self/mountinfo, as a
 * process without the privilege to open /proc/self/map_files must; membarrier: release parked
 * fibers' pages only where no other worker can resume them; psi: no memory-pressure watcher;
 * prefault: fiber stacks' top pages fault on first use, not in one call per batch of stacks). */
LACUNA_API void lacuna_features_get(lacuna_features *features);

/* ---------------------------------------------------------------------------------------------
 * Version and names, for logs
 * ------------------------------------------------------------------------------------------- */

/* The header's version as one number (0.1.0 is 100, 1.2.3 is 10203), to compare with
 * lacuna_version_number(). */
#define LACUNA_VERSION_NUMBER                                                                      \
    (LACUNA_VERSION_MAJOR * 10000 + LACUNA_VERSION_MINOR * 100 + LACUNA_VERSION_PATCH)

/* The version of the library the program runs with, "MAJOR.MINOR.PATCH", and the same as
 * LACUNA_VERSION_NUMBER would spell it. These are the library's own (a shared liblacuna may be
 * newer than the header the program was compiled with); a program that wants to know can compare
 * lacuna_version_number() with LACUNA_VERSION_NUMBER. Never fail; the string is static. */
LACUNA_API const char *lacuna_version(void);
LACUNA_API int lacuna_version_number(void);

/* The name of an enum value as this header spells it, for logs: lacuna_guard_name(st.guard) is
 * "LACUNA_GUARD_MARKER". A value that is no enumerator of the type gives "(not a lacuna_guard)"
 * (resp. lacuna_release). Never NULL; the strings are static. The wipe enums have theirs at the
 * end of this header. */
LACUNA_API const char *lacuna_guard_name(lacuna_guard guard);
LACUNA_API const char *lacuna_release_name(lacuna_release release);

/* ---------------------------------------------------------------------------------------------
 * Stack overflow reporting
 * ------------------------------------------------------------------------------------------- */

/* Install (once per process) a SIGSEGV handler and give the CALLING THREAD an alternate signal
 * stack; call it again on every other thread whose overflows must be reported (the handler
 * cannot run on an overflowed stack, so each thread needs its own). For a fault inside a guard of
 * any live pool (there is no limit on how many) it writes one of
 *     lacuna: stack overflow in region N of pool 0x... (fault at 0x...)
 *     lacuna: write past the end of region N-1 of pool 0x... (into the guard of region N, fault
 *             at 0x...)
 * to stderr (async-signal-safe) and dies by SIGSEGV as usual. Which one is told by the faulting
 * stack pointer: in region N or its guard, the stack of N overflowed; anywhere else, something
 * wrote upwards past the end of region N-1. (A frame larger than the guard can jump past it
 * unseen; -fstack-clash-protection makes such frames probe every page, and then the report is
 * exact.) Fibers are named by their name instead of "region N of pool ...".
 * Only faults (si_code > 0) are matched: a SIGSEGV sent by kill, raise or pthread_kill, and any
 * fault outside the guards, get exactly what they would without lacuna (the handler installed
 * before, or the default action: death by SIGSEGV; an ignored sent signal stays ignored), and
 * the handler stays installed (a handler installed before keeps its mask, SA_NODEFER and
 * SA_RESETHAND). A fault in a guard itself is lacuna's: reported, then fatal; a handler installed
 * before does not see it. Returns 0, EAGAIN (the process has no pthread key left: the
 * signal stack could not be freed at thread exit), or an errno value from
 * sigaction/sigaltstack/malloc. */
LACUNA_API int lacuna_overflow_handler_install(void);

#ifdef __cplusplus
}
#endif

#include "lacuna/fiber.h"
#include "lacuna/sync.h"
#include "lacuna/wipe.h"

#ifdef __cplusplus
extern "C" {
#endif
/* Names for logs, as lacuna_guard_name: "LACUNA_WIPE_PAGEMAP", "LACUNA_TRACK_WRITTEN"; a value
 * that is no enumerator gives "(not a lacuna_wipe_strategy)" (resp. lacuna_tracking). */
LACUNA_API const char *lacuna_wipe_strategy_name(lacuna_wipe_strategy strategy);
LACUNA_API const char *lacuna_tracking_name(lacuna_tracking tracking);
#ifdef __cplusplus
}
#endif

#endif /* LACUNA_H */
