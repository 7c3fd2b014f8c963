/* Wipes under what real programs do: files that look like shared memory by name (a disk file
 * called /memfd:x, a disk directory bind-mounted at /dev/shm) are refused with their data intact;
 * maps lines of any length; mlocked memory and mapping attributes (MADV_DONTDUMP, WIPEONFORK) kept
 * by every strategy; kernel-tracked tables that lost their tracking (REMAP, the program's own
 * mmap, a fork, a closed descriptor) recover; and every descriptor lacuna keeps survives
 * close_range(3, ~0U) and fork. Uses the public API only (and lac_table_last_zeroed), so the same
 * file builds against an older library to show each test failing there. */
#define _GNU_SOURCE
#include "internal.h"
#include "lacuna.h"
#include "test.h"

#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define TMPFS_MAGIC_ 0x01021994

static const lacuna_wipe_strategy all[] = {LACUNA_WIPE_AUTO,     LACUNA_WIPE_MEMSET,
                                           LACUNA_WIPE_DONTNEED, LACUNA_WIPE_REMAP,
                                           LACUNA_WIPE_MINCORE,  LACUNA_WIPE_PAGEMAP};
#define NSTRAT (sizeof all / sizeof all[0])

static size_t pgsz(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static bool scan_available(void)
{
    lacuna_features f;
    lacuna_features_get(&f);
    return f.pagemap_scan;
}

/* ---- item 14: memory is what the kernel says, not what its path says ---- */

#define FILE_PAGES 4

/* Create `path` on a disk filesystem with known contents, map it shared, and check that no
 * strategy wipes it and that the file still holds its data (read back with pread). */
static void refuse_disk_file(const char *path)
{
    size_t pg = pgsz(), bytes = FILE_PAGES * pg;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        SKIP("cannot create %s: %s", path, strerror(errno));
    struct statfs sf;
    CHECK_EQ(fstatfs(fd, &sf), 0);
    if (sf.f_type == TMPFS_MAGIC_) {
        unlink(path);
        SKIP("%s is on tmpfs: no disk file to test with", path);
    }
    char *want = malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        want[i] = (char)(1 + i % 251);
    CHECK_EQ(pwrite(fd, want, bytes, 0), (ssize_t)bytes);
    CHECK_EQ(fsync(fd), 0);
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    unlink(path); /* nothing left behind should a check fail; maps says "<path> (deleted)" */
    for (size_t s = 0; s < NSTRAT; s++)
        CHECK_EQ(lacuna_wipe(m, bytes, all[s]), EINVAL);
    CHECK(memcmp(m, want, bytes) == 0);
    CHECK_EQ(munmap(m, bytes), 0);
    /* On disk too: no hole was punched. */
    char *got = malloc(bytes);
    CHECK_EQ(pread(fd, got, bytes, 0), (ssize_t)bytes);
    CHECK(memcmp(got, want, bytes) == 0);
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK(st.st_blocks * 512 >= (long long)bytes);
    free(got);
    free(want);
    close(fd);
}

TEST(disk_files_named_like_shared_memory_are_refused)
{
    /* At the root, so that /proc/self/maps shows exactly the names the old check trusted. */
    char path[64];
    snprintf(path, sizeof path, "/memfd:lacuna-test-%d", (int)getpid());
    refuse_disk_file(path);
    snprintf(path, sizeof path, "/SYSV%08x", (unsigned)getpid());
    refuse_disk_file(path);
}

TEST(disk_directory_bind_mounted_at_dev_shm_is_refused)
{
    /* A mount namespace of this test process's own: the bind mount is gone when it exits. */
    char dir[] = "lacuna-shm-XXXXXX"; /* in the build directory: a disk filesystem */
    CHECK(mkdtemp(dir) != NULL);
    char abs[4096];
    CHECK(realpath(dir, abs) != NULL);
    if (unshare(CLONE_NEWNS) != 0) {
        rmdir(dir);
        SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(abs, "/dev/shm", NULL, MS_BIND, NULL) != 0) {
        rmdir(dir);
        SKIP("bind mount over /dev/shm: %s", strerror(errno));
    }
    refuse_disk_file("/dev/shm/lacuna-test");
    umount("/dev/shm");
    rmdir(abs);
}

/* Real shared memory still wipes, its pages really gone: a POSIX shm file (also once unlinked),
 * in every strategy that releases. */
TEST(tmpfs_files_are_shared_memory)
{
    size_t pg = pgsz(), bytes = 64 * pg;
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/lacuna-test-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        SKIP("no /dev/shm: %s", strerror(errno));
    struct statfs sf;
    CHECK_EQ(fstatfs(fd, &sf), 0);
    if (sf.f_type != TMPFS_MAGIC_)
        SKIP("/dev/shm is not tmpfs here");
    CHECK_EQ(ftruncate(fd, (off_t)bytes), 0);
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    for (int unlinked = 0; unlinked < 2; unlinked++) {
        if (unlinked)
            CHECK_EQ(unlink(path), 0); /* maps now says "(deleted)" */
        for (size_t s = 0; s < NSTRAT; s++) {
            memset(m, 7, bytes);
            CHECK_EQ(lacuna_wipe(m, bytes, all[s]), 0);
            if (all[s] == LACUNA_WIPE_DONTNEED || all[s] == LACUNA_WIPE_REMAP) {
                struct stat st; /* before reading back, which allocates shmem pages */
                CHECK_EQ(fstat(fd, &st), 0);
                CHECK_EQ(st.st_blocks, 0); /* punched */
            }
            CHECK(lt_all_zero(m, bytes));
        }
    }
    munmap(m, bytes);
    close(fd);
}

/* Without the privilege /proc/self/map_files needs, the classification asks mountinfo: same
 * answers. Run as `nobody` (skipped where we cannot switch user). */
TEST(classification_without_privilege)
{
    if (geteuid() != 0)
        SKIP("not root: cannot switch to an unprivileged user (the test runs unprivileged "
             "already only when the whole suite does)");
    char disk[64];
    snprintf(disk, sizeof disk, "lacuna-disk-%d", (int)getpid());
    int dfd = open(disk, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(dfd >= 0);
    size_t pg = pgsz(), bytes = 4 * pg;
    CHECK_EQ(ftruncate(dfd, (off_t)bytes), 0);
    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/lacuna-np-%d", (int)getpid());
    int sfd = open(shm, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(sfd >= 0);
    CHECK_EQ(ftruncate(sfd, (off_t)bytes), 0);
    char *dm = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
    char *sm = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    CHECK(dm != MAP_FAILED && sm != MAP_FAILED);
    unlink(disk);
    unlink(shm);
    CHECK_EQ(setresgid(65534, 65534, 65534), 0);
    CHECK_EQ(setresuid(65534, 65534, 65534), 0);
    CHECK_EQ(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), 0); /* /proc/self/pagemap readable again */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)sm,
             (unsigned long)sm + bytes);
    int probe = open(path, O_PATH);
    if (probe >= 0)
        SKIP("map_files opens without privilege here: nothing different to test");
    memset(dm, 5, bytes);
    memset(sm, 5, bytes);
    CHECK_EQ(lacuna_wipe(dm, bytes, LACUNA_WIPE_DONTNEED), EINVAL);
    CHECK_EQ(dm[0], 5);
    CHECK_EQ(lacuna_wipe(sm, bytes, LACUNA_WIPE_DONTNEED), 0);
    CHECK(lt_all_zero(sm, bytes));
}

