/* crashkill: an LD_PRELOAD shim that SIGKILLs its process at the Nth change to a file system.
 *
 * Test-only (tests/crash.py): no fault-injection code in cowfs itself. It wraps the libc calls
 * that change a file system object (create/mkdir/mknod/rename/link/unlink, xattrs, chmod, chown,
 * times, truncate, writes, copy_file_range, fsync...). A call counts when its object lies below
 * CRASHKILL_PREFIX (so writes to /dev/fuse, logs and pipes never count); opens count only with
 * O_CREAT, O_TRUNC or O_TMPFILE. One counter for the whole process (all threads).
 *   CRASHKILL_PREFIX  required: only paths below it count
 *   CRASHKILL_AT=N    SIGKILL the process just before the Nth counted call runs (0: never)
 *   CRASHKILL_LOG     append "N monotonic_ns name path" for every counted call
 * (strace --inject counts per syscall and per thread, which cannot say "the Nth change".)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *prefix;
static size_t prefix_len;
static unsigned long kill_at;
static int log_fd = -1;
static unsigned long counter;

__attribute__((constructor)) static void crashkill_init(void) {
    prefix = getenv("CRASHKILL_PREFIX");
    prefix_len = prefix ? strlen(prefix) : 0;
    const char *at = getenv("CRASHKILL_AT");
    kill_at = at ? strtoul(at, NULL, 10) : 0;
    const char *log = getenv("CRASHKILL_LOG");
    if (log && *log)
        log_fd = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_APPEND | O_CLOEXEC);
}

static void fd_path(int fd, char *out, size_t n) {
    char link[64];
    if (fd == AT_FDCWD) {
        if (!getcwd(out, n)) out[0] = 0;
        return;
    }
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, out, n - 1);
    out[k < 0 ? 0 : k] = 0;
}

/* the absolute path a (dirfd, path) pair names, /proc/self/fd/N/... resolved */
static void resolve(int dirfd, const char *path, char *out, size_t n) {
    if (!path || !*path) {
        fd_path(dirfd, out, n);
        return;
    }
    if (path[0] == '/') {
        if (strncmp(path, "/proc/self/fd/", 14) == 0) {
            char *end;
            long fd = strtol(path + 14, &end, 10);
            fd_path((int)fd, out, n);
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s", end);
        } else {
            snprintf(out, n, "%s", path);
        }
        return;
    }
    fd_path(dirfd, out, n);
    size_t l = strlen(out);
    snprintf(out + l, n - l, "/%s", path);
}

