// SPDX-License-Identifier: MIT
/*
 * Profile loader and validator.
 *
 * Loading takes four passes over one in-memory copy of the file:
 *  0. libyaml's scanner alone, token by token, refuses what would make the later passes
 *     blow up, at the token's line:column: aliases (each one re-walks and re-loads its
 *     anchor's subtree: "billion laughs"), nesting deeper than PROFILE_MAX_DEPTH (the
 *     scanner's cost per token grows with the flow depth, so 1 MB of '[' is quadratic),
 *     a NUL inside a scalar ("\0" would silently truncate a name); reader errors (bad
 *     UTF-8, control bytes) are located from libyaml's problem_offset;
 *  1. libyaml's document API parses it (syntax errors carry libyaml's mark) and we
 *     check there is exactly one, non-empty document;
 *  2. a walk of that document against the libcyaml schema below reports unknown keys,
 *     duplicate keys, wrong types, bad enumerated words, string lengths and missing
 *     required keys at the node's line:column, and records the marks of every mapping
 *     key, value and list item by path ("cores[0].slots[1].vcpus[2]") in the index;
 *  3. libcyaml loads the same bytes into struct rtioreq_profile. Pass 2 rejects what
 *     libcyaml would, so its errors are not expected here; if one comes anyway, its
 *     logged message is reported at the position its backtrace names.
 * Why pass 2 and not only libcyaml's log (measured with libcyaml 1.3.1): it stops at the
 * first error; for an unknown key its backtrace names the mapping at the position of the
 * previous value, not the key; for a missing key the position of the last field read;
 * it accepts any word as a boolean ("maybe" loads as true); an empty file or a file of
 * comments loads as success with a NULL result; documents after the first are ignored
 * with a notice.
 *
 * rtioreq_profile_validate() then checks the values, naming positions from the index.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cyaml/cyaml.h>
#include <yaml.h>

#include "rtioreq/rt/profile.h"
#include "rt/profile_pvt.h"

/* ------------------------------------------------------------------------- */
/* Schema (the keys are documented in docs/profiles.md) */

static const cyaml_strval_t mode_strs[] = {
	{ "polling", RTIOREQ_PROFILE_POLLING },
	{ "notify", RTIOREQ_PROFILE_NOTIFY },
};
static const cyaml_strval_t isolation_strs[] = {
	{ "none", RTIOREQ_PROFILE_ISOLATION_NONE },
	{ "cpuset", RTIOREQ_PROFILE_ISOLATION_CPUSET },
};
static const cyaml_strval_t policy_strs[] = {
	{ "other", RTIOREQ_PROFILE_OTHER },
	{ "fifo", RTIOREQ_PROFILE_FIFO },
	{ "rr", RTIOREQ_PROFILE_RR },
};
static const cyaml_strval_t role_strs[] = {
	{ "poller", RTIOREQ_PROFILE_ROLE_POLLER },
	{ "dispatcher", RTIOREQ_PROFILE_ROLE_DISPATCHER },
	{ "clients", RTIOREQ_PROFILE_ROLE_CLIENTS },
};
static const cyaml_strval_t idle_strs[] = {
	{ "spin", RTIOREQ_PROFILE_IDLE_SPIN },
	{ "hybrid", RTIOREQ_PROFILE_IDLE_HYBRID },
};
static const cyaml_strval_t throttling_strs[] = {
	{ "keep", RTIOREQ_PROFILE_THROTTLING_KEEP },
	{ "off", RTIOREQ_PROFILE_THROTTLING_OFF },
};
static const cyaml_strval_t range_type_strs[] = {
	{ "pio", RTIOREQ_PROFILE_PIO },
	{ "mmio", RTIOREQ_PROFILE_MMIO },
};

#define OPT CYAML_FLAG_OPTIONAL
#define ENUM_FIELD(key, flags, st, member, strs)                                                \
	CYAML_FIELD_ENUM(key, (flags) | CYAML_FLAG_STRICT, st, member, strs,                     \
			 CYAML_ARRAY_LEN(strs))

static const cyaml_schema_value_t int_entry = {
	CYAML_VALUE_INT(CYAML_FLAG_DEFAULT, int64_t),
};

static const cyaml_schema_field_t slot_fields[] = {
	CYAML_FIELD_INT("vm", CYAML_FLAG_DEFAULT, struct rtioreq_profile_slot, vm),
	CYAML_FIELD_INT("vcpu", OPT, struct rtioreq_profile_slot, vcpu),
	CYAML_FIELD_SEQUENCE_COUNT("vcpus", CYAML_FLAG_POINTER | OPT, struct rtioreq_profile_slot,
				   vcpus, n_vcpus, &int_entry, 0, CYAML_UNLIMITED),
	CYAML_FIELD_END
};
static const cyaml_schema_value_t slot_entry = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rtioreq_profile_slot, slot_fields),
};

static const cyaml_schema_field_t core_fields[] = {
	CYAML_FIELD_INT("cpu", CYAML_FLAG_DEFAULT, struct rtioreq_profile_core, cpu),
	CYAML_FIELD_FLAGS("role", CYAML_FLAG_STRICT, struct rtioreq_profile_core, roles, role_strs,
			  CYAML_ARRAY_LEN(role_strs)),
	ENUM_FIELD("isolation", OPT, struct rtioreq_profile_core, isolation, isolation_strs),
	ENUM_FIELD("policy", OPT, struct rtioreq_profile_core, policy, policy_strs),
	CYAML_FIELD_INT("priority", OPT, struct rtioreq_profile_core, priority),
	ENUM_FIELD("idle", OPT, struct rtioreq_profile_core, idle, idle_strs),
	CYAML_FIELD_UINT("spin_us", OPT, struct rtioreq_profile_core, spin_us),
	CYAML_FIELD_SEQUENCE_COUNT("slots", CYAML_FLAG_POINTER | OPT, struct rtioreq_profile_core,
				   slots, n_slots, &slot_entry, 0, CYAML_UNLIMITED),
	CYAML_FIELD_END
};
static const cyaml_schema_value_t core_entry = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rtioreq_profile_core, core_fields),
};

static const cyaml_schema_field_t range_fields[] = {
	ENUM_FIELD("type", CYAML_FLAG_DEFAULT, struct rtioreq_profile_range, type,
		   range_type_strs),
	CYAML_FIELD_UINT("start", CYAML_FLAG_DEFAULT, struct rtioreq_profile_range, start),
	CYAML_FIELD_UINT("end", CYAML_FLAG_DEFAULT, struct rtioreq_profile_range, end),
	CYAML_FIELD_END
};
static const cyaml_schema_value_t range_entry = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rtioreq_profile_range, range_fields),
};

static const cyaml_schema_field_t device_fields[] = {
	CYAML_FIELD_STRING("name", CYAML_FLAG_DEFAULT, struct rtioreq_profile_device, name, 1),
	CYAML_FIELD_STRING("client", OPT, struct rtioreq_profile_device, client, 1),
	CYAML_FIELD_SEQUENCE_COUNT("ranges", CYAML_FLAG_POINTER, struct rtioreq_profile_device,
				   ranges, n_ranges, &range_entry, 1, CYAML_UNLIMITED),
	/* the device model's own keys: checked by pass 2 (a mapping of scalars), kept in
	 * the index and attached by profile_normalise(); libcyaml skips them */
	CYAML_FIELD_IGNORE("params", OPT),
	CYAML_FIELD_END
};
static const cyaml_schema_value_t device_entry = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rtioreq_profile_device, device_fields),
};

static const cyaml_schema_field_t vm_fields[] = {
	CYAML_FIELD_INT("id", CYAML_FLAG_DEFAULT, struct rtioreq_profile_vm, id),
	CYAML_FIELD_INT("vcpus", CYAML_FLAG_DEFAULT, struct rtioreq_profile_vm, vcpus),
	CYAML_FIELD_BOOL("completion_polling", OPT, struct rtioreq_profile_vm, completion_polling),
	CYAML_FIELD_SEQUENCE_COUNT("devices", CYAML_FLAG_POINTER | OPT, struct rtioreq_profile_vm,
				   devices, n_devices, &device_entry, 0, CYAML_UNLIMITED),
	CYAML_FIELD_END
};
static const cyaml_schema_value_t vm_entry = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rtioreq_profile_vm, vm_fields),
};

static const cyaml_schema_field_t top_fields[] = {
	ENUM_FIELD("mode", OPT, struct rtioreq_profile, mode, mode_strs),
	CYAML_FIELD_BOOL("cpu_dma_latency", OPT, struct rtioreq_profile, cpu_dma_latency),
	ENUM_FIELD("rt_throttling", OPT, struct rtioreq_profile, rt_throttling, throttling_strs),
	CYAML_FIELD_SEQUENCE_COUNT("cores", CYAML_FLAG_POINTER, struct rtioreq_profile, cores,
				   n_cores, &core_entry, 1, CYAML_UNLIMITED),
	CYAML_FIELD_SEQUENCE_COUNT("vms", CYAML_FLAG_POINTER, struct rtioreq_profile, vms, n_vms,
				   &vm_entry, 1, CYAML_UNLIMITED),
	CYAML_FIELD_END
};
static const cyaml_schema_value_t top_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct rtioreq_profile, top_fields),
};

