/* Internal interfaces shared between lacuna's source files. Nothing here is public: every name is
 * lac_*, hidden from the shared library by -fvisibility=hidden. Grouped by the file that
 * defines it; arrows between layers point down only (fiber -> pool -> os).
 */
#ifndef LACUNA_INTERNAL_H
#define LACUNA_INTERNAL_H

#include "lacuna.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <time.h>

#define LAC_LIKELY(x)   __builtin_expect(!!(x), 1)
#define LAC_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Debug builds name the call and the value on bad input; release builds stay silent. */
#ifdef LACUNA_DEBUG
void lac_debug_bad_input(const char *call, const char *what, const void *value);
#define LAC_BAD_INPUT(call, what, value) lac_debug_bad_input(call, what, value)
#else
#define LAC_BAD_INPUT(call, what, value) ((void)0)
#endif

/* ---- os.c: the only file that makes memory syscalls ------------------------------------------ */

/* How a release drops pages. */
typedef enum lac_advice {
    LAC_ADV_DONTNEED, /* MADV_DONTNEED: pages gone now, refault as zero */
    LAC_ADV_FREE,     /* MADV_FREE: pages reclaimed lazily, may keep old data */
    LAC_ADV_REMOVE,   /* MADV_REMOVE: punch the pages out of shmem/memfd backing (the only
                         advice that frees shared pages; EINVAL on private memory) */
} lac_advice;

/* The probed features (probing happens on the first call; thread-safe). */
const lacuna_features *lac_os_features(void);

/* Reserve len bytes (page multiple) of read-write, private, anonymous, MAP_NORESERVE memory with
 * transparent huge pages off: 0 and *out, or errno (ENOMEM: no address space; nothing mapped). */
int lac_os_reserve(size_t len, void **out);

/* lac_os_reserve, placed exactly at `at` when that range is free (MAP_FIXED_NOREPLACE: never over
 * a mapping), so that it extends the reservation ending there and the kernel merges both into one
 * VMA; elsewhere when it is not. 0 and *out (== at when adjacent), or errno as lac_os_reserve. */
int lac_os_reserve_near(void *at, size_t len, void **out);

/* Give the page tables of [addr, addr+len) back: remove its guard markers (markers: they are page
 * table entries, and a page-table page holding one is never freed) and MADV_DONTNEED the whole
 * range, which lets the kernel free page-table pages left empty (Linux reclaims them on
 * DONTNEED since 6.x where PT_RECLAIM is built; elsewhere only the pages go). n ranges, batched.
 * Every range is left without guard and without pages even on error, as far as *done says. 0 or
 * errno. */
int lac_os_unguard(const struct iovec *ranges, size_t n, bool markers, size_t *done,
                   uint64_t *calls);

/* Unmap a reservation made by lac_os_reserve. 0 or errno. */
int lac_os_unreserve(void *addr, size_t len);

/* Install guard markers (MADV_GUARD_INSTALL) on n page-aligned ranges: one process_madvise when
 * batching works, else one madvise per range. *done = ranges guarded, from the front; *calls (if
 * not NULL) is increased by the syscalls made. 0, or the errno that stopped it at *done (EINVAL on
 * a locked mapping: mlock/mlockall). Precondition: lac_os_features()->guard_marker. */
int lac_os_guard_markers(const struct iovec *ranges, size_t n, size_t *done, uint64_t *calls);

/* Fault in n page-aligned ranges for writing (MADV_POPULATE_WRITE) in one process_madvise; only
 * where that works (Linux >= 6.13, probed on first use; not with LACUNA_FORCE_FALLBACK=prefault
 * or batch): a madvise a range would cost what the demand faults it saves do. 0, ENOTSUP (not
 * made), or the errno that stopped it; nothing depends on it: a page left out faults on use. */
int lac_os_prefault(const struct iovec *ranges, size_t n);

/* mprotect(PROT_NONE) one page-aligned range. 0 or errno (ENOMEM: vm.max_map_count reached). */
int lac_os_guard_mprotect(void *addr, size_t len);

/* Release the pages of n page-aligned ranges with the given advice, batched by 1024 per
 * process_madvise where possible (a partial call is completed with the remainder; a batch the
 * kernel refuses, e.g. the program closed our pidfd, is redone range by range), else one madvise
 * per range. *done = ranges fully released, from the front; *calls (if not NULL) is increased by
 * the syscalls made. 0, or the errno of the range [*done] that could not be released (EINVAL:
 * the mapping is locked, or the advice does not apply to it). */
int lac_os_release(const struct iovec *ranges, size_t n, lac_advice advice, size_t *done,
                   uint64_t *calls);

/* Whether the system has swap configured now (sysinfo): only then can a page that mincore calls
 * non-resident still hold data. */
bool lac_os_has_swap(void);

/* The stack pointer of an interrupted context (a signal handler's ucontext_t). */
uintptr_t lac_os_context_sp(const void *ucontext);

/* mincore: one byte per page of [addr, addr+len), bit 0 set if resident. 0 or errno. */
int lac_os_resident(const void *addr, size_t len, unsigned char *vec);

/* Whether LACUNA_FORCE_FALLBACK names `what` (or `all`). */
bool lac_os_forced(const char *what);

/* A memory barrier on every running thread of the process (membarrier private expedited). 0, or
 * ENOSYS where there is none (old kernel, valgrind, LACUNA_FORCE_FALLBACK=membarrier). */
int lac_os_membarrier(void);
bool lac_os_has_membarrier(void); /* whether lac_os_membarrier can work (no barrier made) */

/* Whether PAGEMAP_SCAN can report LAC_PAGE_GUARD (Linux >= 6.15), as probed. A safety check, so
 * it is not turned off by LACUNA_FORCE_FALLBACK. */
bool lac_os_can_see_guards(void);

/* Test-only fault injection (CMake -DLACUNA_FAULT_INJECTION=ON): make the nth call (1 = the next)
 * of an operation fail with err, or with LAC_FAULT_PARTIAL make the nth batched release stop
 * halfway through its first range (the rest must be completed). nth = 0 disarms. */
typedef enum lac_op {
    LAC_OP_RESERVE,
    LAC_OP_RELEASE,
    LAC_OP_GUARD,
    LAC_OP_SCAN,
    LAC_OP_REMAP, /* lac_os_remap, lac_os_punch */
    LAC_OP_COUNT
} lac_op;
#define LAC_FAULT_PARTIAL (-1)
void lac_fault_inject(lac_op op, unsigned nth, int err);
/* The errno the current call of op must fail with (or LAC_FAULT_PARTIAL), 0 to make the call. */
#ifdef LACUNA_FAULT_INJECTION
int lac_fault_take(lac_op op);
#else
static inline int lac_fault_take(lac_op op)
{
    (void)op;
    return 0;
}
#endif

/* ---- os_wipe.c: the kernel's view of mappings, zeroing, shared memory, write tracking -------- */

/* A descriptor the library keeps open, with the identity of its file and the process that opened
 * it: the program may close every fd it does not know (close_range, closefrom) and the number be
 * reused, or fork. Never close or use the number unless lac_os_fd_ours says it is still ours. */
typedef struct lac_fd {
    int fd;       /* -1: none */
    int pid;      /* getpid() at open */
    uint64_t dev; /* st_dev, st_ino of the file at open */
    uint64_t ino;
} lac_fd;
#define LAC_FD_NONE ((lac_fd){.fd = -1})

/* Whether f->fd is still open on the file it was opened on (in this process or, inherited, in a
 * child). One fstat. */
bool lac_os_fd_ours(const lac_fd *f);

/* Close f if it is still ours (else the number belongs to the program: leave it); f becomes
 * LAC_FD_NONE. Preserves errno. */
void lac_os_fd_close(lac_fd *f);

/* A run of pages [start, end) reported by PAGEMAP_SCAN. */
typedef struct lac_run {
    uintptr_t start, end;
} lac_run;
#define LAC_PAGE_PRESENT (1u << 3) /* PAGEMAP_SCAN category: page is in memory */
#define LAC_PAGE_WRITTEN (1u << 1) /* PAGEMAP_SCAN category: written (inside uffd-wp ranges) */
#define LAC_PAGE_SWAPPED (1u << 4) /* PAGEMAP_SCAN category: in swap */
#define LAC_PAGE_PFNZERO (1u << 5) /* PAGEMAP_SCAN category: maps the shared zero page */
#define LAC_PAGE_GUARD   (1u << 8) /* PAGEMAP_SCAN category: guard marker (Linux 6.15) */

/* What a PAGEMAP_SCAN looks for. */
typedef struct lac_scan_query {
    uint64_t required; /* categories a page must all have */
    uint64_t anyof;    /* ...and at least one of these (0: no condition) */
    uint64_t excluded; /* ...and none of these */
    unsigned flags;    /* LAC_SCAN_REPROTECT: write-protect the reported pages again (only inside
                          a range of lac_os_wp_open; EPERM otherwise) */
    size_t max_pages;  /* stop once this many pages were reported (0: no limit) */
} lac_scan_query;
#define LAC_SCAN_REPROTECT 1u
#define LAC_SCAN_MAX       128 /* most runs one call reports (its scratch lives on the stack) */

/* PAGEMAP_SCAN of [start, end) for pages matching q: up to max (<= LAC_SCAN_MAX) runs into runs,
 * their number in *nruns, and in *next where the walk stopped (at max runs, at max_pages, or end).
 * 0 or errno. The process's /proc/self/pagemap descriptor is opened at first use and reopened
 * when the program closed it or in a forked child. No fault injection and no feature check: the
 * probe in os.c uses it before the features exist. */
int lac_os_pagemap_scan(uintptr_t start, uintptr_t end, const lac_scan_query *q, lac_run *runs,
                        size_t max, size_t *nruns, uintptr_t *next);

