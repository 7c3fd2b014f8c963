// lacuna-bench boost-skynet — skynet on Boost.Fiber (the shape of Boost.Fiber's own
// performance/fiber/skynet example: detached fibers, a buffered channel per parent, round-robin
// scheduler on one thread) with three stack allocators: lacuna's (include/lacuna/boost_fiber.hpp),
// boost::fibers::protected_fixedsize_stack (mmap + mprotect guard per stack) and
// pooled_fixedsize_stack (no guard, memory never returned). Fibers are posted, not run at once, so
// the tree unfolds breadth first and every leaf's stack is live at the same time: 10^depth stacks.
// Each run is a forked child; reported: median time (min, max) of --runs, peak RSS, peak VMAs,
// peak live stacks, and where guards stopped: a stack is checked every 64 allocations (a write()
// from its guard page must fail with EFAULT). protected_fixedsize_stack ignores a failed mprotect
// (a BOOST_ASSERT, compiled out with NDEBUG), so past vm.max_map_count its stacks are silently
// unguarded rather than refused; that point is what "unguarded from" records.
#include <boost/context/stack_context.hpp>
#include <boost/fiber/all.hpp>
#include <lacuna/boost_fiber.hpp>

extern "C" {
#include "bench.h"
}

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace fibers = boost::fibers;
namespace ctx = boost::context;

