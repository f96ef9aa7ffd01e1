#include "malloc_tuning.h"

// Defines __GLIBC__ where the C library is glibc; without a libc header first, the test below
// is always false (it was, until this line: every tuning here silently did nothing).
#include <stdlib.h>

#if defined(__GLIBC__)
#include <malloc.h>

static int arena_limit = 0;

// Runs when the executable is loaded, before main and before any thread exists. A thread
// that allocates before the limit is set may already have an arena of its own, and an async
// command's run() is itself on one of the concurrency runtime's threads. (Without any limit
// in force the updater grew and shrank per-thread heaps some 900 times a second, and zeroing
// their pages took 14 % of its CPU.)
__attribute__((constructor)) static void fpindex_single_malloc_arena(void) {
    if (mallopt(M_ARENA_MAX, 1) == 1) {
        arena_limit = 1;
    }
}

int fpindex_malloc_arena_limit(void) { return arena_limit; }

void fpindex_keep_freed_memory(long mmap_threshold, long trim_threshold) {
    mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, (int)trim_threshold);
}

#else

int fpindex_malloc_arena_limit(void) { return 0; }

void fpindex_keep_freed_memory(long mmap_threshold, long trim_threshold) {
    (void)mmap_threshold;
    (void)trim_threshold;
}

#endif
