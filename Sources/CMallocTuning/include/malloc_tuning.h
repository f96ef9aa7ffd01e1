#ifndef FPINDEX_MALLOC_TUNING_H
#define FPINDEX_MALLOC_TUNING_H

/// Limits glibc malloc to `count` arenas (M_ARENA_MAX). glibc gives each contending thread an
/// arena of its own, up to eight per core, and memory freed in one arena is not reused by the
/// others: a process that moves megabytes between threads (a batch fetched on one, encoded on
/// another, sent by a third) holds far more than it uses. Call before starting threads. Does
/// nothing where malloc is not glibc's.
void fpindex_limit_malloc_arenas(int count);

#endif
