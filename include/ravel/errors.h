/* ravel/errors.h - error codes. Included by <ravel.h>; do not include directly.
 *
 * Every fallible ravel call returns 0 (or a non-negative count) on success and a
 * negative errno value on failure. asyncio's exceptions map onto codes:
 *
 *   CancelledError                        -ECANCELED
 *   TimeoutError                          -ETIMEDOUT
 *   InvalidStateError (result not ready)  -EAGAIN
 *   InvalidStateError (already done)      -EALREADY
 *   QueueShutDown / runtime closed        -ESHUTDOWN
 *   ValueError / RuntimeError on misuse   -EINVAL / -EPERM
 *   a blocking wait on a worker thread    -EDEADLK
 *
 * The list below is the single source of rv_strerror() and rv_err_name(): each
 * entry generates an RV_E* enumerator and both descriptions, so they cannot drift.
 */
#ifndef RAVEL_ERRORS_H
#define RAVEL_ERRORS_H

#include <errno.h>

#define RV_ERRNO_MAP(X)                                                                            \
    X(ECANCELED, "operation cancelled")                                                            \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(EAGAIN, "not ready yet, or would block")                                                     \
    X(EALREADY, "already done")                                                                    \
    X(ESHUTDOWN, "runtime or object is shut down")                                                 \
    X(EINVAL, "invalid argument")                                                                  \
    X(EPERM, "not permitted in this context")                                                      \
    X(EDEADLK, "a blocking wait on a worker thread would deadlock it")                             \
    X(ENOMEM, "out of memory")                                                                     \
    X(EBUSY, "resource busy")                                                                      \
    X(ENOSYS, "not supported on this platform")

#define RV_ERRNO_ENUM_(name, text) RV_##name = -name,
enum rv_errno { RV_OK = 0, RV_ERRNO_MAP(RV_ERRNO_ENUM_) };
#undef RV_ERRNO_ENUM_

#endif
