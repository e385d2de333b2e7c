/* io/process.c - subprocesses (posix_spawn + pidfd) and signals (signalfd).
 *
 * A child is started with posix_spawnp: its signal mask is cleared and its
 * signal dispositions reset (workers block every asynchronous signal, and a
 * child must not inherit that). Its exit is awaited through a pidfd, which
 * epoll reports readable when the child ends, registered like any fd
 * (io/reactor.c); the status is then collected with waitpid(WNOHANG).
 *
 * No zombies: every child is on its runtime's list until reaped. Freeing the
 * handle of a child still running hands it to a reaper task that waits for
 * it; when the runtime shuts down, that task is cancelled and kills and reaps
 * the child; rv_runtime_free kills and reaps any child still on the list.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "executor/alloc.h"
#include "executor/internal.h"

extern char **environ;

struct rv_process {
    rv_process *next, *prev; /* the runtime's list (rt->proc_lock) */
    rv_runtime *rt;
    pid_t pid;
    int pidfd;
    rv_io *pidio;
    bool reaped;
    int status; /* exit code, or -signo */
    rv_stream *in, *out, *err;
};

static void list_add(rv_process *p)
{
    rv_runtime *rt = p->rt;
    rv__spin_lock(&rt->proc_lock);
    p->next = rt->procs;
    if (rt->procs)
        rt->procs->prev = p;
    rt->procs = p;
    rv__spin_unlock(&rt->proc_lock);
}

static void list_del(rv_process *p)
{
    rv_runtime *rt = p->rt;
    rv__spin_lock(&rt->proc_lock);
    if (p->prev)
        p->prev->next = p->next;
    else
        rt->procs = p->next;
    if (p->next)
        p->next->prev = p->prev;
    rv__spin_unlock(&rt->proc_lock);
}

/* Collect the status if the child ended: true when reaped. */
static bool try_reap(rv_process *p, int flags)
{
    if (p->reaped)
        return true;
    int st;
    pid_t r;
    do
        r = waitpid(p->pid, &st, flags);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    if (r < 0) {
        p->status = -ECHILD; /* reaped by someone else (a SIGCHLD handler) */
    } else {
        p->status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    }
    p->reaped = true;
    return true;
}

static void close_streams(rv_process *p)
{
    rv_stream **s[3] = {&p->in, &p->out, &p->err};
    for (int i = 0; i < 3; i++) {
        if (*s[i])
            rv_stream_close(*s[i], 0);
        *s[i] = NULL;
    }
}

static void process_destroy(rv_process *p)
{
    close_streams(p);
    if (p->pidio)
        rv_io_close(p->pidio);
    rv__free(p, sizeof *p);
}

void rv__process_reap_all(rv_runtime *rt)
{
    rv_process *p = rt->procs;
    rt->procs = NULL;
    while (p) {
        rv_process *next = p->next;
        if (!p->reaped) {
            kill(p->pid, SIGKILL);
            try_reap(p, 0);
        }
        /* The handle's memory is the user's to free before the runtime:
         * only children are cleaned up here. Handles never freed leak. */
        p = next;
    }
}

/* Set up the child's end of one standard stream. */
static int stdio_setup(posix_spawn_file_actions_t *fa, enum rv_stdio how, int target, int pipefd[2],
                       bool child_reads)
{
    switch (how) {
    case RV_STDIO_INHERIT:
        return 0;
    case RV_STDIO_DEVNULL:
        return posix_spawn_file_actions_addopen(fa, target, "/dev/null",
                                                child_reads ? O_RDONLY : O_WRONLY, 0);
    case RV_STDIO_PIPE:
        if (pipe2(pipefd, O_CLOEXEC) < 0)
            return errno;
        return posix_spawn_file_actions_adddup2(fa, pipefd[child_reads ? 0 : 1], target);
    case RV_STDIO_STDOUT:
        return target == 2 ? posix_spawn_file_actions_adddup2(fa, 1, 2) : EINVAL;
    }
    return EINVAL;
}

