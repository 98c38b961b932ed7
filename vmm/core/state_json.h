/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * state_json.h - the small vocabulary every part of the VM uses to write
 * its state into a snapshot's state.json and to read it back (issue 16):
 * unsigned integers of up to 64 bits, booleans, binary blobs as lowercase
 * hex strings (a LAPIC page, an XSAVE area, the irqchip), and strict reads
 * that fail with one sentence naming the field.
 *
 * A snapshot directory is untrusted input (a file that is not what it
 * claims): every getter checks presence, type and range, and the error
 * names the path ("vcpus[1].regs.rip: missing").  Callers pass the path
 * prefix they are at in `where`.
 *
 * Pure functions on json-c objects; no global state; any thread.
 */
#ifndef VMM_STATE_JSON_H
#define VMM_STATE_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Setters: add key to object o.  0, or -1 if out of memory (o unchanged
 * for that key). */
int sj_set_u64(struct json_object *o, const char *key, uint64_t v);
int sj_set_bool(struct json_object *o, const char *key, bool v);
int sj_set_str(struct json_object *o, const char *key, const char *s);
/* len bytes as 2*len lowercase hex digits. */
int sj_set_hex(struct json_object *o, const char *key, const void *p, size_t len);
/* Adds v (taking ownership, also on failure: it is then freed). */
int sj_set_obj(struct json_object *o, const char *key, struct json_object *v);

/* Getters: 0, or -1 with "<where>.<key>: <what is wrong>" in err. */
int sj_get_u64(struct json_object *o, const char *key, uint64_t *out, const char *where,
	       char *err, size_t errlen);
/* As sj_get_u64, and the value must be <= max. */
int sj_get_uint(struct json_object *o, const char *key, uint64_t max, uint64_t *out,
		const char *where, char *err, size_t errlen);
int sj_get_bool(struct json_object *o, const char *key, bool *out, const char *where, char *err,
		size_t errlen);
/* The string stays owned by o. */
int sj_get_str(struct json_object *o, const char *key, const char **out, const char *where,
	       char *err, size_t errlen);
/* Exactly len bytes of hex into p (a different length is an error). */
int sj_get_hex(struct json_object *o, const char *key, void *p, size_t len, const char *where,
	       char *err, size_t errlen);
/* An object or array member (type checked); stays owned by o. */
int sj_get_obj(struct json_object *o, const char *key, struct json_object **out,
	       const char *where, char *err, size_t errlen);
int sj_get_array(struct json_object *o, const char *key, struct json_object **out,
		 const char *where, char *err, size_t errlen);

#endif
