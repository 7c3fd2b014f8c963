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

/* A run of pages [start, end) reported by lac_os_scan. */
typedef struct lac_run {
    uintptr_t start, end;
} lac_run;
#define LAC_PAGE_PRESENT (1u << 3) /* PAGEMAP_SCAN category: page is in memory */
#define LAC_PAGE_WRITTEN (1u << 1) /* PAGEMAP_SCAN category: written (inside uffd-wp ranges) */
#define LAC_PAGE_SWAPPED (1u << 4) /* PAGEMAP_SCAN category: in swap */
#define LAC_PAGE_PFNZERO (1u << 5) /* PAGEMAP_SCAN category: maps the shared zero page */
#define LAC_PAGE_GUARD   (1u << 8) /* PAGEMAP_SCAN category: guard marker (Linux 6.15) */

/* PAGEMAP_SCAN: up to max (<= 256) runs of pages in `category` inside [addr, addr+len). Returns the
 * number of runs and sets *next to where the walk stopped (== addr+len when complete), or a
 * negative errno (-ENOTSUP without PAGEMAP_SCAN: use lac_os_resident). */
long lac_os_scan(const void *addr, size_t len, uint64_t category, lac_run *runs, size_t max,
                 uintptr_t *next);

/* ---- os.c, for wipe.c: zeroing, shared memory, write tracking ---- */

/* What lac_os_scan_ex looks for. */
typedef struct lac_scan_query {
    uint64_t required; /* categories a page must all have */
    uint64_t anyof;    /* ...and at least one of these (0: no condition) */
    uint64_t excluded; /* ...and none of these */
    unsigned flags;    /* LAC_SCAN_REPROTECT: write-protect the reported pages again (only inside
                          a range of lac_os_wp_open; the ioctl fails otherwise) */
    size_t max_pages;  /* stop once this many pages were reported (0: no limit) */
} lac_scan_query;
#define LAC_SCAN_REPROTECT 1u

/* PAGEMAP_SCAN for the pages of [addr, addr+len) matching q: up to max (<= 128) runs. Returns the
 * number of runs and *next as lac_os_scan (where the walk stopped: at max runs, at max_pages, or
 * addr+len), or a negative errno; -ENOTSUP when the kernel has no PAGEMAP_SCAN. Works even when
 * `scan` is forced off: callers wanting the forced fallback check lacuna_features.pagemap_scan. */
long lac_os_scan_ex(const void *addr, size_t len, const lac_scan_query *q, lac_run *runs,
                    size_t max, uintptr_t *next);

/* Zero [addr, addr+len) of resident memory the fastest way this CPU has (streaming stores on
 * x86_64, memset elsewhere). addr and len multiples of 64. Not a syscall, but CPU-specific.
 * Call lac_os_zero_fence once after the last lac_os_zero of an operation, before returning to
 * code that may publish the zeroed memory to other threads. */
void lac_os_zero(void *addr, size_t len);
void lac_os_zero_fence(void);

/* Whether lac_os_scan_ex can report LAC_PAGE_GUARD (Linux >= 6.15). A safety check, so it is not
 * turned off by LACUNA_FORCE_FALLBACK. */
bool lac_os_can_see_guards(void);

/* Lines of /proc/self/maps overlapping [addr, addr+len), handed to fn one by one (start, end, the
 * "rwxp" flags, inode, path; fn returns false to stop). 0, or errno (the file could not be read).
 * Not a syscall on memory, but the kernel's view of the mappings, so it lives here too. */
typedef bool (*lac_maps_fn)(void *ctx, uintptr_t start, uintptr_t end, const char *perms,
                            unsigned long inode, const char *path);
int lac_os_maps(const void *addr, size_t len, lac_maps_fn fn, void *ctx);

/* mmap(MAP_FIXED) fresh private anonymous read-write pages over [addr, addr+len): atomically
 * replaces whatever was there (its pages are freed). 0 or errno (nothing changed on error). */
int lac_os_remap(void *addr, size_t len);

/* A memfd of len bytes (close-on-exec). Returns the fd, or -errno. */
int lac_os_memfd(size_t len);

/* Map len bytes MAP_SHARED, read-write: of fd from offset 0, or anonymous when fd < 0 (shared
 * with children forked later). NULL + errno on failure. Unmap with lac_os_unreserve. */
void *lac_os_map_shared(int fd, size_t len);

/* fallocate(PUNCH_HOLE | KEEP_SIZE) on a memfd: the shmem pages of [off, off+len) are freed. */
int lac_os_punch(int fd, uint64_t off, size_t len);

/* Kernel write tracking of [addr, addr+len) (page-aligned, private anonymous): a userfaultfd in
 * asynchronous write-protect mode (Linux 6.7), so the first write to a present page after
 * lac_os_wp_open or a LAC_SCAN_REPROTECT scan makes it LAC_PAGE_WRITTEN; a page that was not
 * present is unprotected, so once written it reports WRITTEN too (look for WRITTEN and PRESENT).
 * Returns the userfaultfd (close it with lac_os_wp_close), or -errno: ENOTSUP when the kernel
 * lacks the features or LACUNA_FORCE_FALLBACK names `uffd`, EPERM when userfaultfd is not
 * permitted (vm.unprivileged_userfaultfd = 0 without CAP_SYS_PTRACE). After one definitive
 * ENOTSUP/EPERM later calls fail at once with the same value. */
int lac_os_wp_open(void *addr, size_t len);
void lac_os_wp_close(int uffd);

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

/* ---- pool.c --------------------------------------------------------------------------------- */

/* A name for region `index` of a pool, shown in the overflow message (the fiber runtime names
 * its stacks). Called from a signal handler: must be async-signal-safe and not allocate. */
typedef const char *(*lac_region_namer)(void *ctx, size_t index);
void lac_pool_set_namer(lacuna_pool *pool, lac_region_namer namer, void *ctx);

/* ---- wipe.c -------------------------------------------------------------------------------- */

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
