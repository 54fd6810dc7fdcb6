/* detshim: an LD_PRELOAD library that makes a componentize-py build byte-reproducible.
 *
 * componentize-py runs CPython, compiled to WebAssembly, inside wasmtime until the app has
 * been imported, then writes the guest's memory into the output component as its initial
 * state.  Whatever the guest or the build saw on the way lands in that snapshot, also in
 * freed heap memory and in padding bytes: random numbers, clocks, file metadata (times;
 * inode and device numbers, which wasmtime hands the guest as its `metadata-hash`), and
 * the order of directory listings (which, through Python sets and Rust collections, also
 * decides the layout of data).  This library makes each of these the same on every run
 * and every machine:
 *
 *   randomness      every getrandom()/getentropy() call and every getrandom system call
 *                   returns the same fixed stream, from its start, so which thread asks
 *                   first cannot matter (Rust HashMap keys, wasmtime's WASI random and so
 *                   the guest's hash secret, temporary directory names);
 *   clocks          clock_gettime/gettimeofday/time, and the system calls behind them,
 *                   return one constant instant (WASI wall and monotonic clocks, file
 *                   times written by the build);
 *   file metadata   stat/fstat/lstat/newfstatat/statx report that instant as every time,
 *                   device 0:1, an inode number hashed from the path (relative to the
 *                   build directory), one link, 4096-byte blocks and 4096 as the size of
 *                   every directory;
 *   directory order getdents64 returns each directory's entries sorted by name, so neither
 *                   the filesystem (tmpfs lists newest first, ext4 by a hash whose seed
 *                   differs between filesystems) nor the order of creation decides.
 *
 * The clocks are libc functions whose fast path never enters the kernel (vDSO): they are
 * replaced here by symbol interposition, and getauxval() hides the vDSO from code that would
 * call it directly (rustix), which then makes system calls instead.  The file system cannot
 * be caught at the libc level: wasmtime-wasi reaches it through cap-std and rustix, which
 * issue system calls themselves.  So the constructor, which runs before the program has
 * started any thread, installs a seccomp filter (inherited by every thread created later)
 * that traps those system calls with SIGSYS unless their unused sixth argument is MAGIC;
 * the SIGSYS handler issues the call again with MAGIC and rewrites the result.
 *
 * Environment: DETSHIM_ROOT names the build directory; paths inside it are hashed relative
 * to it, so the build directory's own name does not matter.
 *
 * Limits: starting another program is refused (execve fails with EPERM after a message on
 * stderr; a posix_spawn child, whose SIGSYS handler glibc resets, is killed by SIGSYS
 * instead), because the filter would outlive the handler in the new program.  SIGSYS must
 * stay deliverable and handled by us: sigaction, pthread_sigmask and sigprocmask are
 * wrapped so that nobody blocks it or replaces the handler.  seekdir to a position taken
 * from a sorted listing is not supported.  x86_64 Linux only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "detshim supports x86_64 Linux only"
#endif

#define FIXED_TIME 1000000000L     /* 2001-09-09T01:46:40Z: every clock and every file time */
#define MAGIC 0x6465747368696d21UL /* sixth system call argument meaning "let this one pass" */

/* ---------------------------------------------------------------- raw system calls */

/* How this library makes the system calls the filter traps: with MAGIC as the sixth
 * argument, which none of them has, so the kernel ignores it and the filter lets it pass.
 * Returns the result or a negative errno; errno itself is left alone. */
static long raw6(long nr, long a, long b, long c, long d, long e) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = (long)MAGIC;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* ---------------------------------------------------------------- randomness */