/* lac_os_pagemap_scan of [addr, addr+len) for wipe.c: ENOTSUP when the probe found no
 * PAGEMAP_SCAN. Works even when `scan` is forced off: callers wanting the forced fallback check
 * lacuna_features.pagemap_scan. */
int lac_os_scan_ex(const void *addr, size_t len, const lac_scan_query *q, lac_run *runs, size_t max,
                   size_t *nruns, uintptr_t *next);

/* Zero [addr, addr+len) of resident memory the fastest way this CPU has (streaming stores on
 * x86_64, memset elsewhere). addr and len multiples of 64. Not a syscall, but CPU-specific.
 * Call lac_os_zero_fence once after the last lac_os_zero of an operation, before returning to
 * code that may publish the zeroed memory to other threads. */
void lac_os_zero(void *addr, size_t len);
void lac_os_zero_fence(void);

/* One mapping (VMA) as /proc/self/maps (or smaps) shows it. Paths are never read: a name says
 * nothing about what memory is (an ext4 file may be called /memfd:x), and may be longer than any
 * buffer. */
typedef struct lac_mapping {
    uintptr_t start, end;
    char perms[5];                 /* "rw-p": read, write, exec, p(rivate) or s(hared) */
    unsigned dev_major, dev_minor; /* of the file mapped; 0:0 with inode 0 when none */
    unsigned long inode;
    unsigned attrs; /* LAC_VMA_*: NAMED always; the rest only with LAC_MAPS_ATTRS */
} lac_mapping;
#define LAC_VMA_NAMED   1u /* has a path or name ([heap], [stack], [anon:x], a file) */
#define LAC_VMA_THP_OFF 2u /* MADV_NOHUGEPAGE (VmFlags nh) */
#define LAC_VMA_THP_ON  4u /* MADV_HUGEPAGE (hg) */
#define LAC_VMA_LOCKED  8u /* mlock (lo, lf) */
#define LAC_VMA_OTHER                                                                              \
    16u                   /* any other attribute a fresh private anonymous mapping lacks:          \
                             dd, wf, dc, mg, userfaultfd, exec, a protection key, unknown */
#define LAC_MAPS_ATTRS 1u /* read /proc/self/smaps for VmFlags (costs with the process's RSS) */
typedef bool (*lac_maps_fn)(void *ctx, const lac_mapping *m);

/* The mappings overlapping [addr, addr+len), in address order, handed to fn (false: stop).
 * Lines of any length (a small buffer, the rest of a long line skipped). 0 or errno. */
int lac_os_maps(const void *addr, size_t len, unsigned flags, lac_maps_fn fn, void *ctx);

/* What a mapping's memory really is, asked of the kernel (never from its path). */
typedef enum lac_mem_kind {
    LAC_MEM_OTHER,        /* file-backed (a disk file: a release would punch it on disk), or
                             anything else lacuna does not wipe */
    LAC_MEM_PRIVATE_ANON, /* private, no file */
    LAC_MEM_SHMEM,        /* shared shmem: memfd, MAP_SHARED|MAP_ANONYMOUS, SysV, a tmpfs file */
} lac_mem_kind;

/* Classify m: private anonymous by the maps' own dev/inode (no file), shared memory by the
 * filesystem of the file behind it (fstatfs of /proc/self/map_files/..., or, where that needs a
 * privilege we lack, its device looked up in /proc/self/mountinfo). 0 and *kind, or errno. */
int lac_os_mem_kind(const lac_mapping *m, lac_mem_kind *kind);

/* mmap(MAP_FIXED) fresh private anonymous read-write pages over [addr, addr+len): atomically
 * replaces whatever was there (its pages are freed), then gives the new mapping the THP advice in
 * thp (LAC_VMA_THP_OFF or _ON, or 0). 0 or errno (nothing changed when the mmap fails). */
int lac_os_remap(void *addr, size_t len, unsigned thp);

/* A memfd of len bytes (close-on-exec) into *out. 0 or errno. */
int lac_os_memfd(size_t len, lac_fd *out);

/* Map len bytes MAP_SHARED, read-write: of fd from offset 0, or anonymous when fd < 0 (shared
 * with children forked later), into *out. 0 or errno. Unmap with lac_os_unreserve. */
int lac_os_map_shared(int fd, size_t len, void **out);

/* fallocate(PUNCH_HOLE | KEEP_SIZE) on a memfd: the shmem pages of [off, off+len) are freed.
 * 0 or errno (EBADF when the program closed the memfd). */
int lac_os_punch(const lac_fd *memfd, uint64_t off, size_t len);

/* Kernel write tracking of [addr, addr+len) (page-aligned, private anonymous): a userfaultfd in
 * asynchronous write-protect mode (Linux 6.7), so the first write to a present page after
 * lac_os_wp_open or a LAC_SCAN_REPROTECT scan makes it LAC_PAGE_WRITTEN; a page that was not
 * present is unprotected, so once written it reports WRITTEN too (look for WRITTEN and PRESENT).
 * 0 and the userfaultfd in *out (close it with lac_os_fd_close), or ENOTSUP when the kernel
 * lacks the features or LACUNA_FORCE_FALLBACK names `uffd`, EPERM when userfaultfd is not
 * permitted (vm.unprivileged_userfaultfd = 0 without CAP_SYS_PTRACE), or the errno of
 * registering. After one definitive ENOTSUP/EPERM later calls fail at once with the same value.
 * The tracking ends when the fd is closed, and in a forked child (not inherited). */
int lac_os_wp_open(void *addr, size_t len, lac_fd *out);

/* ---- process.c: every process-wide hook (fork, thread exit, SIGSEGV, the pidfd) -------------- */

/* Make sure the calling thread runs lac_pool_thread_exit (and frees its signal stack) when it
 * exits. 0, or EAGAIN when the process has no pthread key left for lacuna (the caller then does
 * without whatever needed the destructor; no other library's key is ever used). */
int lac_process_on_thread_exit(void);

/* The descriptor process_madvise acts on ourselves through: PIDFD_SELF where the kernel knows it
 * (no descriptor at all, so nothing the program closes can break it), else a pidfd of our own.
 * -1: none (batching is off). */
int lac_process_pidfd(void);

/* A batched call through `fd` failed with EBADF or ESRCH: the program closed our pidfd
 * (close_range, closefrom) or the number now names another file. Opens a fresh pidfd (the stale
 * number is never closed: it may be the program's file now) and counts it. Returns the new
 * descriptor, or -1 (then use plain madvise). */
int lac_process_pidfd_renew(int fd);

/* Times lac_process_pidfd_renew found the pidfd gone (lacuna_features.pidfd_renewals). */
uint64_t lac_process_pidfd_renewals(void);

/* os.c's probe: can process_madvise(PIDFD_SELF) be used? (Tries it on a page of `scratch`.) */
typedef bool (*lac_pidfd_test)(int fd, void *scratch);
void lac_process_pidfd_probe(lac_pidfd_test test, void *scratch, bool allow_self);

/* ---- pool*.c: the region pool ----------------------------------------------------------------
 *
 * pool.c        create, destroy, configuration, stats, the registry of live pools, fork
 * pool_slots.c  slot geometry and states, the shared warm and clean lists, guard installation
 * pool_cache.c  thread caches, lacuna_alloc and lacuna_free
 * pool_release.c release batching, decay, the background thread, lacuna_trim
 */

/* Slot states. Only LIVE has bit 0 set, so a free is one atomic bit clear (LIVE -> WARM) that
 * also tells whether the slot was live: a lock btr on x86-64.
 *   FRESH     never handed out: no guard yet, costs no page table
 *   LIVE      handed out
 *   WARM      freed, pages kept: in a thread cache or in the shared warm ring
 *   CLEAN     freed and released (or fresh with its guard): in a thread cache or the clean stack
 *   RELEASING in the hands of a thread releasing it, outside the lock
 *   RETIRING  free and released, in the hands of a thread giving back its guard and page tables
 *             (pool_release.c): FRESH again afterwards
 *   DEFERRED  given to lacuna_free_deferred: not live, on no list (so never released, given back
 *             or re-guarded), freed by its thread later (pool_cache.c). Even, as every state but
 *             LIVE: lac_line_unlive refuses it */
enum {
    LAC_S_FRESH = 0,
    LAC_S_WARM = 2,
    LAC_S_LIVE = LAC_S_WARM | 1,
    LAC_S_CLEAN = 4,
    LAC_S_RELEASING = 6,
    LAC_S_RETIRING = 8,
    LAC_S_DEFERRED = 10
};

#define LAC_TC_MAX   32 /* regions a thread keeps per pool: 2 MiB of 64 KiB stacks */
#define LAC_TLS_WAYS 4  /* pools a thread uses at once without evicting a cache */
#define LAC_REMOTE_BATCH                                                                           \
    16 /* regions another thread frees before it hands them back to their cache in one CAS */
#define LAC_REMOTE_MAX                                                                             \
    (2 * LAC_TC_MAX) /* regions on a cache's remote list at most (decay, trims take it too) */
#define LAC_REMOTE_CLOSED ((uintptr_t)1) /* lac_tcache.remote: no owner, take no more */
#define LAC_RELEASE_BATCH                                                                          \
    128                    /* regions per release round: 2.5 KiB of stack (this may run on a       \
                              small fiber stack); 128 ranges per process_madvise is plenty */
#define LAC_GUARD_BATCH 32 /* fresh slots guarded per call: neighbours share a page table */
#define LAC_STATE_STRIDE                                                                           \
    64 /* bytes between two slots' states: a cache line each, or threads freeing neighbouring      \
          slots false-share (measured: 2 threads scaled 1.21x with 1 byte per slot, see            \
          tools/churn.c). Untouched state pages cost nothing: 64 B per slot ever used. */
