/* lacuna-bench burst: the picture of "punching holes". Live regions ramp 0 -> 100,000 -> 0 three
 * times (each region touching 2 pages, as a new green thread's stack would), with an idle pause
 * after each ramp down; a sampler thread reads RSS from /proc/self/statm every 10 ms. Output:
 * CSV rows backend,t_ms,phase,live,rss_kib. Each backend runs in its own process. */
#define _GNU_SOURCE
#include "bench.h"
#include "lacuna.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define REGION (64 * KIB)

typedef struct burst_cfg {
    const char *backend;
    size_t peak;
    unsigned rounds, idle_ms;
    FILE *out;
} burst_cfg;

static const char *const burst_backends[] = {"naive-noguard", "malloc",      "lacuna-never",
                                             "lacuna",        "lacuna-free", NULL};

typedef struct sampler {
    const burst_cfg *cfg;
    _Atomic size_t live;
    _Atomic int phase; /* 0 up, 1 hold, 2 down, 3 idle */
    _Atomic int stop;
    uint64_t t0;
} sampler;

static void *sample(void *arg)
{
    sampler *s = arg;
    static const char *names[] = {"up", "hold", "down", "idle"};
    while (!atomic_load(&s->stop)) {
        fprintf(s->cfg->out, "%s,%.0f,%s,%zu,%ld\n", s->cfg->backend,
                (double)(bench_now_ns() - s->t0) / 1e6, names[atomic_load(&s->phase)],
                atomic_load(&s->live), bench_rss_kib());
        struct timespec t = {0, 10 * 1000000};
        nanosleep(&t, NULL);
    }
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

static void burst_child(void *arg, void *out)
{
    const burst_cfg *cfg = arg;
    int *err = out;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    lacuna_pool *pool = NULL;
    const char *b = cfg->backend;
    bool lac = strncmp(b, "lacuna", 6) == 0;
    if (lac) {
        lacuna_pool_config c = {.region_size = REGION, .capacity = cfg->peak};
        if (strcmp(b, "lacuna") == 0)
            c.flags = LACUNA_BACKGROUND; /* an idle process gives memory back too */
        else if (strcmp(b, "lacuna-never") == 0)
            c.release = LACUNA_RELEASE_NEVER;
        else
            c.release = LACUNA_RELEASE_FREE;
        if ((*err = lacuna_pool_create(&c, &pool)) != 0)
            return;
    }
    char **live = calloc(cfg->peak, sizeof *live);
    sampler s = {.cfg = cfg, .t0 = bench_now_ns()};
    pthread_t th;
    pthread_create(&th, NULL, sample, &s);
    uint64_t x = 88172645463325252ull;
    for (unsigned round = 0; round < cfg->rounds; round++) {
        atomic_store(&s.phase, 0);
        for (size_t i = 0; i < cfg->peak; i++) {
            char *r;
            if (lac)
                r = lacuna_alloc(pool);
            else if (strcmp(b, "malloc") == 0)
                r = malloc(REGION);
            else
                r = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (r == NULL || r == MAP_FAILED) {
                *err = errno ? errno : ENOMEM;
                goto out;
            }
            r[REGION - 1] = 1;
            r[REGION - 1 - pg] = 1;
            live[i] = r;
            atomic_store_explicit(&s.live, i + 1, memory_order_relaxed);
        }
        atomic_store(&s.phase, 1);
        sleep_ms(100);
        atomic_store(&s.phase, 2);
        for (size_t i = cfg->peak; i > 1; i--) { /* free in random order */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t j = (size_t)(x % i);
            char *t = live[j];
            live[j] = live[i - 1];
            live[i - 1] = t;
        }
        for (size_t i = 0; i < cfg->peak; i++) {
            if (lac)
                lacuna_free(pool, live[i]);
            else if (strcmp(b, "malloc") == 0)
                free(live[i]);
            else
                munmap(live[i], REGION);
            atomic_store_explicit(&s.live, cfg->peak - i - 1, memory_order_relaxed);
        }
        atomic_store(&s.phase, 3);
        sleep_ms(cfg->idle_ms); /* no calls: only a background release can give memory back */
    }
out:
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    fflush(cfg->out);
    lacuna_pool_destroy(pool);
}

int bench_burst_main(int argc, char **argv)
{
    burst_cfg cfg = {.backend = "all", .peak = 100000, .rounds = 3, .idle_ms = 1500, .out = stdout};
    for (int i = 1; i + 1 < argc; i += 2) {
        size_t n;
        if (strcmp(argv[i], "--backend") == 0) {
            cfg.backend = argv[i + 1];
        } else if (bench_parse_size(argv[i + 1], &n) == 0 && strcmp(argv[i], "--peak") == 0) {
            cfg.peak = n;
        } else if (bench_parse_size(argv[i + 1], &n) == 0 && strcmp(argv[i], "--idle-ms") == 0) {
            cfg.idle_ms = (unsigned)n;
        } else if (bench_parse_size(argv[i + 1], &n) == 0 && strcmp(argv[i], "--rounds") == 0) {
            cfg.rounds = (unsigned)n;
        } else {
            fprintf(stderr, "usage: lacuna-bench burst [--backend B|all] [--peak 100000] "
                            "[--rounds 3] [--idle-ms 1500]\n");
            return 2;
        }
    }
    if (argc % 2 == 0 || cfg.peak == 0 || cfg.rounds == 0) {
        fprintf(stderr, "usage: lacuna-bench burst [--backend B|all] [--peak 100000] "
                        "[--rounds 3] [--idle-ms 1500]\n");
        return 2;
    }
    bench_machine(stdout, "# ");
    printf("# burst: live 0 -> %zu -> 0, %u rounds, 2 pages touched per 64 KiB region, RSS "
           "sampled every 10 ms; lacuna = defaults + LACUNA_BACKGROUND\n",
           cfg.peak, cfg.rounds);
    printf("backend,t_ms,phase,live,rss_kib\n");
    fflush(stdout);
    int rc = 0;
    for (int i = 0; burst_backends[i]; i++) {
        if (strcmp(cfg.backend, "all") != 0 && strcmp(cfg.backend, burst_backends[i]) != 0)
            continue;
        bench_progress("burst: %s", burst_backends[i]);
        burst_cfg one = cfg;
        one.backend = burst_backends[i];
        int err = 0;
        if (bench_in_child(burst_child, &one, &err, sizeof err) != 0 || err) {
            printf("# %s failed: %s\n", one.backend, err ? strerror(err) : "crashed");
            rc = 1;
        }
        fflush(stdout);
    }
    bench_progress("%s", "");
    return rc;
}
