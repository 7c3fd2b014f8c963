/* libFuzzer target: random sequences of pool calls with random and invalid arguments, checked
 * against a model. Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined, with the
 * os-layer fault injector), run from the seed corpus in tests/fuzz/corpus/.
 *
 * An input is a config (odd and invalid ones included, and maybe an injected reserve fault), then
 * a sequence of operations, each an opcode byte and its argument bytes: alloc, free, double free,
 * free of a wild pointer (inside the pool: in a guard, misaligned, past the end; outside it; NULL),
 * frees by top and deferred frees, punches of live regions, trim, stats, region_index, writes
 * into live regions, and injected release / guard / scan faults. The model knows which slots are
 * live and what was written where, and checks:
 *   - create fails exactly for invalid configs (EINVAL / ENOTSUP), and with the injected errno;
 *   - no slot is handed out twice; every region is a slot start inside the pool;
 *   - bytes written into a live region stay until it is freed; under LACUNA_ZERO a region is
 *     handed out zeroed wherever it was written before;
 *   - lacuna_free accepts exactly the live region starts; lacuna_region_index is exact;
 *   - alloc fails only when every slot is live or a guard fault was injected; trim fails only
 *     after an injected release fault; stats agree with the model.
 * A growing pool (capacity 0) is modelled slot by slot: its reservations need not be adjacent,
 * so a slot's address is the one it was first handed out at (1 MiB regions have a first
 * reservation of 128 slots: the model's 512 reach into the third). Its regions are punched,
 * freed by top and deferred like any other, in every reservation.
 * Wipe calls join the op table when src/wipe.c lands (see op_wipe). */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 512 /* the model tracks pools up to this capacity; bigger ones use fewer ops */
#define MAX_FREED 64

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_pool: " __VA_ARGS__);                                                \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)
#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            FAIL("%s:%d: %s", __FILE__, __LINE__, #c);                                             \
    } while (0)

typedef struct input {
    const uint8_t *d;
    size_t n;
} input;

static uint8_t u8(input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->d++;
}

static uint32_t u32(input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | u8(in);
    return v;
}

typedef struct model {
    lacuna_pool *pool;
    size_t capacity; /* the pool's: capacity_max (a growing pool's ceiling) */
    size_t slots;    /* slots modelled: min(capacity, MAX_SLOTS) (bigger pools use fewer) */
    bool grows;      /* capacity 0: reservations added as needed, anywhere */
    size_t region, guard, stride, keep;
    unsigned flags;
    char *first;                  /* region 0, known after the first alloc (fixed capacity) */
    char *addr[MAX_SLOTS];        /* by slot: its region, once handed out */
    char *live[MAX_SLOTS];        /* by slot: the region while live, else NULL */
    uint64_t stamp[MAX_SLOTS];    /* what was written into the slot's region */
    uint32_t dirty[MAX_SLOTS][2]; /* offsets written (besides 0 and the top word) */
    char *freed[MAX_FREED];       /* recently freed regions, for double frees */
    size_t nfreed, nlive;
    uint64_t allocs, frees, serial;
    bool guard_fault, release_fault; /* injected in this input: failures become legal */
    bool scan_fault;                 /* likewise, for lacuna_resident */
} model;

static const int errnos[] = {ENOMEM, EAGAIN, EINVAL, EPERM};

static size_t round_pg(size_t x, size_t pg)
{
    return (x + pg - 1) / pg * pg;
}