namespace
{

struct run_result {
    int done;     // the run finished (possibly with a failed allocation)
    long sum;     // skynet's result
    double ms;    // wall time of the whole tree
    long rss_kib; // VmHWM
    long vmas;    // peak /proc/self/maps lines, sampled every 8,192 allocations
    size_t peak_live;
    size_t failed_at;     // live stacks when an allocation threw (0: none did)
    size_t unguarded_at;  // live stacks when a checked stack first had no working guard (0: none)
    size_t guard_checked; // stacks checked
};

struct counters {
    size_t live = 0, allocs = 0;
    run_result *r = nullptr;
    int pipe_w = -1;
    bool has_guard = false;
    long guard_at = 0; // where the guard is, from the stack's lowest byte (sp - size)
};

counters *cnt;

// Whether the guard of a stack refuses to be read (EFAULT), as a guard must.
bool guarded(const char *lowest)
{
    ssize_t w = write(cnt->pipe_w, lowest + cnt->guard_at, 1);
    return w < 0 && errno == EFAULT;
}

// A Boost.Context StackAllocator that counts live stacks around another one.
template <class A> struct counting {
    A a;
    explicit counting(A inner) : a(std::move(inner)) {}
    ctx::stack_context allocate()
    {
        ctx::stack_context s;
        try {
            s = a.allocate();
        } catch (...) {
            if (cnt->r->failed_at == 0)
                cnt->r->failed_at = cnt->live;
            throw;
        }
        cnt->live++;
        cnt->r->peak_live = std::max(cnt->r->peak_live, cnt->live);
        if (++cnt->allocs % 64 == 0 && cnt->has_guard) {
            cnt->r->guard_checked++;
            if (!guarded(static_cast<char *>(s.sp) - s.size) && cnt->r->unguarded_at == 0)
                cnt->r->unguarded_at = cnt->live;
        }
        if (cnt->allocs % 8192 == 0)
            cnt->r->vmas = std::max(cnt->r->vmas, bench_vmas());
        return s;
    }
    void deallocate(ctx::stack_context &s) noexcept
    {
        cnt->live--;
        a.deallocate(s);
    }
};

using channel = fibers::buffered_channel<long>;

template <class A> void skynet(A &salloc, channel &out, long num, long size, long div)
{
    if (size == 1) {
        out.push(num);
        return;
    }
    channel rc{16};
    long spawned = 0;
    for (long i = 0; i < div; i++) {
        try {
            fibers::fiber{std::allocator_arg, salloc,       skynet<A>,
                          std::ref(salloc),   std::ref(rc), num + i * (size / div),
                          size / div,         div}
                .detach();
            spawned++;
        } catch (...) { // out of stacks: the sum comes out wrong, and failed_at says where
        }
    }
    long sum = 0;
    for (long i = 0; i < spawned; i++)
        sum += rc.value_pop();
    out.push(sum);
}

struct run_cfg {
    const char *stacks;
    size_t stack, depth;
};

// guard_at: where a stack's guard byte is, from sp - size; has_guard false: none to check.
template <class A>
void run_tree(A inner, bool has_guard, long guard_at, const run_cfg *c, run_result *r)
{
    int fds[2];
    if (pipe(fds) != 0)
        return;
    counters k;
    k.r = r;
    k.pipe_w = fds[1];
    k.has_guard = has_guard;
    k.guard_at = guard_at;
    cnt = &k;
    counting<A> salloc{std::move(inner)};
    long size = 1;
    for (size_t i = 0; i < c->depth; i++)
        size *= 10;
    channel root{16};
    uint64_t t0 = bench_now_ns();
    fibers::fiber{std::allocator_arg,
                  salloc,
                  skynet<counting<A>>,
                  std::ref(salloc),
                  std::ref(root),
                  0L,
                  size,
                  10L}
        .detach();
    r->sum = root.value_pop();
    r->ms = (double)(bench_now_ns() - t0) / 1e6;
    r->rss_kib = bench_status_kib("VmHWM:");
    r->vmas = std::max(r->vmas, bench_vmas());
    r->done = 1;
}

extern "C" void boost_skynet_child(void *arg, void *out)
{
    const run_cfg *c = static_cast<const run_cfg *>(arg);
    run_result *r = static_cast<run_result *>(out);
    if (std::strcmp(c->stacks, "lacuna") == 0) {
        size_t total = 1, level = 1;
        for (size_t i = 0; i < c->depth; i++)
            total += (level *= 10);
        lacuna_pool_config cfg = {};
        cfg.region_size = c->stack;
        cfg.capacity = total + 64;
        lacuna_pool *pool = nullptr;
        if (lacuna_pool_create(&cfg, &pool) != 0)
            return;
        lacuna_stats st;
        lacuna_pool_stats(pool, &st);
        // The guard lies below the region (sp - size is the region's lowest byte).
        run_tree(lacuna::boost_fiber_stacks{pool}, st.guard != LACUNA_GUARD_NONE, -1, c, r);
    } else if (std::strcmp(c->stacks, "protected") == 0) {
        // Its size counts the guard page: sp - size is the guard itself.
        run_tree(fibers::protected_fixedsize_stack{c->stack}, true, 0, c, r);
    } else {
        run_tree(fibers::pooled_fixedsize_stack{c->stack}, false, 0, c, r);
    }
}

} // namespace

