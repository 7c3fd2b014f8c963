/* overflow.c — turn a SIGSEGV on a guard into a message that names the region, then die as usual.
 *
 * Owns: a fixed table of live pools' geometry (written at create/destroy, read by the handler
 * with atomic loads only, so the handler never touches a pool), the process's SIGSEGV handler,
 * and each thread's alternate signal stack (an overflowed stack cannot run a handler).
 *
 * The handler is async-signal-safe: no locks, no allocation, output by write(2). After reporting
 * it restores the default action and returns, so the faulting instruction faults again and the
 * process dies by SIGSEGV with its usual exit status and core dump. Faults outside our guards go
 * to the previous handler unchanged.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LAC_MAX_POOLS 256 /* pools beyond this work, but report overflows as plain SIGSEGV */

typedef struct lac_guard_map {
    _Atomic(const lacuna_pool *) pool; /* NULL = free entry; published last, cleared first */
    _Atomic uintptr_t base;
    _Atomic size_t size, stride, guard;
    _Atomic(lac_region_namer) namer;
    _Atomic(void *) namer_ctx;
} lac_guard_map;

static lac_guard_map maps[LAC_MAX_POOLS];
static struct sigaction previous;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_err;
static pthread_key_t altstack_key;

bool lac_overflow_register(const lacuna_pool *pool, uintptr_t base, size_t size, size_t stride,
                           size_t guard)
{
    for (size_t i = 0; i < LAC_MAX_POOLS; i++) {
        const lacuna_pool *none = NULL;
        /* Claim with a sentinel so the handler never sees half-written geometry. */
        if (atomic_compare_exchange_strong(&maps[i].pool, &none, (const lacuna_pool *)-1)) {
            atomic_store(&maps[i].base, base);
            atomic_store(&maps[i].size, size);
            atomic_store(&maps[i].stride, stride);
            atomic_store(&maps[i].guard, guard);
            atomic_store(&maps[i].namer, NULL);
            atomic_store(&maps[i].pool, pool);
            return true;
        }
    }
    return false;
}

static lac_guard_map *find(const lacuna_pool *pool)
{
    for (size_t i = 0; i < LAC_MAX_POOLS; i++)
        if (atomic_load(&maps[i].pool) == pool)
            return &maps[i];
    return NULL;
}

void lac_overflow_set_namer(const lacuna_pool *pool, lac_region_namer namer, void *ctx)
{
    lac_guard_map *m = find(pool);
    if (m) {
        atomic_store(&m->namer_ctx, ctx);
        atomic_store(&m->namer, namer);
    }
}

void lac_overflow_unregister(const lacuna_pool *pool)
{
    lac_guard_map *m = find(pool);
    if (m)
        atomic_store(&m->pool, NULL);
}

/* ---- the handler -------------------------------------------------------------------------- */

typedef struct {
    char buf[512];
    size_t n;
} line;

static void put(line *l, const char *s)
{
    while (*s && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = *s++;
}

static void put_num(line *l, uintptr_t v, unsigned radix)
{
    char tmp[24];
    size_t i = 0;
    do {
        tmp[i++] = "0123456789abcdef"[v % radix];
        v /= radix;
    } while (v);
    if (radix == 16)
        put(l, "0x");
    while (i && l->n < sizeof l->buf - 1)
        l->buf[l->n++] = tmp[--i];
}

static void report(const lac_guard_map *m, const lacuna_pool *pool, size_t index, uintptr_t addr)
{
    line l = {.n = 0};
    lac_region_namer namer = atomic_load(&m->namer);
    const char *name = namer ? namer(atomic_load(&m->namer_ctx), index) : NULL;
    if (name) {
        put(&l, "lacuna: stack overflow in fiber \"");
        put(&l, name);
        put(&l, "\" (region ");
        put_num(&l, index, 10);
        put(&l, ", fault at ");
    } else {
        put(&l, "lacuna: stack overflow in region ");
        put_num(&l, index, 10);
        put(&l, " of pool ");
        put_num(&l, (uintptr_t)pool, 16);
        put(&l, " (fault at ");
    }
    put_num(&l, addr, 16);
    put(&l, ")\n");
    ssize_t unused = write(STDERR_FILENO, l.buf, l.n);
    (void)unused;
}

static void die_by_default(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGSEGV, &dfl, NULL);
    /* Returning re-executes the faulting access, which now kills the process by SIGSEGV. */
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno;
    uintptr_t a = (uintptr_t)si->si_addr;
    for (size_t i = 0; i < LAC_MAX_POOLS; i++) {
        const lacuna_pool *pool = atomic_load(&maps[i].pool);
        if (pool == NULL || pool == (const lacuna_pool *)-1)
            continue;
        uintptr_t off = a - atomic_load(&maps[i].base);
        if (off >= atomic_load(&maps[i].size))
            continue;
        size_t stride = atomic_load(&maps[i].stride);
        if (off % stride >= atomic_load(&maps[i].guard))
            break; /* inside a region: not an overflow */
        /* The guard below region k is that of slot k (slot = [guard][region]). */
        report(&maps[i], pool, off / stride, a);
        die_by_default();
        return;
    }
    errno = saved;
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, si, uctx);
    } else if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
        die_by_default(); /* an ignored SIGSEGV would refault forever */
    } else {
        previous.sa_handler(sig);
    }
}

/* ---- installation ------------------------------------------------------------------------- */

static void free_altstack(void *mem)
{
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
    free(mem);
}

static void install(void)
{
    install_err = pthread_key_create(&altstack_key, free_altstack);
    if (install_err)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous) != 0)
        install_err = errno;
}

/* Give the calling thread an alternate signal stack, unless it has one already. */
static int give_altstack(void)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0)
        return errno;
    if (!(cur.ss_flags & SS_DISABLE))
        return 0;
    long min = sysconf(_SC_MINSIGSTKSZ);
    size_t size = 65536;
    if (min > 0 && (size_t)min * 4 > size)
        size = (size_t)min * 4;
    void *mem = malloc(size);
    if (mem == NULL)
        return ENOMEM;
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        int err = errno;
        free(mem);
        return err;
    }
    (void)pthread_setspecific(altstack_key, mem);
    return 0;
}

int lacuna_overflow_handler_install(void)
{
    pthread_once(&install_once, install);
    if (install_err)
        return install_err;
    return give_altstack();
}
