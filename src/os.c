/* os.c — every memory syscall lacuna makes, behind a handful of primitives.
 *
 * Owns: the one-time feature probe (guard markers, process_madvise on self, PAGEMAP_SCAN,
 * MADV_FREE), the process's pidfd and pagemap descriptor (reopened in a forked child: both name
 * the process that opened them), the LACUNA_FORCE_FALLBACK switch, and the test-only fault
 * injector. Each primitive captures errno right after its syscall and reports how far it got, so
 * the policy above (pool.c, wipe.c) can keep exact books.
 *
 * wipe.c's primitives live here too: remapping fresh zero pages, MADV_REMOVE and hole punching
 * for shared memory, memfds, the /proc/self/maps reader, and userfaultfd asynchronous
 * write-protect (kernel write tracking, probed at first use, forced off by `uffd`).
 *
 * Does not: decide anything. Which regions to release, when, and with what guard is pool.c's.
 * Kernel constants newer than Debian 12's 6.1 headers are defined here, and only here.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <ucontext.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#define LAC_MADV_GUARD_INSTALL  102  /* Linux 6.13 */
#define LAC_SYS_PROCESS_MADVISE 440  /* Linux 5.10; any advice on self since 6.13 */
#define LAC_IOV_MAX             1024 /* process_madvise rejects 1025 iovecs with EINVAL */
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 1u
#endif
#define LAC_SYS_MEMFD_CREATE 319 /* x86_64 */
#if defined(__aarch64__)
#undef LAC_SYS_MEMFD_CREATE
#define LAC_SYS_MEMFD_CREATE 279
#endif
/* userfaultfd features newer than the 6.1 headers. */
#define LAC_UFFD_FEATURE_WP_ASYNC (1ull << 15) /* 6.7: the kernel resolves wp faults itself */
/* 5.11: UFFD_USER_MODE_ONLY is allowed without CAP_SYS_PTRACE when vm.unprivileged_userfaultfd=0 */
#define LAC_UFFD_USER_MODE_ONLY   1
#define LAC_PM_SCAN_WP_MATCHING   (1ull << 0) /* write-protect the pages reported */
#define LAC_PM_SCAN_CHECK_WPASYNC (1ull << 1) /* EPERM unless the range is async-wp */

static lacuna_features features;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int pagemap_fd = -1; /* /proc/self/pagemap for PAGEMAP_SCAN; open even when `scan` is
                               forced off, for the guard check (lac_os_can_see_guards) */
static bool guard_scan;     /* PAGEMAP_SCAN knows PAGE_IS_GUARD (6.15) */

/* PAGEMAP_SCAN (Linux 6.7), from <linux/fs.h> of newer kernels. */
struct lac_page_region {
    uint64_t start, end, categories;
};
struct lac_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define LAC_PAGEMAP_SCAN _IOWR('f', 16, struct lac_pm_scan_arg)
#define LAC_SCAN_BATCH   256 /* <= 512: larger answers can return a stale walk_end (6.18) */

/* ---- fault injection ---------------------------------------------------------------------- */

#ifdef LACUNA_FAULT_INJECTION
static _Atomic unsigned fault_countdown[LAC_OP_COUNT];
static _Atomic int fault_errno[LAC_OP_COUNT];

void lac_fault_inject(lac_op op, unsigned nth, int err)
{
    atomic_store(&fault_errno[op], err);
    atomic_store(&fault_countdown[op], nth);
}

/* The errno to fail this call of op with, or 0 to make the call. */
static int fault_take(lac_op op)
{
    unsigned n = atomic_load(&fault_countdown[op]);
    while (n != 0) {
        if (atomic_compare_exchange_weak(&fault_countdown[op], &n, n - 1))
            return n == 1 ? atomic_load(&fault_errno[op]) : 0;
    }
    return 0;
}
#else
void lac_fault_inject(lac_op op, unsigned nth, int err)
{
    (void)op, (void)nth, (void)err;
}
static inline int fault_take(lac_op op)
{
    (void)op;
    return 0;
}
#endif

/* ---- probe -------------------------------------------------------------------------------- */

