/* ravel/version.h - version macros. Included by <ravel.h>; do not include directly. */
#ifndef RAVEL_VERSION_H
#define RAVEL_VERSION_H

#define RV_VERSION_MAJOR 0
#define RV_VERSION_MINOR 1
#define RV_VERSION_PATCH 0
#define RV_VERSION_STRING "0.1.0"
/* One integer that compares in release order: 0x00MMmmpp. */
#define RV_VERSION_HEX ((RV_VERSION_MAJOR << 16) | (RV_VERSION_MINOR << 8) | RV_VERSION_PATCH)

#endif