static uint64_t next64(uint64_t *state) { /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Every call the same stream, from its start: which thread asks first cannot matter. */
static void fill(void *buf, size_t n) {
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    unsigned char *p = buf;
    while (n) {
        uint64_t v = next64(&state);
        size_t k = n < 8 ? n : 8;
        memcpy(p, &v, k);
        p += k;
        n -= k;
    }
}

/* glibc's getrandom and getentropy: Rust's HashMap keys and the getrandom crate, CPython's
 * os.urandom and hash secret.  Replaced here as well as trapped below because a newer glibc
 * answers getrandom from the vDSO without a system call. */
ssize_t getrandom(void *buf, size_t n, unsigned int flags) {
    (void)flags;
    fill(buf, n);
    return (ssize_t)n;
}

int getentropy(void *buf, size_t n) {
    if (n > 256) {
        errno = EIO;
        return -1;
    }
    fill(buf, n);
    return 0;
}

/* ---------------------------------------------------------------- clocks */

/* Wall and monotonic clocks alike: the guest's WASI wall-clock and monotonic-clock, the
 * host's SystemTime and Instant (which seed some hashers and name temporary files).  They
 * are answered from the vDSO without a system call, so they are replaced here; the same
 * answer comes from the trapped system calls below. */
int clock_gettime(clockid_t id, struct timespec *ts) {
    (void)id;
    ts->tv_sec = FIXED_TIME;
    ts->tv_nsec = 0;
    return 0;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnonnull-compare" /* glibc declares tv nonnull; NULL is valid */
int gettimeofday(struct timeval *tv, void *tz) {
    if (tv) {
        tv->tv_sec = FIXED_TIME;
        tv->tv_usec = 0;
    }
    if (tz) memset(tz, 0, 8); /* struct timezone: UTC */
    return 0;
}
#pragma GCC diagnostic pop

time_t time(time_t *t) {
    if (t) *t = FIXED_TIME;
    return FIXED_TIME;
}

/* Without a vDSO, code that reads the clocks itself (rustix does) makes clock system calls,
 * which are trapped.  AT_RANDOM, 16 random bytes from the kernel that some code uses as a
 * seed, becomes fixed bytes too. */
unsigned long getauxval(unsigned long type) {
    static unsigned char fixed_random[16] = "detshim-random16";
    static unsigned long (*real)(unsigned long);
    if (type == AT_SYSINFO_EHDR) {
        errno = ENOENT;
        return 0;
    }
    if (type == AT_RANDOM) return (unsigned long)fixed_random;
    if (!real) real = (unsigned long (*)(unsigned long))dlsym(RTLD_NEXT, "getauxval");
    return real(type);
}

/* ---------------------------------------------------------------- file metadata */

/* struct stat and struct statx as the x86_64 kernel writes them. */
struct kstat {
    uint64_t dev, ino, nlink;
    uint32_t mode, uid, gid, pad0;
    uint64_t rdev;
    int64_t size, blksize, blocks;
    uint64_t atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns;
    int64_t reserved[3];
};
_Static_assert(sizeof(struct kstat) == 144, "x86_64 struct stat");

struct kstatx_ts {
    int64_t sec;
    uint32_t nsec;
    int32_t reserved;
};
struct kstatx {
    uint32_t mask, blksize;
    uint64_t attributes;
    uint32_t nlink, uid, gid;
    uint16_t mode, spare0;
    uint64_t ino, size, blocks, attributes_mask;
    struct kstatx_ts atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t rest[14]; /* mnt_id, direct I/O alignment, subvolume, ...: all cleared */
};
_Static_assert(sizeof(struct kstatx) == 256, "struct statx");

#define KSTATX_BASIC_AND_BTIME 0x0fffU /* STATX_BASIC_STATS | STATX_BTIME */

static int64_t norm_size(uint32_t mode, int64_t size) {
    /* a directory's size depends on the filesystem and on the directory's history */
    return S_ISDIR(mode) ? 4096 : size;
}

/* The inode number is a hash of the file's path, relative to DETSHIM_ROOT (the build
 * directory) when it lies inside it: the same in every build directory, and still
 * different for different files.  A constant would not do: glibc's dlopen takes two files
 * with the same device and inode for one library, and wasmtime gives the guest the
 * metadata-hash of (device, inode). */
static char root[4096];
static size_t root_len;

static uint64_t path_ino(const char *path, size_t n) {
    if (root_len && n >= root_len && memcmp(path, root, root_len) == 0 &&
        (n == root_len || path[root_len] == '/')) {
        path += root_len;
        n -= root_len;
    }
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)path[i]) * 0x100000001b3ULL;
    return (h >> 1) | 1; /* positive and never 0 */
}