static bool forced(const char *list, const char *what)
{
    if (list == NULL || *list == '\0')
        return false;
    size_t n = strlen(what);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if ((len == 3 && strncmp(p, "all", 3) == 0) || (len == n && strncmp(p, what, n) == 0))
            return true;
        p += len + (end != NULL);
    }
    return false;
}

static size_t read_max_map_count(void)
{
    size_t v = 65530; /* the kernel's default */
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f) {
        unsigned long x;
        if (fscanf(f, "%lu", &x) == 1 && x > 0)
            v = x;
        fclose(f);
    }
    return v;
}

/* A guard marker is real only if it has an effect: emulators (qemu-user) return 0 and ignore it.
 * write() from a guarded page must fail with EFAULT rather than fault the caller. */
static bool probe_guard_marker(char *scratch, size_t pg)
{
    if (madvise(NULL, 0, LAC_MADV_GUARD_INSTALL) != 0)
        return false;
    if (madvise(scratch + pg, pg, LAC_MADV_GUARD_INSTALL) != 0)
        return false;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return false;
    ssize_t w = write(fds[1], scratch + pg, 1);
    bool ok = w < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
    return ok;
}

/* process_madvise(DONTNEED) through fd must drop a written page of ours (qemu-user answers
 * ENOSYS; kernels before PIDFD_SELF answer EBADF for it). */
static bool batch_works(int fd, void *scratch)
{
    size_t pg = features.page_size;
    char *page = scratch;
    page[0] = 1;
    struct iovec iov = {page, pg};
    long r = syscall(LAC_SYS_PROCESS_MADVISE, fd, &iov, 1, MADV_DONTNEED, 0);
    return r == (long)pg && *(volatile char *)page == 0;
}

static bool probe_batch(char *scratch, const char *env)
{
    lac_process_pidfd_probe(batch_works, scratch, !forced(env, "pidfd_self"));
    return lac_process_pidfd() != -1;
}

static bool probe_scan(char *scratch, size_t pg);

void lac_os_fork_child(void)
{
    /* The descriptor names the process that opened it, i.e. the parent. */
    if (pagemap_fd >= 0) {
        close(pagemap_fd);
        pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (pagemap_fd < 0) {
            features.pagemap_scan = 0;
            guard_scan = false;
        }
    }
}

static void probe(void)
{
    const char *env = getenv("LACUNA_FORCE_FALLBACK");
    features.forced = env ? env : "";
    features.page_size = (size_t)sysconf(_SC_PAGESIZE);
    features.max_map_count = read_max_map_count();
    features.mprotect_guard_budget = features.max_map_count / 4 / 2;

    size_t pg = features.page_size;
    char *scratch = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch != MAP_FAILED) {
        /* Under mlockall(MCL_FUTURE) the scratch pages are locked, and locked pages refuse guard
         * markers and releases: the probe asks what the kernel can do, not what a locked mapping
         * may, so it unlocks its own scratch mapping first. */
        (void)munlock(scratch, 4 * pg);
        features.guard_marker = !forced(env, "guard") && probe_guard_marker(scratch, pg);
        features.batch_release = !forced(env, "batch") && probe_batch(scratch + 2 * pg, env);
        features.madv_free = !forced(env, "free") && madvise(scratch, pg, MADV_FREE) == 0;
        bool scan = probe_scan(scratch + 3 * pg, pg);
        features.pagemap_scan = scan && !forced(env, "scan");
        munmap(scratch, 4 * pg);
    }
}

const lacuna_features *lac_os_features(void)
{
    pthread_once(&probe_once, probe);
    return &features;
}

void lacuna_features_get(lacuna_features *out)
{
    if (out != NULL) {
        *out = *lac_os_features();
        out->pidfd_renewals = lac_process_pidfd_renewals();
    }
}

/* ---- reserve ------------------------------------------------------------------------------ */

