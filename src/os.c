/* os.c — every memory syscall lacuna makes, behind a handful of primitives.
 *
 * Owns: the one-time feature probe (guard markers, process_madvise on self, PAGEMAP_SCAN,
 * MADV_FREE), the process's pidfd (reopened in a forked child: it names the process that opened
 * it), the LACUNA_FORCE_FALLBACK switch, and the test-only fault injector. Each primitive
 * captures errno right after its syscall and reports how far it got, so the policy above
 * (pool.c, wipe.c) can keep exact books.
 *
 * wipe.c's primitives (the maps reader, PAGEMAP_SCAN and its descriptor, remapping, memfds,
 * hole punching, userfaultfd write-protect, zeroing stores) live apart, in os_wipe.c; the probe
 * here uses its lac_os_pagemap_scan.
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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#define LAC_MADV_GUARD_INSTALL  102 /* Linux 6.13 */
#define LAC_MADV_GUARD_REMOVE   103 /* Linux 6.13 */
#define LAC_MADV_POPULATE_WRITE 23  /* Linux 5.14 */
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux 4.17; older kernels take it as a plain hint */
#endif
#define LAC_SYS_PROCESS_MADVISE 440  /* Linux 5.10; any advice on self since 6.13 */
#define LAC_IOV_MAX             1024 /* process_madvise rejects 1025 iovecs with EINVAL */
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif

static lacuna_features features;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool guard_scan; /* PAGEMAP_SCAN knows PAGE_IS_GUARD (6.15) */

/* ---- fault injection ---------------------------------------------------------------------- */

#ifdef LACUNA_FAULT_INJECTION
static _Atomic unsigned fault_countdown[LAC_OP_COUNT];
static _Atomic int fault_errno[LAC_OP_COUNT];

void lac_fault_inject(lac_op op, unsigned nth, int err)
{
    atomic_store(&fault_errno[op], err);
    atomic_store(&fault_countdown[op], nth);
}

int lac_fault_take(lac_op op)
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
#endif
/* Every primitive here (os_wipe.c's too) asks the injector first. */
static inline int fault_take(lac_op op)
{
    return lac_fault_take(op);
}

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

/* The mapping every reservation is: at `at` exactly (NOREPLACE) or, with at NULL, anywhere. */
static void *map_reserve(void *at, size_t len)
{
    /* NORESERVE: address space only; commit is charged per touched page, so a 68 GiB pool of
     * stacks is fine under overcommit heuristics. */
    return mmap(at, len, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (at ? MAP_FIXED_NOREPLACE : 0), -1,
                0);
}

int lac_os_reserve(size_t len, void **out)
{
    return lac_os_reserve_near(NULL, len, out);
}

