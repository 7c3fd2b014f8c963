/* liblacuna.so loaded with dlopen(), used by a thread, then dlclose()d while that thread lives.
 *
 * The thread leaves process-wide hooks behind that point into the library: its thread cache's
 * exit destructor and its alternate-stack destructor (pthread keys), and the SIGSEGV handler. The
 * library is linked with -z nodelete, so dlclose() leaves it mapped and those hooks keep working:
 * the thread exits cleanly, a fault outside any pool still kills by SIGSEGV, an overflow into a
 * guard is still reported, and a second dlopen() finds the same copy. Without -z nodelete the
 * thread's exit jumps into unmapped code.
 *
 * Standalone (no tests/util.c runner): the program must not link lacuna itself, or that copy
 * would be the one that stays. Each case runs in a forked child, so the parent can say how the
 * child died. LT_LIBLACUNA is the path of the built liblacuna.so. */
#define _GNU_SOURCE
#include "test.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct api {
    int (*pool_create)(const lacuna_pool_config *, lacuna_pool **);
    void (*pool_destroy)(lacuna_pool *);
    void *(*alloc)(lacuna_pool *);
    int (*free)(lacuna_pool *, void *);
    int (*handler_install)(void);
} api;

static void *open_lacuna(api *a)
{
    void *h = dlopen(LT_LIBLACUNA, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "dlopen(%s): %s\n", LT_LIBLACUNA, dlerror());
        exit(1);
    }
    *(void **)&a->pool_create = dlsym(h, "lacuna_pool_create");
    *(void **)&a->pool_destroy = dlsym(h, "lacuna_pool_destroy");
    *(void **)&a->alloc = dlsym(h, "lacuna_alloc");
    *(void **)&a->free = dlsym(h, "lacuna_free");
    *(void **)&a->handler_install = dlsym(h, "lacuna_overflow_handler_install");
    CHECK(a->pool_create && a->pool_destroy && a->alloc && a->free && a->handler_install);
    return h;
}

/* What the user thread leaves behind: a live pool with a live region. */
typedef struct user {
    api a;
    lacuna_pool *pool;
    char *region;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stage; /* 1: the thread is done with lacuna; 2: the library is closed, exit now */
} user;

static void *user_thread(void *arg)
{
    user *u = arg;
    lacuna_pool_config c = {.region_size = 64 * 1024, .capacity = 16};
    CHECK_EQ(u->a.pool_create(&c, &u->pool), 0);
    void *r = u->a.alloc(u->pool);
    CHECK(r != NULL);
    CHECK_EQ(u->a.free(u->pool, r), 0); /* into this thread's cache: its exit destructor is set */
    u->region = u->a.alloc(u->pool);
    CHECK(u->region != NULL);
    CHECK_EQ(u->a.handler_install(), 0); /* the SIGSEGV handler, and this thread's altstack */
    pthread_mutex_lock(&u->lock);
    u->stage = 1;
    pthread_cond_broadcast(&u->cond);
    while (u->stage != 2)
        pthread_cond_wait(&u->cond, &u->lock);
    pthread_mutex_unlock(&u->lock);
    return NULL; /* runs lacuna's thread-exit destructors */
}

/* dlopen, let a thread use the library, dlclose while it lives, then let it exit. */
static void use_then_close(user *u)
{
    memset(u, 0, sizeof *u);
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL);
    void *h = open_lacuna(&u->a);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, user_thread, u), 0);
    pthread_mutex_lock(&u->lock);
    while (u->stage != 1)
        pthread_cond_wait(&u->cond, &u->lock);
    pthread_mutex_unlock(&u->lock);
    CHECK_EQ(dlclose(h), 0);
    pthread_mutex_lock(&u->lock);
    u->stage = 2;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->lock);
    CHECK_EQ(pthread_join(t, NULL), 0);
}

/* The thread exits after dlclose; the process goes on, and the library never left. */
static void thread_exits_after_dlclose(void)
{
    user u;
    use_then_close(&u);
    api again;
    void *h = open_lacuna(&again);
    CHECK(again.alloc == u.a.alloc); /* the same copy, still mapped where it was */
    CHECK_EQ(again.free(u.pool, u.region), 0);
    again.pool_destroy(u.pool);
    user second; /* a second round on the reopened library */
    use_then_close(&second);
    second.a.pool_destroy(second.pool);
    CHECK_EQ(dlclose(h), 0);
}

/* A fault outside any pool after dlclose: lacuna's handler passes it on, the process dies by
 * SIGSEGV as it would without lacuna. */
static void fault_after_dlclose(void)
{
    user u;
    use_then_close(&u);
    volatile char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    page[0] = 1;
}

/* An overflow into a guard after dlclose is still reported, then SIGSEGV. */
static void overflow_after_dlclose(void)
{
    user u;
    use_then_close(&u);
    volatile char *below = u.region - 1; /* the guard below the live region */
    *below = 1;
}

static const struct {
    const char *name;
    void (*fn)(void);
    int sig;              /* 0: must exit 0; else the signal it must die by */
    const char *expected; /* on its stderr, or NULL */
} cases[] = {
    {"thread_exits_after_dlclose", thread_exits_after_dlclose, 0, NULL},
    {"fault_after_dlclose", fault_after_dlclose, SIGSEGV, NULL},
    {"overflow_after_dlclose", overflow_after_dlclose, SIGSEGV, "lacuna: stack overflow in region"},
};

int main(int argc, char **argv)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        int fds[2];
        CHECK_EQ(pipe(fds), 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            dup2(fds[1], STDERR_FILENO);
            close(fds[0]);
            close(fds[1]);
            cases[i].fn();
            exit(0);
        }
        close(fds[1]);
        char err[4096];
        size_t n = 0;
        ssize_t got;
        while ((got = read(fds[0], err + n, sizeof err - 1 - n)) > 0)
            n += (size_t)got;
        err[n] = 0;
        close(fds[0]);
        int st;
        CHECK_EQ(waitpid(pid, &st, 0), pid);
        int ok = cases[i].sig ? WIFSIGNALED(st) && WTERMSIG(st) == cases[i].sig
                              : WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ok && cases[i].expected && strstr(err, cases[i].expected) == NULL)
            ok = 0;
        printf("%s %s", ok ? "ok  " : "FAIL", cases[i].name);
        if (WIFSIGNALED(st))
            printf(" (died by signal %d%s)", WTERMSIG(st),
                   cases[i].sig ? "" : ": is liblacuna.so linked with -z nodelete?");
        else
            printf(" (exit %d)", WEXITSTATUS(st));
        printf("\n%s", err);
        fflush(stdout);
        failed |= !ok;
    }
    return failed;
}
