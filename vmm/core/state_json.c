// SPDX-License-Identifier: GPL-2.0-only
/*
 * state_json.c - strict reads and plain writes of snapshot state
 * (state_json.h).  Integers go through json-c's 64-bit unsigned type, so
 * a register above INT64_MAX survives the round trip; a negative, a
 * fraction or a string where an integer belongs is an error, not a cast.
 */
#include "core/state_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *where, const char *key, const char *fmt,
		...) __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const char *where, const char *key, const char *fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s%s%s: %s", where ? where : "", where && where[0] ? "." : "", key,
		 what);
	return -1;
}

int sj_set_obj(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v)
		return -1;
	if (json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

int sj_set_u64(struct json_object *o, const char *key, uint64_t v)
{
	return sj_set_obj(o, key, json_object_new_uint64(v));
}

int sj_set_bool(struct json_object *o, const char *key, bool v)
{
	return sj_set_obj(o, key, json_object_new_boolean(v));
}

int sj_set_str(struct json_object *o, const char *key, const char *s)
{
	return sj_set_obj(o, key, json_object_new_string(s ? s : ""));
}

int sj_set_hex(struct json_object *o, const char *key, const void *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * len + 1);
	if (!s)
		return -1;
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++) {
		s[2 * i] = digits[b[i] >> 4];
		s[2 * i + 1] = digits[b[i] & 15];
	}
	s[2 * len] = 0;
	int r = sj_set_obj(o, key, json_object_new_string_len(s, (int)(2 * len)));
	free(s);
	return r;
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;
	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

int sj_get_u64(struct json_object *o, const char *key, uint64_t *out, const char *where,
	       char *err, size_t errlen)
{
	struct json_object *v = member(o, key);
	if (!v)
		return fail(err, errlen, where, key, "missing");
	if (!json_object_is_type(v, json_type_int))
		return fail(err, errlen, where, key, "not an integer");
	/* json-c keeps a parsed integer as int64 or uint64; a negative one
	 * reads back as 0 through get_uint64 and is refused here. */
	errno = 0;
	int64_t s = json_object_get_int64(v);
	uint64_t u = json_object_get_uint64(v);
	if (s < 0 && u == 0)
		return fail(err, errlen, where, key, "negative");
	*out = u;
	return 0;
}

int sj_get_uint(struct json_object *o, const char *key, uint64_t max, uint64_t *out,
		const char *where, char *err, size_t errlen)
{
	uint64_t v = 0;
	if (sj_get_u64(o, key, &v, where, err, errlen) < 0)
		return -1;
	if (v > max)
		return fail(err, errlen, where, key, "%llu is more than %llu", (unsigned long long)v,
			    (unsigned long long)max);
	*out = v;
	return 0;
}

int sj_get_bool(struct json_object *o, const char *key, bool *out, const char *where, char *err,
		size_t errlen)
{
	struct json_object *v = member(o, key);
	if (!v)
		return fail(err, errlen, where, key, "missing");
	if (!json_object_is_type(v, json_type_boolean))
		return fail(err, errlen, where, key, "not a boolean");
	*out = json_object_get_boolean(v);
	return 0;
}

int sj_get_str(struct json_object *o, const char *key, const char **out, const char *where,
	       char *err, size_t errlen)
{
	struct json_object *v = member(o, key);
	if (!v)
		return fail(err, errlen, where, key, "missing");
	if (!json_object_is_type(v, json_type_string))
		return fail(err, errlen, where, key, "not a string");
	*out = json_object_get_string(v);
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int sj_get_hex(struct json_object *o, const char *key, void *p, size_t len, const char *where,
	       char *err, size_t errlen)
{
	const char *s = NULL;
	if (sj_get_str(o, key, &s, where, err, errlen) < 0)
		return -1;
	size_t n = (size_t)json_object_get_string_len(member(o, key));
	if (n != 2 * len)
		return fail(err, errlen, where, key, "%zu hex digits, expected %zu", n, 2 * len);
	uint8_t *b = p;
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return fail(err, errlen, where, key, "not hex at digit %zu", 2 * i);
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int get_typed(struct json_object *o, const char *key, enum json_type t, const char *tn,
		     struct json_object **out, const char *where, char *err, size_t errlen)
{
	struct json_object *v = member(o, key);
	if (!v)
		return fail(err, errlen, where, key, "missing");
	if (!json_object_is_type(v, t))
		return fail(err, errlen, where, key, "not %s", tn);
	*out = v;
	return 0;
}

int sj_get_obj(struct json_object *o, const char *key, struct json_object **out,
	       const char *where, char *err, size_t errlen)
{
	return get_typed(o, key, json_type_object, "an object", out, where, err, errlen);
}

int sj_get_array(struct json_object *o, const char *key, struct json_object **out,
		 const char *where, char *err, size_t errlen)
{
	return get_typed(o, key, json_type_array, "an array", out, where, err, errlen);
}