/*
 * libcyaml allocates through this; so may we (a normalised vcpus list), and cyaml_free()
 * frees. libcyaml grows a sequence one entry at a time (a realloc per entry): growing
 * geometrically here keeps a list of n entries at O(n) bytes copied instead of O(n^2)
 * wherever realloc cannot grow in place (under ASan, a 1 MiB profile of 15k cores took
 * over a minute).
 */
static void *profile_mem(void *ctx, void *ptr, size_t size)
{
	if (!size) {
		free(ptr);
		return NULL;
	}
	if (ptr && malloc_usable_size(ptr) >= size)
		return ptr;
	if (ptr && size < SIZE_MAX / 2)
		size += size / 2;
	return realloc(ptr, size);
}

/* ------------------------------------------------------------------------- */
/* Diagnostics and the position index */

struct pos {
	unsigned int line, column; /* 1-based; 0: unknown */
};

struct index_ent {
	char *path;
	struct pos key; /* the key of a mapping entry; the item itself for a list item */
	struct pos val;
};

/* A `params:` entry seen by pass 2, under the device at @owner ("vms[0].devices[1]"). */
struct param_ent {
	char *owner;
	struct rtioreq_profile_param p;
};

/*
 * Entries by path: an open-addressing hash table of indices into @ents (0: empty, else
 * index + 1), at most half full; a path given twice maps to its last entry.
 */
struct rtioreq__profile_index {
	rtioreq_profile_diag_fn fn;
	void *ctx;
	struct index_ent *ents;
	size_t n, cap;
	uint32_t *slots;
	size_t nslots; /* a power of two */
	struct param_ent *params;
	size_t n_params, cap_params;
};

/* Only the first PROFILE_MAX_DIAGS diagnostics of a load or a validation are shown. */
#define PROFILE_MAX_DIAGS 20u
/* Deepest nesting of collections accepted: the schema needs 6 (cores[].slots[].vcpus). */
#define PROFILE_MAX_DEPTH 32u

struct sink {
	rtioreq_profile_diag_fn fn;
	void *ctx;
	const char *file;
	bool quiet;
	unsigned int errors, warnings;
	unsigned int shown, dropped;
};

static void emit(struct sink *s, enum rtioreq_profile_severity sev, struct pos at,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void emit(struct sink *s, enum rtioreq_profile_severity sev, struct pos at,
		 const char *fmt, ...)
{
	char what[512], text[1024];
	const char *tag = sev == RTIOREQ_PROFILE_WARNING ? "warning: " : "";
	struct rtioreq_profile_diag d;
	va_list ap;

	if (sev == RTIOREQ_PROFILE_WARNING)
		s->warnings++;
	else
		s->errors++;
	if (s->quiet)
		return;
	if (s->shown >= PROFILE_MAX_DIAGS) {
		s->dropped++;
		return;
	}
	s->shown++;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (at.line)
		snprintf(text, sizeof(text), "%s:%u:%u: %s%s", s->file, at.line, at.column, tag,
			 what);
	else
		snprintf(text, sizeof(text), "%s: %s%s", s->file, tag, what);
	d = (struct rtioreq_profile_diag){ .severity = sev, .file = s->file, .line = at.line,
					   .column = at.column, .what = what, .text = text };
	if (s->fn)
		s->fn(s->ctx, &d);
	else
		fprintf(stderr, "%s\n", text);
}

/* After a load or a validation: how many diagnostics were not shown. */
static void sink_finish(struct sink *s)
{
	unsigned int n = s->dropped;
	struct rtioreq_profile_diag d;
	char what[128], text[1024];

	if (!n || s->quiet)
		return;
	s->dropped = 0;
	snprintf(what, sizeof(what), "... and %u more errors or warnings (the first %u are shown)",
		 n, PROFILE_MAX_DIAGS);
	snprintf(text, sizeof(text), "%s: %s", s->file, what);
	d = (struct rtioreq_profile_diag){ .severity = RTIOREQ_PROFILE_ERROR, .file = s->file,
					   .what = what, .text = text };
	if (s->fn)
		s->fn(s->ctx, &d);
	else
		fprintf(stderr, "%s\n", text);
}

static struct pos mark_pos(yaml_mark_t m)
{
	return (struct pos){ (unsigned int)m.line + 1, (unsigned int)m.column + 1 };
}

static void index_free(struct rtioreq__profile_index *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->n; i++)
		free(ix->ents[i].path);
	free(ix->ents);
	free(ix->slots);
	for (size_t i = 0; i < ix->n_params; i++) {
		free(ix->params[i].owner);
		free(ix->params[i].p.key);
		free(ix->params[i].p.value);
	}
	free(ix->params);
	free(ix);
}

static uint64_t path_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	while (*s)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return h;
}

/* The slot of @path: where its entry is, or the empty slot where it would go. */
static uint32_t *index_slot(const struct rtioreq__profile_index *ix, const char *path)
{
	size_t mask = ix->nslots - 1, i = (size_t)path_hash(path) & mask;

	while (ix->slots[i] && strcmp(ix->ents[ix->slots[i] - 1].path, path))
		i = (i + 1) & mask;
	return &ix->slots[i];
}

static int index_grow(struct rtioreq__profile_index *ix)
{
	size_t n = ix->nslots ? 2 * ix->nslots : 256;
	uint32_t *old = ix->slots;
	size_t nold = ix->nslots;

	if (ix->n >= UINT32_MAX / 2)
		return -ENOMEM;
	ix->slots = calloc(n, sizeof(*ix->slots));
	if (!ix->slots) {
		ix->slots = old;
		return -ENOMEM;
	}
	ix->nslots = n;
	for (size_t i = 0; i < nold; i++)
		if (old[i])
			*index_slot(ix, ix->ents[old[i] - 1].path) = old[i];
	free(old);
	return 0;
}

static int index_add(struct rtioreq__profile_index *ix, const char *path, struct pos key,
		     struct pos val)
{
	if (ix->n == ix->cap) {
		size_t cap = ix->cap ? 2 * ix->cap : 64;
		struct index_ent *e = realloc(ix->ents, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		ix->ents = e;
		ix->cap = cap;
	}
	ix->ents[ix->n].path = strdup(path);
	if (!ix->ents[ix->n].path)
		return -ENOMEM;
	ix->ents[ix->n].key = key;
	ix->ents[ix->n].val = val;
	ix->n++;
	if (2 * ix->n > ix->nslots && index_grow(ix))
		return -ENOMEM;
	/* The last entry wins: with duplicate keys, pass 2 already failed the load. */
	*index_slot(ix, path) = (uint32_t)ix->n;
	return 0;
}

static const struct index_ent *index_find(const struct rtioreq__profile_index *ix,
					  const char *path)
{
	uint32_t e;

	if (!ix->nslots)
		return NULL;
	e = *index_slot(ix, path);
	return e ? &ix->ents[e - 1] : NULL;
}

enum which { KEY, VAL };

/*
 * Position of the node at the path built from @fmt. A path not in the file (a key left
 * to its default) falls back to its closest ancestor that is, then to 1:1.
 */
static struct pos at(const struct rtioreq_profile *p, enum which w, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static struct pos at(const struct rtioreq_profile *p, enum which w, const char *fmt, ...)
{
	char path[256];
	const struct index_ent *e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	for (;;) {
		char *cut;

		e = index_find(p->index, path);
		if (e)
			return w == KEY ? e->key : e->val;
		cut = strrchr(path, '.');
		if (!cut || strrchr(path, '[') > cut)
			cut = strrchr(path, '[');
		if (!cut)
			return (struct pos){ 1, 1 };
		*cut = '\0';
		w = KEY; /* the ancestor's own position */
	}
}

static bool given(const struct rtioreq_profile *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool given(const struct rtioreq_profile *p, const char *fmt, ...)
{
	char path[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return index_find(p->index, path) != NULL;
}

/* ------------------------------------------------------------------------- */
/* Pass 2: the document against the schema */

struct walk {
	yaml_document_t *doc;
	struct rtioreq__profile_index *ix;
	struct sink *sink;
	int err; /* -ENOMEM */
};

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "a scalar";
	}
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* "one, two, three" */
static void strs_list(char *buf, size_t len, const cyaml_strval_t *s, uint32_t count)
{
	size_t off = 0;

	buf[0] = '\0';
	for (uint32_t i = 0; i < count && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", s[i].str);
}

static bool parse_int(const char *s, bool is_unsigned)
{
	char *end;

	if (!*s || (is_unsigned && strchr(s, '-')))
		return false;
	errno = 0;
	if (is_unsigned)
		(void)strtoull(s, &end, 0);
	else
		(void)strtoll(s, &end, 0);
	return !errno && end != s && !*end;
}

static bool parse_bool(const char *s)
{
	static const char *const words[] = { "true", "false", "yes", "no", "on", "off" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcasecmp(s, words[i]))
			return true;
	return false;
}

static bool enum_match(const cyaml_schema_value_t *v, const char *s)
{
	for (uint32_t i = 0; i < v->enumeration.count; i++)
		if (!strcmp(v->enumeration.strings[i].str, s))
			return true;
	return false;
}

static void walk_value(struct walk *w, const cyaml_schema_value_t *v, yaml_node_t *n,
		       char *path, size_t plen, const char *name);

static void walk_record(struct walk *w, const char *path, struct pos key, struct pos val)
{
	if (!w->err)
		w->err = index_add(w->ix, path, key, val);
}

static int param_add(struct rtioreq__profile_index *ix, const char *owner, const char *key,
		     const char *value, struct pos at)
{
	struct param_ent *e;

	if (ix->n_params == ix->cap_params) {
		size_t cap = ix->cap_params ? 2 * ix->cap_params : 16;

		e = realloc(ix->params, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		ix->params = e;
		ix->cap_params = cap;
	}
	e = &ix->params[ix->n_params];
	memset(e, 0, sizeof(*e)); /* the param's reserved tail reads zero (rtioreq/common.h) */
	e->owner = strdup(owner);
	e->p.key = strdup(key);
	e->p.value = strdup(value);
	e->p.line = at.line;
	e->p.column = at.column;
	if (!e->owner || !e->p.key || !e->p.value) {
		free(e->owner);
		free(e->p.key);
		free(e->p.value);
		return -ENOMEM;
	}
	ix->n_params++;
	return 0;
}

/*
 * A device's `params:`: free-form for the device model, but a mapping of scalars with
 * unique scalar keys, so that every value reaches the model as one string with its
 * position. @path is the params key's path; the owner is the device around it.
 */
static void walk_params(struct walk *w, yaml_node_t *n, const char *path)
{
	char owner[256];
	const char *dot = strrchr(path, '.');

	snprintf(owner, sizeof(owner), "%.*s", dot ? (int)(dot - path) : 0, path);
	if (n->type != YAML_MAPPING_NODE) {
		emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(n->start_mark),
		     "%s: expected a mapping of the device model's parameters (e.g. "
		     "{ irq: 5, bitrate: 500000 }), got %s", path, node_kind(n));
		return;
	}
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(w->doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(w->doc, pr->value);
		bool dup = false;

		if (!k || !v)
			continue;
		if (k->type != YAML_SCALAR_NODE || !scalar(k)[0]) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(k->start_mark),
			     "%s: a parameter name must be a word, not %s", path,
			     k->type == YAML_SCALAR_NODE ? "empty" : node_kind(k));
			continue;
		}
		if (v->type != YAML_SCALAR_NODE) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(v->start_mark),
			     "%s.%s: expected a scalar (a number or a word), got %s", path,
			     scalar(k), node_kind(v));
			continue;
		}
		for (size_t i = 0; i < w->ix->n_params && !dup; i++)
			dup = !strcmp(w->ix->params[i].owner, owner) &&
			      !strcmp(w->ix->params[i].p.key, scalar(k));
		if (dup) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(k->start_mark),
			     "duplicate key '%s' in %s", scalar(k), path);
			continue;
		}
		if (!w->err)
			w->err = param_add(w->ix, owner, scalar(k), scalar(v),
					   mark_pos(v->start_mark));
	}
}