int lac_os_reserve(size_t len, void **out)
{
    int err = fault_take(LAC_OP_RESERVE);
    if (err)
        return err == EINVAL ? ENOMEM : err; /* as mmap's below */
    /* NORESERVE: address space only; commit is charged per touched page, so a 68 GiB pool of
     * stacks is fine under overcommit heuristics. */
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return errno == EINVAL ? ENOMEM : errno; /* EINVAL: len beyond the address space */
    /* Once for the whole range: a THP would pin 2 MiB per touched stack and a partial DONTNEED
     * inside it returns nothing; per-region advice would split the VMA. */
    (void)madvise(p, len, MADV_NOHUGEPAGE);
    *out = p;
    return 0;
}

int lac_os_unreserve(void *addr, size_t len)
{
    return munmap(addr, len) == 0 ? 0 : errno;
}

/* ---- vectored madvise ---------------------------------------------------------------------- */

/* process_madvise over n ranges, up to 1024 a call, completing partial calls. 0, or the errno
 * that stopped it with *done ranges fully done. The vector is never copied (this runs on fiber
 * stacks as small as 16 KiB, so no 1024-entry array here): when the kernel stops inside a range,
 * the rest of that range goes by plain madvise and the vector resumes at the next range. The
 * program may have closed our pidfd (close_range, closefrom): on EBADF or ESRCH a fresh one is
 * opened once, and the call retried. */
static int vector_advise(const struct iovec *ranges, size_t n, int advice, size_t *done,
                         uint64_t *calls, bool partial_fault)
{
    int fd = lac_process_pidfd();
    bool renewed = false;
    *done = 0;
    while (*done < n) {
        size_t k = n - *done < LAC_IOV_MAX ? n - *done : LAC_IOV_MAX;
        long r;
        if (partial_fault) {
            /* Pretend the kernel stopped halfway through the first range (a page boundary). */
            size_t half = ranges[*done].iov_len / 2 / features.page_size * features.page_size;
            if (half == 0)
                half = ranges[*done].iov_len;
            r = madvise(ranges[*done].iov_base, half, advice) == 0 ? (long)half : -1;
            partial_fault = false;
        } else {
            r = fd == -1 ? (errno = EBADF, -1)
                         : syscall(LAC_SYS_PROCESS_MADVISE, fd, ranges + *done, k, advice, 0);
        }
        (*calls)++;
        if (r < 0 && (errno == EBADF || errno == ESRCH) && !renewed) {
            renewed = true;
            if ((fd = lac_process_pidfd_renew(fd)) != -1)
                continue;
            errno = EBADF;
        }
        if (r < 0)
            return errno;
        if (r == 0)
            return EIO; /* no progress: never loop forever */
        size_t bytes = (size_t)r;
        while (*done < n && bytes >= ranges[*done].iov_len)
            bytes -= ranges[(*done)++].iov_len;
        if (bytes != 0) { /* stopped inside ranges[*done]: finish that range alone */
            (*calls)++;
            if (madvise((char *)ranges[*done].iov_base + bytes, ranges[*done].iov_len - bytes,
                        advice) != 0)
                return errno;
            (*done)++;
        }
    }
    return 0;
}

/* Advise n ranges: batched where the kernel allows it and there is more than one range (a
 * 1-range process_madvise costs more than plain madvise: 0.8 vs 0.5 us), and whatever the batch
 * did not do, one range at a time, which names the exact range that fails and why. */
static int advise(const struct iovec *ranges, size_t n, int advice, size_t *done, uint64_t *calls,
                  bool partial_fault)
{
    uint64_t dummy = 0;
    if (calls == NULL)
        calls = &dummy;
    size_t i = 0;
    if (features.batch_release && n > 1 &&
        vector_advise(ranges, n, advice, &i, calls, partial_fault) == 0) {
        *done = n;
        return 0;
    }
    for (; i < n; i++) {
        (*calls)++;
        if (madvise(ranges[i].iov_base, ranges[i].iov_len, advice) != 0) {
            *done = i;
            return errno;
        }
    }
    *done = n;
    return 0;
}

/* ---- guards ------------------------------------------------------------------------------- */

int lac_os_guard_markers(const struct iovec *ranges, size_t n, size_t *done, uint64_t *calls)
{
    int err = fault_take(LAC_OP_GUARD);
    if (err) {
        *done = 0;
        return err;
    }
    /* Through process_madvise: any advice on self since 6.13, which guard markers need anyway. */
    return advise(ranges, n, LAC_MADV_GUARD_INSTALL, done, calls, false);
}

