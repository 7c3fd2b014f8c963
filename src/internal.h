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

/* ---- the fiber layer ---------------------------------------------------------------------------
 * fiber.c  control blocks and handles, the shared stack pool, spawn/join/detach, names, fork hooks
 * sched.c  one scheduler per OS thread: run queue, context switches, fiber start and end, reaping
 *          ended fibers' stacks (on the thread's own stack), the run loop
 * wait.c   what a parked fiber waits for besides a wake-up: timers (sleep) and fds (epoll)
 * chan.c   channels, on top of lac_fiber_park / lac_fiber_ready
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
typedef struct lac_io_wait lac_io_wait;

enum { LAC_F_FREE = 0, LAC_F_READY, LAC_F_RUNNING, LAC_F_PARKED, LAC_F_DONE };
enum { LAC_W_NONE = 0, LAC_W_TIMER, LAC_W_IO };
#define LAC_NO_HEAP SIZE_MAX /* lac_fiber.heap_pos of a fiber not in the timer heap */

/* A fiber's control block. Never inside a stack region (those pages are released); see fiber.c. */
struct lac_fiber {
    void *sp;        /* saved stack pointer while not running */
    lac_fiber *next; /* run queue link */
    void *(*fn)(void *);
    void *arg;            /* fn's argument, then its result */
    char *stack;          /* lowest byte of the stack region; NULL once freed */
    size_t stack_size;    /* bytes of the region */
    lac_fiber *joiner;    /* fiber blocked in lacuna_join on this one */
    uint64_t deadline;    /* CLOCK_MONOTONIC ns, while in the timer heap */
    size_t heap_pos;      /* index in the timer heap, or LAC_NO_HEAP */
    _Atomic uint32_t gen; /* odd while in use; bumped on spawn and on reclaim */
    uint32_t idx;         /* index in the block table (0 is never used) */
    uint32_t next_free;   /* free-list link (an index) */
    uint8_t state;        /* LAC_F_* */
    uint8_t wait;         /* LAC_W_*: what a parked fiber waits for besides a wake-up */
    uint8_t timed_out;    /* a timed wait ended by its deadline */
    uint8_t detached;
    _Atomic uint64_t owner; /* lac_tls_id of the thread that spawned it */
    long region;            /* stack region index in the pool */
    unsigned vg_id;         /* valgrind stack id */
#ifdef LAC_ASAN
    void *asan_fake; /* ASan fake stack saved across a switch */
#endif
#ifdef LAC_TSAN
    void *tsan; /* TSan fiber */
#endif
    char name[LACUNA_FIBER_NAME_MAX]; /* read by the SIGSEGV handler: always NUL-terminated */
};

/* A thread's scheduler: touched by that thread only, so it takes no lock. */
struct lac_sched {
    lac_fiber *cur;         /* running fiber; NULL while on the thread's own stack */
    lac_fiber *head, *tail; /* run queue */
    lac_fiber *zombie;      /* ended fiber whose stack the thread's own context frees */
    lac_fiber *main_join;   /* the fiber a thread-context lacuna_join waits for */
    void *main_sp;          /* the thread's own context while a fiber runs */
    size_t live;            /* fibers spawned here that have not ended */
    size_t nio;             /* fibers in lacuna_fd_wait */
    lac_io_wait *io_waits;  /* those waits (wait.c), for a forked child's new epoll */
    lac_fiber **heap;       /* timer min-heap on deadline (wait.c) */
    size_t nheap, heap_cap;
    unsigned tick;             /* scheduling decisions while waits pend: LAC_POLL_EVERY */
    bool poll_due;             /* main polls (non-blocking) before it runs the next fiber */
    int epfd;                  /* -1 until the first fd wait */
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

/* Give back an ended fiber's stack (and its block, if detached). Called on the thread's own
 * stack by sched.c, never on a fiber's. */
void lac_fiber_reap(lac_sched *s, lac_fiber *f);

/* Move a dying scheduler's free control blocks to the shared list. */
void lac_fiber_blocks_drop(lac_sched *s);

/* Fork hooks: prepare takes every lock of the fiber layer, parent releases them, child releases
 * them and gives the forking thread's scheduler an epoll instance of its own. process.c calls
 * them in lock order (fiber layer first, then the pools). */
void lac_fiber_fork_prepare(void);
void lac_fiber_fork_parent(void);
void lac_fiber_fork_child(void);

/* ---- sched.c ---- */

extern __thread lac_sched *lac_tls_sched; /* the calling thread's scheduler, or NULL */
/* The calling thread's id, given by its first lac_sched_get and never given again: not an
 * address, which the next thread would get (glibc reuses a dead thread's stack and TLS), so a
 * handle or channel of an exited thread is never taken for one of the caller's. 0 before. */
extern __thread uint64_t lac_tls_id;

/* The calling thread's scheduler, created on first use (with the thread's alternate signal
 * stack and the overflow handler). NULL + errno on failure. */
lac_sched *lac_sched_get(void);

/* Free a scheduler with no fiber left (the next lac_sched_get makes a new one). */
void lac_sched_free(lac_sched *s);

/* Make f's context (f->stack, f->stack_size set) and start it: from a fiber it runs now and the
 * spawner right after it; from thread context it is queued. */
void lac_sched_start(lac_sched *s, lac_fiber *f);

/* Block the running fiber until lac_sched_push(it); other fibers run meanwhile. */
void lac_sched_park(lac_sched *s);

/* Make a fiber of this scheduler runnable: back of the run queue. */
void lac_sched_push(lac_sched *s, lac_fiber *f);

/* Whether the caller runs outside the stack of the fiber the scheduler thinks is running: it left
 * that fiber without switching (longjmp, an exception), which nothing can undo. */
bool lac_sched_escaped(const lac_sched *s);

/* The thread's own context: run fibers until `until` ends (NULL: until none is left). 0, EDEADLK
 * (every fiber is blocked with no timer and no fd wait) or an epoll_wait errno. */
int lac_sched_loop(lac_sched *s, lac_fiber *until);

/* For chan.c: */

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

/* ---- wait.c ---- */

/* Poll fds and fire due timers, making their fibers runnable. block: wait for the first of them.
 * 0 or an epoll_wait errno. */
int lac_wait_poll(lac_sched *s, bool block);

/* Release what a scheduler's waits hold (the heap, the epoll instance). */
void lac_wait_free(lac_sched *s);

/* In a forked child: a new epoll instance for s, with its parked fd waits registered again. */
void lac_wait_fork_child(lac_sched *s);

#endif /* LACUNA_INTERNAL_H */
