/* process.c — every process-wide hook lacuna installs, in one place.
 *
 * Owns: the fork handlers (one pthread_atfork), the thread-exit destructor (one pthread key for
 * the whole library), the SIGSEGV handler and each thread's alternate signal stack, and the
 * descriptor process_madvise acts on ourselves through.
 *
 * Each of these is a promise about the whole process, kept here together so none is forgotten:
 *   - fork: the prepare handler takes every library mutex, in the one lock order of the library
 *     (fiber runtime, then pools), and parent and child release them, so a child never inherits
 *     a lock held by a thread that was not copied;
 *   - thread exit: a thread's pool caches go back to their pools and its signal stack is freed;
 *     without a key (the process used them all) nothing uses another library's key;
 *   - SIGSEGV: only real faults (si_code > 0) are matched against guards; a sent SIGSEGV (kill,
 *     raise, pthread_kill) gets exactly what it would get without lacuna, and the handler stays;
 *   - the pidfd: PIDFD_SELF where the kernel knows it (no descriptor, so no close_range can break
 *     it), else a pidfd of our own, renewed when the program closes it;
 *   - dlclose: liblacuna.so is linked with -z nodelete, so the code these hooks point to is never
 *     unmapped while they are live.
 *
 * Does not: know pools or fibers beyond the calls it makes into them (lac_fiber_fork_*,
 * lac_pool_fork_*, lac_pool_thread_exit, lac_overflow_report).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- fork --------------------------------------------------------------------------------- */

/* Lock order, everywhere in the library: the memory-pressure watcher's and the parked-release
 * pass's locks (parked.c), the fiber runtime's lock, then the pool registry, then each pool's
 * lock. Parent and child release in reverse. */
static void fork_prepare(void)
{
    lac_parked_fork_prepare();
    lac_fiber_fork_prepare();
    lac_pool_fork_prepare();
}

static void fork_parent(void)
{
    lac_pool_fork_parent();
    lac_fiber_fork_parent();
    lac_parked_fork_parent();
}

static void pidfd_fork_child(void);

static void fork_child(void)
{
    pidfd_fork_child();
    lac_pool_fork_child();
    lac_fiber_fork_child();
    lac_parked_fork_child();
}

/* At load, so that no lacuna lock can be held by any thread before the handlers exist. */
__attribute__((constructor)) static void process_init(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- thread exit -------------------------------------------------------------------------- */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_err; /* pthread_key_create's answer: 0 or EAGAIN */
static pthread_key_t exit_key;
static __thread void *altstack; /* this thread's signal stack, if lacuna gave it one */

static void thread_exit(void *unused)
{
    (void)unused;
    lac_sched_thread_exit();
    lac_pool_thread_exit();
    if (altstack) {
        stack_t off = {.ss_flags = SS_DISABLE};
        (void)sigaltstack(&off, NULL);
        free(altstack);
        altstack = NULL;
    }
}

static void make_key(void)
{
    key_err = pthread_key_create(&exit_key, thread_exit);
}

int lac_process_on_thread_exit(void)
{
    pthread_once(&key_once, make_key);
    if (key_err)
        return key_err;
    if (pthread_getspecific(exit_key) == NULL)
        return pthread_setspecific(exit_key, (void *)1);
    return 0;
}

/* ---- SIGSEGV ------------------------------------------------------------------------------ */

static struct sigaction previous;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int handler_err;

/* Die by SIGSEGV with the default action (exit status, core dump) from inside the handler. A
 * fault re-executes on return and now kills; a sent signal is sent again, and delivered (it is
 * blocked while the handler runs) the moment the handler returns. */
static void die_by_default(const siginfo_t *si)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGSEGV, &dfl, NULL);
    if (si->si_code <= 0)
        (void)syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGSEGV);
}

/* Whatever the process had before lacuna, as if lacuna were not there: its handler runs with its
 * own mask (SIGSEGV too, unless SA_NODEFER), and once only under SA_RESETHAND, after which the
 * default action applies (a one-shot crash reporter that returns must see its fault kill). */