static void walk_mapping(struct walk *w, const cyaml_schema_field_t *fields, yaml_node_t *n,
			 char *path, size_t plen, const char *name)
{
	size_t base = strlen(path);
	unsigned int nf = 0;

	bool seen[16] = { false }; /* no mapping of the schema has more keys */

	while (fields[nf].key && nf < sizeof(seen))
		nf++;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(w->doc, pr->key);
		yaml_node_t *val = yaml_document_get_node(w->doc, pr->value);
		unsigned int f;

		if (!k || !val)
			continue;
		if (k->type != YAML_SCALAR_NODE) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(k->start_mark),
			     "%s: a key must be a word, not %s", name, node_kind(k));
			continue;
		}
		for (f = 0; f < nf; f++)
			if (!strcmp(fields[f].key, scalar(k)))
				break;
		if (f == nf) {
			char keys[256];
			size_t off = 0;

			keys[0] = '\0';
			for (unsigned int i = 0; i < nf && off < sizeof(keys); i++)
				off += (size_t)snprintf(keys + off, sizeof(keys) - off, "%s%s",
							i ? ", " : "", fields[i].key);
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(k->start_mark),
			     "unknown key '%s' in %s (known: %s)", scalar(k), name, keys);
			continue;
		}
		if (seen[f]) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(k->start_mark),
			     "duplicate key '%s' in %s", fields[f].key, name);
			continue;
		}
		seen[f] = true;
		snprintf(path + base, plen - base, "%s%s", base ? "." : "", fields[f].key);
		walk_record(w, path, mark_pos(k->start_mark), mark_pos(val->start_mark));
		walk_value(w, &fields[f].value, val, path, plen, fields[f].key);
		path[base] = '\0';
	}
	for (unsigned int f = 0; f < nf; f++)
		if (!seen[f] && !(fields[f].value.flags & CYAML_FLAG_OPTIONAL))
			emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(n->start_mark),
			     "missing required key '%s' in %s", fields[f].key, name);
}

static void walk_value(struct walk *w, const cyaml_schema_value_t *v, yaml_node_t *n,
		       char *path, size_t plen, const char *name)
{
	struct pos p = mark_pos(n->start_mark);
	char words[128];
	const char *want = NULL;

	switch (v->type) {
	case CYAML_INT:
	case CYAML_UINT:
		if (n->type != YAML_SCALAR_NODE || !parse_int(scalar(n), v->type == CYAML_UINT))
			want = v->type == CYAML_UINT ? "a non-negative integer" : "an integer";
		break;
	case CYAML_BOOL:
		if (n->type != YAML_SCALAR_NODE || !parse_bool(scalar(n)))
			want = "true or false";
		break;
	case CYAML_STRING:
		if (n->type != YAML_SCALAR_NODE) {
			want = "a string";
		} else if (strlen(scalar(n)) < v->string.min || strlen(scalar(n)) > v->string.max) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, p,
			     "%s: '%s' must be %u to %u characters long", name, scalar(n),
			     v->string.min, v->string.max);
		}
		break;
	case CYAML_ENUM:
		if (n->type != YAML_SCALAR_NODE || !enum_match(v, scalar(n))) {
			strs_list(words, sizeof(words), v->enumeration.strings,
				  v->enumeration.count);
			if (n->type == YAML_SCALAR_NODE)
				emit(w->sink, RTIOREQ_PROFILE_ERROR, p,
				     "%s: '%s' is not one of: %s", name, scalar(n), words);
			else
				emit(w->sink, RTIOREQ_PROFILE_ERROR, p,
				     "%s: expected one of: %s, got %s", name, words, node_kind(n));
		}
		break;
	case CYAML_FLAGS:
		strs_list(words, sizeof(words), v->enumeration.strings, v->enumeration.count);
		if (n->type != YAML_SEQUENCE_NODE) {
			emit(w->sink, RTIOREQ_PROFILE_ERROR, p,
			     "%s: expected a list of: %s (e.g. [%s]), got %s", name, words,
			     v->enumeration.strings[0].str,
			     n->type == YAML_SCALAR_NODE ? scalar(n) : node_kind(n));
			break;
		}
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(w->doc, *it);

			if (e && (e->type != YAML_SCALAR_NODE || !enum_match(v, scalar(e))))
				emit(w->sink, RTIOREQ_PROFILE_ERROR, mark_pos(e->start_mark),
				     "%s: '%s' is not one of: %s", name,
				     e->type == YAML_SCALAR_NODE ? scalar(e) : node_kind(e), words);
		}
		break;
	case CYAML_IGNORE: /* only `params:` */
		walk_params(w, n, path);
		break;
	case CYAML_MAPPING:
		if (n->type != YAML_MAPPING_NODE) {
			want = "a mapping";
			break;
		}
		walk_mapping(w, v->mapping.fields, n, path, plen, path[0] ? path : "the profile");
		break;
	case CYAML_SEQUENCE: {
		size_t base = strlen(path);
		uint32_t count, i = 0;

		if (n->type != YAML_SEQUENCE_NODE) {
			want = "a list";
			break;
		}
		count = (uint32_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (count < v->sequence.min)
			emit(w->sink, RTIOREQ_PROFILE_ERROR, p, "%s: needs at least %u entr%s",
			     name, v->sequence.min, v->sequence.min == 1 ? "y" : "ies");
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++, i++) {
			yaml_node_t *e = yaml_document_get_node(w->doc, *it);

			if (!e)
				continue;
			snprintf(path + base, plen - base, "[%u]", i);
			walk_record(w, path, mark_pos(e->start_mark), mark_pos(e->start_mark));
			walk_value(w, v->sequence.entry, e, path, plen, path);
			path[base] = '\0';
		}
		break;
	}
	default:
		break;
	}
	if (want)
		emit(w->sink, RTIOREQ_PROFILE_ERROR, p, "%s: expected %s, got %s%s%s", name, want,
		     n->type == YAML_SCALAR_NODE ? "'" : "",
		     n->type == YAML_SCALAR_NODE ? scalar(n) : node_kind(n),
		     n->type == YAML_SCALAR_NODE ? "'" : "");
}

/* ------------------------------------------------------------------------- */
/* Loading */

/*
 * The whole file, NUL-terminated, or NULL with errno. Only a regular file is read: a FIFO
 * without a writer would block forever (hence O_NONBLOCK on open), a directory reads as
 * EISDIR; @why gets the reason for those, NULL for a plain errno.
 */
