#ifndef FPINDEX_CPROCESSSPAWN_H
#define FPINDEX_CPROCESSSPAWN_H

#include <sys/types.h>

/// Starts `path` as a container runtime starts a program: an empty signal mask and every
/// signal at its default disposition (a child of a Swift program otherwise inherits the
/// spawning thread's mask, where nearly every signal is blocked, and never stops on SIGTERM),
/// no descriptor of the parent's but the three given, `working_directory` (or the parent's
/// when NULL). `argv` and `envp` end with NULL.
/// Returns 0 and the child's id in `pid`, or an errno value.
int fpindex_spawn(const char *path, char *const argv[], char *const envp[], const char *working_directory,
                  int stdin_fd, int stdout_fd, int stderr_fd, pid_t *pid);

#endif