/* The config the input asks for: mostly sane, sometimes odd, sometimes invalid. */
static lacuna_pool_config read_config(input *in)
{
    static const size_t regions[] = {4096,     16384, 65536,    1,    4095,           4097,
                                     3 * 4096, 0,     1u << 20, 8192, (size_t)1 << 45};
    static const size_t capacities[] = {1, 2, 3, 5, 8, 16, 33, 64, 100, 300, 512, 0, 1ull << 33};
    static const size_t guards[] = {0, 0, 4096, 1, 8192, 3 * 4096};
    static const size_t caches[] = {0, 0, 1, 4, 8, 200, LACUNA_CACHE_NONE, 1000};
    static const unsigned decays[] = {0, LACUNA_DECAY_NEVER, 1, 5, 1000};
    lacuna_pool_config c = {0};
    uint8_t a = u8(in), b = u8(in), e = u8(in), f = u8(in);
    c.region_size = regions[a % (sizeof regions / sizeof regions[0])];
    c.capacity = capacities[(a >> 4) % (sizeof capacities / sizeof capacities[0])];
    c.guard_size = guards[b % (sizeof guards / sizeof guards[0])];
    c.guard = (lacuna_guard)((b >> 3) % 5);     /* 4 is invalid */
    c.release = (lacuna_release)((b >> 5) % 5); /* 4 is invalid */
    c.cache = caches[e % (sizeof caches / sizeof caches[0])];
    c.decay_ms = decays[(e >> 3) % (sizeof decays / sizeof decays[0])];
    c.keep_resident = (e >> 6) == 3 ? c.region_size : (size_t)(e >> 6) * 4096;
    c.flags = f & 15; /* 8 is invalid */
    if ((f & 0x70) != 0x70)
        c.flags &= ~LACUNA_BACKGROUND; /* a thread: rarely */
    return c;
}

/* What lacuna_pool_create must answer for c (0 = success, or ENOMEM for a real lack of space). */
static int expected_create(const lacuna_pool_config *c, const lacuna_features *f)
{
    size_t pg = f->page_size, max = (size_t)1 << 44;
    if (c->region_size == 0 || c->region_size > max || c->guard_size > max ||
        (unsigned)c->guard > LACUNA_GUARD_NONE || (unsigned)c->release > LACUNA_RELEASE_NEVER ||
        (c->flags & ~(LACUNA_ZERO | LACUNA_BACKGROUND | LACUNA_STRICT_GUARD)))
        return EINVAL;
    if ((c->flags & LACUNA_STRICT_GUARD) && c->guard == LACUNA_GUARD_NONE)
        return EINVAL;
    size_t region = round_pg(c->region_size, pg), keep = round_pg(c->keep_resident, pg);
    if (c->keep_resident > c->region_size || keep >= region)
        return EINVAL;
    size_t stride = region + round_pg(c->guard_size ? c->guard_size : pg, pg);
    if (stride > max || c->capacity > UINT32_MAX || c->capacity > max / stride)
        return EINVAL; /* capacity 0 grows: up to what the address space allows */
    if (c->guard == LACUNA_GUARD_MARKER && !f->guard_marker)
        return ENOTSUP;
    return 0;
}

static void check_stats(model *m)
{
    ASSERT(lacuna_flush(m->pool) == 0); /* deferred frees counted: the model counted them */
    lacuna_stats st;
    lacuna_pool_stats(m->pool, &st);
    ASSERT(st.live == m->nlive);
    ASSERT(st.allocs == m->allocs);
    ASSERT(st.frees == m->frees);
    ASSERT(st.capacity_max == m->capacity);
    ASSERT(m->grows ? st.capacity <= m->capacity : st.capacity == m->capacity);
    ASSERT(st.reserved_bytes == st.capacity * st.stride);
    ASSERT(st.used <= st.capacity);
    ASSERT(st.live + st.warm <= st.capacity);
    ASSERT(st.stride == m->stride && st.region_size == m->region);
    if (!m->guard_fault)
        ASSERT(st.unguarded == 0 || st.guard != LACUNA_GUARD_MARKER);
}

static uint64_t *word(char *r, size_t off)
{
    return (uint64_t *)(r + off);
}