static char *read_file(const char *path, size_t *len, const char **why)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), e;
	struct stat st;
	char *buf = NULL;
	size_t n = 0;

	*why = NULL;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st)) {
		e = errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = S_ISDIR(st.st_mode)	? "is a directory"
		       : S_ISFIFO(st.st_mode) ? "not a regular file (a FIFO)"
		       : S_ISCHR(st.st_mode)	? "not a regular file (a character device)"
		       : S_ISBLK(st.st_mode)	? "not a regular file (a block device)"
		       : S_ISSOCK(st.st_mode)	? "not a regular file (a socket)"
						: "not a regular file";
		e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		goto fail;
	}
	if (st.st_size > RTIOREQ_PROFILE_MAX_BYTES) {
		e = EFBIG;
		goto fail;
	}
	buf = malloc(RTIOREQ_PROFILE_MAX_BYTES + 1);
	if (!buf) {
		e = ENOMEM;
		goto fail;
	}
	/* read to the end, not st_size: the file may grow; more than the cap is refused */
	for (;;) {
		ssize_t r = read(fd, buf + n, RTIOREQ_PROFILE_MAX_BYTES + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			goto fail;
		}
		if (!r)
			break;
		n += (size_t)r;
		if (n > RTIOREQ_PROFILE_MAX_BYTES) {
			e = EFBIG;
			goto fail;
		}
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	free(buf);
	close(fd);
	errno = e;
	return NULL;
}

/*
 * Line and column (1-based, in characters as libyaml counts them) of byte @off of the
 * input, for reader errors: libyaml gives their byte offset (problem_offset), and
 * problem_mark stays 0:0. Line breaks: LF, CR LF, CR.
 */
/* The code unit (byte, or UTF-16 unit) at byte @i. */
static unsigned int unit_at(const unsigned char *buf, size_t i, size_t step, yaml_encoding_t enc)
{
	if (step == 1)
		return buf[i];
	return enc == YAML_UTF16LE_ENCODING ? buf[i] | buf[i + 1] << 8 : buf[i] << 8 | buf[i + 1];
}

static struct pos offset_pos(const unsigned char *buf, size_t len, size_t off,
			     yaml_encoding_t enc)
{
	struct pos p = { 1, 1 };
	size_t step = enc == YAML_UTF16LE_ENCODING || enc == YAML_UTF16BE_ENCODING ? 2 : 1;
	size_t i = 0;

	if (off > len)
		off = len;
	if (step == 2 && len >= 2 && ((buf[0] == 0xff && buf[1] == 0xfe) ||
				      (buf[0] == 0xfe && buf[1] == 0xff)))
		i = 2; /* BOM */
	else if (step == 1 && len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		i = 3;
	for (; i + step <= off; i += step) {
		unsigned int c = unit_at(buf, i, step, enc);
		unsigned int next = i + 2 * step <= len ? unit_at(buf, i + step, step, enc) : 0;

		if (c == '\n' || (c == '\r' && next != '\n')) {
			p.line++;
			p.column = 1;
		} else if (c == '\r') {
			/* the LF of CR LF breaks the line */
		} else if (step == 1 ? (c & 0xc0) != 0x80 : (c & 0xfc00) != 0xdc00) {
			p.column++; /* not a UTF-8 continuation byte or a low surrogate */
		}
	}
	return p;
}

/* A failed libyaml parser's error, at its position. Return -EINVAL or -ENOMEM. */
static int parser_error(yaml_parser_t *ps, const char *buf, size_t len, struct sink *sink)
{
	if (ps->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (ps->error == YAML_READER_ERROR) {
		struct pos at = offset_pos((const unsigned char *)buf, len, ps->problem_offset,
					   ps->encoding);
		const char *what = ps->problem ? ps->problem : "?";

		if (ps->problem_value == 0 && strstr(what, "control characters"))
			emit(sink, RTIOREQ_PROFILE_ERROR, at, "a NUL byte: not allowed in YAML");
		else if (ps->problem_value >= 0)
			emit(sink, RTIOREQ_PROFILE_ERROR, at, "%s (%#x)", what,
			     (unsigned int)ps->problem_value);
		else
			emit(sink, RTIOREQ_PROFILE_ERROR, at, "%s", what);
		return -EINVAL;
	}
	emit(sink, RTIOREQ_PROFILE_ERROR, mark_pos(ps->problem_mark), "YAML syntax error: %s%s%s",
	     ps->problem ? ps->problem : "?", ps->context ? " " : "",
	     ps->context ? ps->context : "");
	return -EINVAL;
}

/*
 * Pass 0: libyaml's scanner alone. Stops at the first alias, at the first collection
 * deeper than PROFILE_MAX_DEPTH, at a NUL in a scalar and at any scanner or reader error.
 * The scanner looks ahead at most 1024 characters for a simple key, so what it does
 * before we stop is bounded by that, not by the input. Return 0, -EINVAL or -ENOMEM.
 */
static int profile_prescan(const char *buf, size_t len, struct sink *sink)
{
	yaml_parser_t ps;
	yaml_token_t tok;
	unsigned int depth = 0;
	int r = 0;
	bool end = false;

	if (!yaml_parser_initialize(&ps))
		return -ENOMEM;
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	while (!r && !end) {
		if (!yaml_parser_scan(&ps, &tok)) {
			r = parser_error(&ps, buf, len, sink);
			break;
		}
		switch (tok.type) {
		case YAML_STREAM_END_TOKEN:
			end = true;
			break;
		case YAML_ALIAS_TOKEN:
			emit(sink, RTIOREQ_PROFILE_ERROR, mark_pos(tok.start_mark),
			     "YAML alias '*%.64s': aliases are not allowed in profiles (write the "
			     "value out)",
			     (const char *)tok.data.alias.value);
			r = -EINVAL;
			break;
		case YAML_BLOCK_SEQUENCE_START_TOKEN:
		case YAML_BLOCK_MAPPING_START_TOKEN:
		case YAML_FLOW_SEQUENCE_START_TOKEN:
		case YAML_FLOW_MAPPING_START_TOKEN:
			if (++depth > PROFILE_MAX_DEPTH) {
				emit(sink, RTIOREQ_PROFILE_ERROR, mark_pos(tok.start_mark),
				     "nesting deeper than %u levels", PROFILE_MAX_DEPTH);
				r = -EINVAL;
			}
			break;
		case YAML_BLOCK_END_TOKEN:
		case YAML_FLOW_SEQUENCE_END_TOKEN:
		case YAML_FLOW_MAPPING_END_TOKEN:
			if (depth)
				depth--;
			break;
		case YAML_SCALAR_TOKEN:
			if (memchr(tok.data.scalar.value, 0, tok.data.scalar.length)) {
				emit(sink, RTIOREQ_PROFILE_ERROR, mark_pos(tok.start_mark),
				     "a NUL character (\\0) in a string is not allowed");
				r = -EINVAL;
			}
			break;
		default:
			break;
		}
		yaml_token_delete(&tok);
	}
	yaml_parser_delete(&ps);
	return r;
}

/* libcyaml's log, kept to report an error pass 2 did not foresee. */
struct cylog {
	char buf[2048];
	size_t len;
};

static void cyaml_log_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
	struct cylog *l = ctx;
	int n;

	if (l->len >= sizeof(l->buf) - 1)
		return;
	n = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmt, args);
	if (n > 0)
		l->len += (size_t)n < sizeof(l->buf) - l->len ? (size_t)n
							      : sizeof(l->buf) - 1 - l->len;
}

/*
 * rtioreq__profile_cyaml_report() - turn libcyaml's log of a failed load into one
 * diagnostic: its first line (less the "Load: " prefix), at the innermost position of its
 * backtrace ("  in mapping field 'x' (line: L, column: C)", libcyaml >= 1.2), or 1:1.
 * Writes "what" into @what and the position into @line/@column.
 */
void rtioreq__profile_cyaml_report(const char *log, cyaml_err_t err, char *what, size_t len,
				   unsigned int *line, unsigned int *column);

void rtioreq__profile_cyaml_report(const char *log, cyaml_err_t err, char *what, size_t len,
				   unsigned int *line, unsigned int *column)
{
	const char *s = log, *nl, *pos;
	size_t n;

	if (!strncmp(s, "Load: ", 6))
		s += 6;
	nl = strchr(s, '\n');
	n = nl ? (size_t)(nl - s) : strlen(s);
	if (!n)
		snprintf(what, len, "libcyaml: %s", cyaml_strerror(err));
	else
		snprintf(what, len, "libcyaml: %.*s", (int)n, s);
	*line = 1;
	*column = 1;
	pos = strstr(log, "(line: ");
	if (pos && sscanf(pos, "(line: %u, column: %u)", line, column) != 2) {
		*line = 1;
		*column = 1;
	}
}

/*
 * Move the `params:` entries pass 2 kept into their devices (the index keeps nothing:
 * the strings change owner). Paths are "vms[i].devices[j]", as walk_value() builds them.
 */
static int params_attach(struct rtioreq_profile *p)
{
	struct rtioreq__profile_index *ix = p->index;

	for (size_t i = 0; i < ix->n_params; i++) {
		struct param_ent *e = &ix->params[i];
		struct rtioreq_profile_device *d;
		struct rtioreq_profile_param *np;
		unsigned int v, k;
		int end = 0;

		if (sscanf(e->owner, "vms[%u].devices[%u]%n", &v, &k, &end) != 2 ||
		    e->owner[end] || v >= p->n_vms || k >= p->vms[v].n_devices)
			continue; /* cannot happen: pass 2 and libcyaml agree on the shape */
		d = &p->vms[v].devices[k];
		np = realloc(d->params, (d->n_params + 1) * sizeof(*np));
		if (!np)
			return -ENOMEM;
		d->params = np;
		d->params[d->n_params++] = e->p;
		e->p.key = e->p.value = NULL;
	}
	return 0;
}