#define LAC_STACK_COLORS 16  /* fiber stack tops: 16 offsets 64 bytes apart (sched.c) */
#define LAC_TICK         256 /* a decay check every 256 warm-path allocs: a locked look, amortised */
#define LAC_TC_N_MASK    0xffffu           /* lac_tcache.w: the regions held */
#define LAC_TC_POP       ((1u << 16) | 1u) /* lac_tcache.w: one pop, one tick */
#define LAC_TC_BORROW    (1u << 31)        /* lac_tcache.w: the tick ran out */
_Static_assert(LAC_TICK < (1u << 15), "lac_tcache.w has 15 bits for the tick");
_Static_assert(LAC_TC_MAX <= LAC_TC_N_MASK, "lac_tcache.w has 16 bits for the count");
#define LAC_OFF_SHIFT                                                                              \
    12 /* offsets are divided in 4 KiB units: every page size is a multiple, and below             \
          LAC_MAX_RESERVE the quotient fits 32 bits (exact multiply-by-reciprocal division) */
#define LAC_MAX_RESERVE (1ull << 44) /* 16 TiB: keeps page offsets within 32 bits */
#define LAC_GROW_MAX                                                                               \
    ((size_t)1                                                                                     \
     << 24) /* slots a growing pool (capacity 0) reaches at most: 16,777,216 (and at most          \
               LAC_MAX_RESERVE of address space). Its side tables are reserved for this            \
               many (NORESERVE, ~80 bytes a slot of address space, touched per slot used) */
#define LAC_GROW_FIRST                                                                             \
    ((size_t)256 << 20) /* bytes of a growing pool's first reservation (rounded down to a power of \
                           two slots); each later one doubles the slots: ~10 for 1,000,000 */
#define LAC_CHUNKS_MAX 32 /* reservations per pool: 2^24 slots from a first of >= 2^0 need 25 */
#define LAC_GIVE_BACK_RUNS                                                                         \
    64 /* free runs given back per round: 1 KiB of iovecs on the stack, one call each way */

/* One reservation of a pool: slots [start, start + n), region of slot s at first + (s - start) *
 * stride. Immutable once published (lacuna_pool.nchunks). */
typedef struct lac_chunk {
    char *first; /* region of its first slot (= its reservation + guard) */
    size_t start, n;
} lac_chunk;

typedef struct lac_tcache {
    /* Owner-written, read by stats: the regions held (bits 0-15) and the warm pops left before
     * the next decay tick (bits 16-30). One word, so the warm alloc loads, checks and stores both
     * at once: a pop subtracts LAC_TC_POP, and a tick run out borrows into bit 31. */
    _Atomic uint32_t w;
    uint32_t cap;            /* 0 when the pool has no cache */
    _Atomic uint64_t allocs; /* pops counted when a tick is reloaded; lac_tc_allocs adds the rest;
                                owner-written, summed by lacuna_pool_stats */
    _Atomic uint64_t moved_in, moved_out; /* regions added by a refill / removed by a drain;
                                             frees = n + moved_out - moved_in + allocs, so the
                                             warm free path counts nothing */
    bool owned;                           /* a thread's TLS points here (under the pool lock) */
    uint32_t trim_seen;                   /* the pool's trim_epoch when the owner last trimmed */
    uint32_t zeroed; /* LACUNA_ZERO: bit i set = slots[i] was zeroed in this cache (owner only) */
    pthread_t owner;
    struct lac_tcache *next;             /* the pool's list of caches (under the pool lock) */
    _Atomic uint32_t *lines[LAC_TC_MAX]; /* the held slots' state lines (lac_state_at): the warm
                                            alloc goes from one to its region in a load */
    /* Owner only: regions of one other cache that this thread freed, waiting to go back to that
     * cache in one push (pool_cache.c's remote frees). Linked through their state lines; already
     * counted in moved_out. */
    struct lac_tcache *out_to;
    _Atomic uint32_t *out_head, *out_tail, *out_tail_prev; /* tail_prev links to tail */
    uint32_t out_n;
    _Atomic uint32_t *taken; /* owner only: the rest of a remote list taken, beyond lines[] */
    /* Regions this cache handed out that other threads freed: a list of batches linked through
     * their state lines, pushed by other threads with a CAS and taken whole by the owner with an
     * exchange, or by a sweep under the pool lock (lac_remote_sweep); LAC_REMOTE_CLOSED while no
     * thread owns the cache. A line of its own: other threads write it. */
    alignas(64) _Atomic uintptr_t remote;
} lac_tcache;

/* The regions a cache holds. */
static inline uint32_t lac_tc_n(lac_tcache *tc)
{
    return atomic_load_explicit(&tc->w, memory_order_relaxed) & LAC_TC_N_MASK;
}

/* Set the regions a cache holds (its owner, or a fork child under the pool lock): the tick stays.
 */
static inline void lac_tc_set_n(lac_tcache *tc, uint32_t n)
{
    uint32_t w = atomic_load_explicit(&tc->w, memory_order_relaxed);
    atomic_store_explicit(&tc->w, (w & ~LAC_TC_N_MASK) | n, memory_order_relaxed);
}

/* A cache's pops (returned) and regions held (*n), for stats: exact while its owner makes no
 * call, and never torn across a tick reload, which marks the word (LAC_TC_BORROW, never stored
 * otherwise) while it moves a tick into allocs: a word seen unmarked and unchanged around the
 * read of allocs is one allocs agrees with. */
static inline uint64_t lac_tc_snapshot(lac_tcache *tc, uint32_t *n)
{
    for (;;) {
        uint32_t w = atomic_load_explicit(&tc->w, memory_order_acquire);
        uint64_t a = atomic_load_explicit(&tc->allocs, memory_order_acquire);
        if (!(w & LAC_TC_BORROW) && atomic_load_explicit(&tc->w, memory_order_acquire) == w) {
            *n = w & LAC_TC_N_MASK;
            return a + LAC_TICK - (w >> 16);
        }
    }
}

struct lacuna_pool {
    /* read-only after create: the fast path's working set */
    uint64_t id;         /* unique per process, never reused: thread caches key on it */
    char *first;         /* lowest byte of region 0 = base + guard */
    _Atomic size_t span; /* bytes from first to the end of the reservations contiguous with the
                            first: grows (release-stored) as the pool grows in place */
    size_t stride;
    uint64_t stride_recip; /* 2^64 / stride_pages, rounded up: exact division of page offsets */
    unsigned page_shift;
    unsigned flags;
    _Atomic uint32_t *state; /* per slot, LAC_S_*, one cache line apart (LAC_STATE_STRIDE) */
    char *base;
    size_t region, guard, keep, cache, side_len;
    size_t capacity_max;  /* the configured capacity, or LAC_GROW_MAX-ish when growing */
    bool grows;           /* capacity 0 in the config: reservations added on demand */
    unsigned first_shift; /* growing: chunk 0 has 1 << first_shift slots, chunk i 1 << (.. + i-1) */
    _Atomic unsigned nchunks; /* published chunks (release-stored after filling one in) */
    unsigned primary_chunks;  /* chunks [0, this) are contiguous: covered by first + span */
    lac_chunk chunks[LAC_CHUNKS_MAX];
    unsigned decay_ms;
    lacuna_guard guard_asked; /* the config's guard policy (DEFAULT may fall back at run time) */
    _Atomic int guard_mode;   /* lacuna_guard in force: MARKER may become MPROTECT (mlockall) */
    _Atomic int release_mode; /* lacuna_release in force (atomic: read without the lock) */
    lac_advice advice;
    uint32_t tc_cap;

    pthread_mutex_t lock;           /* guards everything below */
    size_t capacity;                /* slots reserved now (sum of the chunks' n) */
    uint32_t remote_swept;          /* lac_pool_now_ms of the last lac_remote_sweep */
    _Atomic uint32_t remote_sweeps; /* sweeps so far: the age of a remote list, in sweeps */
    size_t reserve_len;             /* bytes reserved now for regions and guards */
    uint32_t *warm;                 /* ring of capacity slot indices; bottom at warm_head */
    uint32_t *warm_ms;              /* when each warm entry was pushed (ms since create) */
    size_t warm_head, warm_n;
    uint32_t *clean; /* stack of released slots (and fresh ones whose guard install failed) */
    size_t clean_n;
    size_t fresh;       /* slots [fresh, capacity) were never handed out (or given back) */
    uint64_t *on_clean; /* bit per slot: on the clean stack (what a give-back looks for) */
    uint32_t *holes;    /* [a, b) pairs, sorted, of FRESH slots below fresh (given back) */
    size_t nholes;
    size_t clean_hi;               /* highest clean_n since the side tables were last trimmed */
    _Atomic size_t released_since; /* regions released since the last give-back round (written
                                      under the lock; read without it to skip a round cheaply) */
    size_t give_back_min;          /* slots a free run needs to be given back: 2 page-table pages */
    size_t releasing;              /* slots out in release right now */
    pthread_cond_t released;       /* broadcast when a release round ends */
    lac_tcache *tcaches;
    size_t mprotect_guards; /* charged against the process-wide budget */
    struct timespec born;

    alignas(64) _Atomic uint64_t allocs, frees; /* those not counted in a thread cache */
    /* Bumped by lacuna_trim: other threads' caches release themselves on seeing it. */
    _Atomic uint32_t trim_epoch;
    void (*trim_hook)(lacuna_pool *); /* run first by lacuna_trim: the fiber runtime punches the
                                         parked stacks of its pools (parked.c) */
    size_t prefault; /* bytes at the top of a region a thread cache's refill faults in ahead */
    _Atomic uint64_t released_regions, release_calls, guard_calls, unguarded, release_errors;
    _Atomic uint64_t guard_failures, given_back; /* STRICT refusals; slots whose tables went back */
    _Atomic int guard_error;                     /* why the last guard install failed, or 0 */