int lac_os_guard_mprotect(void *addr, size_t len)
{
    int err = fault_take(LAC_OP_GUARD);
    if (err)
        return err;
    /* ENOMEM here almost always means vm.max_map_count: each interior guard costs 2 VMAs. */
    return mprotect(addr, len, PROT_NONE) == 0 ? 0 : errno;
}

/* ---- release ------------------------------------------------------------------------------ */

int lac_os_release(const struct iovec *ranges, size_t n, lac_advice advice, size_t *done,
                   uint64_t *calls)
{
    int err = fault_take(LAC_OP_RELEASE);
    if (err > 0) {
        *done = 0;
        return err;
    }
    int adv = advice == LAC_ADV_FREE     ? MADV_FREE
              : advice == LAC_ADV_REMOVE ? MADV_REMOVE
                                         : MADV_DONTNEED;
    return advise(ranges, n, adv, done, calls, err == LAC_FAULT_PARTIAL);
}

/* ---- signal contexts ---------------------------------------------------------------------- */

uintptr_t lac_os_context_sp(const void *ucontext)
{
    const ucontext_t *uc = ucontext;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)uc;
    return 0; /* unknown CPU: every guard fault is reported as an overflow of its region */
#endif
}

/* ---- residency ---------------------------------------------------------------------------- */

bool lac_os_has_swap(void)
{
    static int assume = -1; /* LACUNA_ASSUME_SWAP=1: test the swap paths on a swapless machine */
    if (assume < 0) {
        const char *e = getenv("LACUNA_ASSUME_SWAP");
        assume = e && *e == '1';
    }
    if (assume)
        return true;
    struct sysinfo si;
    return sysinfo(&si) != 0 || si.totalswap > 0; /* unknown: assume there is */
}

int lac_os_resident(const void *addr, size_t len, unsigned char *vec)
{
    int err = fault_take(LAC_OP_SCAN);
    if (err)
        return err;
    return mincore((void *)addr, len, vec) == 0 ? 0 : errno;
}

/* ---- PAGEMAP_SCAN ------------------------------------------------------------------------- */

/* One PAGEMAP_SCAN into regs (room for max), copied out to runs. */
static long scan_ioctl_ex(uintptr_t start, uintptr_t end, const lac_scan_query *q,
                          struct lac_page_region *regs, lac_run *runs, size_t max,
                          uintptr_t *walk_end)
{
    uint64_t flags =
        q->flags & LAC_SCAN_REPROTECT ? LAC_PM_SCAN_WP_MATCHING | LAC_PM_SCAN_CHECK_WPASYNC : 0;
    /* The kernel fills regs through a pointer inside arg, which valgrind's memcheck cannot see:
     * zero them first so its runs stay clean. */
    memset(regs, 0, max * sizeof regs[0]);
    struct lac_pm_scan_arg arg = {
        .size = sizeof arg,
        .flags = flags,
        .start = start,
        .end = end,
        .vec = (uintptr_t)regs,
        .vec_len = max,
        .max_pages = q->max_pages,
        .category_inverted = q->excluded, /* inverted and required: must be absent */
        .category_mask = q->required | q->excluded,
        .category_anyof_mask = q->anyof,
        .return_mask = q->required | q->anyof,
    };
    long r = ioctl(pagemap_fd, LAC_PAGEMAP_SCAN, &arg);
    if (r < 0)
        return -errno;
    uint64_t pages = 0;
    for (long i = 0; i < r; i++) {
        runs[i].start = (uintptr_t)regs[i].start;
        runs[i].end = (uintptr_t)regs[i].end;
        pages += (regs[i].end - regs[i].start) / features.page_size;
    }
    /* Fewer runs than room, and fewer pages than max_pages, means the walk reached `end`
     * (walk_end can be stale otherwise). */
    bool stopped = (size_t)r == max || (q->max_pages && pages >= q->max_pages);
    *walk_end = stopped ? (uintptr_t)arg.walk_end : end;
    return r;
}