static void op_alloc(model *m)
{
    errno = 0;
    char *r = lacuna_alloc(m->pool);
    if (r == NULL) {
        /* ENOTSUP: an injected EINVAL, which is the kernel refusing markers in a locked
         * mapping, in a LACUNA_GUARD_MARKER pool */
        ASSERT(errno == ENOMEM || (errno == ENOTSUP && m->guard_fault));
        ASSERT(m->nlive == m->capacity || m->guard_fault);
        return;
    }
    long idx = lacuna_region_index(m->pool, r);
    /* a big pool hands out its lowest slots while few are live: used slots first, then fresh
     * ones in address order, at most a thread cache and a refill beyond the live ones */
    ASSERT(idx >= 0 && (size_t)idx < m->slots);
    if (m->addr[idx] == NULL)
        m->addr[idx] = r;
    ASSERT(r == m->addr[idx]); /* a slot's region never moves */
    ASSERT(lacuna_region_index(m->pool, r + m->region - 1) == idx);
    ASSERT(lacuna_region_index(m->pool, r - 1) == -1); /* its guard */
    if (!m->grows) {                                   /* one reservation */
        if (m->first == NULL)
            m->first = r - (size_t)idx * m->stride;
        ASSERT(r == m->first + (size_t)idx * m->stride);
    }
    ASSERT(m->live[idx] == NULL); /* never handed out twice */
    if (m->flags & LACUNA_ZERO) {
        ASSERT(*word(r, 0) == 0 && *word(r, m->region - 8) == 0);
        for (int k = 0; k < 2; k++)
            ASSERT(*word(r, m->dirty[idx][k]) == 0);
    }
    m->live[idx] = r;
    m->nlive++;
    m->allocs++;
    m->stamp[idx] = ++m->serial * 0x9E3779B97F4A7C15ull | 1;
    *word(r, 0) = *word(r, m->region - 8) = m->stamp[idx];
    for (int k = 0; k < 2; k++)
        *word(r, m->dirty[idx][k]) = m->stamp[idx];
}

/* The k-th live slot (k taken modulo the live count), or -1. */
static long nth_live(const model *m, size_t k)
{
    if (m->nlive == 0)
        return -1;
    k %= m->nlive;
    for (size_t s = 0; s < m->slots; s++)
        if (m->live[s] && k-- == 0)
            return (long)s;
    return -1;
}

/* Free a live region: by its start, by its top (lacuna_free_top), or deferred (freed by the
 * next pool call or check_stats's lacuna_flush: counted as freed now). */
static void op_free(model *m, input *in)
{
    uint8_t how = u8(in);
    long s = nth_live(m, how);
    if (s < 0)
        return;
    char *r = m->live[s];
    ASSERT(*word(r, 0) == m->stamp[s] && *word(r, m->region - 8) == m->stamp[s]);
    for (int k = 0; k < 2; k++)
        ASSERT(*word(r, m->dirty[s][k]) == m->stamp[s]);
    if (how >> 6 == 3)
        ASSERT(lacuna_free_top(m->pool, r + m->region) == 0);
    else if (how >> 6 == 2)
        ASSERT(lacuna_free_deferred(m->pool, r) == 0);
    else
        ASSERT(lacuna_free(m->pool, r) == 0);
    m->live[s] = NULL;
    m->nlive--;
    m->frees++;
    m->freed[m->nfreed++ % MAX_FREED] = r;
}

/* Write the stamp somewhere else in a live region (a stack that grew); or first punch the region
 * below that offset (lacuna_punch: the pages below read zero, the rest keep the stamps), then
 * write the stamps back. */
static void op_write(model *m, input *in)
{
    long s = nth_live(m, u8(in));
    uint32_t off = (u32(in) % (uint32_t)(m->region / 8)) * 8;
    uint8_t how = u8(in);
    if (s < 0)
        return;
    char *r = m->live[s];
    if (how & 2) {
        size_t below = off / 4096 * 4096; /* page-rounded (4 KiB pages: the project's machines) */
        int err = lacuna_punch(m->pool, r, r + off);
        ASSERT(err == 0 || m->release_fault);
        ASSERT(lacuna_punch(m->pool, r, r + m->region + 1) == EINVAL);
        if (err == 0 && below > 0)
            ASSERT(*word(r, 0) == 0 && *word(r, below - 8) == 0);
        ASSERT(*word(r, m->region - 8) == m->stamp[s]);
        size_t pages = 0;
        err = lacuna_resident(m->pool, r, &pages);
        ASSERT(err == 0 ? pages <= m->region / 4096 : m->scan_fault);
        *word(r, 0) = m->stamp[s];
        for (int k = 0; k < 2; k++)
            *word(r, m->dirty[s][k]) = m->stamp[s];
    }
    m->dirty[s][how & 1] = off;
    *word(r, off) = m->stamp[s];
}