int rv_process_exec(rv_runtime *rt, char *const argv[], const rv_process_opts *opts,
                    rv_process **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    rv__worker *w = rv__tls_worker();
    if (!rt)
        rt = w ? w->rt : NULL;
    if (!rt || !argv || !argv[0] || (opts && (opts->size == 0 || opts->size > sizeof *opts)))
        return -EINVAL;
    if (rv__atomic_load_acquire(&rt->closing))
        return -ESHUTDOWN;
    rv_process_opts o = {0};
    if (opts)
        memcpy(&o, opts, opts->size);
    if (o.in == RV_STDIO_STDOUT || o.out == RV_STDIO_STDOUT)
        return -EINVAL;
    rv_process *p = rv__calloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    p->rt = rt;
    p->pidfd = -1;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int e = stdio_setup(&fa, o.in, 0, pin, true);
    if (!e)
        e = stdio_setup(&fa, o.out, 1, pout, false);
    if (!e)
        e = stdio_setup(&fa, o.err, 2, perr, false);
    if (!e && o.cwd)
        e = posix_spawn_file_actions_addchdir_np(&fa, o.cwd);
    if (!e)
        e = posix_spawnp(&p->pid, argv[0], &fa, &attr, argv, o.envp ? o.envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    /* The child's ends are the child's now. */
    if (pin[0] >= 0)
        close(pin[0]);
    if (pout[1] >= 0)
        close(pout[1]);
    if (perr[1] >= 0)
        close(perr[1]);
    int rc = -e;
    if (!rc) {
        list_add(p); /* from here on, reaped by us or the runtime */
        p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
        rc = p->pidfd < 0 ? -errno : rv_io_open(rt, p->pidfd, &p->pidio);
        if (rc && p->pidfd >= 0)
            close(p->pidfd);
    }
    int ends[3] = {pin[1], pout[0], perr[0]};
    rv_stream **streams[3] = {&p->in, &p->out, &p->err};
    for (int i = 0; i < 3; i++) {
        if (ends[i] < 0)
            continue;
        if (rc == 0)
            rc = rv_stream_from_fd(rt, ends[i], NULL, streams[i]);
        if (!*streams[i])
            close(ends[i]);
    }
    if (rc) {
        if (p->pid > 0) {
            list_del(p);
            kill(p->pid, SIGKILL);
            try_reap(p, 0);
        }
        process_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

int rv_process_shell(rv_runtime *rt, const char *cmd, const rv_process_opts *opts, rv_process **out)
{
    if (!cmd) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    return rv_process_exec(rt, argv, opts, out);
}

int rv_process_pid(const rv_process *p) { return p ? p->pid : -EINVAL; }
rv_stream *rv_process_stdin(rv_process *p) { return p ? p->in : NULL; }
rv_stream *rv_process_stdout(rv_process *p) { return p ? p->out : NULL; }
rv_stream *rv_process_stderr(rv_process *p) { return p ? p->err : NULL; }

int rv_process_close_stdin(rv_process *p)
{
    if (!p)
        return -EINVAL;
    if (!p->in)
        return 0;
    int rc = rv_stream_close(p->in, -1);
    p->in = NULL;
    return rc == -EPIPE ? 0 : rc; /* a child that stopped reading */
}

int rv_process_wait(rv_process *p, int64_t timeout_ns, int *status)
{
    if (!p)
        return -EINVAL;
    int64_t deadline = timeout_ns < 0 ? -1 : rv__deadline_after(timeout_ns);
    while (!try_reap(p, WNOHANG)) {
        int64_t left = deadline < 0 ? -1 : deadline - rv_now();
        if (deadline >= 0 && left <= 0)
            return -ETIMEDOUT;
        int rc = rv_io_wait_readable(p->pidio, left);
        if (rc)
            return rc;
    }
    if (status)
        *status = p->status;
    return 0;
}

/* Read a stream to its end into a malloc'd, NUL-terminated buffer. */
typedef struct drain_job {
    rv_stream *s;
    char *buf;
    size_t len, cap;
    int64_t timeout_ns;
} drain_job;

static int drain_stream(void *arg, void **result)
{
    drain_job *d = arg;
    for (;;) {
        if (d->cap - d->len < 4097) {
            size_t cap = d->cap ? d->cap * 2 : 8192;
            char *b = realloc(d->buf, cap);
            if (!b)
                return -ENOMEM;
            d->buf = b;
            d->cap = cap;
        }
        ssize_t n = rv_stream_read(d->s, d->buf + d->len, d->cap - d->len - 1, d->timeout_ns);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        d->len += (size_t)n;
    }
    d->buf[d->len] = '\0';
    return 0;
}

typedef struct feed_job {
    rv_process *p;
    const void *input;
    size_t len;
    int64_t timeout_ns;
} feed_job;

static int feed_stdin(void *arg, void **result)
{
    feed_job *f = arg;
    int rc = 0;
    if (f->p->in && f->len)
        rc = rv_stream_write(f->p->in, f->input, f->len);
    int crc = rv_process_close_stdin(f->p);
    return rc == -EPIPE ? crc : rc ? rc : crc;
}

int rv_process_communicate(rv_process *p, const void *input, size_t len, char **out,
                           size_t *out_len, char **err, size_t *err_len, int64_t timeout_ns,
                           int *status)
{
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (!p)
        return -EINVAL;
    rv__worker *w = rv__tls_worker();
    if (!w || !w->current)
        return -EPERM;
    /* stdin, stdout and stderr at once: a child that fills one pipe while we
     * wait on another would otherwise deadlock. */
    feed_job f = {p, input, len, timeout_ns};
    drain_job d[2] = {{p->out, NULL, 0, 0, timeout_ns}, {p->err, NULL, 0, 0, timeout_ns}};
    rv_task *t[3] = {NULL, NULL, NULL};
    int rc = rv_spawn(NULL, feed_stdin, &f, NULL, &t[0]);
    for (int i = 0; i < 2 && rc == 0; i++)
        if (d[i].s)
            rc = rv_spawn(NULL, drain_stream, &d[i], NULL, &t[i + 1]);
    rv_future *fs[3];
    size_t n = 0;
    for (int i = 0; i < 3; i++)
        if (t[i])
            fs[n++] = rv_task_future(t[i]);
    int codes[3] = {0, 0, 0};
    /* Every helper must end before we return (they use our frame). */
    int grc = n ? rv_gather(fs, n, RV_RETURN_EXCEPTIONS, NULL, codes) : 0;
    for (int i = 0; i < 3; i++)
        if (t[i])
            rv_task_release(t[i]);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = codes[i];
    if (rc == 0)
        rc = grc;
    if (rc == 0)
        rc = rv_process_wait(p, timeout_ns, status);
    char **dst[2] = {out, err};
    size_t *dlen[2] = {out_len, err_len};
    for (int i = 0; i < 2; i++) {
        if (dlen[i])
            *dlen[i] = d[i].len;
        if (dst[i] && rc == 0 && d[i].buf)
            *dst[i] = d[i].buf;
        else
            free(d[i].buf);
    }
    return rc;
}

int rv_process_send_signal(rv_process *p, int signo)
{
    if (!p)
        return -EINVAL;
    if (p->reaped)
        return -ESRCH;
    return syscall(SYS_pidfd_send_signal, p->pidfd, signo, NULL, 0) < 0 ? -errno : 0;
}

int rv_process_terminate(rv_process *p) { return rv_process_send_signal(p, SIGTERM); }
int rv_process_kill(rv_process *p) { return rv_process_send_signal(p, SIGKILL); }

/* A freed handle of a child still running: wait for it here. Cancelled at
 * shutdown: kill it and reap it. */
static int reaper(void *arg, void **result)
{
    rv_process *p = arg;
    if (rv_process_wait(p, -1, NULL) != 0) {
        kill(p->pid, SIGKILL);
        try_reap(p, 0);
    }
    list_del(p);
    process_destroy(p);
    return 0;
}

int rv_process_free(rv_process *p)
{
    if (!p)
        return -EINVAL;
    close_streams(p);
    if (try_reap(p, WNOHANG) || rv_spawn(p->rt, reaper, p, NULL, NULL) != 0) {
        if (!p->reaped) { /* no task for it: do it now */
            kill(p->pid, SIGKILL);
            try_reap(p, 0);
        }
        list_del(p);
        process_destroy(p);
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Signals                                                                    */

int rv_signal_block(int signo)
{
    sigset_t set;
    sigemptyset(&set);
    if (sigaddset(&set, signo) < 0)
        return -EINVAL;
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int rv_signal_wait(int signo, int64_t timeout_ns)
{
    rv__worker *w = rv__tls_worker();
    if (!w || !w->current)
        return -EPERM;
    sigset_t set;
    sigemptyset(&set);
    if (sigaddset(&set, signo) < 0)
        return -EINVAL;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    rv_io *io;
    int rc = rv_io_open(NULL, fd, &io);
    if (rc) {
        close(fd);
        return rc;
    }
    struct signalfd_siginfo si;
    ssize_t n = rv_read(io, &si, sizeof si, timeout_ns);
    rv_io_close(io);
    if (n < 0)
        return (int)n;
    return n == sizeof si ? (int)si.ssi_signo : -EIO;
}