static long scan_ioctl(uintptr_t start, uintptr_t end, uint64_t category, lac_run *runs, size_t max,
                       uintptr_t *walk_end)
{
    struct lac_page_region regs[LAC_SCAN_BATCH];
    if (max > LAC_SCAN_BATCH)
        max = LAC_SCAN_BATCH;
    lac_scan_query q = {.required = category};
    return scan_ioctl_ex(start, end, &q, regs, runs, max, walk_end);
}

static bool probe_scan(char *scratch, size_t pg)
{
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap_fd < 0)
        return false;
    scratch[0] = 1;
    lac_run run;
    uintptr_t next;
    long r =
        scan_ioctl((uintptr_t)scratch, (uintptr_t)scratch + pg, LAC_PAGE_PRESENT, &run, 1, &next);
    if (r != 1 || run.start != (uintptr_t)scratch) {
        close(pagemap_fd);
        pagemap_fd = -1;
        return false;
    }
    /* Kernels before 6.15 reject unknown category bits with EINVAL. */
    guard_scan = scan_ioctl(run.start, run.start + pg, LAC_PAGE_GUARD, &run, 1, &next) >= 0;
    return true;
}

long lac_os_scan(const void *addr, size_t len, uint64_t category, lac_run *runs, size_t max,
                 uintptr_t *next)
{
    int err = fault_take(LAC_OP_SCAN);
    if (err)
        return -err;
    if (!lac_os_features()->pagemap_scan)
        return -ENOTSUP;
    return scan_ioctl((uintptr_t)addr, (uintptr_t)addr + len, category, runs, max, next);
}

/* ---- for wipe.c --------------------------------------------------------------------------- */

long lac_os_scan_ex(const void *addr, size_t len, const lac_scan_query *q, lac_run *runs,
                    size_t max, uintptr_t *next)
{
    int err = fault_take(LAC_OP_SCAN);
    if (err)
        return -err;
    lac_os_features();
    if (pagemap_fd < 0)
        return -ENOTSUP;
    /* Half the batch of lac_os_scan: wipes may run on small fiber stacks (3 KiB here). */
    struct lac_page_region regs[LAC_SCAN_BATCH / 2];
    if (max > LAC_SCAN_BATCH / 2)
        max = LAC_SCAN_BATCH / 2;
    return scan_ioctl_ex((uintptr_t)addr, (uintptr_t)addr + len, q, regs, runs, max, next);
}

bool lac_os_can_see_guards(void)
{
    lac_os_features();
    return guard_scan;
}

int lac_os_maps(const void *addr, size_t len, lac_maps_fn fn, void *ctx)
{
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    char buf[4096]; /* a longer line (a path near PATH_MAX) ends the walk: the range is refused */
    size_t have = 0;
    bool more = true, eof = false;
    int err = 0;
    while (more) {
        if (!eof && have < sizeof buf - 1) {
            ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            eof = r == 0;
            have += (size_t)r;
        }
        buf[have] = '\0';
        char *nl = memchr(buf, '\n', have);
        if (nl == NULL) {
            if (eof || have == sizeof buf - 1)
                break; /* a last line without newline, or a line longer than buf: done */
            continue;
        }
        *nl = '\0';
        unsigned long s0, e0, inode = 0;
        char perms[8] = "", *path = "";
        int pos = 0;
        /* start-end perms offset dev inode path */
        if (sscanf(buf, "%lx-%lx %7s %*x %*s %lu %n", &s0, &e0, perms, &inode, &pos) >= 4) {
            path = buf + pos;
            if (e0 > lo && s0 < hi)
                more = fn(ctx, s0, e0, perms, inode, path);
            if (s0 >= hi)
                more = false;
        }
        size_t used = (size_t)(nl - buf) + 1;
        memmove(buf, nl + 1, have - used);
        have -= used;
    }
    close(fd);
    return err;
}

int lac_os_remap(void *addr, size_t len)
{
    int err = fault_take(LAC_OP_REMAP);
    if (err)
        return err;
    /* MAP_FIXED replaces the old pages atomically; NORESERVE as lac_os_reserve (commit per touched
     * page). The new VMA merges with equal neighbours, so a plain mapping stays one VMA. */
    void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? errno : 0;
}