/* The slot whose live region starts at p, or -1. */
static long live_slot(const model *m, const char *p)
{
    for (size_t s = 0; s < m->slots; s++)
        if (m->live[s] == p && p != NULL)
            return (long)s;
    return -1;
}

/* A slot handed out before (the first at or after v modulo the modelled slots), or -1. */
static long known_slot(const model *m, uint32_t v)
{
    for (size_t i = 0; i < m->slots; i++) {
        size_t s = (v + i) % m->slots;
        if (m->addr[s])
            return (long)s;
    }
    return -1;
}

/* A free that must be refused, unless it happens to name a live region start. */
static void op_wild_free(model *m, input *in)
{
    uint8_t kind = u8(in);
    uint32_t v = u32(in);
    char *p;
    if (kind % 4 == 0 && m->nfreed > 0) {
        p = m->freed[v % (m->nfreed < MAX_FREED ? m->nfreed : MAX_FREED)]; /* a double free */
    } else if (kind % 4 == 1 && m->first) {
        size_t span = m->capacity * m->stride;
        p = m->first - m->guard + (size_t)v % (span + 2 * m->stride); /* inside, or just past */
    } else if (kind % 4 == 1 && known_slot(m, v) >= 0) { /* a growing pool: near a slot */
        p = m->addr[known_slot(m, v)] - m->guard + (size_t)(v >> 9) % (2 * m->stride);
    } else if (kind % 4 == 2) {
        p = (char *)(uintptr_t)v; /* low addresses, NULL */
    } else {
        static char outside[64];
        p = outside + (v & 63);
    }
    if (kind & 0x80) {
        ASSERT(lacuna_free(NULL, p) == EINVAL);
        return;
    }
    long s = live_slot(m, p);
    if (s >= 0) { /* a live region after all: free it properly */
        ASSERT(lacuna_free(m->pool, p) == 0);
        m->live[s] = NULL;
        m->nlive--;
        m->frees++;
        return;
    }
    ASSERT(lacuna_free(m->pool, p) == EINVAL);
}

static void op_index(model *m, input *in)
{
    if (m->grows) { /* around a slot handed out before: its guard, its region */
        uint32_t v = u32(in);
        long k = known_slot(m, v);
        if (k < 0)
            return;
        char *p = m->addr[k] - m->guard + (size_t)(v >> 9) % m->stride;
        ASSERT(lacuna_region_index(m->pool, p) == (p >= m->addr[k] ? k : -1));
        return;
    }
    if (m->first == NULL)
        return;
    size_t span = m->capacity * m->stride;
    char *p = m->first - m->guard + (size_t)u32(in) % (span + 2 * m->stride);
    long want = -1;
    if (p >= m->first && (size_t)(p - m->first) < span - m->guard &&
        (size_t)(p - m->first) % m->stride < m->region)
        want = (long)((size_t)(p - m->first) / m->stride);
    ASSERT(lacuna_region_index(m->pool, p) == want);
}

static void op_trim(model *m)
{
    int rc = lacuna_trim(m->pool);
    ASSERT(rc == 0 || m->release_fault);
}

static void op_fault(model *m, input *in)
{
    uint8_t a = u8(in), b = u8(in);
    lac_op op = (lac_op)(LAC_OP_RELEASE + a % 3); /* release, guard, scan */
    int err = (b & 7) == 7 ? LAC_FAULT_PARTIAL : errnos[b % 4];
    if (op == LAC_OP_RELEASE && err != LAC_FAULT_PARTIAL)
        m->release_fault = true;
    if (op == LAC_OP_GUARD)
        m->guard_fault = true;
    if (op == LAC_OP_SCAN)
        m->scan_fault = true;
    lac_fault_inject(op, 1 + (unsigned)(a >> 4), err);
}

