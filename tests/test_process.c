/* Process events a real program meets, against the hooks of src/process.c: a SIGSEGV sent rather
 * than faulted, the program closing every descriptor, mlockall, the process out of pthread keys,
 * more live pools than any fixed table would hold. Fatal events run in forked children. */
#define _GNU_SOURCE
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB 1024u
#define PG  4096u

/* ---- 1. a sent SIGSEGV ----------------------------------------------------------------------- */

static void *kill_me(void *how)
{
    switch ((intptr_t)how) {
    case 0:
        raise(SIGSEGV);
        break;
    case 1:
        kill(getpid(), SIGSEGV);
        break;
    default:
        pthread_kill(pthread_self(), SIGSEGV);
    }
    return NULL;
}

static void sent_segv_child(void *how)
{
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 16 * KIB});
    (void)lacuna_alloc(p);
    if ((intptr_t)how == 2) { /* from another thread, at that thread */
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, kill_me, how), 0);
        pthread_join(t, NULL);
    } else {
        kill_me(how);
    }
    usleep(100 * 1000); /* a kill() may land a moment later */
    fprintf(stderr, "survived a sent SIGSEGV\n");
    _exit(3);
}

/* Without a handler of its own, a process dies of a sent SIGSEGV: with lacuna too. */
TEST(sent_segv_kills_as_without_lacuna)
{
    for (intptr_t how = 0; how < 3; how++) {
        char err[512];
        int st = lt_fork_run(sent_segv_child, (void *)how, err, sizeof err);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV) {
            fprintf(stderr, "how %ld: status %#x, stderr: %s\n", (long)how, st, err);
            CHECK(0);
        }
        CHECK(strstr(err, "lacuna:") == NULL); /* not reported as an overflow */
    }
}

/* An ignored SIGSEGV stays ignored when sent, and lacuna's handler stays in place: a real
 * overflow afterwards is still reported. */
static void ignored_then_overflow(void *unused)
{
    (void)unused;
    signal(SIGSEGV, SIG_IGN);
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 16 * KIB});
    char *r = lacuna_alloc(p);
    raise(SIGSEGV);
    kill(getpid(), SIGSEGV);
    usleep(50 * 1000);
    fprintf(stderr, "still here\n");
    ((volatile char *)r)[-1] = 1; /* into the guard: must be reported and fatal */
    _exit(4);
}

TEST(sent_segv_ignored_handler_stays)
{
    char err[1024];
    int st = lt_fork_run(ignored_then_overflow, NULL, err, sizeof err);
    CHECK(strstr(err, "still here") != NULL);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(strstr(err, "lacuna: write past the end of") != NULL ||
          strstr(err, "lacuna: stack overflow") != NULL);
}

static volatile sig_atomic_t user_calls, user_code;
static void user_action(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    user_calls++;
    user_code = si->si_code;
}

/* A handler installed before lacuna gets sent signals as they were sent, every time. */
static void previous_gets_sent(void *unused)
{
    (void)unused;
    struct sigaction sa = {.sa_sigaction = user_action, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGSEGV, &sa, NULL), 0);
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    raise(SIGSEGV);
    CHECK_EQ(user_calls, 1);
    CHECK(user_code <= 0);
    raise(SIGSEGV);
    CHECK_EQ(user_calls, 2);
}

TEST(sent_segv_reaches_previous_handler)
{
    char err[512];
    int st = lt_fork_run(previous_gets_sent, NULL, err, sizeof err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "status %#x: %s\n", st, err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- 3. the program closes every descriptor -------------------------------------------------- */

/* Freed regions must be given back after close_range(3, ~0U) (daemons do it), also when the
 * number of our pidfd is then reused by one of the program's files. */
static void release_after_close_range(void *reuse)
{
    enum { N = 200 };
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 64 * KIB, .capacity = 1024});
    char *r[N];
    for (int i = 0; i < N; i++) {
        CHECK((r[i] = lacuna_alloc(p)) != NULL);
        r[i][0] = 1;
    }
    CHECK_EQ(close_range(3, ~0U, 0), 0);
    if (reuse)
        CHECK(fopen("/dev/null", "r") != NULL); /* takes the lowest number: 3 */
    /* Every other one: neighbours would be released as one range, by plain madvise. */
    for (int i = 0; i < N; i += 2)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    CHECK_EQ(lacuna_trim(p), 0);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.release_errors, 0);
    CHECK_EQ(st.warm, 0);
    size_t resident = 0;
    for (int i = 0; i < N; i += 2)
        resident += lt_resident_pages(r[i], 64 * KIB);
    CHECK_EQ(resident, 0);
    for (int i = 1; i < N; i += 2)
        CHECK_EQ(lacuna_free(p, r[i]), 0);
    lacuna_features f;
    lacuna_features_get(&f);
    fprintf(stderr, "batch %d, forced \"%s\", pidfd renewals %llu\n", f.batch_release, f.forced,
            (unsigned long long)f.pidfd_renewals);
    /* A pidfd of our own (forced, or a kernel without PIDFD_SELF) was renewed exactly once. */
    if (f.batch_release && strstr(f.forced, "pidfd_self"))
        CHECK_EQ(f.pidfd_renewals, 1);
    lacuna_pool_destroy(p);
}