static void params_free(struct rtioreq_profile *p)
{
	for (unsigned int v = 0; p->vms && v < p->n_vms; v++)
		for (unsigned int k = 0; p->vms[v].devices && k < p->vms[v].n_devices; k++) {
			struct rtioreq_profile_device *d = &p->vms[v].devices[k];

			for (unsigned int i = 0; i < d->n_params; i++) {
				free(d->params[i].key);
				free(d->params[i].value);
			}
			free(d->params);
			d->params = NULL;
			d->n_params = 0;
		}
}

const char *rtioreq_profile_param(const struct rtioreq_profile_device *dev, const char *key)
{
	for (unsigned int i = 0; dev && key && i < dev->n_params; i++)
		if (!strcmp(dev->params[i].key, key))
			return dev->params[i].value;
	return NULL;
}

/* Defaults that are not zero, and the `vcpu: N` form turned into a one-entry list. */
static int profile_normalise(struct rtioreq_profile *p)
{
	for (unsigned int i = 0; i < p->n_cores; i++) {
		struct rtioreq_profile_core *c = &p->cores[i];

		if (c->idle == RTIOREQ_PROFILE_IDLE_HYBRID && !given(p, "cores[%u].spin_us", i))
			c->spin_us = RTIOREQ_PROFILE_SPIN_US_DEFAULT;
		for (unsigned int j = 0; j < c->n_slots; j++) {
			struct rtioreq_profile_slot *s = &c->slots[j];

			if (s->vcpus || !given(p, "cores[%u].slots[%u].vcpu", i, j))
				continue;
			s->vcpus = profile_mem(NULL, NULL, sizeof(*s->vcpus));
			if (!s->vcpus)
				return -ENOMEM;
			s->vcpus[0] = s->vcpu;
			s->n_vcpus = 1;
		}
	}
	for (unsigned int i = 0; i < p->n_vms; i++) {
		struct rtioreq_profile_vm *vm = &p->vms[i];

		if (!given(p, "vms[%u].completion_polling", i))
			vm->completion_polling = true;
		for (unsigned int j = 0; j < vm->n_devices; j++)
			if (!vm->devices[j].client[0])
				memcpy(vm->devices[j].client, vm->devices[j].name,
				       sizeof(vm->devices[j].client));
	}
	return params_attach(p);
}

static const cyaml_config_t *cyaml_cfg(struct cylog *log, cyaml_config_t *cfg)
{
	*cfg = (cyaml_config_t){
		.log_fn = cyaml_log_capture,
		.log_ctx = log,
		.mem_fn = profile_mem,
		.log_level = CYAML_LOG_WARNING,
		.flags = CYAML_CFG_DEFAULT,
	};
	return cfg;
}

void rtioreq_profile_free(struct rtioreq_profile *p)
{
	cyaml_config_t cfg;
	struct cylog log = { .len = 0 };

	if (!p)
		return;
	params_free(p); /* not in the schema: libcyaml does not know them */
	free(p->path);
	index_free(p->index);
	p->path = NULL;
	p->index = NULL;
	cyaml_free(cyaml_cfg(&log, &cfg), &top_schema, p, 0);
}

/* Passes 1 and 2. Return 0, -EINVAL (reported) or -ENOMEM. */
static int profile_scan(const char *buf, size_t len, struct rtioreq__profile_index *ix,
			struct sink *sink)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root;
	char path[256] = "";
	struct walk w = { .doc = &doc, .ix = ix, .sink = sink };
	int r = 0;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = parser_error(&parser, buf, len, sink);
		yaml_parser_delete(&parser);
		return r;
	}
	root = yaml_document_get_root_node(&doc);
	if (!root || (root->type == YAML_SCALAR_NODE && !root->data.scalar.length)) {
		emit(sink, RTIOREQ_PROFILE_ERROR, (struct pos){ 1, 1 },
		     "empty profile: expected a mapping with the keys cores and vms");
		r = -EINVAL;
		goto out;
	}
	if (yaml_parser_load(&parser, &extra)) {
		yaml_node_t *second = yaml_document_get_root_node(&extra);

		if (second)
			emit(sink, RTIOREQ_PROFILE_ERROR, mark_pos(extra.start_mark),
			     "a profile is one YAML document; a second one starts here");
		yaml_document_delete(&extra);
		if (second) {
			r = -EINVAL;
			goto out;
		}
	} else {
		r = parser_error(&parser, buf, len, sink);
		goto out;
	}
	walk_value(&w, &top_schema, root, path, sizeof(path), "the profile");
	r = w.err ? w.err : sink->errors ? -EINVAL : 0;
out:
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return r;
}

struct rtioreq_profile *rtioreq__profile_load_buffer(const char *path, const char *buf,
						      size_t len, rtioreq_profile_diag_fn diag,
						      void *ctx)
{
	struct sink sink = { .fn = diag, .ctx = ctx, .file = path };
	struct rtioreq__profile_index *ix;
	struct rtioreq_profile *p = NULL;
	struct cylog log = { .len = 0 };
	cyaml_config_t cfg;
	cyaml_err_t cerr;
	int r;

	if (!path || (!buf && len)) {
		errno = EINVAL;
		return NULL;
	}
	if (len > RTIOREQ_PROFILE_MAX_BYTES) {
		emit(&sink, RTIOREQ_PROFILE_ERROR, (struct pos){ 0, 0 },
		     "cannot read: larger than 1 MiB");
		errno = EFBIG;
		return NULL;
	}
	ix = calloc(1, sizeof(*ix));
	if (!ix) {
		errno = ENOMEM;
		return NULL;
	}
	ix->fn = diag;
	ix->ctx = ctx;
	r = profile_prescan(buf ? buf : "", len, &sink);
	if (!r)
		r = profile_scan(buf ? buf : "", len, ix, &sink);
	if (r)
		goto fail;
	cerr = cyaml_load_data((const uint8_t *)buf, len, cyaml_cfg(&log, &cfg), &top_schema,
			       (cyaml_data_t **)&p, NULL);
	if (cerr != CYAML_OK || !p) {
		char what[512];
		unsigned int line, column;

		if (cerr == CYAML_ERR_OOM) {
			r = -ENOMEM;
			goto fail;
		}
		rtioreq__profile_cyaml_report(log.buf, cerr, what, sizeof(what), &line, &column);
		emit(&sink, RTIOREQ_PROFILE_ERROR, (struct pos){ line, column }, "%s", what);
		r = -EINVAL;
		goto fail;
	}
	p->index = ix;
	ix = NULL;
	p->path = strdup(path);
	if (!p->path || profile_normalise(p)) {
		r = -ENOMEM;
		goto fail;
	}
	return p;
fail:
	sink_finish(&sink);
	rtioreq_profile_free(p);
	index_free(ix);
	errno = -r;
	return NULL;
}

struct rtioreq_profile *rtioreq_profile_load(const char *path, rtioreq_profile_diag_fn diag,
					     void *ctx)
{
	struct sink sink = { .fn = diag, .ctx = ctx, .file = path };
	struct rtioreq_profile *p;
	const char *why;
	size_t len = 0;
	char *buf;
	int e;

	if (!path) {
		errno = EINVAL;
		return NULL;
	}
	buf = read_file(path, &len, &why);
	if (!buf) {
		e = errno;
		emit(&sink, RTIOREQ_PROFILE_ERROR, (struct pos){ 0, 0 }, "cannot read: %s",
		     why ? why : e == EFBIG ? "larger than 1 MiB" : strerror(e));
		errno = e;
		return NULL;
	}
	p = rtioreq__profile_load_buffer(path, buf, len, diag, ctx);
	e = errno;
	free(buf);
	errno = e;
	return p;
}

/* ------------------------------------------------------------------------- */
/* Validation */

static const char *const policy_names[] = { "other", "fifo", "rr" };
static const char *const idle_names[] = { "spin", "hybrid" };
static const char *const range_names[] = { "pio", "mmio" };

const char *rtioreq_profile_policy_name(enum rtioreq_profile_policy policy)
{
	return (unsigned int)policy < 3 ? policy_names[policy] : "?";
}

/* /sys/devices/system/cpu/online: "0-3,6,8-11". Return 0 or -errno. */
static int online_cpus(cpu_set_t *set)
{
	FILE *f = fopen("/sys/devices/system/cpu/online", "r");
	char line[4096], *s, *end;

	CPU_ZERO(set);
	if (!f || !fgets(line, sizeof(line), f)) {
		if (f)
			fclose(f);
		return sched_getaffinity(0, sizeof(*set), set) ? -errno : 0;
	}
	fclose(f);
	for (s = line; *s && *s != '\n';) {
		unsigned long a = strtoul(s, &end, 10), b = a;

		if (end == s)
			return -EINVAL;
		if (*end == '-')
			b = strtoul(end + 1, &end, 10);
		for (unsigned long c = a; c <= b && c < CPU_SETSIZE; c++)
			CPU_SET(c, set);
		s = *end == ',' ? end + 1 : end;
	}
	return 0;
}