/* The path of an open descriptor, from /proc/self/fd.  Returns its length, or -1. */
static long fd_path(int fd, char *out, size_t size) {
    char link[32] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    unsigned v = (unsigned)fd;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) && n < 11);
    size_t k = 14;
    while (n) link[k++] = digits[--n];
    link[k] = 0;
    long r = raw6(SYS_readlinkat, AT_FDCWD, (long)link, (long)out, (long)size, 0);
    return r < 0 || (size_t)r >= size ? -1 : r;
}

static uint64_t fd_ino(int fd) {
    char path[4096];
    long n = fd_path(fd, path, sizeof path);
    return n < 0 ? 1 : path_ino(path, (size_t)n);
}

/* The same file as stat(dirfd, path) saw, named by its real path: opened with O_PATH
 * (which neither reads nor follows a final symlink when told not to), then looked up. */
static uint64_t at_ino(int dirfd, const char *path, int flags) {
    if (!path || ((flags & AT_EMPTY_PATH) && path[0] == 0)) { /* the descriptor itself */
        if (dirfd != AT_FDCWD) return fd_ino(dirfd);
        path = ".";
    }
    long fd = raw6(SYS_openat, dirfd, (long)path,
                   O_PATH | O_CLOEXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0), 0, 0);
    if (fd < 0) return path_ino(path, strlen(path));
    uint64_t ino = fd_ino((int)fd);
    raw6(SYS_close, fd, 0, 0, 0, 0);
    return ino;
}

static void norm_stat(struct kstat *st, uint64_t ino) {
    st->dev = 1;
    st->ino = ino;
    st->nlink = 1;
    st->size = norm_size(st->mode, st->size);
    st->blksize = 4096;
    st->blocks = (st->size + 4095) / 4096 * 8;
    st->atime = st->mtime = st->ctime = FIXED_TIME;
    st->atime_ns = st->mtime_ns = st->ctime_ns = 0;
}

static void norm_statx(struct kstatx *sx, uint64_t ino) {
    struct kstatx out;
    memset(&out, 0, sizeof out);
    out.mask = KSTATX_BASIC_AND_BTIME;
    out.blksize = 4096;
    out.nlink = 1;
    out.uid = sx->uid;
    out.gid = sx->gid;
    out.mode = sx->mode;
    out.ino = ino;
    out.size = (uint64_t)norm_size(sx->mode, (int64_t)sx->size);
    out.blocks = (out.size + 4095) / 4096 * 8;
    out.atime.sec = out.btime.sec = out.ctime.sec = out.mtime.sec = FIXED_TIME;
    out.rdev_major = sx->rdev_major;
    out.rdev_minor = sx->rdev_minor;
    out.dev_major = 0;
    out.dev_minor = 1;
    memcpy(sx, &out, sizeof out);
}

/* ---------------------------------------------------------------- directory order */

/* The first getdents64 on a directory descriptor reads all of the directory (from the
 * current position), sorts the entries by name and hands them out from this copy.  The
 * kernel's position is then at the end, which is how a later call on the same descriptor
 * knows it continues the listing; at any other position (a rewind, or a new directory on a
 * reused descriptor number) the listing starts again.  d_ino is what stat would report,
 * d_off the entry's index.  No malloc: the interrupted code may hold malloc's lock. */
struct dirent64k {
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
    char d_name[];
};

struct listing {
    int fd;              /* -1: free */
    char dir[4096];      /* the directory's path, for d_ino */
    long dir_len;        /* or -1 if unknown */
    uint64_t dev, ino;   /* the directory, so a reused descriptor number is noticed */
    int64_t end_pos;     /* the kernel's position once everything was read */
    char *buf;           /* mmap: the entries, then an index of offsets */
    size_t buf_size, len, n, next;
    uint32_t *index;
};

#define LISTINGS 256
static struct listing listings[LISTINGS];
static pthread_mutex_t listings_lock = PTHREAD_MUTEX_INITIALIZER;

