/* tests/test-scale.h - sanitizer detection and the factor by which stress
 * tests shrink their work under them, so the TSan and ASan runs stay within
 * their ctest timeouts. */
#ifndef RAVEL_TEST_SCALE_H
#define RAVEL_TEST_SCALE_H

#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

#if defined(TSAN)
#define SCALE_DIV 10
#elif defined(ASAN)
#define SCALE_DIV 4
#else
#define SCALE_DIV 1
#endif

#endif