static void cpus_str(char *buf, size_t len, const cpu_set_t *set)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int c = 0; c < CPU_SETSIZE && off < len; c++) {
		int e = c;

		if (!CPU_ISSET(c, set))
			continue;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
			e++;
		if (e == c)
			off += (size_t)snprintf(buf + off, len - off, "%s%d", off ? "," : "", c);
		else
			off += (size_t)snprintf(buf + off, len - off, "%s%d-%d", off ? "," : "", c,
						e);
		c = e;
	}
}

/*
 * What validation looks up, built once so that every check is O(1) or O(log n) per
 * entry (a 1 MiB profile holds some 50k ranges or VMs): the first VM of each id, the
 * first core of each CPU.
 */
struct lookup {
	int32_t vm_of_id[UINT16_MAX + 1]; /* index in p->vms, or -1 */
	int32_t core_of_cpu[CPU_SETSIZE]; /* index in p->cores, or -1 */
};

static int vm_find(const struct lookup *lk, int64_t id)
{
	return id < 0 || id > UINT16_MAX ? -1 : lk->vm_of_id[id];
}

/* Devices of a VM in name order, ties in file order (qsort has no context argument). */
struct dev_ref {
	const char *name;
	unsigned int idx;
};

static int dev_cmp(const void *a, const void *b)
{
	const struct dev_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* A range of a VM, for the overlap sweep: sorted by type, start, then file order. */
struct range_ref {
	const struct rtioreq_profile_range *rg;
	unsigned int dev, idx, order;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range_ref *x = a, *y = b;

	if (x->rg->type != y->rg->type)
		return x->rg->type < y->rg->type ? -1 : 1;
	if (x->rg->start != y->rg->start)
		return x->rg->start < y->rg->start ? -1 : 1;
	return (x->order > y->order) - (x->order < y->order);
}

/*
 * Overlaps among the valid ranges of one VM, one report per range at the later of the
 * two in file order, naming the earlier: a sweep in start order that keeps the range
 * reaching furthest. Every range that starts inside an earlier-starting one is found
 * (that one, or one reaching further, overlaps it). Return 0 or -ENOMEM.
 */
static int check_overlaps(const struct rtioreq_profile *p, unsigned int i, struct sink *s)
{
	const struct rtioreq_profile_vm *vm = &p->vms[i];
	struct range_ref *refs, reach = { 0 };
	int32_t *with; /* by file order: the range it overlaps, or -1 */
	size_t n = 0, total = 0;
	bool have = false;

	for (unsigned int d = 0; d < vm->n_devices; d++)
		total += vm->devices[d].n_ranges;
	if (total < 2)
		return 0;
	refs = calloc(total, sizeof(*refs));
	with = malloc(total * sizeof(*with));
	if (!refs || !with) {
		free(refs);
		free(with);
		return -ENOMEM;
	}
	for (unsigned int d = 0; d < vm->n_devices; d++)
		for (unsigned int r = 0; r < vm->devices[d].n_ranges; r++) {
			const struct rtioreq_profile_range *rg = &vm->devices[d].ranges[r];

			with[n] = -1;
			refs[n] = (struct range_ref){ rg, d, r, (unsigned int)n };
			n++;
		}
	{
		/* compact the valid ones (the others got their own error) */
		size_t m = 0;

		for (size_t k = 0; k < n; k++)
			if (refs[k].rg->start <= refs[k].rg->end &&
			    (refs[k].rg->type != RTIOREQ_PROFILE_PIO || refs[k].rg->end <= 0xffff))
				refs[m++] = refs[k];
		n = m;
	}
	qsort(refs, n, sizeof(*refs), range_cmp);
	for (size_t k = 0; k < n; k++) {
		const struct range_ref *x = &refs[k];

		if (have && reach.rg->type == x->rg->type && reach.rg->end >= x->rg->start) {
			const struct range_ref *late = x->order > reach.order ? x : &reach;
			const struct range_ref *early = late == x ? &reach : x;

			if (with[late->order] < 0)
				with[late->order] = (int32_t)early->order;
		}
		if (!have || reach.rg->type != x->rg->type || x->rg->end > reach.rg->end) {
			reach = *x;
			have = true;
		}
	}
	/* report in file order */
	{
		struct range_ref *by_order = calloc(total, sizeof(*by_order));

		if (!by_order) {
			free(refs);
			free(with);
			return -ENOMEM;
		}
		for (size_t k = 0; k < n; k++)
			by_order[refs[k].order] = refs[k];
		for (size_t k = 0; k < total; k++) {
			const struct range_ref *x = &by_order[k], *o;

			if (with[k] < 0)
				continue;
			o = &by_order[with[k]];
			emit(s, RTIOREQ_PROFILE_ERROR,
			     at(p, KEY, "vms[%u].devices[%u].ranges[%u]", i, x->dev, x->idx),
			     "%s range 0x%" PRIx64 "..0x%" PRIx64 " overlaps 0x%" PRIx64
			     "..0x%" PRIx64 " of device '%s' (line %u)",
			     range_names[x->rg->type], x->rg->start, x->rg->end, o->rg->start,
			     o->rg->end, vm->devices[o->dev].name,
			     at(p, KEY, "vms[%u].devices[%u].ranges[%u]", i, o->dev, o->idx).line);
		}
		free(by_order);
	}
	free(refs);
	free(with);
	return 0;
}

/* Duplicate device names of VM @i: sorted by name, each against the first of its run. */
static int check_dev_names(const struct rtioreq_profile *p, unsigned int i, struct sink *s)
{
	const struct rtioreq_profile_vm *vm = &p->vms[i];
	unsigned int n = vm->n_devices, *first;
	struct dev_ref *order;

	if (n < 2)
		return 0;
	order = malloc(n * sizeof(*order));
	first = malloc(n * sizeof(*first));
	if (!order || !first) {
		free(order);
		free(first);
		return -ENOMEM;
	}
	for (unsigned int d = 0; d < n; d++)
		order[d] = (struct dev_ref){ vm->devices[d].name, d };
	qsort(order, n, sizeof(*order), dev_cmp);
	for (unsigned int k = 0, head = 0; k < n; k++) {
		if (k && strcmp(order[k].name, order[k - 1].name))
			head = k;
		first[order[k].idx] = order[head].idx;
	}
	for (unsigned int d = 0; d < n; d++)
		if (first[d] != d)
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "vms[%u].devices[%u].name", i, d),
			     "duplicate device name '%s' in VM %" PRId64 " (first at line %u)",
			     vm->devices[d].name, vm->id,
			     at(p, VAL, "vms[%u].devices[%u].name", i, first[d]).line);
	free(order);
	free(first);
	return 0;
}

static int check_vms(const struct rtioreq_profile *p, struct lookup *lk, struct sink *s)
{
	int r = 0;

	if (p->n_vms > RTIOREQ_MAX_VMS)
		emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "vms[%u]", RTIOREQ_MAX_VMS),
		     "%u VMs: at most %u are supported", p->n_vms, RTIOREQ_MAX_VMS);
	for (unsigned int i = 0; i < p->n_vms; i++) {
		const struct rtioreq_profile_vm *vm = &p->vms[i];

		if (vm->id < 0 || vm->id > UINT16_MAX) {
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "vms[%u].id", i),
			     "VM id %" PRId64 " out of range 0..65535", vm->id);
		} else if (lk->vm_of_id[vm->id] >= 0) {
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "vms[%u].id", i),
			     "duplicate VM id %" PRId64 " (first at line %u)", vm->id,
			     at(p, VAL, "vms[%u].id", lk->vm_of_id[vm->id]).line);
		} else {
			lk->vm_of_id[vm->id] = (int32_t)i;
		}
		if (vm->vcpus < 1 || vm->vcpus > RTIOREQ_IO_REQUEST_MAX)
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "vms[%u].vcpus", i),
			     "vcpus %" PRId64 " out of range 1..%u", vm->vcpus,
			     RTIOREQ_IO_REQUEST_MAX);
		r = check_dev_names(p, i, s);
		if (r)
			break;
		for (unsigned int d = 0; d < vm->n_devices; d++) {
			const struct rtioreq_profile_device *dev = &vm->devices[d];

			for (unsigned int k = 0; k < dev->n_ranges; k++) {
				const struct rtioreq_profile_range *rg = &dev->ranges[k];
				const char *t = range_names[rg->type];

				struct pos end = at(p, VAL, "vms[%u].devices[%u].ranges[%u].end",
						    i, d, k);

				if (rg->start > rg->end)
					emit(s, RTIOREQ_PROFILE_ERROR, end,
					     "%s range start 0x%" PRIx64 " is above its end "
					     "0x%" PRIx64, t, rg->start, rg->end);
				else if (rg->type == RTIOREQ_PROFILE_PIO && rg->end > 0xffff)
					emit(s, RTIOREQ_PROFILE_ERROR, end,
					     "pio range end 0x%" PRIx64 " is above port 0xffff",
					     rg->end);
			}
		}
		r = check_overlaps(p, i, s);
		if (r)
			break;
	}
	return r;
}

struct slot_owner {
	bool taken;
	unsigned int core, slot, item;
};

static void check_cores(const struct rtioreq_profile *p, bool host_check, const cpu_set_t *online,
			struct lookup *lk, struct sink *s)
{
	struct slot_owner(*owner)[RTIOREQ_IO_REQUEST_MAX] =
		calloc(p->n_vms ? p->n_vms : 1, sizeof(*owner));
	int dispatcher = -1, clients = -1;
	char cpus[256];

