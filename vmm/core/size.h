/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * size.h - parsing sizes and counts given on the command line.
 */
#ifndef VMM_SIZE_H
#define VMM_SIZE_H

#include <stdint.h>

/* "4096", "64K", "256M", "16G", "1T" (binary multiples, case-insensitive
 * suffix, optional "iB"/"B").  0 or -EINVAL/-ERANGE; never partial. */
int parse_size(const char *s, uint64_t *out);
/* A decimal count in [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "1.5 GiB" style, for reports. */
const char *format_size(uint64_t bytes, char *buf, unsigned len);

#endif
