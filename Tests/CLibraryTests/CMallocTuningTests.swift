import CMallocTuning
import Testing

@Suite("malloc tuning")
struct CMallocTuningTests {
    /// The limit is set by a constructor before main; a test binary links the target too. (The
    /// tuning was once compiled out without anyone noticing: glibc was tested for before any
    /// libc header had defined `__GLIBC__`.)
    @Test func oneArenaFromTheStart() {
        #if canImport(Glibc)
            #expect(fpindex_malloc_arena_limit() == 1)
        #else
            #expect(fpindex_malloc_arena_limit() == 0)
        #endif
    }
}