static void forward(int sig, siginfo_t *si, void *uctx)
{
    struct sigaction h = previous;
    if (h.sa_handler == SIG_IGN) { /* the same pointer slot as sa_sigaction: test it first */
        if (si->si_code > 0)
            die_by_default(si); /* an ignored fault would re-execute forever; the kernel kills */
        return;                 /* an ignored sent signal stays ignored */
    }
    if (h.sa_handler == SIG_DFL) {
        die_by_default(si);
        return;
    }
    if (h.sa_flags & SA_RESETHAND) {
        previous.sa_handler = SIG_DFL; /* as the kernel would have reset it */
        previous.sa_flags &= ~SA_SIGINFO;
    }
    sigset_t mask, old;
    mask = h.sa_mask;
    if (h.sa_flags & SA_NODEFER)
        sigdelset(&mask, sig);
    else
        sigaddset(&mask, sig);
    pthread_sigmask(SIG_SETMASK, &mask, &old); /* async-signal-safe, as sigprocmask */
    if (h.sa_flags & SA_SIGINFO)
        h.sa_sigaction(sig, si, uctx);
    else
        h.sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno;
    /* si_code <= 0: sent by a process (SI_USER, SI_TKILL, SI_QUEUE), not a fault: si_addr is
     * meaningless then, and nothing re-executes. */
    if (si->si_code > 0 && lac_overflow_report((uintptr_t)si->si_addr, lac_os_context_sp(uctx))) {
        die_by_default(si);
        return;
    }
    errno = saved;
    forward(sig, si, uctx);
    errno = saved;
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous) != 0)
        handler_err = errno;
}

/* Give the calling thread an alternate signal stack, unless it has one already. */
static int give_altstack(void)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0)
        return errno;
    if (!(cur.ss_flags & SS_DISABLE))
        return 0;
    int err = lac_process_on_thread_exit(); /* or the stack would leak with the thread */
    if (err)
        return err;
    long min = sysconf(_SC_MINSIGSTKSZ);
    size_t size = 65536;
    if (min > 0 && (size_t)min * 4 > size)
        size = (size_t)min * 4;
    void *mem = malloc(size);
    if (mem == NULL)
        return ENOMEM;
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        err = errno;
        free(mem);
        return err;
    }
    altstack = mem;
    return 0;
}

int lacuna_overflow_handler_install(void)
{
    pthread_once(&handler_once, install_handler);
    if (handler_err)
        return handler_err;
    return give_altstack();
}

/* ---- the pidfd ---------------------------------------------------------------------------- */

#define LAC_PIDFD_SELF (-10001) /* PIDFD_SELF_THREAD_GROUP: this process, no descriptor needed */

static _Atomic int pidfd = -1;
static _Atomic uint64_t renewals;
static dev_t pidfd_dev; /* what our pidfd is, to tell it from a file the program opened at its */
static ino_t pidfd_ino; /* number after closing ours (set with pidfd, under the same CAS) */

static int pidfd_open_self(void)
{
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0); /* close-on-exec by definition */
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0) {
        pidfd_dev = st.st_dev;
        pidfd_ino = st.st_ino;
    }
    return fd < 0 ? -1 : fd;
}

/* Whether fd is still the pidfd we opened (the program may have closed it and reused the number).
 */
static bool pidfd_ours(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == pidfd_dev && st.st_ino == pidfd_ino;
}

void lac_process_pidfd_probe(lac_pidfd_test test, void *scratch, bool allow_self)
{
    if (allow_self && test(LAC_PIDFD_SELF, scratch)) {
        atomic_store(&pidfd, LAC_PIDFD_SELF);
        return;
    }
    int fd = pidfd_open_self();
    if (fd == -1)
        return;
    if (test(fd, scratch)) {
        atomic_store(&pidfd, fd);
        return;
    }
    close(fd);
}

int lac_process_pidfd(void)
{
    return atomic_load_explicit(&pidfd, memory_order_relaxed);
}

int lac_process_pidfd_renew(int stale)
{
    if (stale == LAC_PIDFD_SELF || stale == -1)
        return -1; /* nothing a program can close: the failure is real */
    int fd = pidfd_open_self();
    if (fd == -1)
        return -1;
    /* Never close `stale`: the number may be one of the program's own files now. Of two threads
     * renewing at once, the loser closes the descriptor it just opened. */
    int expect = stale;
    if (!atomic_compare_exchange_strong(&pidfd, &expect, fd)) {
        close(fd);
        return expect;
    }
    atomic_fetch_add_explicit(&renewals, 1, memory_order_relaxed);
    return fd;
}

uint64_t lac_process_pidfd_renewals(void)
{
    return atomic_load_explicit(&renewals, memory_order_relaxed);
}

/* A pidfd names the process that opened it: the child's would act on the PARENT's pages. */
static void pidfd_fork_child(void)
{
    int fd = atomic_load_explicit(&pidfd, memory_order_relaxed);
    if (fd < 0)
        return;         /* none, or PIDFD_SELF, which names whoever uses it */
    if (pidfd_ours(fd)) /* else the number is the program's now: never close it */
        close(fd);
    atomic_store_explicit(&pidfd, pidfd_open_self(), memory_order_relaxed);
}

/* In a file of its own so that no caller can keep errno's address across a fiber switch: the
 * compiler treats a thread-local's address as fixed within a function, and after a switch the
 * caller may run on another thread. */
void lac_set_errno(int err)
{
    errno = err;
}