static void with_own_pidfd(void *reuse)
{
    const char *old = getenv("LACUNA_FORCE_FALLBACK");
    char env[256];
    snprintf(env, sizeof env, "%s%spidfd_self", old ? old : "", old && *old ? "," : "");
    setenv("LACUNA_FORCE_FALLBACK", env, 1); /* before lacuna's first call in this child */
    release_after_close_range(reuse);
}

TEST(release_survives_close_range)
{
    for (intptr_t reuse = 0; reuse < 2; reuse++) {
        void (*variants[])(void *) = {release_after_close_range, with_own_pidfd};
        for (int v = 0; v < 2; v++) {
            char err[1024];
            int st = lt_fork_run(variants[v], (void *)reuse, err, sizeof err);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "variant %d reuse %ld: status %#x\n%s", v, (long)reuse, st, err);
                CHECK(0);
            }
        }
    }
}

/* ---- 4. mlockall ----------------------------------------------------------------------------- */

/* probe_first: lacuna was in use before the program locked its memory; else the first call of
 * lacuna comes after mlockall, and its probe must still see what the kernel can do. */
static void locked_child(void *probe_first)
{
    lacuna_features f;
    if (probe_first)
        lacuna_features_get(&f);
    if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) {
        fprintf(stderr, "SKIP mlockall: %s\n", strerror(errno));
        _exit(LT_SKIP);
    }
    lacuna_features_get(&f);
    if (strstr(f.forced, "guard") == NULL && strcmp(f.forced, "all") != 0 && !lt_under_valgrind())
        CHECK(f.guard_marker); /* this kernel has markers (6.18 here) */
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 16 * KIB, .capacity = 64});
    char *r = lacuna_alloc(p);
    CHECK(r != NULL); /* was ENOMEM: every allocation failed */
    if (!lt_under_valgrind())
        CHECK(lt_guarded(r, PG)); /* guarded after all, by the policy's fallback */
    r[0] = 1;
    lacuna_stats st = lt_stats(p);
    if (f.guard_marker)
        CHECK_EQ(st.guard, LACUNA_GUARD_MPROTECT);
    CHECK_EQ(lacuna_free(p, r), 0);
    CHECK(lacuna_trim(p) == 0 || lacuna_trim(p) == EINVAL); /* locked pages may stay */
    lacuna_pool_destroy(p);

    if (f.guard_marker) { /* markers only: refused with the cause, not "out of memory" */
        lacuna_pool *m = lt_pool((lacuna_pool_config){
            .region_size = 16 * KIB, .capacity = 8, .guard = LACUNA_GUARD_MARKER});
        errno = 0;
        CHECK(lacuna_alloc(m) == NULL);
        CHECK_EQ(errno, ENOTSUP);
        lacuna_pool_destroy(m);
    }
    munlockall();
}

static void mlockall_variant(void *probe_first)
{
    if (LT_SANITIZED)
        SKIP("the sanitizers make mlockall a no-op");
    char err[2048];
    int st = lt_fork_run(locked_child, probe_first, err, sizeof err);
    if (WIFEXITED(st) && WEXITSTATUS(st) == LT_SKIP)
        SKIP("mlockall refused here");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "status %#x\n%s", st, err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    lacuna_features f;
    lacuna_features_get(&f);
    if (f.guard_marker) { /* said once, with the cause */
        const char *said = strstr(err, "refuses guard markers in a locked mapping");
        if (said == NULL || strstr(said + 1, "refuses guard markers") != NULL) {
            fprintf(stderr, "stderr:\n%s", err);
            CHECK(0);
        }
    }
}

TEST(mlockall_falls_back_and_says_why)
{
    for (intptr_t probe_first = 1; probe_first >= 0; probe_first--)
        mlockall_variant((void *)probe_first);
}

/* ---- 7. no fixed limit on live pools --------------------------------------------------------- */

static void overflow_in_pool_300(void *unused)
{
    (void)unused;
    enum { N = 300 };
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    lacuna_pool *p[N];
    for (int i = 0; i < N; i++)
        p[i] = lt_pool((lacuna_pool_config){.region_size = 4 * KIB, .capacity = 4});
    char *a = lacuna_alloc(p[N - 1]), *b = lacuna_alloc(p[N - 1]);
    (void)a;
    fprintf(stderr, "pool %p\n", (void *)p[N - 1]);
    ((volatile char *)b)[-8] = 1; /* past the end of region 0, in the guard of region 1 */
}

