// Boost.Context's own stack allocators as churn backends (built only when Boost is found), so C++
// users see protected_fixedsize_stack and pooled_fixedsize_stack beside lacuna in one run.
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include <cstring>
#include <new>

namespace ctx = boost::context;

namespace
{
struct peer {
    bool pooled;
    std::size_t region, size; // size: what allocate() reports, needed again by deallocate()
    ctx::protected_fixedsize_stack prot;
    ctx::pooled_fixedsize_stack pool;
    peer(bool p, std::size_t r) : pooled(p), region(r), size(0), prot(r), pool(r) {}
};
} // namespace

extern "C" void *boost_peer_create(const char *name, std::size_t region)
{
    bool pooled = std::strcmp(name, "boost-pooled") == 0;
    if (!pooled && std::strcmp(name, "boost-protected") != 0)
        return nullptr;
    return new (std::nothrow) peer(pooled, region);
}

// The lowest usable byte of a region-sized stack, or NULL.
extern "C" void *boost_peer_alloc(void *state)
{
    peer *p = static_cast<peer *>(state);
    try {
        ctx::stack_context s = p->pooled ? p->pool.allocate() : p->prot.allocate();
        p->size = s.size;
        return static_cast<char *>(s.sp) - p->region;
    } catch (...) {
        return nullptr;
    }
}

extern "C" void boost_peer_free(void *state, void *region)
{
    peer *p = static_cast<peer *>(state);
    ctx::stack_context s;
    s.size = p->size;
    s.sp = static_cast<char *>(region) + p->region;
    if (p->pooled)
        p->pool.deallocate(s);
    else
        p->prot.deallocate(s);
}

// Boost.Context's raw context switch, for lacuna-bench switch: two contexts bounce control with
// jump_fcontext, the primitive under boost::context::fiber and Boost.Fiber. Returns ns per round
// trip (two switches, there and back), or a negative value when the stack cannot be had.
#include <boost/context/detail/fcontext.hpp>

#include <chrono>

namespace
{
long jump_left;

void jump_peer(ctx::detail::transfer_t t)
{
    for (;;)
        t = ctx::detail::jump_fcontext(t.fctx, nullptr);
}
} // namespace

extern "C" double boost_jump_ns(long n)
{
    ctx::protected_fixedsize_stack alloc(64 * 1024);
    ctx::stack_context sc;
    try {
        sc = alloc.allocate();
    } catch (...) {
        return -1;
    }
    ctx::detail::fcontext_t peer = ctx::detail::make_fcontext(sc.sp, sc.size, jump_peer);
    auto t0 = std::chrono::steady_clock::now();
    for (jump_left = n; jump_left > 0; jump_left--)
        peer = ctx::detail::jump_fcontext(peer, nullptr).fctx;
    auto t1 = std::chrono::steady_clock::now();
    alloc.deallocate(sc); // the peer is parked inside jump_peer for good: nothing to unwind
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / (double)n;
}
