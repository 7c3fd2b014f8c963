/* Internal interfaces shared between lacuna's source files. Nothing here is public: every name is
 * lac_*, hidden from the shared library by -fvisibility=hidden. Grouped by the file that
 * defines it; arrows between layers point down only (fiber -> pool -> os).
 */
#ifndef LACUNA_INTERNAL_H
#define LACUNA_INTERNAL_H

#include "lacuna.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

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
 * transparent huge pages off. NULL + errno on failure (nothing mapped). */
void *lac_os_reserve(size_t len);

/* Unmap a reservation made by lac_os_reserve. 0 or errno. */
int lac_os_unreserve(void *addr, size_t len);

/* Install guard markers (MADV_GUARD_INSTALL) on n page-aligned ranges: one process_madvise when
 * batching works, else one madvise per range. *calls (if not NULL) gets the syscalls made.
 * Returns the number of ranges guarded, from the front; fewer than n means ranges [ret, n) have
 * no guard and errno tells why. Precondition: lac_os_features()->guard_marker. */
size_t lac_os_guard_markers(const struct iovec *ranges, size_t n, uint64_t *calls);

/* mprotect(PROT_NONE) one page-aligned range. 0 or errno (ENOMEM: vm.max_map_count reached). */
int lac_os_guard_mprotect(void *addr, size_t len);

/* Release the pages of n page-aligned ranges with the given advice, batched by 1024 per
 * process_madvise where possible (a partial call is completed with the remainder), else one
 * madvise per range. Returns the number of ranges fully released, from the front; fewer than n
 * means [ret, n) were not (or not entirely) released and errno tells why. *calls (if not NULL) is
 * increased by the syscalls made. */
size_t lac_os_release(const struct iovec *ranges, size_t n, lac_advice advice, uint64_t *calls);

/* Whether the system has swap configured now (sysinfo): only then can a page that mincore calls
 * non-resident still hold data. */
bool lac_os_has_swap(void);

/* mincore: one byte per page of [addr, addr+len), bit 0 set if resident. 0 or errno. */
int lac_os_resident(const void *addr, size_t len, unsigned char *vec);

/* Whether LACUNA_FORCE_FALLBACK names `what` (or `all`). */
bool lac_os_forced(const char *what);

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

/* ---- pool.c --------------------------------------------------------------------------------- */

/* A name for region `index` of a pool, shown in the overflow message (the fiber runtime names
 * its stacks). Called from a signal handler: must be async-signal-safe and not allocate. */
typedef const char *(*lac_region_namer)(void *ctx, size_t index);
void lac_pool_set_namer(lacuna_pool *pool, lac_region_namer namer, void *ctx);

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

/* ---- overflow.c ----------------------------------------------------------------------------- */

/* Register a pool's geometry so the SIGSEGV handler can recognise its guards without touching the
 * pool itself. Returns false when the fixed table is full (the pool works, overflows in it are
 * then reported as plain SIGSEGV). */
bool lac_overflow_register(const lacuna_pool *pool, uintptr_t base, size_t size, size_t stride,
                           size_t guard_size);
void lac_overflow_set_namer(const lacuna_pool *pool, lac_region_namer namer, void *ctx);
void lac_overflow_unregister(const lacuna_pool *pool);

/* ---- arch/switch_*.S: the context switch (one file per CPU) -----------------------------------
 */

/* Save the running context on its own stack, store its stack pointer in *save_sp, and resume the
 * context whose stack pointer is load_sp (made by lac_ctx_init or saved by a switch). Saves what
 * the ABI makes callee-saved (see the .S file); returns when something switches back. */
void lac_ctx_switch(void **save_sp, void *load_sp);

/* Build a context at the top of a fresh stack that calls entry(arg) when first switched to; entry
 * must never return. Returns the context's stack pointer. Writes only the top ~200 bytes. */
void *lac_ctx_init(void *stack_top, void (*entry)(void *), void *arg);

/* ---- fiber.c: the scheduler, as chan.c needs it ------------------------------------------------
 */

typedef struct lac_fiber lac_fiber;

/* The running fiber of the calling thread, or NULL in thread context. */
lac_fiber *lac_fiber_self(void);

/* Block the running fiber (precondition: lac_fiber_self() != NULL) until lac_fiber_ready(it). The
 * caller must have recorded where it waits first; other fibers run meanwhile. */
void lac_fiber_park(void);

/* Make a parked fiber of the calling thread runnable (back of the run queue). */
void lac_fiber_ready(lac_fiber *fiber);

/* Whether a fiber belongs to the calling thread's scheduler. */
bool lac_fiber_local(const lac_fiber *fiber);

/* A fiber parked on a channel: lives on the parked fiber's own stack (valid while it waits). */
typedef struct lac_waiter {
    struct lac_waiter *next; /* FIFO link in the channel's send or receive queue */
    lac_fiber *fiber;
    void *elem; /* the element to send, or where to receive */
    int result; /* 0, or EPIPE when woken by a close */
} lac_waiter;

#endif /* LACUNA_INTERNAL_H */