	cpus_str(cpus, sizeof(cpus), online);
	for (unsigned int i = 0; i < p->n_cores; i++) {
		const struct rtioreq_profile_core *c = &p->cores[i];
		bool poller = c->roles & RTIOREQ_PROFILE_ROLE_POLLER;

		if (c->cpu < 0 || c->cpu >= CPU_SETSIZE) {
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].cpu", i),
			     "cpu %" PRId64 " out of range 0..%d", c->cpu, CPU_SETSIZE - 1);
		} else if (!CPU_ISSET((int)c->cpu, online)) {
			emit(s, host_check ? RTIOREQ_PROFILE_ERROR : RTIOREQ_PROFILE_WARNING,
			     at(p, VAL, "cores[%u].cpu", i),
			     "CPU %" PRId64 " is not online on this host (online: %s)", c->cpu,
			     cpus);
		}
		if (c->cpu >= 0 && c->cpu < CPU_SETSIZE) {
			int32_t *first = &lk->core_of_cpu[c->cpu];

			if (*first >= 0)
				emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].cpu", i),
				     "duplicate cpu %" PRId64
				     " (first at line %u): give one entry with all its roles",
				     c->cpu, at(p, VAL, "cores[%d].cpu", *first).line);
			else
				*first = (int32_t)i;
		}

		/* Roles */
		if (!c->roles)
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].role", i),
			     "role is empty: give poller, dispatcher and/or clients");
		if (poller && (c->roles & RTIOREQ_PROFILE_ROLE_DISPATCHER))
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].role", i),
			     "CPU %" PRId64 " is both a poller and the fallback dispatcher: "
			     "the poller would starve it",
			     c->cpu);
		else if (poller && (c->roles & RTIOREQ_PROFILE_ROLE_CLIENTS) &&
			 c->idle == RTIOREQ_PROFILE_IDLE_SPIN)
			emit(s, RTIOREQ_PROFILE_WARNING, at(p, VAL, "cores[%u].role", i),
			     "client threads share CPU %" PRId64
			     " with a spinning poller: they run only when it yields",
			     c->cpu);
		if (c->roles & RTIOREQ_PROFILE_ROLE_DISPATCHER) {
			if (dispatcher >= 0)
				emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].role", i),
				     "a second dispatcher core (first at line %u): there is one "
				     "fallback dispatcher",
				     at(p, VAL, "cores[%d].role", dispatcher).line);
			else
				dispatcher = (int)i;
		}
		if (c->roles & RTIOREQ_PROFILE_ROLE_CLIENTS) {
			if (clients >= 0)
				emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].role", i),
				     "a second clients core (first at line %u)",
				     at(p, VAL, "cores[%d].role", clients).line);
			else
				clients = (int)i;
		}

		/* Scheduling */
		if (c->policy == RTIOREQ_PROFILE_OTHER) {
			if (c->priority)
				emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].priority", i),
				     "priority %" PRId64 " with policy other: must be 0 "
				     "(use fifo or rr for 1..99)",
				     c->priority);
		} else if (!given(p, "cores[%u].priority", i)) {
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].policy", i),
			     "policy %s needs a priority in 1..99", policy_names[c->policy]);
		} else if (c->priority < 1 || c->priority > 99) {
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].priority", i),
			     "priority %" PRId64 " out of range 1..99", c->priority);
		}

		/* Idle strategy */
		if (!poller && given(p, "cores[%u].idle", i))
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, KEY, "cores[%u].idle", i),
			     "idle is only valid on a poller core");
		if (given(p, "cores[%u].spin_us", i)) {
			if (c->idle != RTIOREQ_PROFILE_IDLE_HYBRID)
				emit(s, RTIOREQ_PROFILE_ERROR, at(p, KEY, "cores[%u].spin_us", i),
				     "spin_us is only valid with idle: hybrid (idle is %s)",
				     idle_names[c->idle]);
			else if (c->spin_us < 1 || c->spin_us > RTIOREQ_PROFILE_SPIN_US_MAX)
				emit(s, RTIOREQ_PROFILE_ERROR, at(p, VAL, "cores[%u].spin_us", i),
				     "spin_us %" PRIu64 " out of range 1..%u", c->spin_us,
				     RTIOREQ_PROFILE_SPIN_US_MAX);
		}

		/* Slots */
		if (c->n_slots && !poller)
			emit(s, RTIOREQ_PROFILE_ERROR, at(p, KEY, "cores[%u].slots", i),
			     "slots given on CPU %" PRId64 ", which is not a poller", c->cpu);
		else if (poller && !c->n_slots)
			emit(s, RTIOREQ_PROFILE_WARNING, at(p, VAL, "cores[%u].role", i),
			     "poller on CPU %" PRId64 " polls no slot", c->cpu);
		for (unsigned int j = 0; j < c->n_slots; j++) {
			const struct rtioreq_profile_slot *sl = &c->slots[j];
			bool one = given(p, "cores[%u].slots[%u].vcpu", i, j);
			bool list = given(p, "cores[%u].slots[%u].vcpus", i, j);
			int v = vm_find(lk, sl->vm);

			if (one == list) {
				emit(s, RTIOREQ_PROFILE_ERROR,
				     at(p, KEY, "cores[%u].slots[%u]", i, j),
				     one ? "give vcpu or vcpus, not both"
					 : "missing vcpu (one vCPU) or vcpus (a list)");
				continue;
			}
			if (list && !sl->n_vcpus)
				emit(s, RTIOREQ_PROFILE_ERROR,
				     at(p, VAL, "cores[%u].slots[%u].vcpus", i, j),
				     "vcpus is an empty list");
			if (v < 0) {
				emit(s, RTIOREQ_PROFILE_ERROR,
				     at(p, VAL, "cores[%u].slots[%u].vm", i, j),
				     "slot names unknown VM %" PRId64 " (not under vms)", sl->vm);
				continue;
			}
			for (unsigned int k = 0; k < sl->n_vcpus; k++) {
				int64_t vcpu = sl->vcpus[k];
				int64_t n = p->vms[v].vcpus;
				struct pos vp = list ? at(p, VAL, "cores[%u].slots[%u].vcpus[%u]", i,
							  j, k)
						     : at(p, VAL, "cores[%u].slots[%u].vcpu", i, j);
				struct slot_owner *o;

				if (vcpu < 0 || vcpu >= n) {
					emit(s, RTIOREQ_PROFILE_ERROR, vp,
					     "vCPU %" PRId64 " out of range: VM %" PRId64
					     " has %" PRId64 " vCPU%s (0..%" PRId64 ")",
					     vcpu, sl->vm, n, n == 1 ? "" : "s", n - 1);
					continue;
				}
				if (!owner || vcpu >= RTIOREQ_IO_REQUEST_MAX)
					continue;
				o = &owner[v][vcpu];
				if (o->taken) {
					const struct rtioreq_profile_core *oc = &p->cores[o->core];

					emit(s, RTIOREQ_PROFILE_ERROR, vp,
					     "slot VM %" PRId64 " vCPU %" PRId64
					     " is already polled by CPU %" PRId64 " (line %u)",
					     sl->vm, vcpu, oc->cpu,
					     given(p, "cores[%u].slots[%u].vcpus", o->core, o->slot)
						     ? at(p, VAL, "cores[%u].slots[%u].vcpus[%u]",
							  o->core, o->slot, o->item)
							       .line
						     : at(p, VAL, "cores[%u].slots[%u].vcpu",
							  o->core, o->slot)
							       .line);
					continue;
				}
				*o = (struct slot_owner){ true, i, j, k };
			}
		}
	}
	if (p->mode == RTIOREQ_PROFILE_NOTIFY)
		for (unsigned int i = 0; i < p->n_cores; i++)
			if (p->cores[i].roles & RTIOREQ_PROFILE_ROLE_POLLER) {
				emit(s, RTIOREQ_PROFILE_WARNING, at(p, VAL, "mode"),
				     "mode notify: pollers are not started, every slot is served "
				     "on the fallback path");
				break;
			}
	free(owner);
}

static int profile_check(const struct rtioreq_profile *p, bool host_check,
			 const cpu_set_t *online, bool quiet)
{
	struct sink s = { .fn = p->index->fn, .ctx = p->index->ctx, .file = p->path,
			  .quiet = quiet };
	struct lookup *lk;
	cpu_set_t set;
	int r;

	if (!online) {
		r = online_cpus(&set);
		if (r)
			return r;
		online = &set;
	}
	lk = malloc(sizeof(*lk));
	if (!lk)
		return -ENOMEM;
	memset(lk, 0xff, sizeof(*lk)); /* every index -1 */
	r = check_vms(p, lk, &s);
	if (!r)
		check_cores(p, host_check, online, lk, &s);
	free(lk);
	sink_finish(&s);
	return r ? r : s.errors ? -EINVAL : 0;
}

int rtioreq_profile_validate_cpus(const struct rtioreq_profile *p, bool host_check,
				  const cpu_set_t *online)
{
	if (!p || !p->index)
		return -EINVAL;
	return profile_check(p, host_check, online, false);
}

int rtioreq_profile_validate(const struct rtioreq_profile *p, bool host_check)
{
	return rtioreq_profile_validate_cpus(p, host_check, NULL);
}

/* ------------------------------------------------------------------------- */
/* Plan */

static const int sched_policy[] = { SCHED_OTHER, SCHED_FIFO, SCHED_RR };