static void op_bad_calls(model *m)
{
    errno = 0;
    ASSERT(lacuna_alloc(NULL) == NULL && errno == EINVAL);
    ASSERT(lacuna_free(m->pool, NULL) == EINVAL);
    ASSERT(lacuna_trim(NULL) == EINVAL);
    lacuna_pool_stats(NULL, NULL);
    lacuna_pool_stats(m->pool, NULL);
    ASSERT(lacuna_region_index(NULL, m->first) == -1);
}

/* Hook for the wipe layer (src/wipe.c): its calls on live regions, and their model, go here.
 * Consumes its argument bytes already, so seeds stay meaningful when it lands. */
static void op_wipe(model *m, input *in)
{
    (void)m;
    (void)u8(in);
    (void)u32(in);
}

static void disarm(void)
{
    for (int op = 0; op < LAC_OP_COUNT; op++)
        lac_fault_inject((lac_op)op, 0, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static model m;
    input in = {data, size};
    lacuna_features f;
    lacuna_features_get(&f);
    lacuna_pool_config c = read_config(&in);
    int want = expected_create(&c, &f);
    uint8_t rf = u8(&in);
    int reserve_err = (rf & 0xf0) == 0xf0 ? errnos[rf % 4] : 0;
    if (reserve_err)
        lac_fault_inject(LAC_OP_RESERVE, 1 + (rf >> 2 & 1), reserve_err);
    memset(&m, 0, sizeof m);
    int rc = lacuna_pool_create(&c, &m.pool);
    disarm();
    if (want != 0) {
        ASSERT(rc == want);
        return 0;
    }
    if (reserve_err) {
        ASSERT(rc == (reserve_err == EINVAL ? ENOMEM : reserve_err));
        return 0;
    }
    if (rc == ENOMEM)
        return 0; /* a valid but huge reservation the address space refused */
    ASSERT(rc == 0);
    lacuna_stats st;
    lacuna_pool_stats(m.pool, &st);
    m.capacity = st.capacity_max;
    m.grows = c.capacity == 0;
    m.slots = m.capacity < MAX_SLOTS ? m.capacity : MAX_SLOTS;
    m.region = st.region_size;
    m.guard = st.guard_size;
    m.stride = st.stride;
    m.keep = st.keep_resident;
    m.flags = st.flags;

    for (int ops = 0; in.n > 0 && ops < 2000; ops++) {
        uint8_t op = u8(&in);
        switch (op % 12) {
        case 0:
        case 1:
        case 2:
            if (m.slots == m.capacity || m.nlive < MAX_SLOTS / 2)
                op_alloc(&m);
            break;
        case 3:
        case 4:
            op_free(&m, &in);
            break;
        case 5:
            op_wild_free(&m, &in);
            break;
        case 6:
            op_write(&m, &in);
            break;
        case 7:
            op_trim(&m);
            break;
        case 8:
            check_stats(&m);
            break;
        case 9:
            op_index(&m, &in);
            break;
        case 10:
            if (op & 0x10)
                op_fault(&m, &in);
            else
                op_bad_calls(&m);
            break;
        case 11:
            op_wipe(&m, &in);
            break;
        }
    }
    check_stats(&m);
    for (size_t s = 0; s < m.slots; s++) /* everything back; the pool ends empty */
        if (m.live[s]) {
            ASSERT(lacuna_free(m.pool, m.live[s]) == 0);
            m.live[s] = NULL;
            m.nlive--;
            m.frees++;
        }
    disarm();
    check_stats(&m);
    rc = lacuna_trim(m.pool);
    ASSERT(rc == 0);
    lacuna_pool_destroy(m.pool);
    return 0;
}
