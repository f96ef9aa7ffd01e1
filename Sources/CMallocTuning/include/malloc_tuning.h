#ifndef FPINDEX_MALLOC_TUNING_H
#define FPINDEX_MALLOC_TUNING_H

/// Linking this target limits glibc malloc to one arena from process start (a constructor
/// sets M_ARENA_MAX before any thread exists). glibc otherwise gives each contending thread an
/// arena of its own, up to eight per core, and memory freed in one arena is not reused by the
/// others: a process that moves megabytes between threads (a batch fetched on one, encoded on
/// another, sent by a third) holds far more than it uses and keeps faulting in fresh pages.
///
/// Returns the limit in force: 1, or 0 where malloc is not glibc's (nothing was changed).
int fpindex_malloc_arena_limit(void);

/// Keeps freed memory for reuse instead of handing it back to the kernel: blocks below
/// `mmap_threshold` bytes come from the heap, and the heap is trimmed only when more than
/// `trim_threshold` bytes are free at its top. A process that allocates and frees buffers of
/// megabytes per request otherwise pays a page fault (and the zeroing of a page) for every
/// 4 KiB of every buffer, each time. Can be called at any time. Does nothing where malloc is
/// not glibc's.
void fpindex_keep_freed_memory(long mmap_threshold, long trim_threshold);

#endif
