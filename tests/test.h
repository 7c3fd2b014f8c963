/* A tiny test harness (the shape of libuv's test/task.h): each TEST runs in a forked child under a
 * timeout, so a crash or hang fails that test only. `./test_x NAME` runs one test in-process,
 * for gdb. Exit code 77 is a skip (ctest SKIP_RETURN_CODE), printed with its reason. */
#ifndef LACUNA_TEST_H
#define LACUNA_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lacuna.h"

#define LT_SKIP 77

/* Sanitizer runtimes map memory of their own as a test runs (and TSan's shadow of a released page
 * stays resident), so exact VMA counts and "process RSS fell back" are only asserted in plain
 * builds (VMA_CHECK); every such test also checks the pool's own pages with mincore. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LT_SANITIZED 1
#endif
#endif
#ifndef LT_SANITIZED
#define LT_SANITIZED 0
#endif
#define VMA_CHECK(cond)                                                                            \
    do {                                                                                           \
        if (!LT_SANITIZED)                                                                         \
            CHECK(cond);                                                                           \
    } while (0)

typedef void (*lt_fn)(void);
void lt_register(const char *name, lt_fn fn);

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void lt_reg_##name(void)                                   \
    {                                                                                              \
        lt_register(#name, name);                                                                  \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* CHECK_EQ prints both values, as long long. */
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long lt_a = (long long)(a), lt_b = (long long)(b);                                    \
        if (lt_a != lt_b) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,          \
                    __LINE__, #a, lt_a, #b, lt_b);                                                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define SKIP(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "SKIP: ");                                                                 \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(LT_SKIP);                                                                             \
    } while (0)

/* ---- measurement helpers (tests/util.c) ---- */
long lt_rss_kib(void); /* resident set from /proc/self/statm */
long lt_status_kib(
    const char *field);  /* e.g. "VmPTE:", "VmHWM:", "RssShmem:" from /proc/self/status */
long lt_vma_count(void); /* lines of /proc/self/maps */
long lt_minflt(void);    /* getrusage minor faults */
size_t lt_resident_pages(const void *addr, size_t len); /* mincore: resident pages of a range */
int lt_all_zero(const void *m, size_t bytes);           /* every byte reads 0 */
/* A guard really guards: the kernel refuses to read the guard_size bytes below region (EFAULT
 * from write()), without faulting the caller. */
int lt_guarded(const char *region, size_t guard_size);
/* 1 when running under valgrind (make test-valgrind): it reserves less address space and runs
 * forks slowly, so a few tests scale down or skip, saying so. */
int lt_under_valgrind(void);
/* A pool from c, or the test fails; its stats by value. */
lacuna_pool *lt_pool(lacuna_pool_config c);
lacuna_stats lt_stats(const lacuna_pool *p);
/* Run fn(arg) in a forked child; return its wait status. Child's stderr goes to err_buf. */
int lt_fork_run(void (*fn)(void *), void *arg, char *err_buf, size_t err_len);

#endif
