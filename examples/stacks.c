/* The smallest useful lacuna program: a pool of guarded 64 KiB stacks, some taken and given
 * back, and the numbers that show the pages went back to the kernel.
 *
 * Built against an installed lacuna by the commands in README ("Use it from your project").
 *
 * (In this repository it is also built as build/examples/example_stacks.)
 */
#include <lacuna.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Resident memory of this process, from /proc/self/statm (its second field, in pages). */
static double rss_mib(void)
{
    long size, pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &pages) != 2)
            pages = 0;
        fclose(f);
    }
    return (double)pages * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
    /* No options: this file builds alone against an installed lacuna (tests/install_test.sh), so
     * it does not take the shared parser (tools/cli.c) the other examples use. */
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "%susage: %s   (no options: holds and frees 1,000 "
                "guarded 64 KiB stacks and prints what went back)\n",
                help ? "" : "unexpected argument; ", argv[0]);
        return help ? 0 : 2;
    }
    lacuna_pool_config config = {.region_size = 64 * 1024, .capacity = 10000};
    lacuna_pool *pool;
    int err = lacuna_pool_create(&config, &pool);
    if (err) {
        fprintf(stderr, "lacuna_pool_create: %s\n", strerror(err));
        return 1;
    }
    lacuna_overflow_handler_install(); /* an overflow now prints which region, then SIGSEGV */

    printf("lacuna %s: a pool of %zu guarded 64 KiB stacks, RSS %.1f MiB\n", lacuna_version(),
           config.capacity, rss_mib());
    static char *stacks[1000];
    for (int i = 0; i < 1000; i++) {
        stacks[i] = lacuna_alloc(pool);
        if (stacks[i] == NULL) {
            perror("lacuna_alloc");
            return 1;
        }
        memset(stacks[i] + 64 * 1024 - 8192, 1, 8192); /* a stack uses its top pages */
    }
    printf("took 1000 stacks and wrote the top 8 KiB of each: RSS %.1f MiB\n", rss_mib());
    for (int i = 0; i < 1000; i++)
        lacuna_free(pool, stacks[i]);
    lacuna_trim(pool); /* or wait decay_ms: warm regions are released on the next pool call */

    lacuna_stats st;
    lacuna_pool_stats(pool, &st);
    printf("freed them and called lacuna_trim: RSS %.1f MiB; live %zu, warm %zu; %llu regions "
           "given back to the kernel in %llu syscalls; guards: %s\n",
           rss_mib(), st.live, st.warm, (unsigned long long)st.released_regions,
           (unsigned long long)st.release_calls, lacuna_guard_name(st.guard));
    lacuna_pool_destroy(pool);
    return 0;
}