static void plan_thread(struct rtioreq_profile_plan_thread *t,
			enum rtioreq_profile_thread_kind kind, const struct rtioreq_profile *p,
			int core, const char *name)
{
	const struct rtioreq_profile_core *c = core >= 0 ? &p->cores[core] : NULL;

	*t = (struct rtioreq_profile_plan_thread){ .kind = kind, .core = core };
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->attr = (struct rtioreq_thread_attr)RTIOREQ_THREAD_ATTR_DEFAULT;
	t->attr.policy = SCHED_OTHER;
	t->attr.name = t->name;
	if (!c)
		return;
	t->attr.cpu = (int)c->cpu;
	t->attr.policy = sched_policy[c->policy];
	t->attr.priority = (int)c->priority;
	t->isolation = c->isolation;
	if (kind == RTIOREQ_PROFILE_THREAD_POLLER) {
		t->idle = c->idle;
		t->spin_us = c->idle == RTIOREQ_PROFILE_IDLE_HYBRID ? c->spin_us : 0;
	}
}

static int core_with(const struct rtioreq_profile *p, unsigned int role)
{
	for (unsigned int i = 0; i < p->n_cores; i++)
		if (p->cores[i].roles & role)
			return (int)i;
	return -1;
}

void rtioreq_profile_plan_free(struct rtioreq_profile_plan *plan)
{
	if (!plan)
		return;
	free(plan->threads);
	free(plan->slots);
	plan->threads = NULL;
	plan->slots = NULL;
	plan->n_threads = plan->n_slots = 0;
}

int rtioreq_profile_plan_build(const struct rtioreq_profile *p, struct rtioreq_profile_plan *out)
{
	cpu_set_t all;
	unsigned int n = 0, ns = 0, npoll = 0;
	char name[RTIOREQ_NAME_LEN];
	int r;

	if (!p || !out || !p->index)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	/* Validity does not depend on this host here: every CPU counts as online. */
	CPU_ZERO(&all);
	for (int c = 0; c < CPU_SETSIZE; c++)
		CPU_SET(c, &all);
	r = profile_check(p, false, &all, true);
	if (r)
		return r;
	out->mode = p->mode;
	out->cpu_dma_latency = p->cpu_dma_latency;
	out->rt_throttling = p->rt_throttling;
	for (unsigned int i = 0; i < p->n_vms; i++)
		ns += (unsigned int)p->vms[i].vcpus;
	out->threads = calloc(p->n_cores + 2, sizeof(*out->threads));
	out->slots = calloc(ns ? ns : 1, sizeof(*out->slots));
	if (!out->threads || !out->slots) {
		rtioreq_profile_plan_free(out);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < p->n_vms; i++)
		for (int64_t v = 0; v < p->vms[i].vcpus; v++)
			out->slots[out->n_slots++] = (struct rtioreq_profile_plan_slot){
				.vm_id = (uint16_t)p->vms[i].id, .vcpu = (uint16_t)v, .thread = -1
			};
	for (unsigned int i = 0; p->mode == RTIOREQ_PROFILE_POLLING && i < p->n_cores; i++) {
		const struct rtioreq_profile_core *c = &p->cores[i];
		struct rtioreq_profile_plan_thread *t = &out->threads[n];

		if (!(c->roles & RTIOREQ_PROFILE_ROLE_POLLER))
			continue;
		snprintf(name, sizeof(name), "rtio-poll%u", npoll++);
		plan_thread(t, RTIOREQ_PROFILE_THREAD_POLLER, p, (int)i, name);
		for (unsigned int j = 0; j < c->n_slots; j++)
			for (unsigned int k = 0; k < c->slots[j].n_vcpus; k++)
				for (unsigned int q = 0; q < out->n_slots; q++)
					if (out->slots[q].vm_id == c->slots[j].vm &&
					    out->slots[q].vcpu == c->slots[j].vcpus[k]) {
						out->slots[q].thread = (int)n;
						t->n_slots++;
					}
		n++;
	}
	plan_thread(&out->threads[n++], RTIOREQ_PROFILE_THREAD_DISPATCHER, p,
		    core_with(p, RTIOREQ_PROFILE_ROLE_DISPATCHER), "rtio-disp");
	out->engine.dispatcher = out->threads[n - 1].attr;
	plan_thread(&out->threads[n++], RTIOREQ_PROFILE_THREAD_CLIENTS, p,
		    core_with(p, RTIOREQ_PROFILE_ROLE_CLIENTS), "rtio-client");
	out->engine.clients = out->threads[n - 1].attr;
	out->engine.clients.name = NULL; /* one thread per client: the engine names them */
	/* the call_rcu worker goes with the dispatcher (the fallback core, never a poller's) */
	out->engine.rcu = (struct rtioreq_thread_attr){ .cpu = out->engine.dispatcher.cpu };
	out->n_threads = n;
	return 0;
}

int rtioreq_profile_plan_owner(const struct rtioreq_profile_plan *plan, uint16_t vm_id,
			       uint16_t vcpu)
{
	for (unsigned int i = 0; i < plan->n_slots; i++)
		if (plan->slots[i].vm_id == vm_id && plan->slots[i].vcpu == vcpu)
			return plan->slots[i].thread;
	return -1;
}

static const char *const kind_names[] = { "poller", "dispatcher", "clients" };

int rtioreq_profile_print_plan(const struct rtioreq_profile *p, FILE *out)
{
	struct rtioreq_profile_plan plan;
	int r = rtioreq_profile_plan_build(p, &plan);

	if (r)
		return r;
	fprintf(out, "# profile %s\n", p->path);
	fprintf(out, "engine: mode %s, cpu_dma_latency %s, rt_throttling %s\n",
		plan.mode == RTIOREQ_PROFILE_POLLING ? "polling" : "notify",
		plan.cpu_dma_latency ? "held at 0" : "not held",
		plan.rt_throttling == RTIOREQ_PROFILE_THROTTLING_OFF	? "off for the run"
		: plan.rt_throttling == RTIOREQ_PROFILE_THROTTLING_KEEP ? "kept"
									: "not given");
	fprintf(out, "threads:\n");
	for (unsigned int i = 0; i < plan.n_threads; i++) {
		const struct rtioreq_profile_plan_thread *t = &plan.threads[i];
		const char *pol = t->core >= 0 ? policy_names[p->cores[t->core].policy] : "other";

		fprintf(out, "  %-12s %-10s ", t->name, kind_names[t->kind]);
		if (t->attr.cpu >= 0)
			fprintf(out, "CPU %-3d", t->attr.cpu);
		else
			fprintf(out, "unpinned");
		fprintf(out, " %s %d, isolation %s", pol, t->attr.priority,
			t->isolation == RTIOREQ_PROFILE_ISOLATION_CPUSET ? "cpuset" : "none");
		if (t->kind == RTIOREQ_PROFILE_THREAD_POLLER) {
			fprintf(out, ", idle %s", idle_names[t->idle]);
			if (t->idle == RTIOREQ_PROFILE_IDLE_HYBRID)
				fprintf(out, " (spin %" PRIu64 " us)", t->spin_us);
			fprintf(out, ", %u slot%s", t->n_slots, t->n_slots == 1 ? "" : "s");
		}
		fputc('\n', out);
	}
	fprintf(out, "slots:\n");
	for (unsigned int i = 0; i < plan.n_slots; i++) {
		const struct rtioreq_profile_plan_slot *sl = &plan.slots[i];
		const struct rtioreq_profile_plan_thread *d = &plan.threads[plan.n_threads - 2];

		fprintf(out, "  VM %-5u vCPU %-2u -> ", sl->vm_id, sl->vcpu);
		if (sl->thread >= 0) {
			fprintf(out, "%s (CPU %d)\n", plan.threads[sl->thread].name,
				plan.threads[sl->thread].attr.cpu);
		} else {
			fprintf(out, "fallback dispatcher");
			if (d->attr.cpu >= 0)
				fprintf(out, " (CPU %d)\n", d->attr.cpu);
			else
				fprintf(out, " (unpinned)\n");
		}
	}
	fprintf(out, "vms:\n");
	for (unsigned int i = 0; i < p->n_vms; i++) {
		const struct rtioreq_profile_vm *vm = &p->vms[i];

		fprintf(out, "  VM %" PRId64 ": %" PRId64 " vCPU%s, completion %s\n", vm->id,
			vm->vcpus, vm->vcpus == 1 ? "" : "s",
			vm->completion_polling ? "polling" : "notification");
		if (!vm->n_devices)
			fprintf(out, "    no devices: every access is unclaimed (reads all ones)\n");
		for (unsigned int d = 0; d < vm->n_devices; d++) {
			const struct rtioreq_profile_device *dev = &vm->devices[d];

			fprintf(out, "    device %s, client %s:", dev->name, dev->client);
			for (unsigned int k = 0; k < dev->n_ranges; k++)
				fprintf(out, " %s 0x%" PRIx64 "..0x%" PRIx64,
					range_names[dev->ranges[k].type], dev->ranges[k].start,
					dev->ranges[k].end);
			for (unsigned int k = 0; k < dev->n_params; k++)
				fprintf(out, "%s %s=%s", k ? "," : "; params", dev->params[k].key,
					dev->params[k].value);
			fputc('\n', out);
		}
	}
	rtioreq_profile_plan_free(&plan);
	return ferror(out) ? -EIO : 0;
}