/* ---- item 15: maps lines of any length ---- */

/* A file whose path is over 4 KiB (each component under NAME_MAX), mapped just below the range
 * wiped: its maps line comes before the range's and is longer than the old 4 KiB buffer. */
TEST(maps_line_longer_than_4k_below_the_range)
{
    size_t pg = pgsz();
    char top[] = "lacuna-long-XXXXXX";
    CHECK(mkdtemp(top) != NULL);
    int dir = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dir >= 0);
    char name[250];
    memset(name, 'd', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    int depth = 20; /* 20 x 250 bytes: a 5,000-byte path */
    for (int i = 0; i < depth; i++) {
        CHECK_EQ(mkdirat(dir, name, 0700), 0);
        int sub = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(sub >= 0);
        close(dir);
        dir = sub;
    }
    int fd = openat(dir, "f", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)pg), 0);
    /* [file][64 pages private anonymous]: the file's line right before the range's. */
    char *m = mmap(NULL, 65 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(mmap(m, pg, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == m);
    for (size_t s = 0; s < NSTRAT; s++) {
        memset(m + pg, 3, 64 * pg);
        CHECK_EQ(lacuna_wipe(m + pg, 64 * pg, all[s]), 0);
        CHECK(lt_all_zero(m + pg, 64 * pg));
    }
    /* The long line inside the range is still read right: the file is refused. */
    CHECK_EQ(lacuna_wipe(m, 65 * pg, LACUNA_WIPE_AUTO), EINVAL);
    munmap(m, 65 * pg);
    close(fd);
    CHECK_EQ(unlinkat(dir, "f", 0), 0);
    close(dir);
    char rm[64];
    snprintf(rm, sizeof rm, "rm -rf %s", top);
    CHECK_EQ(system(rm), 0);
}

/* ---- item 16: mlock and mapping attributes are kept ---- */

/* The VmFlags of the mapping containing p, from /proc/self/smaps. */
static void vmflags(const void *p, char *out, size_t n)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    CHECK(f != NULL);
    char line[512];
    bool in = false;
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= s && (uintptr_t)p < e;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, n, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static bool has_flag(const void *p, const char *flag)
{
    char f[512], want[8];
    vmflags(p, f, sizeof f);
    snprintf(want, sizeof want, " %s ", flag);
    return strstr(f, want) != NULL;
}

TEST(mlocked_memory_is_zeroed_and_stays_locked)
{
    size_t pg = pgsz(), pages = 256, bytes = pages * pg;
    for (int shared = 0; shared < 2; shared++) {
        char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
        CHECK(m != MAP_FAILED);
        /* The syscall itself: ASan's mlock interceptor does nothing. */
        if (syscall(SYS_mlock, m, bytes) != 0)
            SKIP("mlock: %s (RLIMIT_MEMLOCK)", strerror(errno));
        CHECK(has_flag(m, "lo"));
        for (size_t s = 0; s < NSTRAT; s++) {
            memset(m, 9, bytes);
            int rc = lacuna_wipe(m, bytes, all[s]);
            if (rc != 0)
                fprintf(stderr, "strategy %d shared %d: %d\n", (int)all[s], shared, rc);
            CHECK_EQ(rc, 0); /* DONTNEED was EINVAL: the kernel's, not bad input */
            CHECK(lt_all_zero(m, bytes));
            CHECK(has_flag(m, "lo"));
            CHECK_EQ(lt_resident_pages(m, bytes), pages);
        }
        munmap(m, bytes);
    }
}

TEST(remap_keeps_dontdump_wipeonfork_and_names)
{
    size_t pg = pgsz(), bytes = 64 * pg;
    static const int advice[] = {MADV_DONTDUMP, MADV_WIPEONFORK, MADV_DONTFORK};
    static const char *flag[] = {"dd", "wf", "dc"};
    for (size_t i = 0; i < sizeof advice / sizeof advice[0]; i++) {
        char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(m != MAP_FAILED);
        CHECK_EQ(madvise(m, bytes, advice[i]), 0);
        memset(m, 4, bytes);
        CHECK_EQ(lacuna_wipe(m + 8 * pg, 16 * pg, LACUNA_WIPE_REMAP), 0);
        CHECK_EQ(lt_resident_pages(m + 8 * pg, 16 * pg), 0); /* still given back */
        CHECK(lt_all_zero(m + 8 * pg, 16 * pg));
        CHECK(has_flag(m + 8 * pg, flag[i]));
        CHECK(has_flag(m, flag[i]));
        munmap(m, bytes);
    }
    /* A plain mapping with THP advice is really remapped, and keeps the advice. */
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK_EQ(madvise(m, bytes, MADV_NOHUGEPAGE), 0);
    memset(m, 4, bytes);
    CHECK_EQ(lacuna_wipe(m + 8 * pg, 16 * pg, LACUNA_WIPE_REMAP), 0);
    CHECK(lt_all_zero(m, 8 * pg) == 0);
    CHECK(lt_all_zero(m + 8 * pg, 16 * pg));
    CHECK(has_flag(m + 8 * pg, "nh"));
    munmap(m, bytes);
}

/* ---- item 16: tables whose kernel tracking was lost recover ---- */

static lacuna_table *auto_table(size_t bytes)
{
    lacuna_table *t;
    CHECK_EQ(lacuna_table_create(bytes, LACUNA_TABLE_AUTO, &t), 0);
    if (lacuna_table_tracking(t) != LACUNA_TRACK_WRITTEN) {
        lacuna_table_destroy(t);
        SKIP("no kernel write tracking here (userfaultfd or PAGEMAP_SCAN missing or forced off)");
    }
    return t;
}

/* Write one byte in each of n pages spread over the table. */
static void write_pages(lacuna_table *t, size_t n, size_t first)
{
    char *b = lacuna_table_base(t);
    size_t pages = lacuna_table_size(t) / pgsz();
    for (size_t i = 0; i < n; i++)
        b[((first + i * 7) % pages) * pgsz() + 100] = 1;
}

/* After a recovery, kernel tracking (or residency) works again: exactly what is written next is
 * zeroed next. */
static void check_tracks_again(lacuna_table *t)
{
    size_t bytes = lacuna_table_size(t);
    write_pages(t, 10, 3);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    CHECK_EQ(madvise(lacuna_table_base(t), bytes, MADV_DONTNEED), 0); /* drop the read-back */
    write_pages(t, 10, 5);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 10 * pgsz());
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
}