static void *grow(void *old, size_t old_size, size_t new_size) {
    void *p;
    if (old)
        p = (void *)raw6(SYS_mremap, (long)old, (long)old_size, (long)new_size, MREMAP_MAYMOVE, 0);
    else
        p = mmap(NULL, new_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED || (unsigned long)p > -4096UL ? NULL : p;
}

static void release(struct listing *l) {
    if (l->buf) raw6(SYS_munmap, (long)l->buf, (long)l->buf_size, 0, 0, 0);
    memset(l, 0, sizeof *l);
    l->fd = -1;
}

static int name_cmp(const struct listing *l, uint32_t a, uint32_t b) {
    return strcmp(((struct dirent64k *)(l->buf + a))->d_name,
                  ((struct dirent64k *)(l->buf + b))->d_name);
}

/* Read the rest of the directory into l and sort it.  Returns 0 or a negative errno. */
static long load(struct listing *l, int fd) {
    size_t cap = 1 << 16;
    l->buf = grow(NULL, 0, cap);
    if (!l->buf) return -ENOMEM;
    l->buf_size = cap;
    l->len = 0;
    for (;;) {
        if (l->buf_size - l->len < 32768) {
            char *p = grow(l->buf, l->buf_size, l->buf_size * 2);
            if (!p) return -ENOMEM;
            l->buf = p;
            l->buf_size *= 2;
        }
        long r = raw6(SYS_getdents64, fd, (long)(l->buf + l->len), (long)(l->buf_size - l->len), 0, 0);
        if (r < 0) return r;
        if (r == 0) break;
        l->len += (size_t)r;
    }
    size_t n = 0;
    for (size_t off = 0; off < l->len; off += ((struct dirent64k *)(l->buf + off))->d_reclen) n++;
    size_t need = (l->len + 7) / 8 * 8 + n * sizeof(uint32_t);
    if (need > l->buf_size) {
        char *p = grow(l->buf, l->buf_size, (need + 4095) / 4096 * 4096);
        if (!p) return -ENOMEM;
        l->buf = p;
        l->buf_size = (need + 4095) / 4096 * 4096;
    }
    l->index = (uint32_t *)(l->buf + (l->len + 7) / 8 * 8);
    size_t i = 0;
    for (size_t off = 0; off < l->len; off += ((struct dirent64k *)(l->buf + off))->d_reclen)
        l->index[i++] = (uint32_t)off;
    l->n = n;
    l->next = 0;
    /* shell sort: no allocation, no recursion */
    for (size_t gap = n / 2; gap > 0; gap = gap == 2 ? 1 : gap * 5 / 11) {
        for (size_t a = gap; a < n; a++) {
            uint32_t v = l->index[a];
            size_t b = a;
            for (; b >= gap && name_cmp(l, l->index[b - gap], v) > 0; b -= gap)
                l->index[b] = l->index[b - gap];
            l->index[b] = v;
        }
    }
    return 0;
}

/* d_ino as stat reports it for the entry: the hash of the entry's path. */
static uint64_t entry_ino(struct listing *l, const char *name) {
    if (l->dir_len < 0) return 1;
    size_t n = (size_t)l->dir_len;
    if (strcmp(name, ".") == 0) return path_ino(l->dir, n);
    if (strcmp(name, "..") == 0) {
        while (n > 1 && l->dir[n - 1] != '/') n--;
        if (n > 1) n--;
        return path_ino(l->dir, n);
    }
    size_t k = strlen(name);
    if (n + 1 + k >= sizeof l->dir) return 1;
    l->dir[n] = '/';
    memcpy(l->dir + n + 1, name, k);
    uint64_t ino = path_ino(l->dir, n + 1 + k);
    l->dir[n] = 0;
    return ino;
}

static long sorted_getdents64(int fd, char *out, size_t count) {
    struct kstat st;
    long r = raw6(SYS_fstat, fd, (long)&st, 0, 0, 0);
    if (r < 0) return r;
    int64_t pos = raw6(SYS_lseek, fd, 0, SEEK_CUR, 0, 0);
    pthread_mutex_lock(&listings_lock);
    struct listing *l = NULL, *free_slot = NULL;
    for (int i = 0; i < LISTINGS; i++) {
        if (listings[i].fd == fd) l = &listings[i];
        else if (listings[i].fd == -1 && !free_slot) free_slot = &listings[i];
    }
    if (l && !(l->dev == st.dev && l->ino == st.ino && l->end_pos == pos)) {
        release(l); /* a new directory on a reused number, or a rewind */
        free_slot = l;
        l = NULL;
    }
    if (!l) {
        if (!free_slot) { /* too many directories open at once: make room */
            free_slot = &listings[(unsigned)fd % LISTINGS];
            release(free_slot);
        }
        l = free_slot;
        r = load(l, fd);
        if (r < 0) {
            release(l);
            pthread_mutex_unlock(&listings_lock);
            return r;
        }
        l->fd = fd;
        l->dev = st.dev;
        l->ino = st.ino;
        l->end_pos = raw6(SYS_lseek, fd, 0, SEEK_CUR, 0, 0);
        l->dir_len = fd_path(fd, l->dir, sizeof l->dir - 256);
    }
    size_t used = 0;
    while (l->next < l->n) {
        struct dirent64k *e = (struct dirent64k *)(l->buf + l->index[l->next]);
        if (used + e->d_reclen > count) break;
        struct dirent64k *o = (struct dirent64k *)(out + used);
        memcpy(o, e, e->d_reclen);
        o->d_ino = entry_ino(l, e->d_name);
        o->d_off = (int64_t)(l->next + 1);
        used += e->d_reclen;
        l->next++;
    }
    if (used == 0 && l->next < l->n) r = -EINVAL; /* buffer too small for the next entry */
    else r = (long)used;
    if (l->next == l->n && used == 0) release(l); /* end of directory reported: forget it */
    pthread_mutex_unlock(&listings_lock);
    return r;
}

/* ---------------------------------------------------------------- the SIGSYS handler */

static void refuse_exec(const char *path) {
    static const char msg[] = "detshim: a reproducible build cannot start other programs: ";
    raw6(SYS_write, 2, (long)msg, sizeof msg - 1, 0, 0);
    if (path) raw6(SYS_write, 2, (long)path, (long)strlen(path), 0, 0);
    raw6(SYS_write, 2, (long)"\n", 1, 0, 0);
}

/* The system call the filter trapped, with the registers it was made with; its result goes
 * back in rax, and execution resumes after the syscall instruction. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    int saved_errno = errno;
    greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    long nr = si->si_syscall;
    long a = g[REG_RDI], b = g[REG_RSI], c = g[REG_RDX], d = g[REG_R10], e = g[REG_R8];
    long r;
    switch (nr) {
    case SYS_stat:
    case SYS_lstat:
        r = raw6(nr, a, b, 0, 0, 0);
        if (r == 0)
            norm_stat((struct kstat *)b, at_ino(AT_FDCWD, (const char *)a, nr == SYS_lstat ? AT_SYMLINK_NOFOLLOW : 0));
        break;
    case SYS_fstat:
        r = raw6(nr, a, b, 0, 0, 0);
        if (r == 0) norm_stat((struct kstat *)b, fd_ino((int)a));
        break;
    case SYS_newfstatat:
        r = raw6(nr, a, b, c, d, 0);
        if (r == 0) norm_stat((struct kstat *)c, at_ino((int)a, (const char *)b, (int)d));
        break;
    case SYS_statx:
        r = raw6(nr, a, b, c, d, e);
        if (r == 0) norm_statx((struct kstatx *)e, at_ino((int)a, (const char *)b, (int)c));
        break;
    case SYS_getdents64:
        r = sorted_getdents64((int)a, (char *)b, (size_t)c);
        break;
    case SYS_getrandom:
        fill((void *)a, (size_t)b);
        r = b;
        break;
    case SYS_clock_gettime:
        r = b ? clock_gettime((clockid_t)a, (struct timespec *)b) : -EFAULT;
        break;
    case SYS_gettimeofday:
        if (a) gettimeofday((struct timeval *)a, NULL);
        if (b) memset((void *)b, 0, 8); /* struct timezone: UTC */
        r = 0;
        break;
    case SYS_time:
        r = time((time_t *)a);
        break;
    case SYS_execve:
        refuse_exec((const char *)a);
        r = -EPERM;
        break;
    case SYS_execveat:
        refuse_exec((const char *)b);
        r = -EPERM;
        break;
    default:
        r = -ENOSYS;
    }
    g[REG_RAX] = r;
    errno = saved_errno;
}