static void hit(const char *name, int dirfd, const char *path) {
    if (!prefix_len) return;
    char full[8192];
    resolve(dirfd, path, full, sizeof full);
    if (strncmp(full, prefix, prefix_len) != 0) return;
    unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
    if (log_fd >= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        char line[8400];
        int k = snprintf(line, sizeof line, "%lu %lld %s %s\n", n,
                         (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, name, full);
        if (k > (int)sizeof line - 1) k = sizeof line - 1;
        syscall(SYS_write, log_fd, line, (size_t)k);
    }
    if (kill_at && n == kill_at) {
        syscall(SYS_kill, getpid(), SIGKILL);
        for (;;) pause();
    }
}

#define REAL(fn) static __typeof__(fn) *real; if (!real) real = dlsym(RTLD_NEXT, #fn)
#define OPEN_COUNTS(flags) ((flags) & (O_CREAT | O_TRUNC | 020000000))

#define WRAP_OPEN(fn) \
    int fn(const char *path, int flags, ...) { \
        mode_t mode = 0; \
        if (flags & (O_CREAT | 020000000)) { va_list ap; va_start(ap, flags); \
            mode = va_arg(ap, mode_t); va_end(ap); } \
        if (OPEN_COUNTS(flags)) hit(#fn, AT_FDCWD, path); \
        REAL(fn); return real(path, flags, mode); }
WRAP_OPEN(open)
WRAP_OPEN(open64)

#define WRAP_OPENAT(fn) \
    int fn(int dirfd, const char *path, int flags, ...) { \
        mode_t mode = 0; \
        if (flags & (O_CREAT | 020000000)) { va_list ap; va_start(ap, flags); \
            mode = va_arg(ap, mode_t); va_end(ap); } \
        if (OPEN_COUNTS(flags)) hit(#fn, dirfd, path); \
        REAL(fn); return real(dirfd, path, flags, mode); }
WRAP_OPENAT(openat)
WRAP_OPENAT(openat64)

int creat(const char *p, mode_t m) { hit("creat", AT_FDCWD, p); REAL(creat); return real(p, m); }
int creat64(const char *p, mode_t m) { hit("creat64", AT_FDCWD, p); REAL(creat64); return real(p, m); }

/* PATH-based: (args...) with the path argument named p, dirfd d */
#define P1(fn, ret, params, args) \
    ret fn params { hit(#fn, AT_FDCWD, p); REAL(fn); return real args; }
#define D1(fn, ret, params, args) \
    ret fn params { hit(#fn, d, p); REAL(fn); return real args; }
#define F1(fn, ret, params, args) \
    ret fn params { hit(#fn, fd, NULL); REAL(fn); return real args; }

P1(mkdir, int, (const char *p, mode_t m), (p, m))
D1(mkdirat, int, (int d, const char *p, mode_t m), (d, p, m))
P1(mknod, int, (const char *p, mode_t m, dev_t v), (p, m, v))
D1(mknodat, int, (int d, const char *p, mode_t m, dev_t v), (d, p, m, v))
P1(rename, int, (const char *p, const char *q), (p, q))
D1(renameat, int, (int d, const char *p, int e, const char *q), (d, p, e, q))
D1(renameat2, int, (int d, const char *p, int e, const char *q, unsigned f), (d, p, e, q, f))
int link(const char *o, const char *p) { hit("link", AT_FDCWD, p); REAL(link); return real(o, p); }
int linkat(int od, const char *o, int d, const char *p, int f) {
    hit("linkat", d, p); REAL(linkat); return real(od, o, d, p, f); }
int symlink(const char *t, const char *p) { hit("symlink", AT_FDCWD, p); REAL(symlink); return real(t, p); }
int symlinkat(const char *t, int d, const char *p) {
    hit("symlinkat", d, p); REAL(symlinkat); return real(t, d, p); }
P1(unlink, int, (const char *p), (p))
D1(unlinkat, int, (int d, const char *p, int f), (d, p, f))
P1(rmdir, int, (const char *p), (p))
P1(setxattr, int, (const char *p, const char *n, const void *v, size_t s, int f), (p, n, v, s, f))
P1(lsetxattr, int, (const char *p, const char *n, const void *v, size_t s, int f), (p, n, v, s, f))
F1(fsetxattr, int, (int fd, const char *n, const void *v, size_t s, int f), (fd, n, v, s, f))
P1(removexattr, int, (const char *p, const char *n), (p, n))
P1(lremovexattr, int, (const char *p, const char *n), (p, n))
F1(fremovexattr, int, (int fd, const char *n), (fd, n))
P1(chmod, int, (const char *p, mode_t m), (p, m))
F1(fchmod, int, (int fd, mode_t m), (fd, m))
D1(fchmodat, int, (int d, const char *p, mode_t m, int f), (d, p, m, f))
P1(chown, int, (const char *p, uid_t u, gid_t g), (p, u, g))
P1(lchown, int, (const char *p, uid_t u, gid_t g), (p, u, g))
F1(fchown, int, (int fd, uid_t u, gid_t g), (fd, u, g))
D1(fchownat, int, (int d, const char *p, uid_t u, gid_t g, int f), (d, p, u, g, f))
D1(utimensat, int, (int d, const char *p, const struct timespec t[2], int f), (d, p, t, f))
F1(futimens, int, (int fd, const struct timespec t[2]), (fd, t))
P1(utimes, int, (const char *p, const struct timeval t[2]), (p, t))
P1(lutimes, int, (const char *p, const struct timeval t[2]), (p, t))
F1(futimes, int, (int fd, const struct timeval t[2]), (fd, t))
P1(truncate, int, (const char *p, off_t l), (p, l))
P1(truncate64, int, (const char *p, off64_t l), (p, l))
F1(ftruncate, int, (int fd, off_t l), (fd, l))
F1(ftruncate64, int, (int fd, off64_t l), (fd, l))
F1(fallocate, int, (int fd, int m, off_t o, off_t l), (fd, m, o, l))
F1(fallocate64, int, (int fd, int m, off64_t o, off64_t l), (fd, m, o, l))
F1(posix_fallocate, int, (int fd, off_t o, off_t l), (fd, o, l))
F1(posix_fallocate64, int, (int fd, off64_t o, off64_t l), (fd, o, l))
F1(write, ssize_t, (int fd, const void *b, size_t n), (fd, b, n))
F1(pwrite, ssize_t, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o))
F1(pwrite64, ssize_t, (int fd, const void *b, size_t n, off64_t o), (fd, b, n, o))
F1(writev, ssize_t, (int fd, const struct iovec *v, int c), (fd, v, c))
F1(pwritev, ssize_t, (int fd, const struct iovec *v, int c, off_t o), (fd, v, c, o))
F1(pwritev64, ssize_t, (int fd, const struct iovec *v, int c, off64_t o), (fd, v, c, o))
F1(pwritev2, ssize_t, (int fd, const struct iovec *v, int c, off_t o, int f), (fd, v, c, o, f))
ssize_t copy_file_range(int i, off64_t *io, int fd, off64_t *oo, size_t n, unsigned f) {
    hit("copy_file_range", fd, NULL); REAL(copy_file_range); return real(i, io, fd, oo, n, f); }
ssize_t sendfile(int fd, int i, off_t *o, size_t n) {
    hit("sendfile", fd, NULL); REAL(sendfile); return real(fd, i, o, n); }
ssize_t sendfile64(int fd, int i, off64_t *o, size_t n) {
    hit("sendfile64", fd, NULL); REAL(sendfile64); return real(fd, i, o, n); }
F1(fsync, int, (int fd), (fd))
F1(fdatasync, int, (int fd), (fd))
F1(syncfs, int, (int fd), (fd))
F1(sync_file_range, int, (int fd, off64_t o, off64_t n, unsigned f), (fd, o, n, f))
