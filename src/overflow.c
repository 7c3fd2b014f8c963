/* overflow.c — turn a fault in a guard into a message that names the region and what happened.
 *
 * Owns: the registry of live pools' geometry, read by process.c's SIGSEGV handler. It is a list
 * of entries that are never freed (a destroyed pool's entry is reused by the next pool), so the
 * handler can walk it with atomic loads at any moment, and it has no fixed size: every live pool
 * is covered. Each entry has a sequence count, so a report racing a pool's destruction and the
 * next pool's creation in the same entry never mixes their geometry. The report tells a stack
 * overflow of region k (the faulting context's stack pointer is in region k or its guard) from a
 * write past the end of region k-1 (it is not), and names the fiber when the pool has a namer.
 *
 * Async-signal-safe on the reporting side: no locks, no allocation, output by write(2).
 * Does not: install the handler or decide what happens after the report (process.c).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define LAC_CLAIMED ((const lacuna_pool *)-1) /* an entry being filled in: not yet readable */

typedef struct lac_guard_map {
    /* Odd while a writer changes the entry (writers take it from even to odd by CAS, so they also
     * exclude each other): a reader whose two loads of it match read one consistent entry, not a
     * destroyed pool's base with the next pool's stride. */
    _Atomic unsigned seq;
    _Atomic(const lacuna_pool *) pool; /* NULL = free entry; published last, cleared first */
    _Atomic uintptr_t base;
    _Atomic size_t size, stride, guard;
    _Atomic size_t first_index; /* region index of the entry's first slot (a pool's later chunks) */
    _Atomic(lac_region_namer) namer;
    _Atomic(void *) namer_ctx;
    struct lac_guard_map *next; /* immutable once the entry is on the list */
} lac_guard_map;

static _Atomic(lac_guard_map *) maps; /* grows at the head; entries never freed */

/* A free entry claimed for the caller, or a new one pushed on the list; NULL: no memory. */
static lac_guard_map *claim(void)
{
    for (lac_guard_map *m = atomic_load(&maps); m; m = m->next) {
        const lacuna_pool *none = NULL;
        if (atomic_compare_exchange_strong(&m->pool, &none, LAC_CLAIMED))
            return m;
    }
    lac_guard_map *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    atomic_init(&m->pool, LAC_CLAIMED);
    m->next = atomic_load(&maps);
    while (!atomic_compare_exchange_weak(&maps, &m->next, m))
        ;
    return m;
}

/* Begin and end a change to m (see seq). */
static unsigned write_begin(lac_guard_map *m)
{
    for (;;) {
        unsigned v = atomic_load(&m->seq);
        if (!(v & 1) && atomic_compare_exchange_weak(&m->seq, &v, v + 1))
            return v + 1;
        LAC_CPU_RELAX();
    }
}

static void write_end(lac_guard_map *m, unsigned odd)
{
    atomic_store(&m->seq, odd + 1);
}

static lac_guard_map *find(const lacuna_pool *pool, lac_guard_map *from)
{
    for (lac_guard_map *m = from; m; m = m->next)
        if (atomic_load(&m->pool) == pool)
            return m;
    return NULL;
}

int lac_overflow_register(const lacuna_pool *pool, uintptr_t base, size_t size, size_t stride,
                          size_t guard, size_t first_index)
{
    lac_guard_map *m = claim();
    if (m == NULL)
        return ENOMEM;
    /* A pool's later chunk takes the namer its first one was given. */
    lac_guard_map *same = find(pool, atomic_load(&maps));
    unsigned w = write_begin(m);
    atomic_store(&m->base, base);
    atomic_store(&m->size, size);
    atomic_store(&m->stride, stride);
    atomic_store(&m->guard, guard);
    atomic_store(&m->first_index, first_index);
    atomic_store(&m->namer_ctx, same ? atomic_load(&same->namer_ctx) : NULL);
    atomic_store(&m->namer, same ? atomic_load(&same->namer) : NULL);
    atomic_store(&m->pool, pool);
    write_end(m, w);
    return 0;
}

void lac_overflow_grow(const lacuna_pool *pool, uintptr_t base, size_t size)
{
    for (lac_guard_map *m = find(pool, atomic_load(&maps)); m; m = find(pool, m->next))
        if (atomic_load(&m->base) == base) {
            unsigned w = write_begin(m);
            atomic_store(&m->size, size);
            write_end(m, w);
        }
}