    pthread_t bg; /* LACUNA_BACKGROUND decay thread */
    bool bg_running, bg_stop;
    pthread_cond_t bg_wake;

    struct lacuna_pool *next_live; /* registry of live pools (under the registry lock) */
    _Atomic uint32_t refs;         /* the pool's own (until destroyed) and one per thread cache way
                                      naming it (pool_cache.c): the struct is freed at zero */
};

static inline void lac_count(_Atomic uint64_t *c)
{
    /* Single writer: a plain load/add/store, no lock prefix; atomic only so stats may read it. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline _Atomic uint32_t *lac_state_at(const lacuna_pool *p, size_t s)
{
    return &p->state[s * (LAC_STATE_STRIDE / sizeof(uint32_t))];
}

/* The slot whose state line this is. */
static inline uint32_t lac_line_slot(const lacuna_pool *p, const _Atomic uint32_t *line)
{
    return (uint32_t)((size_t)(line - p->state) / (LAC_STATE_STRIDE / sizeof(uint32_t)));
}

/* A reference on a pool's memory (the struct), and its drop: the last frees it (pool.c). */
void lac_pool_ref(lacuna_pool *p);
void lac_pool_unref(lacuna_pool *p);

/* The region of slot s computed from the chunk table (any slot below capacity; pool.c). */
char *lac_slot_addr(const lacuna_pool *p, size_t s);

/* Where a slot's region address is cached: in its state line (which the warm paths touch anyway),
 * written when the slot is taken fresh (lac_slot_addr), so slot -> region is one load whatever
 * chunk the slot is in. A FRESH slot's may be 0 (its line was given back) or its address; never
 * another. Atomic: lacuna_free reads it to check a region before knowing the slot is live. */
static inline _Atomic(char *) *lac_line_region(_Atomic uint32_t *line)
{
    return (_Atomic(char *) *)(void *)((char *)line + 8);
}

static inline void lac_slot_cache_addr(const lacuna_pool *p, size_t s)
{
    atomic_store_explicit(lac_line_region(lac_state_at(p, s)), lac_slot_addr(p, s),
                          memory_order_relaxed);
}

/* The region of a slot that is not FRESH (handed out since it was last given back). */
static inline char *lac_slot_region(const lacuna_pool *p, size_t s)
{
    return atomic_load_explicit(lac_line_region(lac_state_at(p, s)), memory_order_relaxed);
}

static inline uint32_t lac_state_get(const lacuna_pool *p, size_t s)
{
    return atomic_load_explicit(lac_state_at(p, s), memory_order_relaxed);
}

/* Whether a slot may go from state `from` to `to`: the whole state machine in one table. */
static inline bool lac_state_step_ok(uint32_t from, uint32_t to)
{
    switch (from) {
    case LAC_S_FRESH: /* guarded on first take; given back again while on the clean stack */
        return to == LAC_S_CLEAN || to == LAC_S_RETIRING;
    case LAC_S_WARM: /* handed out again, or released */
        return to == LAC_S_LIVE || to == LAC_S_RELEASING;
    case LAC_S_CLEAN: /* handed out, or its guard and page tables given back */
        return to == LAC_S_LIVE || to == LAC_S_RETIRING;
    case LAC_S_RETIRING:
        return to == LAC_S_FRESH;
    case LAC_S_RELEASING: /* released, or refused and kept warm */
        return to == LAC_S_CLEAN || to == LAC_S_WARM;
    case LAC_S_DEFERRED: /* its thread frees it (LIVE again, then lacuna_free), or it is shelved
                            at that thread's exit or by a fork child that has no such thread */
        return to == LAC_S_LIVE || to == LAC_S_WARM;
    default: /* LIVE leaves only through lac_line_unlive (or lacuna_free_deferred's CAS) */
        return false;
    }
}

/* The one way a slot changes state (but LIVE -> WARM, lac_line_unlive). Checked in debug builds:
 * a wrong step means two owners of one slot. */
static inline void lac_state_step(lacuna_pool *p, size_t s, uint32_t to)
{
    assert(lac_state_step_ok(lac_state_get(p, s), to));
    atomic_store_explicit(lac_state_at(p, s), to, memory_order_relaxed);
}

/* LIVE -> WARM, returning whether the slot was live. Atomic, so that of two racing frees of one
 * region exactly one wins; a plain bit test-and-clear (lock btr) on x86-64. */
static inline bool lac_line_unlive(_Atomic uint32_t *line)
{
    return (atomic_fetch_and_explicit(line, ~1u, memory_order_relaxed) & 1u) != 0;
}

/* Slot index of a region start in the chunks not contiguous with the first, or UINT64_MAX
 * (pool.c). By value: a slot passed by address would be spilled on lacuna_free's warm path. */
uint64_t lac_slot_find(const lacuna_pool *p, const void *region);

/* The slot an offset from the first region falls in (below LAC_MAX_RESERVE): one multiply. */
static inline size_t lac_slot_div(const lacuna_pool *p, uintptr_t off)
{
    /* below 2^32 for every offset below LAC_MAX_RESERVE: not narrowed (a move less) */
    return (size_t)(((unsigned __int128)p->stride_recip * (off >> LAC_OFF_SHIFT)) >> 64);
}

/* Slot index of a region start in the first reservation and those placed right after it (one
 * multiply: lacuna_free's warm path), or false. Exact for every offset below LAC_MAX_RESERVE.
 * NULL and addresses below the pool wrap around to huge offsets and fail the span check.
 * Lock-free: span is published with a release store after everything it covers is ready. */
static inline bool lac_slot_near(const lacuna_pool *p, const void *region, uint32_t *slot)
{
    uintptr_t off = (uintptr_t)region - (uintptr_t)p->first;
    if (LAC_UNLIKELY(off >= atomic_load_explicit(&p->span, memory_order_relaxed)))
        return false;
    uint32_t s = (uint32_t)lac_slot_div(p, off);
    *slot = s;
    return (uint64_t)s * p->stride == off;
}

/* Slot index of a region start anywhere in the pool, or false: lac_slot_near, else the chunk
 * table (out of line, newest chunk first: a few entries). Lock-free. */
static inline bool lac_slot_of(const lacuna_pool *p, const void *region, uint32_t *slot)
{
    if (LAC_LIKELY(lac_slot_near(p, region, slot)))
        return true;
    uint64_t far = lac_slot_find(p, region);
    *slot = (uint32_t)far;
    return far != UINT64_MAX;
}

/* pool.c */
uint32_t lac_pool_now_ms(const lacuna_pool *p); /* ms since the pool was created (coarse) */
/* Run fn(p, ctx) on the live pool with this id, under the registry lock; false if none. */
bool lac_pool_with(uint64_t id, void (*fn)(lacuna_pool *p, void *ctx), void *ctx);
void lac_pool_fork_prepare(void); /* take the registry lock and every pool's lock */
void lac_pool_fork_parent(void);
void lac_pool_fork_child(void); /* rebuild every pool's lists: the child has one thread */
/* Add a reservation (pool lock held): 0, or ENOMEM (at the ceiling, or no address space). */
int lac_pool_grow(lacuna_pool *p);

/* pool_slots.c (pool lock held unless stated) */
void lac_warm_push(lacuna_pool *p, uint32_t s, uint32_t ms);
void lac_warm_push_bottom(lacuna_pool *p, uint32_t s); /* coldest: released first */
uint32_t lac_warm_pop_bottom(lacuna_pool *p);
void lac_shelve(lacuna_pool *p, uint32_t s, uint32_t ms); /* a freed slot to warm or clean */
void lac_clean_push(lacuna_pool *p, uint32_t s); /* onto the clean stack (CLEAN or FRESH) */
/* Slots given back (FRESH) as hole [a, b): merged with its neighbours, or lowering fresh. */
void lac_holes_add(lacuna_pool *p, size_t a, size_t b);
/* The warm ring after the capacity grew from old_cap (its wrapped part moves up). */
void lac_warm_regrow(lacuna_pool *p, size_t old_cap);
/* Take up to want slots: hottest warm first, then released ones, then never-used slots. Slots
 * needing a guard go to fresh[] (at most LAC_GUARD_BATCH), the others to got[]. */
void lac_take_slots(lacuna_pool *p, size_t want, uint32_t *got, size_t *ngot, uint32_t *fresh,
                    size_t *nfresh);
/* Guard n fresh slots (pool lock NOT held; the slots are the caller's): 0 and *ok = how many
 * are usable from the front (the others stay FRESH), or ENOTSUP when a LACUNA_GUARD_MARKER pool
 * cannot get markers at all (a locked mapping). */
int lac_guard_slots(lacuna_pool *p, const uint32_t *slots, size_t n, size_t *ok);
void lac_guard_budget_return(size_t n); /* a destroyed pool's mprotect guards */

/* pool_cache.c */
/* Forget the calling thread's cache of a pool being destroyed (its TLS may name it). */
void lac_tcache_forget(lacuna_pool *p);
/* Release a thread cache's regions and empty it (pool lock NOT held). 0 or errno. */
int lac_tcache_release(lacuna_pool *p, lac_tcache *tc);
/* The calling thread's cache of p if it has one (never makes one), else NULL. */
lac_tcache *lac_tcache_peek(const lacuna_pool *p);
/* How many of the calling thread's cache ways name p (a fork child recounts p's references). */
unsigned lac_tcache_refs(const lacuna_pool *p);
/* Fork child (pool lock held): OR `bit` into the state of each region of p the calling thread
 * deferred (lacuna_free_deferred) or holds on the way back to or from its cache (its unsent
 * batch, its remote list, the chain it took aside), so the rebuild leaves them where they are;
 * every other cache's batch, chain and remote list are emptied and closed (the scan shelves
 * their regions). */
void lac_fork_mark_mine(lacuna_pool *p, uint32_t bit);
/* Pool lock held: the remote lists (pool_cache.c) whose owners have not taken them within the
 * decay (all: every one) go to the shared lists, where decay and trim release them as any freed
 * region. Every decay_ms / 2 at most, unless all. */
void lac_remote_sweep(lacuna_pool *p, bool all);
/* Thread exit: the calling thread's deferred frees are done and every cache of the calling
 * thread goes back to its pool. */
void lac_pool_thread_exit(void);

/* pool_release.c (pool lock NOT held) */
/* Take up to max of the coldest warm slots that must go (pool lock held): over the cache bound
 * or idle past decay; all = every warm slot. They become RELEASING. */
size_t lac_collect_release(lacuna_pool *p, uint32_t *out, size_t max, bool all);
/* Release slots taken by lac_collect_release (at most LAC_RELEASE_BATCH) and shelve them. 0 or
 * errno (those regions went back to warm). */
int lac_release_slots(lacuna_pool *p, const uint32_t *slots, size_t n);
int lac_release_due(lacuna_pool *p, bool all); /* collect and release until nothing is due */
int lac_background_start(lacuna_pool *p);      /* LACUNA_BACKGROUND: 0 or errno */
void lac_background_stop(lacuna_pool *p);

/* A name for region `index` of a pool, shown in the overflow message (the fiber runtime names
 * its stacks). Called from a signal handler: must be async-signal-safe and not allocate. */
typedef const char *(*lac_region_namer)(void *ctx, size_t index);
void lac_pool_set_namer(lacuna_pool *pool, lac_region_namer namer, void *ctx);
void lac_pool_set_trim_hook(lacuna_pool *pool, void (*hook)(lacuna_pool *));
/* Fault in the top `bytes` of every page-less region a thread cache's refill takes, in one call:
 * for regions whose user touches them at once (a stack's first frame). Set once, before use. */
void lac_pool_set_prefault(lacuna_pool *pool, size_t bytes);

/* pool_punch.c: resident pages of [lo, hi) (page-aligned): their count, and the lowest one's
 * address (hi when none), by PAGEMAP_SCAN (16 runs a call) or mincore (256 pages a call): small
 * enough for a fiber's stack. 0 or errno. lacuna_resident and parked.c's census use it. */
int lac_resident_range(uintptr_t lo, uintptr_t hi, size_t *pages, uintptr_t *lowest);

/* ---- wipe.c: zeroing runs, for wipe_table.c ------------------------------------------------ */

#define LAC_WIPE_BATCH 64 /* ranges per release call (1 KiB of iovecs on the stack) */

/* Runs of pages to zero: zeroed at once (streaming stores), or collected for one batched release
 * (`release`). Lives on the stack of one wipe; start it zeroed but for the fields below. */
typedef struct lac_zeroer {
    bool release;      /* give the pages back instead of zeroing them */
    bool swap;         /* the system has swap: a page mincore calls non-resident may be in swap
                          with old data, so non-resident runs are released (set per scan) */
    lac_advice advice; /* DONTNEED (private) or REMOVE (shared) */
    size_t n;
    struct iovec iov[LAC_WIPE_BATCH];
    size_t bytes;         /* bytes zeroed (memset or released), for lac_table_last_zeroed */
    size_t runs;          /* runs zeroed, for AUTO's choice of scanner */
    const lac_fd *memfd;  /* a shared table's memfd: hole punching is the release fallback */
    uintptr_t memfd_base; /* the address of the memfd's offset 0 */
} lac_zeroer;

/* Zero [start, end) now or queue it for release. */
void lac_zeroer_run(lac_zeroer *z, uintptr_t start, uintptr_t end);

/* Fence the zeroing done so far (every wipe ends with a flush) and release what was queued; a
 * range the kernel would not release is punched out of the memfd, else memset: it always ends
 * up zero. */
void lac_zeroer_flush(lac_zeroer *z);

/* Zero the resident pages of [addr, addr+len): how is MINCORE, PAGEMAP or AUTO (AUTO chooses per
 * stretch by density). 0 or errno; *used gets the scanner that covered most of the range. */
int lac_zero_resident(lac_zeroer *z, uintptr_t addr, size_t len, lacuna_wipe_strategy how,
                      bool shared, lacuna_wipe_strategy *used);

/* PAGEMAP_SCAN [start, end) for the pages matching q and zero them (z NULL: only walk, e.g. to
 * re-protect). 0 or errno; *found gets the pages found. One call when `next` is not NULL (it
 * gets where the walk stopped), else the whole range. */
int lac_zero_scan(lac_zeroer *z, uintptr_t start, uintptr_t end, const lac_scan_query *q,
                  size_t *found, uintptr_t *next);

/* ---- wipe_table.c -----------------------------------------------------------------------------
 */

/* Bytes the table's last lacuna_table_wipe zeroed (memset or released): for tests. */
size_t lac_table_last_zeroed(const lacuna_table *table);

/* ---- overflow.c: a SIGSEGV in a guard -> which pool, region, fiber -------------------------- */

/* Register a pool's geometry so the SIGSEGV handler can recognise its guards without touching the
 * pool itself: one entry per reservation (chunk) of a pool, whose first slot is region
 * first_index. No limit on live pools. 0 or ENOMEM. */
int lac_overflow_register(const lacuna_pool *pool, uintptr_t base, size_t size, size_t stride,
                          size_t guard_size, size_t first_index);
/* The pool's entry at base now covers size bytes (a reservation added right after it). */
void lac_overflow_grow(const lacuna_pool *pool, uintptr_t base, size_t size);
void lac_overflow_set_namer(const lacuna_pool *pool, lac_region_namer namer, void *ctx);
void lac_overflow_unregister(const lacuna_pool *pool);

/* From the SIGSEGV handler (async-signal-safe): if `addr` lies in a guard of a live pool, write
 * the report to stderr and return true. sp is the faulting context's stack pointer: it tells a
 * stack overflow of region k from a write past the end of region k-1. */
bool lac_overflow_report(uintptr_t addr, uintptr_t sp);

/* ---- arch/switch_*.S: the context switch (one file per CPU) -----------------------------------
 */

/* Save the running context on its own stack, store its stack pointer in *save_sp, and resume the
 * context whose stack pointer is load_sp (made by lac_ctx_init or saved by a switch). Saves what
 * the ABI makes callee-saved (see the .S file); returns when something switches back. */
void lac_ctx_switch(void **save_sp, void *load_sp);

/* Build a context at the top of a fresh stack that calls entry(arg) when first switched to; entry
 * must never return. Returns the context's stack pointer. Writes only the top ~200 bytes. */
void *lac_ctx_init(void *stack_top, void (*entry)(void *), void *arg);

/* ---- the fiber layer ---------------------------------------------------------------------------
 * fiber.c  control blocks and handles, the shared stack pool, spawn/join/detach, names, fork hooks
 * sched.c  one scheduler per OS thread: run queue, context switches, fiber start and end, reaping
 *          ended fibers' stacks (on the thread's own stack), the run loop
 * wait.c   how a wait ends (lac_park: woken, timed out or cancelled), timers, fds (epoll)
 * chan.c   channels and select, on top of lac_park_* / lac_fiber_ready
 */

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LAC_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define LAC_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(LAC_ASAN)
#define LAC_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(LAC_TSAN)
#define LAC_TSAN 1
#endif

typedef struct lac_fiber lac_fiber;
typedef struct lac_sched lac_sched;
typedef struct lac_rt lac_rt;
typedef struct lac_io_wait lac_io_wait;

/* Fetch a line this CPU is about to write, in a state that lets it write: a load that misses
 * then a write to the same line costs two trips to the CPU that last wrote it (data, then
 * ownership). x86's prefetchw is a NOP where unsupported. */
static inline void lac_prefetch_w(const void *p)
{
#if defined(__x86_64__)
    __asm__("prefetchw %0" ::"m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

/* A word other threads may write, loaded relaxed and compared with v (unsigned) in the one
 * instruction: gcc does not fold an atomic load into a compare, which cost lacuna_free a move per
 * check. An aligned word's load is atomic on x86-64; volatile, so it is never hoisted above the
 * checks that make the address valid. TSan builds keep the atomic load, which TSan sees. */
#if defined(__x86_64__) && !defined(LAC_TSAN)
static inline bool lac_relaxed_eq(const void *word, uintptr_t v)
{
    bool eq;
    __asm__ volatile("cmp %2, %1" : "=@cce"(eq) : "r"(v), "m"(*(const uintptr_t *)word));
    return eq;
}

static inline bool lac_relaxed_le(const void *word, uintptr_t v) /* *word <= v */
{
    bool ae;
    __asm__ volatile("cmp %2, %1" : "=@ccae"(ae) : "r"(v), "m"(*(const uintptr_t *)word));
    return ae;
}
#else
static inline bool lac_relaxed_eq(const void *word, uintptr_t v)
{
    return atomic_load_explicit((const _Atomic uintptr_t *)word, memory_order_relaxed) == v;
}

static inline bool lac_relaxed_le(const void *word, uintptr_t v)
{
    return atomic_load_explicit((const _Atomic uintptr_t *)word, memory_order_relaxed) <= v;
}
#endif

/* A spin lock for the short critical sections of the runtime (a channel, a fiber's end, a run
 * queue): a few dozen instructions are held at most, but a lock may be held across a context
 * switch (a fiber parks holding the lock that guards its waiter; the next context releases it). */
#if defined(__x86_64__) || defined(__i386__)
#define LAC_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define LAC_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define LAC_CPU_RELAX() ((void)0)
#endif

typedef struct lac_spin {
    _Atomic uint32_t v;
} lac_spin;

void lac_spin_lock_slow(lac_spin *l); /* sched.c: the contended case, out of line */

static inline void lac_spin_lock(lac_spin *l)
{
    if (LAC_UNLIKELY(atomic_exchange_explicit(&l->v, 1, memory_order_acquire)))
        lac_spin_lock_slow(l);
}

static inline void lac_spin_unlock(lac_spin *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

enum { LAC_F_FREE = 0, LAC_F_READY, LAC_F_RUNNING, LAC_F_PARKED, LAC_F_DONE };
enum { LAC_W_NONE = 0, LAC_W_TIMER, LAC_W_IO };
#define LAC_NO_HEAP SIZE_MAX /* lac_fiber.heap_pos of a fiber not in the timer heap */

/* One blocking wait: the arbiter between whoever may end it. Exactly one of the waker (holding
 * the lock of the queue the waiter is in), the deadline (the timer heap of the worker it parked
 * at) and lacuna_cancel wins `state` by compare-and-swap from LAC_PARK_WAITING, and only the
 * winner makes it runnable. A waiter whose wait someone else won stays in its queue: wakers skip
 * it and its owner unlinks it under the queue's lock once it runs (so the queue's object outlives
 * it). A fiber's park is part of its block (lac_fiber.wp), so it is valid memory for as long as
 * anyone can hold a pointer to it: a canceller that finds a wait already ended just loses its
 * compare-and-swap, and the woken fiber has nothing to take back. A plain thread's is on its own
 * stack, valid while it waits (threads are not cancelled). */
enum { LAC_PARK_WAITING = 0, LAC_PARK_WOKEN, LAC_PARK_TIMEOUT, LAC_PARK_CANCEL, LAC_PARK_IDLE };
/* lac_park_arm's `how`. LOCAL: a sleep or fd wait, which only the worker it parked at may end;
 * NOCANCEL: a wait a cancel must not end (a cond waiter taking its mutex back). */
enum { LAC_PARK_LOCAL = 1, LAC_PARK_NOCANCEL = 2 };
typedef struct lac_park {
    _Atomic uint32_t state; /* LAC_PARK_*: who ended the wait; IDLE: a fiber not in one */
    _Atomic uint32_t done;  /* a thread's futex word: set once the waker is done with its waiter */
    lac_fiber *fiber;       /* NULL: a plain thread */
    lac_rt *rt;             /* the fiber's runtime, where a waker checks for an orphan (chan.c)
                               without a trip to the fiber's block; NULL: a thread */
    uint8_t how;            /* lac_park_arm's LAC_PARK_LOCAL | LAC_PARK_NOCANCEL */
} lac_park;

/* A fiber's control block. Never inside a stack region (those pages are released); see fiber.c.
 * Scheduler fields (state, next, wait, heap_pos, deadline) belong to the worker the fiber is on
 * or parked at; join/detach/end fields to whoever holds `lk`. */
struct lac_fiber {
    /* The first line holds what a wake from another worker touches (the waker: plk, the park's
     * state, state, wait, next, rt, pin; the worker resuming it: sp, worker, punching, tsched); the
     * rest of the park, on the second, is read there but written only at a spawn (and `how` when
     * it changes): a cross-worker hand-over moves the first line of the block, not four. */
    _Alignas(64) void *sp;     /* saved stack pointer while not running */
    lac_fiber *next;           /* run queue (or inbox) link */
    lac_rt *rt;                /* its runtime (the workers it may run on); fixed for life */
    lac_sched *worker;         /* the worker that runs it or ran it last (the pinned one) */
    lac_sched *tsched;         /* the worker whose timer heap it is in, while a timed wait */
    lac_spin plk;              /* held from arming a wait until its context is saved (wait.c) */
    _Atomic uint8_t state;     /* LAC_F_* (scheduler's view); lac_state_set, read by parked.c */
    uint8_t wait;              /* LAC_W_*: what a parked fiber waits for besides a wake-up */
    uint16_t pin;              /* 0, or 1 + the index of the only worker it runs on */
    _Atomic uint8_t punching;  /* a release of its pages is under way: a switch into it waits */
    _Atomic uint8_t cancelled; /* lacuna_cancel called: every blocking call fails ECANCELED */
    lac_park wp;               /* its waits' park (wait.c); state IDLE between waits */
    void *(*fn)(void *);
    void *arg;         /* fn's argument, then its result */
    char *stack;       /* lowest byte of the stack region; NULL once freed */
    size_t stack_size; /* bytes of the region */
    uint64_t deadline; /* CLOCK_MONOTONIC ns, while in the timer heap */
    size_t heap_pos;   /* index in the timer heap, or LAC_NO_HEAP */
    lac_io_wait *io;   /* its fd wait (wait.c), while in one */
    lac_fiber *joiner; /* fiber blocked in lacuna_join on this one */
    long region;       /* stack region index in the pool */
    void *fls;         /* its fiber-local values (sync.c), NULL until the first lacuna_fls_set */
    lac_spin lk;       /* guards joiner, tjoin, detached and done */
    _Atomic uint32_t done; /* 1 once ended: a futex word for a joining thread */
    _Atomic uint32_t gen;  /* odd while in use; bumped on spawn and on reclaim */
    uint32_t idx;          /* index in the block table (0 is never used) */
    uint32_t next_free;    /* free-list link (an index) */
    unsigned vg_id;        /* valgrind stack id */
    uint8_t detached;
    uint8_t tjoin;  /* a thread (not a fiber) waits for `done` */
    uint8_t stacks; /* its stack's pool: 0 = the default, else 1 + size class (fiber.c) */
#ifdef LAC_ASAN
    void *asan_fake; /* ASan fake stack saved across a switch */
#endif
#ifdef LAC_TSAN
    void *tsan; /* TSan fiber */
#endif
    char name[LACUNA_FIBER_NAME_MAX]; /* read by the SIGSEGV handler: always NUL-terminated */
    /* Releasing a parked fiber's stack pages (parked.c). `sp` above reads NULL from a switch into
     * the fiber until it is saved again; `punching` above is set while a release is under way. */
    _Atomic uint32_t parks;      /* times it parked (a release-store by the fiber itself) */
    _Atomic uint32_t parks_aged; /* parks at the previous aging scan: unchanged = parked since */
    _Atomic uint32_t parks_done; /* parks at its last release: unchanged = nothing new below */
    _Atomic size_t high_water;   /* deepest stack use seen, bytes from the top */
    _Atomic size_t released;     /* bytes of its pages released while parked, over its life */
};
#if !defined(LAC_ASAN) && !defined(LAC_TSAN)
/* A million parked fibers keep a million blocks: each line more is 64 MB. */
_Static_assert(sizeof(struct lac_fiber) == 256, "a fiber's block is four lines");
_Static_assert(offsetof(struct lac_fiber, wp.state) + sizeof(uint32_t) <= 64,
               "a wake's compare-and-swap is on the block's first line");
#endif

/* A fiber's scheduler state: relaxed, as parked.c reads it from other threads (a hint there). */
static inline void lac_state_set(lac_fiber *f, uint8_t state)
{
    atomic_store_explicit(&f->state, state, memory_order_relaxed);
}

#define LAC_STACK_CLASSES   10 /* stack size classes: 16 KiB << 0..9, up to 8 MiB */
#define LAC_STACK_CLASS_MIN LACUNA_FIBER_STACK_MIN
#define LAC_SPARE_MAX       16  /* ended fibers' stacks a scheduler keeps for its next spawns */
#define LAC_RUNNEXT_MAX     64  /* hand-offs in a row before the run queue's head gets its turn */
#define LAC_WORKERS_MAX     256 /* workers of one runtime */

/* The stack of an ended fiber, kept for the next spawn or freed by the worker's own context. */
typedef struct lac_spare {
    char *stack;
    unsigned stacks; /* the pool it came from (fiber.c: 0 = the default, else 1 + size class) */
    unsigned vg_id;  /* its valgrind registration, dropped when the stack is reused or freed */
    long region;     /* its region index (the overflow namer's table) */
    void *tsan;      /* its TSan fiber, destroyed likewise (NULL without TSan) */
} lac_spare;

/* A runtime: the workers (OS threads) whose fibers may move between them. The thread that first
 * spawns is its home worker and owns it; lacuna_run adds helper workers for its duration. A
 * runtime outlives its schedulers (handles of ended fibers name it): kept by its home thread for
 * its life, then reused by another thread, or kept for ever, dead, when the home thread exits
 * with fibers left (they can never run again). Guarded by `lock` unless stated. */
struct lac_rt {
    pthread_mutex_t lock;
    _Atomic(lac_sched *) w[LAC_WORKERS_MAX]; /* workers now, by index (w[0]: the home) */
    _Atomic unsigned nw;                     /* how many */
    _Atomic unsigned whi;                    /* indices in use are below this */
    lac_fiber *inj_head, *inj_tail;          /* woken from outside the runtime (other threads) */
    _Atomic size_t ninj;                     /* their count, read without the lock */
    _Atomic unsigned nidle;                  /* workers asleep in idle() */
    _Atomic int stop;                        /* set: workers leave their loops (LAC_STOP_*) */
    int64_t gone;                            /* spawned - ended of workers that have left */
    _Atomic bool dead;        /* its home thread has exited: its fibers never run again */
    struct lac_rt *next_free; /* list of runtimes to reuse (sched.c) */
};
enum { LAC_STOP_NONE = 0, LAC_STOP_DONE = 1 }; /* else an errno (EDEADLK) */

/* A worker's scheduler. Its fields are its own thread's, except: the run queue (head, tail, nq)
 * is under qlock while the runtime has several workers (thieves take from it); other workers push
 * to `inbox`; `delta` is read by the worker deciding that the runtime is done; `sleeping` and
 * `evfd` by wakers. */
struct lac_sched {
    lac_fiber *cur; /* running fiber; NULL while on the thread's own stack */
    lac_rt *rt;     /* the runtime it works for */
    bool multi;     /* rt has several workers now: lock the queue */
    /* The run queue has a cache line of its own: other workers push to it and read nq, and the
     * fields around it are written on every switch (a pinned ping-pong paid for sharing). */
    _Alignas(64) lac_spin qlock; /* the run queue, while multi */
    lac_fiber *head, *tail;      /* run queue */
    _Atomic size_t nq;           /* its length (written under qlock, read without by thieves) */
    /* Fibers pinned here, made ready by other workers: a lock-free stack (pushed with a CAS,
     * taken whole with an exchange). A line of its own: idle workers read the queue's line above
     * (work_visible, steal), and a pinned hand-over would pull it away from its taker. */
    _Alignas(64) _Atomic(lac_fiber *) inbox;
    _Alignas(64) lac_fiber *runnext; /* made ready by a hand-off (channel, join): runs next */
    lac_fiber *handed;       /* earlier hand-offs it displaced, a stack: they run before head */
    lac_fiber *spawner;      /* preempted by its spawn; runs when that fiber first gives way */
    unsigned runnext_streak; /* hand-off picks while the queue waited: at most LAC_RUNNEXT_MAX */
    uint8_t after;           /* LAC_AFTER_*: what the next context does once this switch is done */
    void *after_arg;
    lac_spare spare[LAC_SPARE_MAX];
    unsigned nspare;
    lac_spare zombie; /* an ended fiber's stack the worker's own context frees */
    bool has_zombie;
    lac_fiber *main_join;  /* the fiber a thread-context lacuna_join waits for */
    void *main_sp;         /* the thread's own context while a fiber runs */
    void *dead_sp;         /* where a dying fiber's last switch saves a context never resumed */
    _Atomic int64_t delta; /* fibers spawned here minus fibers ended here (single writer) */
    size_t nio;            /* fibers in lacuna_fd_wait parked here */
    lac_io_wait *io_waits; /* those waits (wait.c), for a forked child's new epoll */
    lac_fiber **heap;      /* timer min-heap on deadline (wait.c), under tlock */
    _Atomic size_t nheap;  /* its size (read without tlock by the loop deciding to poll) */
    size_t heap_cap;
    lac_spin tlock;            /* the heap: fibers timing out elsewhere remove themselves */
    unsigned tick;             /* scheduling decisions: every LAC_POLL_EVERY-th polls */
    unsigned aged_tick;        /* tick when it last scheduled an aging scan (parked.c) */
    bool poll_due;             /* main polls (non-blocking) before it runs the next fiber */
    int epfd;                  /* -1 until the first fd wait or idle sleep */
    int evfd;                  /* eventfd that wakes it from an idle sleep, -1 until needed
                                  (read by kickers: __atomic, as a napping helper may make it) */
    bool epfd_lost;            /* epoll_wait said epfd is no epoll (closed under it): not ours */
    bool sleeping;             /* asleep in idle() (rt->lock) */
    bool sleep_waits;          /* asleep with timers or fd waits of its own (rt->lock) */
    unsigned idx;              /* its index in rt->w */
    uint64_t rng;              /* victim choice */
    uint32_t free_head, nfree; /* control blocks free for reuse here (fiber.c) */
#ifdef LAC_ASAN
    void *main_fake;
    const void *main_bottom; /* the thread stack, as ASan reports it on the first switch */
    size_t main_size;
    bool from_main; /* the switch now completing started on the thread's stack */
#endif
#ifdef LAC_TSAN
    void *tsan_main;
#endif
};

/* ---- fiber.c ---- */

/* The control-block table, for parked.c's scans: blocks with index in [1, lac_fiber_blocks())
 * exist (lac_fiber_block never returns NULL for them; a block may be free or in use). */
uint32_t lac_fiber_blocks(void);
lac_fiber *lac_fiber_block(uint32_t idx);
lac_fiber *lac_fiber_lookup(const lacuna_fiber *h); /* NULL for NULL, stale or forged handles */
lacuna_fiber *lac_fiber_handle(const lac_fiber *f);
lacuna_pool *lac_fiber_stacks_pool(unsigned stacks); /* a fiber's stack pool (f->stacks) */

/* An ended fiber, on its own stack: forget its stack (into *sp: its region names no fiber now),
 * mark it done, wake a thread joining it, give the block back if detached. Returns the fiber
 * joining it, to be made ready, or NULL. No pool call. */
lac_fiber *lac_fiber_finish(lac_sched *s, lac_fiber *f, lac_spare *sp);

/* Whether an ended fiber's stack may be kept for the next spawn: not when its pool promises
 * zeroed regions (LACUNA_ZERO) or releases on every free (LACUNA_CACHE_NONE), which only the pool
 * itself can keep. */
bool lac_fiber_spares_ok(const lac_fiber *f);

/* Give a spare stack back to its pool (the thread's own stack only). */
void lac_fiber_stack_free(char *stack, unsigned stacks);

/* sched.c: a spare stack of that pool for a new fiber, or NULL. */
char *lac_sched_spare_take(lac_sched *s, unsigned stacks, long *region);

/* Move a dying scheduler's free control blocks to the shared list. */
void lac_fiber_blocks_drop(lac_sched *s);

/* The debugger's view of the fiber layer: one constant descriptor, exported (visibility default)
 * under the name lacuna_debug_info but declared in no public header: NOT an API. The gdb script
 * (tools/gdb/lacuna-gdb.py) finds fibers through it, so the script needs no DWARF (it works on
 * a release or stripped library) and follows the control block's layout as it changes. New
 * fields go after table_n; `version` is bumped when one changes meaning. Native-endian (the
 * script reads little-endian: x86-64, AArch64). */
#define LAC_DEBUG_VERSION 1
typedef struct lac_debug_info {
    char magic[8];        /* "lacuna\0\0" */
    uint32_t version;     /* LAC_DEBUG_VERSION */
    uint32_t size;        /* sizeof(lac_debug_info) */
    uint32_t fiber_size;  /* sizeof(lac_fiber): the stride of a chunk of the block table */
    uint32_t chunk_shift; /* a chunk holds 1 << chunk_shift blocks; block i is in chunk i >> it */
    uint32_t chunks;      /* entries of the table (chunk pointers, NULL until allocated) */
    uint32_t name_max;    /* bytes of lac_fiber.name */
    uint32_t off_sp, off_stack, off_stack_size, off_state, off_wait, off_name, off_gen, off_idx;
    uint32_t off_deadline, off_io, off_worker; /* lac_fiber fields, by offsetof */
    uint32_t off_sched_idx;                    /* lac_sched.idx: the worker's index */
    uint32_t off_io_fd, off_io_events;         /* lac_io_wait.user_fd, .events (wait.c) */
    uint32_t f_free, f_ready, f_running, f_parked, f_done; /* LAC_F_* values */
    uint32_t w_none, w_timer, w_io;                        /* LAC_W_* values */
    const void *table;   /* &table: _Atomic(lac_fiber *)[chunks] */
    const void *table_n; /* &table_n: uint32_t, indices handed out so far (0 is never used) */
} lac_debug_info;

/* wait.c's lac_io_wait fields the debug descriptor names (checked there by _Static_assert). */
#define LAC_IO_WAIT_FD_OFF     28 /* user_fd */
#define LAC_IO_WAIT_EVENTS_OFF 32 /* events */

/* Fork hooks: prepare takes every lock of the fiber layer, parent releases them, child releases
 * them and gives the forking thread's scheduler an epoll instance of its own. process.c calls
 * them in lock order (fiber layer first, then the pools). */
void lac_fiber_fork_prepare(void);
void lac_fiber_fork_parent(void);
void lac_fiber_fork_child(void);

/* ---- sched.c ---- */

extern __thread lac_sched *lac_tls_sched; /* the calling thread's scheduler, or NULL */
/* The calling thread's id, given by its first lac_sched_get and never given again. 0 before. */
extern __thread uint64_t lac_tls_id;

/* Thread-locals after a switch: a fiber may resume on another worker, and compilers keep the
 * address of a thread-local across calls within a function. Code that may have parked reads its
 * worker from the fiber (f->worker, set by whoever resumed it), never from a TLS read made before.
 */

/* The calling thread's scheduler, created on first use (with the thread's alternate signal
 * stack and the overflow handler). NULL + errno on failure. */
lac_sched *lac_sched_get(void);

/* Free a scheduler with no fiber left (the next lac_sched_get makes a new one). */
void lac_sched_free(lac_sched *s);

/* Make f's context (f->stack, f->stack_size set) and start it: from a fiber it runs now and the
 * spawner right after it; from thread context it is queued. */
void lac_sched_start(lac_sched *s, lac_fiber *f);

/* Block the running fiber until it is made ready; other fibers run meanwhile. `unlock`, if not
 * NULL, is released once the fiber's context is saved (so a waker on another worker, which takes
 * that lock, never resumes a fiber still running). Returns the worker it resumed on. */
lac_sched *lac_sched_park(lac_sched *s, lac_spin *unlock);

/* Make a fiber parked at this worker runnable: back of the run queue (timers, fd waits). */
void lac_sched_push(lac_sched *s, lac_fiber *f);

/* Whether the caller runs outside the stack of the fiber the scheduler thinks is running: it left
 * that fiber without switching (longjmp, an exception), which nothing can undo. */
bool lac_sched_escaped(const lac_sched *s);

/* The thread's own context: run fibers until `until` ends (NULL: until the runtime has none left).
 * 0, EDEADLK (every fiber is blocked with no timer, no fd wait and no thread that may wake one) or
 * an epoll_wait errno. */
int lac_sched_loop(lac_sched *s, lac_fiber *until);

/* Fibers of a runtime not yet ended (its workers' counts; exact once they are idle). */
int64_t lac_rt_live(lac_rt *rt);

/* Thread exit (process.c): a runtime whose home thread exits with fibers left is dead; calls on
 * its fibers and on channels they wait on fail with EINVAL (they would never be answered). */
void lac_sched_thread_exit(void);

/* Whether s is the scheduler of its runtime's home thread (the calling thread). */
bool lac_sched_is_home(const lac_sched *s);

/* Whether f belongs to a dead runtime. */
static inline bool lac_fiber_orphan(const lac_fiber *f)
{
    return atomic_load_explicit(&f->rt->dead, memory_order_relaxed);
}

/* For chan.c and fiber.c: */

/* The running fiber of the calling thread, or NULL in thread context. */
lac_fiber *lac_fiber_self(void);

/* Make a parked fiber runnable, from anywhere: a hand-off (it runs next) on a worker of its
 * runtime, else queued to its runtime (its pinned worker) and a sleeping worker woken. */
void lac_fiber_ready(lac_fiber *fiber);

/* Threads outside any runtime blocked in a lacuna call that a fiber may end (a channel operation,
 * a join): while any is, an idle runtime waits instead of reporting EDEADLK. */
extern _Atomic long lac_foreign_blocked;

/* Block the calling thread (not a fiber) until *word != 0: a futex wait. */
void lac_thread_wait(_Atomic uint32_t *word);
/* lac_thread_wait until a CLOCK_MONOTONIC deadline: true if *word != 0, false at the deadline. */
bool lac_thread_wait_until(_Atomic uint32_t *word, uint64_t deadline);
/* Wake worker w if it sleeps in its idle poll (new work or a timer due now). */
void lac_sched_kick(lac_sched *w);
/* Set *word = 1 and wake a thread in lac_thread_wait on it. The word's memory must stay valid
 * (a waiter may return as soon as it reads 1: the wake-up may then hit a word reused for
 * something else, which futex users tolerate as a spurious wake-up). */
void lac_thread_wake(_Atomic uint32_t *word);

/* Set errno from code that may have parked (see "Thread-locals after a switch"). */
void lac_set_errno(int err);

/* Fork hooks, called by process.c: prepare takes every fiber-layer mutex, parent and child
 * release them; the child also gets an epoll of its own. */
void lac_fiber_fork_prepare(void);
void lac_fiber_fork_parent(void);
void lac_fiber_fork_child(void);

#define LAC_FOREVER UINT64_MAX /* no deadline */

/* wait.c: the protocol every blocking call follows (the callers: chan.c, sync.c, fiber.c).
 *   1. It takes its park (lac_park_mine). Under the lock(s) of the queue(s) it joins, it calls
 *      lac_park_arm with how (LAC_PARK_LOCAL, LAC_PARK_NOCANCEL or 0) and queues its waiter(s):
 *      0 = armed (a fiber now holds f->plk; a deadline is in the heap), or ECANCELED / ENOMEM /
 *      ETIMEDOUT (passed deadline): not armed, queue nothing and fail.
 *   2. It releases its locks and calls lac_park_block: 0 (woken by a waker), ETIMEDOUT or
 *      ECANCELED. On the latter two it takes its locks again and unlinks its waiter(s).
 * A waker, under the queue's lock, calls lac_park_claim on a waiter's park (false: skip it), hands
 * over, releases the lock, then lac_park_wake. */
static inline lac_park *lac_park_mine(const lac_sched *s, lac_park *tp)
{
    if (s && s->cur)
        return &s->cur->wp;
    *tp = (lac_park){.state = LAC_PARK_IDLE};
    return tp;
}
/* The end of arming every fiber's wait, both paths: plk taken, the cancelled flag looked at again
 * under it (a canceller sets the flag, then takes plk and looks at the park: either it sees this
 * wait, after the switch releases plk, or this sees its flag), then `how` and WAITING published,
 * under plk too since a canceller reads them there. ECANCELED: not armed, plk released. */
static inline int lac_park_publish(lac_park *p, lac_fiber *f, unsigned how)
{
    lac_spin_lock(&f->plk);
    if (!(how & LAC_PARK_NOCANCEL) &&
        LAC_UNLIKELY(atomic_load_explicit(&f->cancelled, memory_order_relaxed))) {
        lac_spin_unlock(&f->plk);
        return ECANCELED;
    }
    if (LAC_UNLIKELY(p->how != how)) /* written only when it changes: other workers read its line */
        p->how = (uint8_t)how;
    atomic_store_explicit(&p->state, LAC_PARK_WAITING, memory_order_relaxed);
    return 0;
}
int lac_park_arm_slow(lac_park *p, uint64_t deadline, unsigned how);
/* The common case inline: a fiber's untimed wait that is neither local nor uncancellable. */
static inline int lac_park_arm(lac_park *p, uint64_t deadline, unsigned how)
{
    lac_fiber *f = p->fiber;
    if (LAC_UNLIKELY(f == NULL || deadline != LAC_FOREVER || how != 0))
        return lac_park_arm_slow(p, deadline, how);
    if (atomic_load_explicit(&f->cancelled, memory_order_relaxed))
        return ECANCELED;
    return lac_park_publish(p, f, 0);
}
int lac_park_block(lac_park *p, uint64_t deadline);
static inline bool lac_park_claim(lac_park *p)
{
    uint32_t w = LAC_PARK_WAITING;
    return atomic_compare_exchange_strong_explicit(&p->state, &w, LAC_PARK_WOKEN,
                                                   memory_order_acq_rel, memory_order_relaxed);
}
void lac_park_wake(lac_park *p);
/* lacuna_cancel, once f->cancelled is set: end f's wait in progress, if any, with ECANCELED. */
void lac_park_cancel(lac_fiber *f);

/* CLOCK_MONOTONIC in ns. */
uint64_t lac_now_ns(void);

/* A fiber, or a thread outside the runtime, parked on a channel: lives on its own stack (valid
 * while it waits). */
typedef struct lac_waiter {
    struct lac_waiter *next, *prev; /* links in the channel's send or receive queue */
    lac_park *park;                 /* its wait (shared by the cases of one select) */
    void *elem;                     /* the element to send, or where to receive */
    size_t index;                   /* its case in a select (0 otherwise) */
    int result;                     /* 0, or EPIPE when woken by a close */
    bool linked;                    /* in its queue */
} lac_waiter;

/* ---- sync.c ---- */

/* An ending fiber, on its own stack before it is marked done: run the destructors of its
 * fiber-local values and free them (f->fls NULL after). It may park (a destructor may block). */
void lac_fls_exit(lac_fiber *f);

/* ---- wait.c ---- */

/* Poll fds and fire due timers, making their fibers runnable. block: sleep until the first of
 * them or a wake-up (lac_wait_kick). 0 or an epoll_wait errno. */
int lac_wait_poll(lac_sched *s, bool block);

/* Make sure s can sleep in lac_wait_poll(s, true) and be woken: its epoll and eventfd. 0 or
 * errno. */
int lac_wait_prepare(lac_sched *s);

/* Wake a worker asleep in lac_wait_poll(s, true); one in lac_wait_nap is not woken (it looks
 * again soon). */
void lac_wait_kick(lac_sched *s);

/* Release what a scheduler's waits hold (the heap, the epoll instance, the eventfd). */
void lac_wait_free(lac_sched *s);

/* A helper whose lac_wait_prepare failed cannot be woken: sleep until its next timer, at most a
 * millisecond, instead of lac_wait_poll(s, true). Returns 0 (as a poll that found nothing). */
int lac_wait_nap(lac_sched *s);

/* A helper worker `from` has left with timers or fd waits: they move to `to` (its home worker),
 * fd waits registered on to's epoll (one that cannot be ends with that errno). On to's thread,
 * while no worker of the runtime runs a fiber (lacuna_run, its helpers joined); other threads
 * may still cancel or wake those fibers meanwhile. from's heap is empty after. */
void lac_wait_adopt(lac_sched *to, lac_sched *from);

/* In a forked child: a new epoll instance for s, with its parked fd waits registered again. */
void lac_wait_fork_child(lac_sched *s);

/* ---- parked.c: parked fibers give their stack pages back ---------------------------------- */

/* A switch into f found a release of its pages under way: wait for it (cold). */
void lac_parked_wait(lac_fiber *f);
/* A worker about to sleep: age parked fibers and release the ones parked long enough, when a scan
 * is due (process-wide, one worker at a time). */
void lac_parked_idle(lac_sched *s);
/* CLOCK_MONOTONIC ns of the next aging scan, or UINT64_MAX: a sleeping worker wakes for it. */
uint64_t lac_parked_due(void);
/* lacuna_trim's hook on fiber stack pools: release the parked stacks of that pool now. */
void lac_parked_trim(lacuna_pool *pool);
/* What the memory-pressure watcher does when the kernel's trigger fires (tests call it). */
void lac_parked_pressure_respond(void);
void lac_parked_fork_prepare(void); /* process.c's fork handlers: parked.c's locks, outermost */
void lac_parked_fork_parent(void);
void lac_parked_fork_child(void);

#endif /* LACUNA_INTERNAL_H */