/* ---------------------------------------------------------------- keeping SIGSYS ours */

/* Were SIGSYS blocked when the filter traps, the kernel would kill the process; were its
 * handler replaced, the trapped calls would fail.  Nothing in a build does either on
 * purpose, so such requests are quietly narrowed. */
static void unblock_sigsys(const sigset_t *in, sigset_t *copy, const sigset_t **use) {
    if (in && sigismember(in, SIGSYS)) {
        *copy = *in;
        sigdelset(copy, SIGSYS);
        *use = copy;
    } else {
        *use = in;
    }
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    static int (*real)(int, const sigset_t *, sigset_t *);
    if (!real) real = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "pthread_sigmask");
    sigset_t copy;
    const sigset_t *use;
    unblock_sigsys(how == SIG_UNBLOCK ? NULL : set, &copy, &use);
    return real(how, how == SIG_UNBLOCK ? set : use, old);
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    static int (*real)(int, const sigset_t *, sigset_t *);
    if (!real) real = (int (*)(int, const sigset_t *, sigset_t *))dlsym(RTLD_NEXT, "sigprocmask");
    sigset_t copy;
    const sigset_t *use;
    unblock_sigsys(how == SIG_UNBLOCK ? NULL : set, &copy, &use);
    return real(how, how == SIG_UNBLOCK ? set : use, old);
}

