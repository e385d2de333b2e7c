/* ravel/process.h - subprocesses and signals (asyncio.create_subprocess_exec,
 * create_subprocess_shell, loop.add_signal_handler). Included by ravel.h; do
 * not include it on its own.
 */
#ifndef RAVEL_PROCESS_H
#define RAVEL_PROCESS_H

#ifndef RAVEL_H
#error "include <ravel.h>, not <ravel/process.h>"
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rv_process rv_process;

/* What to connect each standard stream of the child to. */
enum rv_stdio {
    RV_STDIO_INHERIT, /* the parent's own (the default) */
    RV_STDIO_PIPE,    /* a pipe: a stream in the rv_process (rv_process_stdin...) */
    RV_STDIO_DEVNULL, /* /dev/null */
    RV_STDIO_STDOUT,  /* stderr only: the same pipe or file as stdout */
};

typedef struct rv_process_opts {
    size_t size;        /* sizeof(rv_process_opts) */
    enum rv_stdio in, out, err;
    char *const *envp;  /* NULL: the parent's environment */
    const char *cwd;    /* NULL: the parent's */
} rv_process_opts;

/* Start argv[0] (searched in PATH) with argv. Any thread. The process is
 * watched through a pidfd registered with a worker's epoll. -ENOENT when the
 * program is not found; -EINVAL, -ENOMEM, -EAGAIN, -ESHUTDOWN. */
RV_EXTERN int rv_process_exec(rv_runtime *rt, char *const argv[], const rv_process_opts *opts,
                              rv_process **out);
/* `/bin/sh -c cmd`. */
RV_EXTERN int rv_process_shell(rv_runtime *rt, const char *cmd, const rv_process_opts *opts,
                               rv_process **out);
RV_EXTERN int rv_process_pid(const rv_process *p);
/* The child's pipes as streams (NULL when not RV_STDIO_PIPE). Owned by the
 * process: rv_process_free closes them; close stdin earlier with
 * rv_process_close_stdin to send EOF. */
RV_EXTERN rv_stream *rv_process_stdin(rv_process *p);
RV_EXTERN rv_stream *rv_process_stdout(rv_process *p);
RV_EXTERN rv_stream *rv_process_stderr(rv_process *p);
/* May suspend. Flush and close the child's stdin. */
RV_EXTERN int rv_process_close_stdin(rv_process *p);

/* May suspend. Wait for the child to end: 0 with *status set (may be NULL):
 * the exit code (0..255), or -signo when a signal killed it (asyncio's
 * returncode). -ETIMEDOUT; -ECANCELED (the child keeps running). Once it
 * ended, later calls return at once. */
RV_EXTERN int rv_process_wait(rv_process *p, int64_t timeout_ns, int *status);
/* May suspend. communicate(): write `input` (len bytes, may be NULL) to
 * stdin and close it, while reading stdout and stderr to their ends (both
 * at once, so a child that fills one pipe never deadlocks), then wait.
 * Outputs are allocated with malloc (free them with free) and NUL-terminated;
 * pass NULL for a stream you do not want (it is still drained). */
RV_EXTERN int rv_process_communicate(rv_process *p, const void *input, size_t len, char **out,
                                     size_t *out_len, char **err, size_t *err_len,
                                     int64_t timeout_ns, int *status);
/* Send a signal (pidfd_send_signal): 0, -ESRCH once it was reaped. */
RV_EXTERN int rv_process_send_signal(rv_process *p, int signo);
RV_EXTERN int rv_process_terminate(rv_process *p); /* SIGTERM */
RV_EXTERN int rv_process_kill(rv_process *p);      /* SIGKILL */
/* Free the handle and close the pipes. A child still running is not waited
 * for here; the runtime reaps it when it ends (a child left running when the
 * runtime is freed is killed and reaped then, so no zombie stays). */
RV_EXTERN int rv_process_free(rv_process *p);

/* May suspend. Wait for signal `signo` (a signalfd registered with a
 * worker's epoll) and return it, or -ETIMEDOUT / -ECANCELED. The signal must
 * be blocked in every thread of the process (workers block them all; call
 * rv_signal_block early in main, before starting threads), or it is
 * delivered the ordinary way instead. */
RV_EXTERN int rv_signal_wait(int signo, int64_t timeout_ns);
/* Block `signo` in the calling thread (pthread_sigmask), for rv_signal_wait. */
RV_EXTERN int rv_signal_block(int signo);

#ifdef __cplusplus
}
#endif

#endif
