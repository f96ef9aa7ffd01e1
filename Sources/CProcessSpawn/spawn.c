#define _GNU_SOURCE
#include "CProcessSpawn.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

int fpindex_spawn(const char *path, char *const argv[], char *const envp[], const char *working_directory,
                  int stdin_fd, int stdout_fd, int stderr_fd, pid_t *pid) {
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
    int result = posix_spawnattr_init(&attributes);
    if (result != 0) return result;
    result = posix_spawn_file_actions_init(&actions);
    if (result != 0) {
        posix_spawnattr_destroy(&attributes);
        return result;
    }

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (result == 0) result = posix_spawnattr_setsigmask(&attributes, &empty);
    if (result == 0) result = posix_spawnattr_setsigdefault(&attributes, &all);
    if (result == 0) result = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    int targets[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
    int sources[3] = {stdin_fd, stdout_fd, stderr_fd};
    for (int i = 0; i < 3 && result == 0; i++) {
        if (sources[i] >= 0) result = posix_spawn_file_actions_adddup2(&actions, sources[i], targets[i]);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    // Nothing else of the parent's (listening sockets, pipes, logs) leaks into the child.
    if (result == 0) result = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
    if (result == 0 && working_directory != NULL) {
        result = posix_spawn_file_actions_addchdir_np(&actions, working_directory);
    }
    if (result == 0) result = posix_spawn(pid, path, &actions, &attributes, argv, envp);

    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return result;
}