void lac_overflow_set_namer(const lacuna_pool *pool, lac_region_namer namer, void *ctx)
{
    for (lac_guard_map *m = find(pool, atomic_load(&maps)); m; m = find(pool, m->next)) {
        unsigned w = write_begin(m);
        atomic_store(&m->namer_ctx, ctx);
        atomic_store(&m->namer, namer);
        write_end(m, w);
    }
}

void lac_overflow_unregister(const lacuna_pool *pool)
{
    for (lac_guard_map *m = find(pool, atomic_load(&maps)); m; m = find(pool, m->next)) {
        unsigned w = write_begin(m);
        atomic_store(&m->pool, NULL);
        write_end(m, w);
    }
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

/* What a fault in the guard below region k was. */
enum { OVERFLOW, OVERRUN };

/* One entry's fields as read at one moment (see seq). */
typedef struct geom {
    const lacuna_pool *pool;
    uintptr_t base;
    size_t size, stride, guard, first_index;
    lac_region_namer namer;
    void *namer_ctx;
} geom;

/* Read m whole. False: a free entry, or one that kept changing while read (a few tries: the
 * writer may be the very thread this handler interrupted). */
static bool snapshot(const lac_guard_map *m, geom *g)
{
    for (int tries = 0; tries < 64; tries++) {
        unsigned v = atomic_load(&m->seq);
        if (v & 1) {
            LAC_CPU_RELAX(); /* another thread's change takes a few stores */
            continue;
        }
        *g = (geom){.pool = atomic_load(&m->pool),
                    .base = atomic_load(&m->base),
                    .size = atomic_load(&m->size),
                    .stride = atomic_load(&m->stride),
                    .guard = atomic_load(&m->guard),
                    .first_index = atomic_load(&m->first_index),
                    .namer = atomic_load(&m->namer),
                    .namer_ctx = atomic_load(&m->namer_ctx)};
        if (atomic_load(&m->seq) == v)
            return g->pool != NULL && g->pool != LAC_CLAIMED && g->stride != 0;
    }
    return false;
}

static void report(const geom *g, int what, size_t index, uintptr_t addr)
{
    line l = {.n = 0};
    const char *name = g->namer ? g->namer(g->namer_ctx, index) : NULL;
    put(&l, what == OVERFLOW ? "lacuna: stack overflow in " : "lacuna: write past the end of ");
    if (name) {
        put(&l, "fiber \"");
        put(&l, name);
        put(&l, "\" (region ");
        put_num(&l, index, 10);
    } else {
        put(&l, "region ");
        put_num(&l, index, 10);
        put(&l, " of pool ");
        put_num(&l, (uintptr_t)g->pool, 16);
        put(&l, " (");
    }
    if (what == OVERRUN) {
        put(&l, name ? ", " : "");
        put(&l, "into the guard of region ");
        put_num(&l, index + 1, 10);
    }
    put(&l, what == OVERRUN || name ? ", fault at " : "fault at ");
    put_num(&l, addr, 16);
    put(&l, ")\n");
    ssize_t unused = write(STDERR_FILENO, l.buf, l.n);
    (void)unused;
}

bool lac_overflow_report(uintptr_t a, uintptr_t sp)
{
    for (lac_guard_map *m = atomic_load(&maps); m; m = m->next) {
        geom g;
        if (!snapshot(m, &g))
            continue;
        uintptr_t off = a - g.base;
        if (off >= g.size)
            continue;
        if (off % g.stride >= g.guard)
            return false; /* inside a region: not ours to explain */
        /* The guard below region k is slot k's (slot = [guard][region]). A stack that overflows
         * faults with its stack pointer in region k or, pushing, in the guard itself (with
         * -fstack-clash-protection every large frame probes its way down, so that holds for
         * them too); a stack pointer anywhere else means something wrote upwards past the end
         * of region k-1. */
        size_t k = off / g.stride;
        uintptr_t slot = g.base + k * g.stride;
        if (k == 0 || sp == 0 || sp - slot < g.stride)
            report(&g, OVERFLOW, g.first_index + k, a);
        else
            report(&g, OVERRUN, g.first_index + k - 1, a);
        return true;
    }
    return false;
}
