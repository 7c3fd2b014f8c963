// Boost.Context's own stack allocators as churn backends (built only when Boost is found), so C++
// users see protected_fixedsize_stack and pooled_fixedsize_stack beside lacuna in one run.
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include <cstring>
#include <new>

namespace ctx = boost::context;

namespace {
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
