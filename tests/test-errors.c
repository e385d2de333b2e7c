/* test-errors.c - error codes, their descriptions, and the version string.
 *
 * Checks the "Errors and version" section of include/ravel.h and the
 * RV_ERRNO_MAP list of include/ravel/errors.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <ravel.h>

/* "Known ravel codes come from RV_ERRNO_MAP": rv_strerror gives the map's text
 * and rv_err_name the symbolic name, for every entry. */
static void test_errors_map_descriptions(void **state)
{
    (void)state;
#define CHECK_ENTRY(name, text)                                                                    \
    assert_string_equal(rv_strerror(-name), text);                                                 \
    assert_string_equal(rv_err_name(-name), #name);
    RV_ERRNO_MAP(CHECK_ENTRY)
#undef CHECK_ENTRY
}

/* errors.h: "each entry generates an RV_E* enumerator" equal to the negative
 * errno, and RV_OK is 0. */
static void test_errors_enum_values(void **state)
{
    (void)state;
    assert_int_equal(RV_OK, 0);
#define CHECK_ENUM(name, text) assert_int_equal(RV_##name, -name);
    RV_ERRNO_MAP(CHECK_ENUM)
#undef CHECK_ENUM
}

/* "0 gives "success"" and rv_err_name: ""OK" for 0". */
static void test_errors_zero(void **state)
{
    (void)state;
    assert_string_equal(rv_strerror(0), "success");
    assert_string_equal(rv_err_name(0), "OK");
}

/* "other errno values fall back to the C library's text"; rv_err_name gives
 * "the symbolic name of code" for an errno code that is not in the map. */
static void test_errors_unknown_errno_falls_back(void **state)
{
    (void)state;
    assert_string_equal(rv_strerror(-EIO), strerror(EIO));
    assert_string_equal(rv_err_name(-EIO), "EIO");
    assert_string_equal(rv_strerror(-EPIPE), strerror(EPIPE));
    assert_string_equal(rv_err_name(-EPIPE), "EPIPE");
}

/* "a positive or unknown value gives "unknown error""; rv_err_name:
 * ""UNKNOWN" for values that are not errno codes". */
static void test_errors_positive_value(void **state)
{
    (void)state;
    assert_string_equal(rv_strerror(5), "unknown error");
    assert_string_equal(rv_err_name(5), "UNKNOWN");
    assert_string_equal(rv_strerror(INT_MAX), "unknown error");
    assert_string_equal(rv_err_name(INT_MAX), "UNKNOWN");
}

/* Same statements, for negative values that are no errno code (INT_MIN
 * included: negating it must not overflow). */
static void test_errors_unknown_negative_value(void **state)
{
    (void)state;
    assert_string_equal(rv_strerror(-100000), "unknown error");
    assert_string_equal(rv_err_name(-100000), "UNKNOWN");
    assert_string_equal(rv_strerror(INT_MIN), "unknown error");
    assert_string_equal(rv_err_name(INT_MIN), "UNKNOWN");
}

/* rv_strerror: "Never NULL"; rv_err_name: "Never NULL". */
static void test_errors_never_null(void **state)
{
    (void)state;
    for (int code = -4200; code <= 4200; code++) {
        const char *text = rv_strerror(code);
        const char *name = rv_err_name(code);
        assert_non_null(text);
        assert_non_null(name);
        assert_true(text[0] != '\0');
        assert_true(name[0] != '\0');
    }
}

/* rv_version_string: "RV_VERSION_STRING of the library actually linked". */
static void test_errors_version_string(void **state)
{
    (void)state;
    assert_non_null(rv_version_string());
    assert_string_equal(rv_version_string(), RV_VERSION_STRING);
    assert_int_equal(RV_VERSION_HEX,
                     (RV_VERSION_MAJOR << 16) | (RV_VERSION_MINOR << 8) | RV_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_map_descriptions),
        cmocka_unit_test(test_errors_enum_values),
        cmocka_unit_test(test_errors_zero),
        cmocka_unit_test(test_errors_unknown_errno_falls_back),
        cmocka_unit_test(test_errors_positive_value),
        cmocka_unit_test(test_errors_unknown_negative_value),
        cmocka_unit_test(test_errors_never_null),
        cmocka_unit_test(test_errors_version_string),
    };
    /* RV_TEST_FILTER=pattern runs only the matching tests (debugging). */
    const char *filter = getenv("RV_TEST_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
