/* executor/errors.c - rv_strerror, rv_err_name, rv_version_string.
 * Both tables come from RV_ERRNO_MAP (include/ravel/errors.h). */
#define _GNU_SOURCE
#include <string.h>

#include "ravel.h"

const char *rv_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define RV_ERRNO_TEXT_(name, text)                                                                 \
    case -name:                                                                                    \
        return text;
        RV_ERRNO_MAP(RV_ERRNO_TEXT_)
#undef RV_ERRNO_TEXT_
    }
    if (code < 0 && code > -4096) { /* the errno range; also keeps -INT_MIN out */
        const char *d = strerrordesc_np(-code);
        if (d)
            return d;
    }
    return "unknown error";
}

const char *rv_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define RV_ERRNO_NAME_(name, text)                                                                 \
    case -name:                                                                                    \
        return #name;
        RV_ERRNO_MAP(RV_ERRNO_NAME_)
#undef RV_ERRNO_NAME_
    }
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        if (n)
            return n;
    }
    return "UNKNOWN";
}

const char *rv_version_string(void) { return RV_VERSION_STRING; }