extern "C" int bench_boost_skynet_main(int argc, char **argv)
{
    size_t depth = 5, stack = 64 * 1024, runs = 3;
    const char *stacks = "all";
    bool csv = false;
    static const char *const kinds[] = {"all", "lacuna", "protected", "pooled", nullptr};
    const cli_opt opts[] = {
        {"stacks", CLI_CHOICE, &stacks, 0, 0, "stack allocator", kinds},
        {"depth", CLI_COUNT, &depth, 1, 6, "10^depth leaf fibers, all live at once", nullptr},
        {"stack", CLI_SIZE, &stack, 16 * 1024, 8 * 1024 * 1024, "stack size per fiber", nullptr},
        {"runs", CLI_COUNT, &runs, 1, 100, "runs per allocator (median reported)", nullptr},
        {"csv", CLI_FLAG, &csv, 0, 0, "CSV instead of a table", nullptr},
        {nullptr, CLI_FLAG, nullptr, 0, 0, nullptr, nullptr}};
    cli_spec spec = {"lacuna-bench boost-skynet",
                     "skynet on Boost.Fiber: lacuna stacks vs protected_fixedsize_stack and "
                     "pooled_fixedsize_stack.",
                     opts, nullptr, nullptr};
    int rc = cli_parse(&spec, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    size_t leaves = 1;
    for (size_t i = 0; i < depth; i++)
        leaves *= 10;
    if (cli_check_memory(&spec, (double)leaves * 8192, "two pages of stack per live fiber"))
        return CLI_FAILED;
    long expect = (long)leaves * ((long)leaves - 1) / 2;
    if (csv)
        std::printf("stacks,depth,stack,runs,ok_runs,median_ms,min_ms,max_ms,peak_rss_kib,"
                    "peak_vmas,peak_live,failed_at,unguarded_at,guard_checked\n");
    else {
        std::printf("lacuna-bench boost-skynet: %zu leaf fibers (depth %zu), %zu KiB stacks, "
                    "%zu runs each, one thread\n",
                    leaves, depth, stack >> 10, runs);
        bench_machine(stdout, "");
        std::printf("%-10s %-22s %10s %8s %9s %10s %14s\n", "stacks", "result", "median ms",
                    "RSS MiB", "peak VMAs", "peak live", "unguarded from");
    }
    const char *order[] = {"lacuna", "pooled", "protected"};
    double lacuna_ms = 0;
    for (const char *kind : order) {
        if (std::strcmp(stacks, "all") != 0 && std::strcmp(stacks, kind) != 0)
            continue;
        run_cfg c = {kind, stack, depth};
        std::vector<double> ms;
        run_result last = {}, r = {};
        size_t ok = 0;
        bool died = false;
        for (size_t i = 0; i < runs; i++) {
            r = run_result{};
            if (bench_in_child(boost_skynet_child, &c, &r, sizeof r) != 0 || !r.done) {
                died = true;
                continue;
            }
            last = r;
            if (r.sum == expect && r.failed_at == 0) {
                ok++;
                ms.push_back(r.ms);
            }
        }
        double med = 0, mn = 0, mx = 0;
        if (!ms.empty()) {
            mn = *std::min_element(ms.begin(), ms.end());
            mx = *std::max_element(ms.begin(), ms.end());
            med = bench_median(ms.data(), (int)ms.size());
        }
        if (std::strcmp(kind, "lacuna") == 0)
            lacuna_ms = med;
        char result[64], ung[32];
        if (died && ok == 0)
            std::snprintf(result, sizeof result, "DIED (%zu of %zu runs)", runs - ok, runs);
        else if (last.failed_at)
            std::snprintf(result, sizeof result, "FAILED at %zu live", last.failed_at);
        else if (last.sum != expect)
            std::snprintf(result, sizeof result, "WRONG SUM");
        else
            std::snprintf(result, sizeof result, "ok (%zu/%zu)", ok, runs);
        if (std::strcmp(kind, "pooled") == 0)
            std::snprintf(ung, sizeof ung, "no guards");
        else if (last.unguarded_at)
            std::snprintf(ung, sizeof ung, "%zu live", last.unguarded_at);
        else
            std::snprintf(ung, sizeof ung, "never (%zu)", last.guard_checked);
        char ratio[32] = "";
        if (lacuna_ms > 0 && med > 0 && std::strcmp(kind, "lacuna") != 0)
            std::snprintf(ratio, sizeof ratio, ", %.2fx lacuna", med / lacuna_ms);
        if (csv)
            std::printf("%s,%zu,%zu,%zu,%zu,%.1f,%.1f,%.1f,%ld,%ld,%zu,%zu,%zu,%zu\n", kind, depth,
                        stack, runs, ok, med, mn, mx, last.rss_kib, last.vmas, last.peak_live,
                        last.failed_at, last.unguarded_at, last.guard_checked);
        else
            std::printf("%-10s %-22s %10.1f %8.1f %9ld %10zu %14s   (min %.1f, max %.1f%s)\n", kind,
                        result, med, (double)last.rss_kib / 1024, last.vmas, last.peak_live, ung,
                        mn, mx, ratio);
    }
    return 0;
}
