// Boost.Fiber fibers on lacuna stacks (include/lacuna/boost_fiber.hpp): they run on pool regions,
// block on channels and yield, are joined or detached, and every stack goes back to the pool.
#include <boost/fiber/all.hpp>
#include <lacuna/boost_fiber.hpp>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "test_cxx.hpp"

namespace fibers = boost::fibers;

// The adapter, remembering the regions it handed out (for the census below).
struct recording_stacks : lacuna::boost_fiber_stacks {
    std::vector<char *> *regions;
    recording_stacks(lacuna_pool *p, std::vector<char *> *r)
        : lacuna::boost_fiber_stacks(p), regions(r)
    {
    }
    boost::context::stack_context allocate()
    {
        boost::context::stack_context s = lacuna::boost_fiber_stacks::allocate();
        regions->push_back(static_cast<char *>(s.sp) - s.size);
        return s;
    }
};

int main()
{
    lacuna_pool_config cfg = {};
    cfg.region_size = 64 * 1024;
    cfg.capacity = 20000;
    lacuna_pool *pool = nullptr;
    CHECK(lacuna_pool_create(&cfg, &pool) == 0);
    std::vector<char *> regions;
    recording_stacks stacks{pool, &regions};

    // 10,000 fibers alive at once, each parked on a channel, woken in turn: all on lacuna regions.
    const int n = 10000;
    fibers::buffered_channel<long> results{16384};
    fibers::unbuffered_channel<int> go;
    std::vector<fibers::fiber> fs;
    long not_on_region = 0;
    for (int i = 0; i < n; i++) {
        fs.emplace_back(std::allocator_arg, stacks, [&, i] {
            int local = 0;
            if (lacuna_region_index(pool, &local) < 0)
                not_on_region++;
            int v = 0;
            CHECK(go.pop(v) == fibers::channel_op_status::success);
            boost::this_fiber::yield();
            CHECK(results.push(static_cast<long>(i) + v) == fibers::channel_op_status::success);
        });
    }
    boost::this_fiber::yield(); // let them all start and park
    lacuna_stats st;
    lacuna_pool_stats(pool, &st);
    CHECK(st.live == static_cast<size_t>(n));
    // A parked fiber's stack holds its context and frames: resident, and counted.
    CHECK(regions.size() == static_cast<size_t>(n));
    for (char *r : regions) {
        size_t pages = 0;
        CHECK(lacuna_resident(pool, r, &pages) == 0);
        CHECK(pages >= 1 && pages <= 4);
    }
    for (int i = 0; i < n; i++)
        CHECK(go.push(1) == fibers::channel_op_status::success);
    long sum = 0;
    for (int i = 0; i < n; i++) {
        long v = 0;
        CHECK(results.pop(v) == fibers::channel_op_status::success);
        sum += v;
    }
    for (auto &f : fs)
        f.join();
    fs.clear();
    CHECK(not_on_region == 0);
    CHECK(sum == static_cast<long>(n) * (n - 1) / 2 + n);
    lacuna_pool_stats(pool, &st);
    CHECK(st.live == 0);
    CHECK(st.allocs == static_cast<uint64_t>(n) && st.frees == st.allocs);

    // Detached fibers: their stacks are freed by the scheduler once they end.
    fibers::barrier done{101};
    for (int i = 0; i < 100; i++)
        fibers::fiber{std::allocator_arg, stacks, [&] { done.wait(); }}.detach();
    done.wait();
    for (int i = 0; i < 10; i++)
        boost::this_fiber::yield(); // the dispatcher releases terminated fibers
    lacuna_pool_stats(pool, &st);
    CHECK(st.live == 0);
    CHECK(st.frees == static_cast<uint64_t>(n) + 100);
    lacuna_pool_destroy(pool);
    std::printf("ok: %d Boost.Fiber fibers parked at once on lacuna stacks, 100 detached\n", n);
    return 0;
}