static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static int installed;

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction)
        real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    if (sig == SIGSYS && installed) return real_sigaction(sig, NULL, old);
    if (act && sigismember(&act->sa_mask, SIGSYS)) {
        struct sigaction copy = *act;
        sigdelset(&copy.sa_mask, SIGSYS);
        return real_sigaction(sig, &copy, old);
    }
    return real_sigaction(sig, act, old);
}

/* ---------------------------------------------------------------- installation */

/* the k-th of the N trapped numbers jumps, when it matches, to the MAGIC check after them */
#define TRAPPED(n, k) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (n), N_TRAPPED - (k), 0)
#define N_TRAPPED 12

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    /* SA_NODEFER: the handler's own calls pass the filter anyway, but a stat in some other
     * code while SIGSYS is blocked would be fatal.  Every other asynchronous signal is
     * blocked while the handler runs, so no other handler can interrupt it while it holds
     * the listings lock. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigdelset(&sa.sa_mask, SIGSYS);
    sigdelset(&sa.sa_mask, SIGSEGV);
    sigdelset(&sa.sa_mask, SIGBUS);
    sigdelset(&sa.sa_mask, SIGILL);
    sigdelset(&sa.sa_mask, SIGFPE);
    sigdelset(&sa.sa_mask, SIGTRAP);
    for (int i = 0; i < LISTINGS; i++) listings[i].fd = -1;
    const char *r = getenv("DETSHIM_ROOT");
    if (r && realpath(r, root)) root_len = strlen(root);
    sigaction(SIGSYS, &sa, NULL);
    installed = 1;

    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        TRAPPED(SYS_stat, 0), TRAPPED(SYS_fstat, 1), TRAPPED(SYS_lstat, 2),
        TRAPPED(SYS_newfstatat, 3), TRAPPED(SYS_statx, 4), TRAPPED(SYS_getdents64, 5),
        TRAPPED(SYS_getrandom, 6), TRAPPED(SYS_clock_gettime, 7), TRAPPED(SYS_gettimeofday, 8),
        TRAPPED(SYS_time, 9), TRAPPED(SYS_execve, 10), TRAPPED(SYS_execveat, 11),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[5])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)MAGIC, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[5]) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(MAGIC >> 32), 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    /* No new privileges: required to install a filter without CAP_SYS_ADMIN.  TSYNC: any
     * thread that exists already gets the filter too. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        raw6(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, (long)&prog, 0, 0) != 0) {
        static const char msg[] = "detshim: cannot install the seccomp filter\n";
        raw6(SYS_write, 2, (long)msg, sizeof msg - 1, 0, 0);
        raw6(SYS_exit_group, 121, 0, 0, 0, 0);
    }
}