int lac_os_memfd(size_t len)
{
    int fd = (int)syscall(LAC_SYS_MEMFD_CREATE, "lacuna-table", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)len) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

void *lac_os_map_shared(int fd, size_t len)
{
    int err = fault_take(LAC_OP_RESERVE);
    if (err) {
        errno = err;
        return NULL;
    }
    int flags = MAP_SHARED | (fd < 0 ? MAP_ANONYMOUS : 0);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED)
        return NULL;
    return p;
}

int lac_os_punch(int fd, uint64_t off, size_t len)
{
    int err = fault_take(LAC_OP_REMAP);
    if (err)
        return err;
    /* KEEP_SIZE: the memfd keeps its length; the hole reads as zeros in every mapping. */
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0
               ? 0
               : errno;
}

static _Atomic int wp_broken; /* a definitive "no" from the kernel: ENOTSUP or EPERM */

int lac_os_wp_open(void *addr, size_t len)
{
    const lacuna_features *f = lac_os_features();
    if (forced(f->forced, "uffd") || !f->pagemap_scan)
        return -ENOTSUP; /* written pages are read with PAGEMAP_SCAN */
    int broken = atomic_load(&wp_broken);
    if (broken)
        return -broken;
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | LAC_UFFD_USER_MODE_ONLY);
    if (fd < 0 && errno == EINVAL) /* kernels before 5.11 know no USER_MODE_ONLY */
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    int err;
    if (fd < 0) {
        err = errno == ENOSYS ? ENOTSUP : errno;
        if (err == ENOTSUP || err == EPERM)
            atomic_store(&wp_broken, err);
        return -err;
    }
    struct uffdio_api api = {
        .api = UFFD_API,
        /* Not WP_UNPOPULATED: a never-touched page reads as zero and its first write makes a
         * present, unprotected page, which PAGEMAP_SCAN reports WRITTEN anyway. Without it the
         * table gets page tables only where it is written (1 GiB protected up front: 2 MiB of
         * page tables and ~8 ms). */
        .features = LAC_UFFD_FEATURE_WP_ASYNC,
    };
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        err = ENOTSUP; /* EINVAL: a feature this kernel does not have */
        atomic_store(&wp_broken, err);
        goto fail;
    }
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)addr, .len = len},
        .mode = UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
        err = errno;
        goto fail;
    }
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)addr, .len = len},
        .mode = UFFDIO_WRITEPROTECT_MODE_WP,
    };
    if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) != 0) {
        err = errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -err;
}

void lac_os_wp_close(int uffd)
{
    if (uffd >= 0)
        close(uffd); /* the last reference unregisters the range */
}

void lac_os_zero(void *addr, size_t len)
{
#if defined(__x86_64__) && !defined(LAC_NO_NT)
    /* Streaming stores: no read-for-ownership of lines about to be overwritten whole, and the
     * zeros do not evict the cache. 10,000 random resident pages of a 1 GiB range: 0.65-0.7 ms,
     * against 2.1-2.7 ms for memset and 1.6 ms for rep stosb (glibc uses streaming stores itself
     * only above a size threshold of megabytes). SSE2 is part of x86_64. */
    if (len < 1024) {
        memset(addr, 0, len); /* a few lines, likely in cache: plain stores */
        return;
    }
    __m128i z = _mm_setzero_si128();
    for (char *p = addr, *end = p + len; p < end; p += 64) {
        _mm_stream_si128((__m128i *)p, z);
        _mm_stream_si128((__m128i *)(p + 16), z);
        _mm_stream_si128((__m128i *)(p + 32), z);
        _mm_stream_si128((__m128i *)(p + 48), z);
    }
#else
    memset(addr, 0, len);
#endif
}

void lac_os_zero_fence(void)
{
#if defined(__x86_64__) && !defined(LAC_NO_NT)
    /* Streaming stores are weakly ordered: make them visible before the stores that follow (an
     * sfence per page instead cost 10,000 scattered pages 1.45 ms instead of 0.68). */
    _mm_sfence();
#endif
}