TEST(overflow_reported_in_any_live_pool)
{
    char err[1024];
    int st = lt_fork_run(overflow_in_pool_300, NULL, err, sizeof err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    void *pool;
    CHECK(sscanf(err, "pool %p", &pool) == 1);
    char want[128];
    snprintf(want, sizeof want, "lacuna: write past the end of region 0 of pool %p", pool);
    if (!strstr(err, want)) {
        fprintf(stderr, "stderr:\n%s\nwanted %s\n", err, want);
        CHECK(0);
    }
}

/* ---- 8. the process out of pthread keys ------------------------------------------------------ */

#define MAX_KEYS 2048
static pthread_key_t keys[MAX_KEYS];
static size_t nkeys;

static void *use_pool_then_check_keys(void *pool)
{
    for (int i = 0; i < 100; i++) {
        char *r = lacuna_alloc(pool);
        CHECK(r != NULL);
        CHECK_EQ(lacuna_free(pool, r), 0);
    }
    for (size_t i = 0; i < nkeys; i++) /* lacuna must not have used anybody's key */
        CHECK(pthread_getspecific(keys[i]) == NULL);
    return NULL;
}

static void no_keys_left(void *unused)
{
    (void)unused;
    while (nkeys < MAX_KEYS && pthread_key_create(&keys[nkeys], NULL) == 0)
        nkeys++;
    CHECK(nkeys < MAX_KEYS); /* the process really ran out */
    /* The call that needed a key says so; a thread with a signal stack already (ASan gives every
     * thread one) needs none. */
    stack_t cur;
    CHECK_EQ(sigaltstack(NULL, &cur), 0);
    CHECK_EQ(lacuna_overflow_handler_install(), (cur.ss_flags & SS_DISABLE) ? EAGAIN : 0);
    lacuna_pool *p = lt_pool((lacuna_pool_config){.region_size = 16 * KIB});
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, use_pool_then_check_keys, p), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    use_pool_then_check_keys(p);
    lacuna_stats st = lt_stats(p);
    CHECK_EQ(st.live, 0);
    CHECK_EQ(st.allocs, 200);
    lacuna_pool_destroy(p);
}

TEST(no_pthread_keys_left)
{
    char err[1024];
    int st = lt_fork_run(no_keys_left, NULL, err, sizeof err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "status %#x\n%s", st, err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- review findings ------------------------------------------------------------------------- */

/* A one-shot crash reporter (SA_RESETHAND) installed before lacuna runs once, then the fault kills
 * the process by the default action, as it would without lacuna. */
static volatile uintptr_t bad_address = 16; /* opaque to the compiler */
static volatile sig_atomic_t reporter_calls;
static void reporter(int sig)
{
    (void)sig;
    reporter_calls++;
    if (reporter_calls > 3)
        _exit(42); /* looping: the reset was lost */
}

static void resethand_child(void *unused)
{
    (void)unused;
    struct sigaction sa = {.sa_handler = reporter, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGSEGV, &sa, NULL), 0);
    CHECK_EQ(lacuna_overflow_handler_install(), 0);
    *(volatile int *)bad_address = 1; /* a real fault outside any pool */
}

TEST(previous_one_shot_handler_runs_once)
{
    char err[256];
    int st = lt_fork_run(resethand_child, NULL, err, sizeof err);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSEGV)
        fprintf(stderr, "status %#x (42: the reporter looped)\n", st);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
}

/* The program closed our pidfd and opened a file at its number; a fork child must not close the
 * program's file when it renews the pidfd. */
static void fork_keeps_programs_fd(void *unused)
{
    (void)unused;
    setenv("LACUNA_FORCE_FALLBACK", "pidfd_self", 1); /* a pidfd of our own */
    lacuna_features f;
    lacuna_features_get(&f);
    if (!f.batch_release)
        _exit(LT_SKIP);
    CHECK_EQ(close_range(3, ~0U, 0), 0);
    FILE *mine = fopen("/dev/null", "r");
    CHECK(mine != NULL);
    int fd = fileno(mine);
    pid_t pid = fork();
    if (pid == 0) {
        char path[64], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        _exit(n > 0 && (link[n] = '\0', strcmp(link, "/dev/null") == 0) ? 0 : 5);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(fork_child_never_closes_the_programs_fd)
{
    char err[512];
    int st = lt_fork_run(fork_keeps_programs_fd, NULL, err, sizeof err);
    if (WIFEXITED(st) && WEXITSTATUS(st) == LT_SKIP)
        SKIP("no batched release here");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "status %#x\n%s", st, err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