int lac_os_reserve_near(void *at, size_t len, void **out)
{
    int err = fault_take(LAC_OP_RESERVE);
    if (err)
        return err == EINVAL ? ENOMEM : err; /* as mmap's below */
    void *p = at ? map_reserve(at, len) : MAP_FAILED;
    if (p == MAP_FAILED) /* EEXIST: something is mapped there; anything else: try anywhere */
        p = map_reserve(NULL, len);
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
static int vector_advise(int fd, const struct iovec *ranges, size_t n, int advice, size_t *done,
                         uint64_t *calls, bool partial_fault)
{
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
            r = syscall(LAC_SYS_PROCESS_MADVISE, fd, ranges + *done, k, advice, 0);
        }
        (*calls)++;
        if (r < 0 && (errno == EBADF || errno == ESRCH) && !renewed) {
            renewed = true;
            if ((fd = lac_process_pidfd_renew(fd)) == -1)
                return EBADF;
            continue;
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
    int fd = lac_process_pidfd(); /* -1: a fork child that could not open one */
    if (features.batch_release && n > 1 && fd != -1 &&
        vector_advise(fd, ranges, n, advice, &i, calls, partial_fault) == 0) {
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

int lac_os_prefault(const struct iovec *ranges, size_t n)
{
    /* -1 unknown, 0 no, 1 yes. A kernel that refuses the advice through process_madvise (before
     * 6.13 only a few advices were allowed; POPULATE_WRITE itself is 5.14) says EINVAL once. */
    static _Atomic int works = -1;
    int w = atomic_load_explicit(&works, memory_order_relaxed);
    if (w < 0) {
        w = lac_os_features()->batch_release && !lac_os_forced("prefault");
        atomic_store_explicit(&works, w, memory_order_relaxed);
    }
    int fd = lac_process_pidfd();
    if (!w || n == 0 || fd == -1)
        return ENOTSUP;
    size_t done = 0;
    uint64_t calls = 0;
    int err = vector_advise(fd, ranges, n, LAC_MADV_POPULATE_WRITE, &done, &calls, false);
    if (err == EINVAL && done == 0)
        atomic_store_explicit(&works, 0, memory_order_relaxed);
    return err;
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

int lac_os_unguard(const struct iovec *ranges, size_t n, bool markers, size_t *done,
                   uint64_t *calls)
{
    int err = fault_take(LAC_OP_RELEASE);
    if (err > 0) {
        *done = 0;
        return err;
    }
    /* Markers first: a page-table page that still holds one is not empty, so DONTNEED would
     * leave it. Removing markers where there are none is a no-op. A failed removal still goes on
     * to DONTNEED: the caller re-guards these slots anyway. */
    size_t removed = n;
    int rerr = markers ? advise(ranges, n, LAC_MADV_GUARD_REMOVE, &removed, calls, false) : 0;
    err = advise(ranges, n, MADV_DONTNEED, done, calls, false);
    return err ? err : rerr;
}

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
    /* LACUNA_ASSUME_SWAP=1: test the swap paths on a swapless machine. Atomic: threads race to
     * set it, with the same answer. */
    static _Atomic int assume = -1;
    if (atomic_load_explicit(&assume, memory_order_relaxed) < 0) {
        const char *e = getenv("LACUNA_ASSUME_SWAP");
        atomic_store_explicit(&assume, e && *e == '1', memory_order_relaxed);
    }
    if (atomic_load_explicit(&assume, memory_order_relaxed))
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

/* ---- PAGEMAP_SCAN (the primitive is os_wipe.c's) ----------------------------------------- */

/* PAGEMAP_SCAN must report a page just written; kernels before 6.15 reject the GUARD category
 * with EINVAL. */
static bool probe_scan(char *scratch, size_t pg)
{
    scratch[0] = 1;
    uintptr_t s = (uintptr_t)scratch, next;
    lac_run run;
    size_t n;
    lac_scan_query q = {.required = LAC_PAGE_PRESENT};
    if (lac_os_pagemap_scan(s, s + pg, &q, &run, 1, &n, &next) != 0 || n != 1 || run.start != s)
        return false;
    q.required = LAC_PAGE_GUARD;
    guard_scan = lac_os_pagemap_scan(s, s + pg, &q, &run, 1, &n, &next) == 0;
    return true;
}

bool lac_os_can_see_guards(void)
{
    lac_os_features();
    return guard_scan;
}

bool lac_os_forced(const char *what)
{
    return forced(lac_os_features()->forced, what);
}

/* ---- membarrier ------------------------------------------------------------------------------ */

/* Whether membarrier's private expedited command works here (registered on first use): 1, or 0
 * where the kernel lacks it (before Linux 4.14), under valgrind, or with
 * LACUNA_FORCE_FALLBACK=membarrier (or all). */
static bool membarrier_ready(void)
{
    enum { UNKNOWN, WORKS, ABSENT };
    static _Atomic int state = UNKNOWN;
    int st = atomic_load_explicit(&state, memory_order_acquire);
    if (st == UNKNOWN) {
        const int query = 0, expedited = 1 << 3, register_expedited = 1 << 4;
        long cmds = lac_os_forced("membarrier") ? -1 : syscall(SYS_membarrier, query, 0, 0);
        st = cmds >= 0 && (cmds & expedited) &&
                     syscall(SYS_membarrier, register_expedited, 0, 0) == 0
                 ? WORKS
                 : ABSENT;
        atomic_store_explicit(&state, st, memory_order_release);
    }
    return st == WORKS;
}

bool lac_os_has_membarrier(void)
{
    return membarrier_ready();
}

/* A full memory barrier on every thread of this process now running (an IPI each), so a release
 * of a parked fiber's pages (parked.c) orders itself against switches that use no fence at all. */
int lac_os_membarrier(void)
{
    if (!membarrier_ready())
        return ENOSYS;
    return syscall(SYS_membarrier, 1 << 3, 0, 0) == 0 ? 0 : errno;
}