TEST(auto_table_after_remap_wipe)
{
    size_t bytes = 4u << 20;
    lacuna_table *t = auto_table(bytes);
    write_pages(t, 50, 0);
    CHECK_EQ(lacuna_wipe(lacuna_table_base(t), bytes, LACUNA_WIPE_REMAP), 0);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    write_pages(t, 20, 1);
    CHECK_EQ(lacuna_table_wipe(t), 0); /* was EPERM forever */
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    check_tracks_again(t);
    lacuna_table_destroy(t);
}

TEST(auto_table_after_the_programs_own_mmap)
{
    size_t bytes = 4u << 20, pg = pgsz();
    lacuna_table *t = auto_table(bytes);
    char *b = lacuna_table_base(t);
    write_pages(t, 50, 0);
    CHECK(mmap(b + 64 * pg, 64 * pg, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == b + 64 * pg);
    memset(b + 64 * pg, 2, 64 * pg);
    write_pages(t, 20, 1);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK(lt_all_zero(b, bytes));
    check_tracks_again(t);
    lacuna_table_destroy(t);
}

static void child_wipes_inherited(void *arg)
{
    lacuna_table *t = arg;
    size_t bytes = lacuna_table_size(t);
    write_pages(t, 20, 2);
    if (lacuna_table_wipe(t) != 0)
        _exit(3);
    if (!lt_all_zero(lacuna_table_base(t), bytes))
        _exit(4);
    check_tracks_again(t);
    lacuna_table_destroy(t);
}

TEST(auto_table_in_a_forked_child)
{
    size_t bytes = 4u << 20;
    lacuna_table *t = auto_table(bytes);
    write_pages(t, 30, 0);
    char err[512];
    CHECK_EQ(lt_fork_run(child_wipes_inherited, t, err, sizeof err), 0);
    /* The parent's tracking is its own: untouched by the child. */
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK_EQ(lac_table_last_zeroed(t), 30 * pgsz());
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    check_tracks_again(t);
    lacuna_table_destroy(t);
}

/* ---- descriptors lacuna keeps survive close_range and fork ---- */

static void close_all_and_reuse(void)
{
    CHECK_EQ(syscall(SYS_close_range, 3u, ~0u, 0), 0);
    /* Reused numbers: what lacuna had open is now the program's /dev/null. */
    for (int i = 0; i < 8; i++)
        CHECK(open("/dev/null", O_RDONLY) >= 3);
}

/* A PAGEMAP wipe of a 1 % resident range: exact (touches the resident pages only). */
static void pagemap_wipe_is_exact(void)
{
    size_t pg = pgsz(), pages = 4096, bytes = pages * pg;
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    for (size_t i = 0; i < pages; i += 97)
        m[i * pg] = 1;
    size_t before = lt_resident_pages(m, bytes);
    CHECK_EQ(lacuna_wipe(m, bytes, LACUNA_WIPE_PAGEMAP), 0);
    CHECK_EQ(lacuna_wipe_last(), LACUNA_WIPE_PAGEMAP);
    CHECK_EQ(lt_resident_pages(m, bytes), before);
    CHECK(lt_all_zero(m, bytes));
    munmap(m, bytes);
}

static void child_pagemap_wipe(void *arg)
{
    (void)arg;
    pagemap_wipe_is_exact();
}

TEST(pagemap_descriptor_survives_close_range_and_fork)
{
    if (!scan_available())
        SKIP("no PAGEMAP_SCAN here (or forced off)");
    pagemap_wipe_is_exact(); /* opens the descriptor */
    close_all_and_reuse();
    pagemap_wipe_is_exact();
    /* The guard check still sees guards. */
    size_t pg = pgsz();
    lacuna_pool_config c = {.region_size = 16 * pg, .capacity = 4};
    lacuna_pool *p;
    CHECK_EQ(lacuna_pool_create(&c, &p), 0);
    char *r = lacuna_alloc(p);
    CHECK(r != NULL);
    lacuna_features f;
    lacuna_features_get(&f);
    if (f.guard_marker)
        CHECK_EQ(lacuna_wipe(r - pg, 17 * pg, LACUNA_WIPE_AUTO), EINVAL);
    lacuna_free(p, r);
    lacuna_pool_destroy(p);
    /* A child: the inherited descriptor names the parent; the child's own is opened. */
    char err[512];
    CHECK_EQ(lt_fork_run(child_pagemap_wipe, NULL, err, sizeof err), 0);
    close_all_and_reuse();
    CHECK_EQ(lt_fork_run(child_pagemap_wipe, NULL, err, sizeof err), 0);
    pagemap_wipe_is_exact();
}

TEST(auto_table_after_close_range)
{
    size_t bytes = 4u << 20;
    lacuna_table *t = auto_table(bytes);
    write_pages(t, 30, 0);
    close_all_and_reuse(); /* the userfaultfd is closed: the kernel unregisters the table */
    write_pages(t, 20, 1);
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK(lt_all_zero(lacuna_table_base(t), bytes));
    check_tracks_again(t);
    lacuna_table_destroy(t);
}

TEST(shared_table_after_close_range)
{
    size_t bytes = 1u << 20, pg = pgsz();
    lacuna_table *t;
    CHECK_EQ(lacuna_table_create(bytes, LACUNA_TABLE_SHARED, &t), 0);
    char *b = lacuna_table_base(t);
    CHECK_EQ(syscall(SYS_close_range, 3u, ~0u, 0), 0);
    int fds[8];
    for (int i = 0; i < 8; i++)
        fds[i] = open("/dev/null", O_RDONLY);
    for (size_t p = 0; p < 64; p += 2) {
        b[p * pg] = 1;
        lacuna_table_mark(t, b + p * pg, 1);
    }
#ifdef LACUNA_FAULT_INJECTION
    lac_fault_inject(LAC_OP_RELEASE, 1, ENOMEM); /* so the memfd punch is tried */
#endif
    CHECK_EQ(lacuna_table_wipe(t), 0);
    CHECK(lt_all_zero(b, bytes));
    lacuna_table_destroy(t);
    /* The program's files under the numbers the table once had are still open. */
    for (int i = 0; i < 8; i++)
        CHECK(fcntl(fds[i], F_GETFD) >= 0);
}
