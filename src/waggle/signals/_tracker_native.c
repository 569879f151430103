/* Native hot path of waggle.signals.trackers.TrackerEngine.match.
 *
 * The pure-Python matcher in trackers.py is the reference and the fallback:
 * for every input this module must return the same hits, in the same order,
 * with the same flags. Each step below names the Python function it mirrors;
 * a change to one side must be made to the other, and
 * tests/signals/test_trackers_native.py compares the two.
 *
 * The word check of short Chinese phrases (_Segmenter.splits_word) runs here
 * too: WordIndex copies jieba's dictionary (FREQ and total) and repeats its
 * Tokenizer.cut(HMM=False), the same floating-point sums in the same order,
 * so jieba's Python code is never called on this path.
 *
 * An Engine is immutable once built, apart from the WordIndex it fetches
 * (once) on its first word check, so match() may run from several threads;
 * every per-call buffer lives on the C stack or in memory owned by that call.
 * The GIL is held throughout; there is no global state beyond the module and
 * type definitions.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Folding calls CPython's own case functions (_PyUnicode_ToLowerFull,
 * _PyUnicode_IsCased, _PyUnicode_IsCaseIgnorable) so that it lowers exactly
 * as str.lower() does; 3.13 made them internal. Refuse to build there: the
 * extension is optional, so the pure-Python matcher serves. */
#if PY_VERSION_HEX >= 0x030D0000
#error "_tracker_native needs CPython 3.11 or 3.12"
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The cue kinds of trackers.py (_EXCLUDE ... _QUESTION_EXCEPTION). */
enum {
    KIND_EXCLUDE = 1,
    KIND_NEGATE_BEFORE = 2,
    KIND_NEGATE_AFTER = 3,
    KIND_NEGATION_EXCEPTION = 4,
    KIND_QUESTION = 5,
    KIND_QUESTION_LEADING = 6,
    KIND_QUESTION_FINAL = 7,
    KIND_QUESTION_EXCEPTION = 8,
};

#define NO_TRACKER (-1)
#define HIT_FIELDS 8

static const char *const hit_field_names[HIT_FIELDS] = {
    "tracker_id", "category", "phrase",     "matched",
    "start",      "end",      "is_negated", "is_question",
};

typedef struct {
    PyObject *word_index_type;
    PyObject *engine_type;
} ModuleState;

/* Zeroed memory for count items (at least one), or NULL with MemoryError. */
static void *
alloc_array(Py_ssize_t count, size_t item)
{
    void *memory;
    if (count < 0 || (size_t)count > (size_t)PY_SSIZE_T_MAX / item) {
        PyErr_NoMemory();
        return NULL;
    }
    memory = PyMem_Calloc(count ? (size_t)count : 1, item);
    if (memory == NULL) {
        PyErr_NoMemory();
    }
    return memory;
}

/* ------------------------------------------------------------------------
 * Character classes
 */

static inline int
is_han(Py_UCS4 c)
{
    return c >= 0x3400 && c <= 0x9FFF;
}

/* _is_word_char: Latin letters and digits only (below U+0250, isalnum). */
static inline int
is_word_char(Py_UCS4 c)
{
    if (c < 128) {
        return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    }
    return c < 0x250 && Py_UNICODE_ISALNUM(c);
}

/* [0-9a-z\u00c0-\u024f], the Latin part of _GAP_UNITS and _LATIN_WORD. */
static inline int
is_gap_latin(Py_UCS4 c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 0xC0 && c <= 0x24F);
}

/* _CLAUSE_BREAK's first alternative: [,。!?;\n\r…~～、] */
static inline int
is_clause_mark(Py_UCS4 c)
{
    switch (c) {
    case ',': case '!': case '?': case ';': case '\n': case '\r': case '~':
    case 0x3002: case 0x2026: case 0xFF5E: case 0x3001:
        return 1;
    default:
        return 0;
    }
}

/* _SENTENCE_BREAK's first alternative: [。!?;\n\r…] */
static inline int
is_sentence_mark(Py_UCS4 c)
{
    switch (c) {
    case '!': case '?': case ';': case '\n': case '\r': case 0x3002: case 0x2026:
        return 1;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------
 * fold(): str.lower() character by character, then the width table
 */

/* CPython's handle_capital_sigma: the lower case of U+03A3 in context. */
static Py_UCS4
lower_capital_sigma(int kind, const void *data, Py_ssize_t length, Py_ssize_t i)
{
    Py_ssize_t j;
    Py_UCS4 c = 0;
    int final_sigma;

    for (j = i - 1; j >= 0; j--) {
        c = PyUnicode_READ(kind, data, j);
        if (!_PyUnicode_IsCaseIgnorable(c)) {
            break;
        }
    }
    final_sigma = j >= 0 && _PyUnicode_IsCased(c);
    if (final_sigma && i + 1 < length) {
        for (j = i + 1; j < length; j++) {
            c = PyUnicode_READ(kind, data, j);
            if (!_PyUnicode_IsCaseIgnorable(c)) {
                break;
            }
        }
        final_sigma = j == length || !_PyUnicode_IsCased(c);
    }
    return final_sigma ? 0x3C2 : 0x3C3;
}

/* _FOLD: full-width ASCII, the ideographic space, U+2019 and U+FF61. */
static inline Py_UCS4
fold_width(Py_UCS4 c)
{
    if (c >= 0xFF01 && c <= 0xFF5E) {
        return c - 0xFEE0;
    }
    switch (c) {
    case 0x3000: return 0x20;
    case 0x2019: return 0x27;
    case 0xFF61: return 0x2E;
    default: return c;
    }
}

/* Write fold(text) to out (len(text) code points).
 *
 * fold() lowers the whole string when no character's lower case is longer
 * than one character; otherwise it lowers character by character and keeps
 * the longer ones. The two differ only for U+03A3, whose lower case depends
 * on its neighbours in the first case and is always U+03C3 in the second.
 */
static void
fold_into(PyObject *text, Py_UCS4 *out)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    int per_character = 0;

    if (PyUnicode_IS_ASCII(text)) {
        const Py_UCS1 *chars = data;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS1 c = chars[i];
            out[i] = (c >= 'A' && c <= 'Z') ? (Py_UCS4)(c + 32) : c;
        }
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        Py_UCS4 mapped[3];

        if (c < 128) {
            out[i] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        }
        else if (is_han(c)) {
            out[i] = c;
        }
        else if (c == 0x3A3) {
            out[i] = lower_capital_sigma(kind, data, n, i);
        }
        else if (_PyUnicode_ToLowerFull(c, mapped) == 1) {
            out[i] = mapped[0];
        }
        else {
            out[i] = c;
            per_character = 1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (per_character && PyUnicode_READ(kind, data, i) == 0x3A3) {
            out[i] = 0x3C3;
        }
        out[i] = fold_width(out[i]);
    }
}

/* ------------------------------------------------------------------------
 * Code point -> int map (open addressing, linear probing)
 */

typedef struct {
    uint32_t *keys; /* code point + 1; 0 marks a free slot */
    int32_t *values;
    uint32_t bits;
    Py_ssize_t used;
} CodeMap;

static inline uint32_t
code_slot(uint32_t key, uint32_t bits)
{
    return (uint32_t)(key * 2654435761u) >> (32 - bits);
}

static int
codemap_init(CodeMap *map, Py_ssize_t expected)
{
    uint32_t bits = 4;
    while (bits < 30 && ((Py_ssize_t)1 << bits) < expected * 2) {
        bits++;
    }
    size_t size = (size_t)1 << bits;
    map->keys = PyMem_Calloc(size, sizeof(uint32_t));
    map->values = PyMem_Calloc(size, sizeof(int32_t));
    map->bits = bits;
    map->used = 0;
    if (map->keys == NULL || map->values == NULL) {
        PyMem_Free(map->keys);
        PyMem_Free(map->values);
        map->keys = NULL;
        map->values = NULL;
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
codemap_free(CodeMap *map)
{
    PyMem_Free(map->keys);
    PyMem_Free(map->values);
    map->keys = NULL;
    map->values = NULL;
}

static inline int32_t
codemap_get(const CodeMap *map, Py_UCS4 c, int32_t missing)
{
    uint32_t key = (uint32_t)c + 1;
    uint32_t mask = ((uint32_t)1 << map->bits) - 1;
    uint32_t slot = code_slot(key, map->bits);
    for (;;) {
        uint32_t found = map->keys[slot];
        if (found == key) {
            return map->values[slot];
        }
        if (found == 0) {
            return missing;
        }
        slot = (slot + 1) & mask;
    }
}

/* The slot holding c, or the free slot where it goes. */
static inline uint32_t
codemap_find(const CodeMap *map, uint32_t key)
{
    uint32_t mask = ((uint32_t)1 << map->bits) - 1;
    uint32_t slot = code_slot(key, map->bits);
    while (map->keys[slot] != 0 && map->keys[slot] != key) {
        slot = (slot + 1) & mask;
    }
    return slot;
}

static int
codemap_grow(CodeMap *map)
{
    CodeMap bigger;
    size_t size = (size_t)1 << map->bits;
    if (codemap_init(&bigger, (Py_ssize_t)size) < 0) {
        return -1;
    }
    for (size_t i = 0; i < size; i++) {
        if (map->keys[i] != 0) {
            uint32_t slot = codemap_find(&bigger, map->keys[i]);
            bigger.keys[slot] = map->keys[i];
            bigger.values[slot] = map->values[i];
        }
    }
    bigger.used = map->used;
    codemap_free(map);
    *map = bigger;
    return 0;
}

/* Store max(current, value) for c (current is 0 when c is new). */
static int
codemap_put_max(CodeMap *map, Py_UCS4 c, int32_t value)
{
    if ((map->used + 1) * 2 > ((Py_ssize_t)1 << map->bits) && codemap_grow(map) < 0) {
        return -1;
    }
    uint32_t key = (uint32_t)c + 1;
    uint32_t slot = codemap_find(map, key);
    if (map->keys[slot] == 0) {
        map->keys[slot] = key;
        map->values[slot] = value;
        map->used++;
    }
    else if (value > map->values[slot]) {
        map->values[slot] = value;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Set of code point strings (jieba's dictionary, the question fillers)
 */

typedef struct {
    Py_UCS4 *pool;
    size_t pool_used, pool_size;
    uint32_t *starts; /* entry i is pool[starts[i]:starts[i + 1]] */
    uint32_t *hashes;
    double *values;   /* one number per entry, for the owner's use */
    size_t count, size;
    uint32_t *slots;  /* entry + 1; 0 marks a free slot */
    uint32_t bits;
} WordSet;

static inline uint32_t
text_hash(const Py_UCS4 *text, Py_ssize_t length)
{
    uint32_t hash = 2166136261u;
    for (Py_ssize_t i = 0; i < length; i++) {
        hash = (hash ^ text[i]) * 16777619u;
    }
    hash ^= hash >> 16;
    hash *= 0x85EBCA6Bu;
    hash ^= hash >> 13;
    hash *= 0xC2B2AE35u;
    hash ^= hash >> 16;
    return hash;
}

static void
wordset_free(WordSet *set)
{
    PyMem_Free(set->pool);
    PyMem_Free(set->starts);
    PyMem_Free(set->hashes);
    PyMem_Free(set->values);
    PyMem_Free(set->slots);
    memset(set, 0, sizeof(*set));
}

static int
grow_array(void **array, size_t count, size_t item)
{
    void *bigger = PyMem_Realloc(*array, count * item);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *array = bigger;
    return 0;
}

static int
wordset_reserve(WordSet *set, size_t characters)
{
    if (set->count + 1 >= set->size) {
        size_t size = set->size ? set->size * 2 : 64;
        if (size > UINT32_MAX ||
            grow_array((void **)&set->starts, size, sizeof(uint32_t)) < 0 ||
            grow_array((void **)&set->hashes, size, sizeof(uint32_t)) < 0 ||
            grow_array((void **)&set->values, size, sizeof(double)) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_NoMemory();
            }
            return -1;
        }
        set->size = size;
    }
    if (set->pool_used + characters > set->pool_size) {
        size_t size = set->pool_size ? set->pool_size : 256;
        while (size < set->pool_used + characters) {
            size *= 2;
        }
        if (size > UINT32_MAX ||
            grow_array((void **)&set->pool, size, sizeof(Py_UCS4)) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_NoMemory();
            }
            return -1;
        }
        set->pool_size = size;
    }
    return 0;
}

/* Append a str with its value; wordset_index() must run before any look-up. */
static int
wordset_add(WordSet *set, PyObject *word, double value)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(word);
    int kind = PyUnicode_KIND(word);
    const void *data = PyUnicode_DATA(word);

    if (wordset_reserve(set, (size_t)length) < 0) {
        return -1;
    }
    Py_UCS4 *text = set->pool + set->pool_used;
    for (Py_ssize_t i = 0; i < length; i++) {
        text[i] = PyUnicode_READ(kind, data, i);
    }
    set->starts[set->count] = (uint32_t)set->pool_used;
    set->hashes[set->count] = text_hash(text, length);
    set->values[set->count] = value;
    set->pool_used += (size_t)length;
    set->count++;
    set->starts[set->count] = (uint32_t)set->pool_used;
    return 0;
}

static inline int
wordset_entry_is(const WordSet *set, uint32_t entry, const Py_UCS4 *text,
                 Py_ssize_t length, uint32_t hash)
{
    uint32_t start = set->starts[entry];
    return set->hashes[entry] == hash &&
           set->starts[entry + 1] - start == (uint32_t)length &&
           memcmp(set->pool + start, text, (size_t)length * sizeof(Py_UCS4)) == 0;
}

/* Build the hash table; of equal strings the first one added is kept. */
static int
wordset_index(WordSet *set)
{
    uint32_t bits = 4;
    while (bits < 31 && ((size_t)1 << bits) < set->count + set->count / 3 + 1) {
        bits++;
    }
    size_t size = (size_t)1 << bits;
    uint32_t mask = (uint32_t)(size - 1);
    set->slots = PyMem_Calloc(size, sizeof(uint32_t));
    if (set->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    set->bits = bits;
    for (size_t entry = 0; entry < set->count; entry++) {
        uint32_t hash = set->hashes[entry];
        uint32_t slot = hash >> (32 - bits);
        uint32_t start = set->starts[entry];
        int duplicate = 0;
        while (set->slots[slot] != 0) {
            if (wordset_entry_is(set, set->slots[slot] - 1, set->pool + start,
                                 (Py_ssize_t)(set->starts[entry + 1] - start), hash)) {
                duplicate = 1;
                break;
            }
            slot = (slot + 1) & mask;
        }
        if (!duplicate) {
            set->slots[slot] = (uint32_t)entry + 1;
        }
    }
    return 0;
}

/* The entry equal to text[:length], or -1. */
static inline Py_ssize_t
wordset_find(const WordSet *set, const Py_UCS4 *text, Py_ssize_t length)
{
    if (set->slots == NULL || set->count == 0) {
        return -1;
    }
    uint32_t hash = text_hash(text, length);
    uint32_t mask = ((uint32_t)1 << set->bits) - 1;
    uint32_t slot = hash >> (32 - set->bits);
    for (;;) {
        uint32_t found = set->slots[slot];
        if (found == 0) {
            return -1;
        }
        if (wordset_entry_is(set, found - 1, text, length, hash)) {
            return (Py_ssize_t)found - 1;
        }
        slot = (slot + 1) & mask;
    }
}

/* ------------------------------------------------------------------------
 * Growable arrays with room on the stack for the usual message
 */

typedef struct {
    Py_ssize_t start, end;
    int32_t entry; /* phrase or cue entry; unused for breaks */
    int32_t order; /* automaton output order; -1 marks a cancelled cue */
} Span;

#define INLINE_SPANS 24

typedef struct {
    Span *items;
    Py_ssize_t length, size;
    Span inline_items[INLINE_SPANS];
} Spans;

static void
spans_init(Spans *spans)
{
    spans->items = spans->inline_items;
    spans->length = 0;
    spans->size = INLINE_SPANS;
}

static void
spans_free(Spans *spans)
{
    if (spans->items != spans->inline_items) {
        PyMem_Free(spans->items);
    }
    spans->items = spans->inline_items;
    spans->length = 0;
}

static int
spans_push(Spans *spans, Py_ssize_t start, Py_ssize_t end, int32_t entry,
           int32_t order)
{
    if (spans->length == spans->size) {
        if (spans->size > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(Span)) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t size = spans->size * 2;
        Span *items = PyMem_Malloc((size_t)size * sizeof(Span));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(items, spans->items, (size_t)spans->length * sizeof(Span));
        if (spans->items != spans->inline_items) {
            PyMem_Free(spans->items);
        }
        spans->items = items;
        spans->size = size;
    }
    Span *item = &spans->items[spans->length++];
    item->start = start;
    item->end = end;
    item->entry = entry;
    item->order = order;
    return 0;
}

/* bisect.bisect_right over the spans' starts. */
static Py_ssize_t
spans_bisect(const Spans *spans, Py_ssize_t position)
{
    Py_ssize_t low = 0, high = spans->length;
    while (low < high) {
        Py_ssize_t middle = low + (high - low) / 2;
        if (position < spans->items[middle].start) {
            high = middle;
        }
        else {
            low = middle + 1;
        }
    }
    return low;
}

/* ------------------------------------------------------------------------
 * WordIndex: jieba's dictionary, for _Segmenter.splits_word
 */

typedef struct {
    PyObject_HEAD
    /* Every key of jieba's FREQ (its words and their prefixes); the value is
     * log(count) for a word, NaN for a prefix whose count is 0. */
    WordSet entries;
    double log_total;
    CodeMap longest_ending;   /* character -> longest word ending with it */
    CodeMap longest_starting; /* character -> longest word starting with it */
} WordIndexObject;

static inline Py_ssize_t
index_find(const WordIndexObject *index, const Py_UCS4 *text, Py_ssize_t length)
{
    return wordset_find(&index->entries, text, length);
}

/* `frequencies.get(text)` is truthy. */
static inline int
index_is_word(const WordIndexObject *index, Py_ssize_t entry)
{
    return entry >= 0 && !isnan(index->entries.values[entry]);
}

static int
word_index_add(WordIndexObject *self, PyObject *word, PyObject *count)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(word);
    double weight = NAN;
    int truth = PyObject_IsTrue(count);

    if (truth < 0) {
        return -1;
    }
    if (truth) {
        /* math.log(count), as jieba's calc() takes it */
        double value = PyFloat_AsDouble(count);
        if (value == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        if (!(value > 0.0)) {
            PyErr_SetString(PyExc_ValueError, "WordIndex(): a count is not positive");
            return -1;
        }
        weight = log(value);
    }
    if (length > UINT32_MAX / 2 || wordset_add(&self->entries, word, weight) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    if (truth && length > 1 &&
        (codemap_put_max(&self->longest_ending, PyUnicode_READ_CHAR(word, length - 1),
                         (int32_t)length) < 0 ||
         codemap_put_max(&self->longest_starting, PyUnicode_READ_CHAR(word, 0),
                         (int32_t)length) < 0)) {
        return -1;
    }
    return 0;
}

static PyObject *
word_index_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *frequencies, *total, *key, *value;
    Py_ssize_t position = 0;
    WordIndexObject *self;
    double total_value;

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "WordIndex() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!O:WordIndex", &PyDict_Type, &frequencies, &total)) {
        return NULL;
    }
    total_value = PyFloat_AsDouble(total);
    if (total_value == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(total_value > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "WordIndex(): total must be positive");
        return NULL;
    }
    self = (WordIndexObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->log_total = log(total_value);
    if (codemap_init(&self->longest_ending, 1024) < 0 ||
        codemap_init(&self->longest_starting, 1024) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    while (PyDict_Next(frequencies, &position, &key, &value)) {
        int status;
        if (!PyUnicode_Check(key) || PyUnicode_GET_LENGTH(key) == 0) {
            continue; /* never equal to a slice jieba or the look-up makes */
        }
        /* Truth testing a count could run Python code that edits the dict. */
        Py_INCREF(key);
        Py_INCREF(value);
        status = word_index_add(self, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (status < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    if (wordset_index(&self->entries) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
word_index_dealloc(WordIndexObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    wordset_free(&self->entries);
    codemap_free(&self->longest_ending);
    codemap_free(&self->longest_starting);
    type->tp_free(self);
    Py_DECREF(type);
}

/* _Segmenter._could_cross over folded code points. */
static int
could_cross(const WordIndexObject *index, const Py_UCS4 *text, Py_ssize_t start,
            Py_ssize_t end, Py_ssize_t clause_start, Py_ssize_t clause_end)
{
    for (Py_ssize_t inner = start + 1; inner < end; inner++) {
        Py_ssize_t reach = codemap_get(&index->longest_ending, text[inner - 1], 0);
        Py_ssize_t outer = inner - reach > clause_start ? inner - reach : clause_start;
        for (; outer < start; outer++) {
            if (index_is_word(index, index_find(index, text + outer, inner - outer))) {
                return 1;
            }
        }
        reach = codemap_get(&index->longest_starting, text[inner], 0);
        Py_ssize_t last = inner + reach < clause_end ? inner + reach : clause_end;
        for (outer = end + 1; outer <= last; outer++) {
            if (index_is_word(index, index_find(index, text + inner, outer - inner))) {
                return 1;
            }
        }
    }
    return 0;
}

/* jieba's Tokenizer.cut(text, HMM=False), reporting each word to a sink
 * that returns 1 to stop, 0 to go on or -1 on an error. */
typedef int (*WordSink)(void *context, Py_ssize_t start, Py_ssize_t end);

/* re_han_default: [\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-] */
static inline int
is_jieba_block(Py_UCS4 c)
{
    return (c >= 0x4E00 && c <= 0x9FD5) || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '#' ||
           c == '&' || c == '.' || c == '_' || c == '%' || c == '-';
}

/* re_eng: [a-zA-Z0-9] */
static inline int
is_jieba_latin(Py_UCS4 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

#define INLINE_BLOCK 128

/* __cut_DAG_NO_HMM over text[start:end]: get_DAG and calc, then the route,
 * with runs of single Latin letters and digits joined into one word. */
static int
cut_block(const WordIndexObject *index, const Py_UCS4 *text, Py_ssize_t start,
          Py_ssize_t end, WordSink sink, void *context)
{
    Py_ssize_t length = end - start;
    double inline_scores[INLINE_BLOCK + 1], *scores = inline_scores;
    Py_ssize_t inline_routes[INLINE_BLOCK + 1], *routes = inline_routes;
    const Py_UCS4 *block = text + start;
    int status = 0;

    if (length > INLINE_BLOCK) {
        scores = alloc_array(length + 1, sizeof(double));
        routes = alloc_array(length + 1, sizeof(Py_ssize_t));
        if (scores == NULL || routes == NULL) {
            status = -1;
            goto done;
        }
    }
    scores[length] = 0.0;
    routes[length] = 0;
    for (Py_ssize_t k = length - 1; k >= 0; k--) {
        /* route[k] = max((log(FREQ.get(word) or 1) - logtotal + route[x + 1][0], x)
         *                for x in DAG[k]) */
        double best = 0.0;
        Py_ssize_t best_x = -1;
        for (Py_ssize_t i = k; i < length; i++) {
            Py_ssize_t entry = index_find(index, block + k, i - k + 1);
            if (entry < 0) {
                break;
            }
            if (index_is_word(index, entry)) {
                double score = (index->entries.values[entry] - index->log_total) +
                               scores[i + 1];
                if (best_x < 0 || score > best || (score == best && i > best_x)) {
                    best = score;
                    best_x = i;
                }
            }
        }
        if (best_x < 0) {
            /* no word starts here: the character alone, log(1) */
            best = (0.0 - index->log_total) + scores[k + 1];
            best_x = k;
        }
        scores[k] = best;
        routes[k] = best_x;
    }
    Py_ssize_t latin = -1;
    for (Py_ssize_t x = 0; x < length && status == 0;) {
        Py_ssize_t y = routes[x] + 1;
        if (y - x == 1 && is_jieba_latin(block[x])) {
            if (latin < 0) {
                latin = x;
            }
        }
        else {
            if (latin >= 0) {
                status = sink(context, start + latin, start + x);
                latin = -1;
            }
            if (status == 0) {
                status = sink(context, start + x, start + y);
            }
        }
        x = y;
    }
    if (status == 0 && latin >= 0) {
        status = sink(context, start + latin, end);
    }
done:
    if (scores != inline_scores) {
        PyMem_Free(scores);
    }
    if (routes != inline_routes) {
        PyMem_Free(routes);
    }
    return status;
}

/* Tokenizer.cut: blocks of re_han_default are cut by the route; elsewhere
 * every character is a word, except that \r\n stays together. */
static int
jieba_cut(const WordIndexObject *index, const Py_UCS4 *text, Py_ssize_t start,
          Py_ssize_t end, WordSink sink, void *context)
{
    Py_ssize_t position = start;
    while (position < end) {
        Py_ssize_t next = position + 1;
        int status;
        if (is_jieba_block(text[position])) {
            while (next < end && is_jieba_block(text[next])) {
                next++;
            }
            status = cut_block(index, text, position, next, sink, context);
        }
        else {
            if (text[position] == '\r' && next < end && text[next] == '\n') {
                next++;
            }
            status = sink(context, position, next);
        }
        if (status != 0) {
            return status;
        }
        position = next;
    }
    return 0;
}

typedef struct {
    Py_ssize_t start, end;
} Edges;

/* _Segmenter.cuts_across's test for one word of the cut. */
static int
sink_crossing(void *context, Py_ssize_t word_start, Py_ssize_t word_end)
{
    const Edges *hit = context;
    return (word_start < hit->start && hit->start < word_end && word_end < hit->end) ||
           (hit->start < word_start && word_start < hit->end && hit->end < word_end);
}

/* _Segmenter.splits_word: the look-up, then jieba's cut of the clause. */
static int
splits_word(const WordIndexObject *index, const Py_UCS4 *text, Py_ssize_t start,
            Py_ssize_t end, Py_ssize_t clause_start, Py_ssize_t clause_end)
{
    Edges hit = {start, end};
    if (!could_cross(index, text, start, end, clause_start, clause_end)) {
        return 0;
    }
    return jieba_cut(index, text, clause_start, clause_end, sink_crossing, &hit);
}

static Py_UCS4 *
copy_code_points(PyObject *text)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    Py_UCS4 *buffer = alloc_array(length, sizeof(Py_UCS4));
    if (buffer == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        buffer[i] = PyUnicode_READ_CHAR(text, i);
    }
    return buffer;
}

static PyObject *
word_index_splits_word(WordIndexObject *self, PyObject *args)
{
    PyObject *text;
    Py_ssize_t start, end, clause_start, clause_end, length;
    Py_UCS4 *buffer;
    int found;

    if (!PyArg_ParseTuple(args, "Unnnn:splits_word", &text, &start, &end,
                          &clause_start, &clause_end)) {
        return NULL;
    }
    length = PyUnicode_GET_LENGTH(text);
    if (start < 0 || start > end || end > length || clause_start < 0 ||
        clause_start > clause_end || clause_end > length) {
        PyErr_SetString(PyExc_ValueError, "splits_word(): offsets outside the text");
        return NULL;
    }
    buffer = copy_code_points(text);
    if (buffer == NULL) {
        return NULL;
    }
    found = splits_word(self, buffer, start, end, clause_start, clause_end);
    PyMem_Free(buffer);
    return found < 0 ? NULL : PyBool_FromLong(found);
}

typedef struct {
    PyObject *text, *words;
} CutWords;

static int
sink_list(void *context, Py_ssize_t start, Py_ssize_t end)
{
    CutWords *cut = context;
    PyObject *word = PyUnicode_Substring(cut->text, start, end);
    int status = word == NULL ? -1 : PyList_Append(cut->words, word);
    Py_XDECREF(word);
    return status;
}

static PyObject *
word_index_cut(WordIndexObject *self, PyObject *text)
{
    CutWords cut;
    Py_UCS4 *buffer;
    int status;

    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "cut(): text must be str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    buffer = copy_code_points(text);
    if (buffer == NULL) {
        return NULL;
    }
    cut.text = text;
    cut.words = PyList_New(0);
    status = cut.words == NULL ? -1
                               : jieba_cut(self, buffer, 0, PyUnicode_GET_LENGTH(text),
                                           sink_list, &cut);
    PyMem_Free(buffer);
    if (status < 0) {
        Py_XDECREF(cut.words);
        return NULL;
    }
    return cut.words;
}

static PyMethodDef word_index_methods[] = {
    {"splits_word", (PyCFunction)(void (*)(void))word_index_splits_word, METH_VARARGS,
     "splits_word(text, start, end, clause_start, clause_end) -> bool\n\n"
     "The native _Segmenter.splits_word."},
    {"cut", (PyCFunction)(void (*)(void))word_index_cut, METH_O,
     "cut(text) -> list[str]\n\n"
     "The native jieba Tokenizer.cut(text, HMM=False)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot word_index_slots[] = {
    {Py_tp_doc, "jieba's dictionary, for the word check of short Chinese phrases."},
    {Py_tp_new, word_index_new},
    {Py_tp_dealloc, word_index_dealloc},
    {Py_tp_methods, word_index_methods},
    {0, NULL},
};

static PyType_Spec word_index_spec = {
    .name = "waggle.signals._tracker_native.WordIndex",
    .basicsize = sizeof(WordIndexObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = word_index_slots,
};

/* ------------------------------------------------------------------------
 * Engine: the compiled keys, entries and automaton
 */

typedef struct {
    PyObject *id;
    PyObject *category;
    int speaker; /* 0 any, 1 rep, 2 customer */
} Tracker;

typedef struct {
    int32_t tracker;
    int word_check;
    PyObject *phrase;
} PhraseEntry;

typedef struct {
    int kind;
    int32_t tracker; /* NO_TRACKER: the cue serves every tracker */
    Py_ssize_t window;
} CueEntry;

typedef struct {
    Py_ssize_t length;
    int left_boundary, right_boundary, extends_word;
    int32_t first_phrase, phrase_count; /* into key_entries */
    int32_t first_cue, cue_count;       /* into key_entries */
} Key;

typedef struct {
    int32_t fail;       /* longest proper suffix that is a trie node */
    int32_t output;     /* longest proper suffix that ends a key, or -1 */
    int32_t key;        /* key ending here, or -1 */
    int32_t first_edge; /* into edges, sorted by symbol */
    int32_t edge_count;
} Node;

typedef struct {
    Py_UCS4 symbol;
    int32_t target;
} Edge;

typedef struct {
    PyObject_HEAD
    Py_ssize_t tracker_count, phrase_count, cue_count, key_count, node_count;
    Tracker *trackers;
    PhraseEntry *phrases;
    CueEntry *cues;
    Key *keys;
    int32_t *key_entries;
    Node *nodes;
    Edge *edges;
    CodeMap root; /* the root's children, by symbol */
    WordSet fillers;
    PyTypeObject *hit_type;
    Py_ssize_t hit_offsets[HIT_FIELDS];
    PyObject *rep, *customer;  /* the Speaker members, compared by identity */
    PyObject *words_provider;  /* () -> WordIndex, called on the first word check */
    PyObject *words;           /* the WordIndex, once fetched */
    PyObject *word_index_type; /* to check what the provider returns */
} EngineObject;

static int
engine_traverse(EngineObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->hit_type);
    Py_VISIT(self->rep);
    Py_VISIT(self->customer);
    Py_VISIT(self->words_provider);
    Py_VISIT(self->words);
    Py_VISIT(self->word_index_type);
    return 0;
}

static int
engine_clear(EngineObject *self)
{
    Py_CLEAR(self->hit_type);
    Py_CLEAR(self->rep);
    Py_CLEAR(self->customer);
    Py_CLEAR(self->words_provider);
    Py_CLEAR(self->words);
    Py_CLEAR(self->word_index_type);
    return 0;
}

static void
engine_dealloc(EngineObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    engine_clear(self);
    if (self->trackers != NULL) {
        for (Py_ssize_t i = 0; i < self->tracker_count; i++) {
            Py_XDECREF(self->trackers[i].id);
            Py_XDECREF(self->trackers[i].category);
        }
    }
    if (self->phrases != NULL) {
        for (Py_ssize_t i = 0; i < self->phrase_count; i++) {
            Py_XDECREF(self->phrases[i].phrase);
        }
    }
    PyMem_Free(self->trackers);
    PyMem_Free(self->phrases);
    PyMem_Free(self->cues);
    PyMem_Free(self->keys);
    PyMem_Free(self->key_entries);
    PyMem_Free(self->nodes);
    PyMem_Free(self->edges);
    codemap_free(&self->root);
    wordset_free(&self->fillers);
    type->tp_free(self);
    Py_DECREF(type);
}

static int
load_trackers(EngineObject *self, PyObject *sequence)
{
    PyObject *items = PySequence_Fast(sequence, "Engine(): trackers must be a sequence");
    if (items == NULL) {
        return -1;
    }
    self->tracker_count = PySequence_Fast_GET_SIZE(items);
    self->trackers = alloc_array(self->tracker_count, sizeof(Tracker));
    if (self->trackers == NULL || self->tracker_count > INT32_MAX) {
        Py_DECREF(items);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "Engine(): too many trackers");
        }
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->tracker_count; i++) {
        PyObject *id, *category;
        int speaker;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "UUi:tracker", &id,
                              &category, &speaker)) {
            Py_DECREF(items);
            return -1;
        }
        if (speaker < 0 || speaker > 2) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_ValueError, "Engine(): tracker speaker must be 0-2");
            return -1;
        }
        self->trackers[i].id = Py_NewRef(id);
        self->trackers[i].category = Py_NewRef(category);
        self->trackers[i].speaker = speaker;
    }
    Py_DECREF(items);
    return 0;
}

static int
check_tracker(EngineObject *self, int tracker, int allow_none)
{
    if ((allow_none && tracker == NO_TRACKER) ||
        (tracker >= 0 && tracker < self->tracker_count)) {
        return 0;
    }
    PyErr_SetString(PyExc_ValueError, "Engine(): tracker index out of range");
    return -1;
}

static int
load_phrases(EngineObject *self, PyObject *sequence)
{
    PyObject *items = PySequence_Fast(sequence, "Engine(): phrases must be a sequence");
    if (items == NULL) {
        return -1;
    }
    self->phrase_count = PySequence_Fast_GET_SIZE(items);
    self->phrases = alloc_array(self->phrase_count, sizeof(PhraseEntry));
    if (self->phrases == NULL) {
        Py_DECREF(items);
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->phrase_count; i++) {
        PyObject *phrase;
        int tracker, word_check;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "iUp:phrase", &tracker,
                              &phrase, &word_check) ||
            check_tracker(self, tracker, 0) < 0) {
            Py_DECREF(items);
            return -1;
        }
        self->phrases[i].tracker = tracker;
        self->phrases[i].word_check = word_check;
        self->phrases[i].phrase = Py_NewRef(phrase);
    }
    Py_DECREF(items);
    return 0;
}

static int
load_cues(EngineObject *self, PyObject *sequence)
{
    PyObject *items = PySequence_Fast(sequence, "Engine(): cues must be a sequence");
    if (items == NULL) {
        return -1;
    }
    self->cue_count = PySequence_Fast_GET_SIZE(items);
    self->cues = alloc_array(self->cue_count, sizeof(CueEntry));
    if (self->cues == NULL) {
        Py_DECREF(items);
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->cue_count; i++) {
        int kind, tracker;
        Py_ssize_t window;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "iin:cue", &kind,
                              &tracker, &window) ||
            check_tracker(self, tracker, 1) < 0) {
            Py_DECREF(items);
            return -1;
        }
        if (kind < KIND_EXCLUDE || kind > KIND_QUESTION_EXCEPTION) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_ValueError, "Engine(): unknown cue kind");
            return -1;
        }
        self->cues[i].kind = kind;
        self->cues[i].tracker = tracker;
        self->cues[i].window = window;
    }
    Py_DECREF(items);
    return 0;
}

/* Copy a sequence of entry indices (each below limit) into key_entries. */
static int
load_key_entries(PyObject *sequence, Py_ssize_t limit, int32_t *out,
                 Py_ssize_t *used, Py_ssize_t capacity, int32_t *first, int32_t *count)
{
    PyObject *items = PySequence_Fast(sequence, "Engine(): key entries must be a sequence");
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t length = PySequence_Fast_GET_SIZE(items);
    if (length > capacity - *used) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "Engine(): more key entries than entries");
        return -1;
    }
    *first = (int32_t)*used;
    *count = (int32_t)length;
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_ssize_t entry = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(items, i));
        if (entry == -1 && PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
        if (entry < 0 || entry >= limit) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_ValueError, "Engine(): entry index out of range");
            return -1;
        }
        out[(*used)++] = (int32_t)entry;
    }
    Py_DECREF(items);
    return 0;
}

/* Trie under construction: children as sibling lists. */
typedef struct {
    Py_UCS4 symbol;
    int32_t first_child, next_sibling, key;
} TrieNode;

typedef struct {
    TrieNode *nodes;
    Py_ssize_t count, size;
} Trie;

static int32_t
trie_child(Trie *trie, int32_t parent, Py_UCS4 symbol, int create)
{
    for (int32_t child = trie->nodes[parent].first_child; child >= 0;
         child = trie->nodes[child].next_sibling) {
        if (trie->nodes[child].symbol == symbol) {
            return child;
        }
    }
    if (!create) {
        return -1;
    }
    if (trie->count == trie->size) {
        if (trie->size >= INT32_MAX / 2) {
            PyErr_NoMemory();
            return -2;
        }
        Py_ssize_t size = trie->size * 2;
        TrieNode *nodes = PyMem_Realloc(trie->nodes, (size_t)size * sizeof(TrieNode));
        if (nodes == NULL) {
            PyErr_NoMemory();
            return -2;
        }
        trie->nodes = nodes;
        trie->size = size;
    }
    int32_t child = (int32_t)trie->count++;
    trie->nodes[child].symbol = symbol;
    trie->nodes[child].first_child = -1;
    trie->nodes[child].key = -1;
    trie->nodes[child].next_sibling = trie->nodes[parent].first_child;
    trie->nodes[parent].first_child = child;
    return child;
}

static int
compare_edges(const void *left, const void *right)
{
    Py_UCS4 a = ((const Edge *)left)->symbol, b = ((const Edge *)right)->symbol;
    return (a > b) - (a < b);
}

static inline int32_t
goto_child(const EngineObject *self, int32_t node, Py_UCS4 symbol)
{
    if (node == 0) {
        return codemap_get(&self->root, symbol, -1);
    }
    const Node *here = &self->nodes[node];
    const Edge *edges = self->edges + here->first_edge;
    int32_t count = here->edge_count;
    if (count <= 8) {
        for (int32_t i = 0; i < count; i++) {
            if (edges[i].symbol == symbol) {
                return edges[i].target;
            }
        }
        return -1;
    }
    int32_t low = 0, high = count;
    while (low < high) {
        int32_t middle = low + (high - low) / 2;
        if (edges[middle].symbol < symbol) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    return low < count && edges[low].symbol == symbol ? edges[low].target : -1;
}

/* Freeze the trie into sorted edge arrays, then add failure links (BFS). */
static int
build_automaton(EngineObject *self, Trie *trie)
{
    Py_ssize_t count = trie->count;
    int32_t *queue = NULL;
    Py_ssize_t edge_index = 0, head = 0, tail = 0;

    self->node_count = count;
    self->nodes = alloc_array(count, sizeof(Node));
    self->edges = alloc_array(count, sizeof(Edge));
    queue = alloc_array(count, sizeof(int32_t));
    if (self->nodes == NULL || self->edges == NULL || queue == NULL ||
        codemap_init(&self->root, count) < 0) {
        PyMem_Free(queue);
        return -1;
    }
    for (Py_ssize_t node = 0; node < count; node++) {
        Node *frozen = &self->nodes[node];
        frozen->key = trie->nodes[node].key;
        frozen->first_edge = (int32_t)edge_index;
        for (int32_t child = trie->nodes[node].first_child; child >= 0;
             child = trie->nodes[child].next_sibling) {
            self->edges[edge_index].symbol = trie->nodes[child].symbol;
            self->edges[edge_index].target = child;
            edge_index++;
        }
        frozen->edge_count = (int32_t)(edge_index - frozen->first_edge);
        qsort(self->edges + frozen->first_edge, (size_t)frozen->edge_count,
              sizeof(Edge), compare_edges);
    }
    self->nodes[0].fail = 0;
    self->nodes[0].output = -1;
    for (int32_t i = 0; i < self->nodes[0].edge_count; i++) {
        const Edge *edge = &self->edges[i];
        uint32_t slot = codemap_find(&self->root, (uint32_t)edge->symbol + 1);
        self->root.keys[slot] = (uint32_t)edge->symbol + 1;
        self->root.values[slot] = edge->target;
        self->root.used++;
        self->nodes[edge->target].fail = 0;
        self->nodes[edge->target].output = -1;
        queue[tail++] = edge->target;
    }
    while (head < tail) {
        int32_t node = queue[head++];
        const Node *here = &self->nodes[node];
        for (int32_t i = 0; i < here->edge_count; i++) {
            const Edge *edge = &self->edges[here->first_edge + i];
            int32_t fail = here->fail, target;
            while ((target = goto_child(self, fail, edge->symbol)) < 0 && fail != 0) {
                fail = self->nodes[fail].fail;
            }
            if (target < 0) {
                target = 0;
            }
            Node *child = &self->nodes[edge->target];
            child->fail = target;
            child->output = self->nodes[target].key >= 0 ? target : self->nodes[target].output;
            queue[tail++] = edge->target;
        }
    }
    PyMem_Free(queue);
    return 0;
}

static int
load_keys(EngineObject *self, PyObject *sequence)
{
    PyObject *items = PySequence_Fast(sequence, "Engine(): keys must be a sequence");
    Trie trie = {NULL, 1, 64};
    Py_ssize_t used = 0, capacity;
    int status = -1;

    if (items == NULL) {
        return -1;
    }
    self->key_count = PySequence_Fast_GET_SIZE(items);
    capacity = self->phrase_count + self->cue_count;
    if (capacity > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "Engine(): too many entries");
        Py_DECREF(items);
        return -1;
    }
    self->keys = alloc_array(self->key_count, sizeof(Key));
    self->key_entries = alloc_array(capacity, sizeof(int32_t));
    trie.nodes = PyMem_Malloc((size_t)trie.size * sizeof(TrieNode));
    if (self->keys == NULL || self->key_entries == NULL || trie.nodes == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    if (self->key_count > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "Engine(): too many keys");
        goto done;
    }
    trie.nodes[0].symbol = 0;
    trie.nodes[0].first_child = -1;
    trie.nodes[0].next_sibling = -1;
    trie.nodes[0].key = -1;
    for (Py_ssize_t i = 0; i < self->key_count; i++) {
        PyObject *text, *phrases, *cues;
        int left, right, extends;
        Key *key = &self->keys[i];
        int32_t node = 0;

        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, i), "UpppOO:key", &text,
                              &left, &right, &extends, &phrases, &cues)) {
            goto done;
        }
        key->length = PyUnicode_GET_LENGTH(text);
        if (key->length == 0) {
            PyErr_SetString(PyExc_ValueError, "Engine(): an empty key");
            goto done;
        }
        key->left_boundary = left;
        key->right_boundary = right;
        key->extends_word = extends;
        if (load_key_entries(phrases, self->phrase_count, self->key_entries, &used,
                             capacity, &key->first_phrase, &key->phrase_count) < 0 ||
            load_key_entries(cues, self->cue_count, self->key_entries, &used, capacity,
                             &key->first_cue, &key->cue_count) < 0) {
            goto done;
        }
        for (Py_ssize_t j = 0; j < key->length; j++) {
            node = trie_child(&trie, node, PyUnicode_READ_CHAR(text, j), 1);
            if (node < 0) {
                goto done;
            }
        }
        if (trie.nodes[node].key >= 0) {
            PyErr_SetString(PyExc_ValueError, "Engine(): a key is given twice");
            goto done;
        }
        trie.nodes[node].key = (int32_t)i;
    }
    status = build_automaton(self, &trie);
done:
    PyMem_Free(trie.nodes);
    Py_DECREF(items);
    return status;
}

static int
load_fillers(EngineObject *self, PyObject *iterable)
{
    PyObject *iterator = PyObject_GetIter(iterable), *item;
    if (iterator == NULL) {
        return -1;
    }
    while ((item = PyIter_Next(iterator)) != NULL) {
        int status = PyUnicode_Check(item) ? wordset_add(&self->fillers, item, 0.0) : 0;
        Py_DECREF(item);
        if (status < 0) {
            Py_DECREF(iterator);
            return -1;
        }
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        return -1;
    }
    return wordset_index(&self->fillers);
}

/* The dataclass has exactly the eight fields, in order, and no
 * __post_init__ that filling the slots directly would skip. */
static int
check_hit_fields(PyObject *type)
{
    PyObject *names = PyObject_GetAttrString(type, "__match_args__");
    int same = names != NULL && PyTuple_Check(names) &&
               PyTuple_GET_SIZE(names) == HIT_FIELDS;

    for (int i = 0; same && i < HIT_FIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        same = PyUnicode_Check(name) &&
               PyUnicode_CompareWithASCIIString(name, hit_field_names[i]) == 0;
    }
    Py_XDECREF(names);
    if (names == NULL) {
        return -1;
    }
    if (!same || PyObject_HasAttrString(type, "__post_init__")) {
        PyErr_SetString(PyExc_TypeError,
                        "Engine(): hit_type must be the eight-field TrackerHit dataclass");
        return -1;
    }
    return 0;
}

/* Hits are instances of trackers.TrackerHit (a frozen slots dataclass):
 * allocated and filled slot by slot, as its __init__ would, without the
 * Python-level call. Each field must be a plain object slot of the type. */
static int
load_hit_type(EngineObject *self, PyObject *type)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "Engine(): hit_type must be a class");
        return -1;
    }
    if (check_hit_fields(type) < 0) {
        return -1;
    }
    PyTypeObject *hit_type = (PyTypeObject *)type;
    if (hit_type->tp_itemsize != 0 || hit_type->tp_alloc == NULL) {
        PyErr_SetString(PyExc_TypeError, "Engine(): hit_type has no fixed layout");
        return -1;
    }
    for (int i = 0; i < HIT_FIELDS; i++) {
        PyObject *descriptor = PyObject_GetAttrString(type, hit_field_names[i]);
        if (descriptor == NULL) {
            return -1;
        }
        int plain = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
                    PyType_IsSubtype(hit_type, PyDescr_TYPE(descriptor));
        PyMemberDef *member = plain ? ((PyMemberDescrObject *)descriptor)->d_member : NULL;
        if (member != NULL) {
            self->hit_offsets[i] = member->offset;
        }
        Py_DECREF(descriptor);
        if (member == NULL || member->type != T_OBJECT_EX || member->flags != 0 ||
            member->offset < (Py_ssize_t)sizeof(PyObject) ||
            member->offset > hit_type->tp_basicsize - (Py_ssize_t)sizeof(PyObject *)) {
            PyErr_Format(PyExc_TypeError, "Engine(): hit_type.%s is not a slot",
                         hit_field_names[i]);
            return -1;
        }
    }
    self->hit_type = (PyTypeObject *)Py_NewRef(type);
    return 0;
}

static PyObject *
engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *keys, *trackers, *phrases, *cues, *fillers, *hit_type, *rep, *customer;
    PyObject *words;
    EngineObject *self;
    ModuleState *state;

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "Engine() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOOOO(OO)O:Engine", &keys, &trackers, &phrases,
                          &cues, &fillers, &hit_type, &rep, &customer, &words)) {
        return NULL;
    }
    if (!PyCallable_Check(words)) {
        PyErr_SetString(PyExc_TypeError, "Engine(): words must be callable");
        return NULL;
    }
    state = PyType_GetModuleState(type);
    if (state == NULL) {
        return NULL;
    }
    self = (EngineObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->rep = Py_NewRef(rep);
    self->customer = Py_NewRef(customer);
    self->words_provider = Py_NewRef(words);
    self->word_index_type = Py_NewRef(state->word_index_type);
    if (load_trackers(self, trackers) < 0 || load_phrases(self, phrases) < 0 ||
        load_cues(self, cues) < 0 || load_keys(self, keys) < 0 ||
        load_fillers(self, fillers) < 0 || load_hit_type(self, hit_type) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* ------------------------------------------------------------------------
 * One call of match()
 */

#define INLINE_CHARACTERS 256
#define INLINE_TRACKERS 32
#define INLINE_SENTENCES 32

typedef struct {
    EngineObject *engine;
    PyObject *text;
    Py_UCS4 *folded;
    Py_ssize_t length;
    Spans phrases, cues, clauses, sentences;
    /* How many cues of each kind were found (counted in resolve): the
     * scans for exclusions and exceptions are skipped when there are none. */
    Py_ssize_t kind_counts[KIND_QUESTION_EXCEPTION + 1];
    Py_UCS4 inline_folded[INLINE_CHARACTERS];
} Match;

static inline int
tracker_serves(int32_t cue_tracker, int32_t tracker)
{
    /* `cue.entry.tracker in (None, tracker)` */
    return cue_tracker == NO_TRACKER || cue_tracker == tracker;
}

/* _found over both key sets at once, in pyahocorasick's order: by end, the
 * longest key first. Phrase entries are filtered by speaker here. */
static int
scan(Match *match, int who)
{
    const EngineObject *self = match->engine;
    const Py_UCS4 *text = match->folded;
    Py_ssize_t length = match->length;
    int32_t state = 0, order = 0;

    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 symbol = text[i];
        for (;;) {
            int32_t next = goto_child(self, state, symbol);
            if (next >= 0) {
                state = next;
                break;
            }
            if (state == 0) {
                break;
            }
            state = self->nodes[state].fail;
        }
        int32_t output = self->nodes[state].key >= 0 ? state : self->nodes[state].output;
        for (; output >= 0; output = self->nodes[output].output) {
            const Key *key = &self->keys[self->nodes[output].key];
            Py_ssize_t start = i + 1 - key->length, end = i + 1;

            if (key->left_boundary && start > 0 && is_word_char(text[start - 1])) {
                continue;
            }
            if (key->extends_word) {
                while (end < length && is_word_char(text[end])) {
                    end++;
                }
            }
            else if (key->right_boundary && end < length && is_word_char(text[end])) {
                continue;
            }
            for (int32_t j = 0; j < key->phrase_count; j++) {
                int32_t entry = self->key_entries[key->first_phrase + j];
                int speaker = self->trackers[self->phrases[entry].tracker].speaker;
                if ((who == 0 || speaker == 0 || speaker == who) &&
                    spans_push(&match->phrases, start, end, entry, order++) < 0) {
                    return -1;
                }
            }
            for (int32_t j = 0; j < key->cue_count; j++) {
                int32_t entry = self->key_entries[key->first_cue + j];
                if (spans_push(&match->cues, start, end, entry, 0) < 0) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* _CLAUSE_BREAK (clause) or _SENTENCE_BREAK, as re.finditer scans them. */
static int
find_breaks(const Match *match, int clause, Spans *out)
{
    const Py_UCS4 *text = match->folded;
    Py_ssize_t length = match->length, position = 0;

    while (position < length) {
        Py_UCS4 c = text[position];
        Py_ssize_t end = position + 1;

        if (clause ? is_clause_mark(c) : is_sentence_mark(c)) {
            while (end < length && (clause ? is_clause_mark(text[end])
                                           : is_sentence_mark(text[end]))) {
                end++;
            }
            if (spans_push(out, position, end, 0, 0) < 0) {
                return -1;
            }
            position = end;
            continue;
        }
        if (c == '.') {
            /* \.+(?=\s|$): no later dot of the run can match if this one fails */
            while (end < length && text[end] == '.') {
                end++;
            }
            if ((end == length || Py_UNICODE_ISSPACE(text[end])) &&
                spans_push(out, position, end, 0, 0) < 0) {
                return -1;
            }
            position = end;
            continue;
        }
        if (clause && position > 0 && is_han(text[position - 1]) &&
            Py_UNICODE_ISSPACE(c)) {
            /* (?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff]) */
            while (end < length && Py_UNICODE_ISSPACE(text[end])) {
                end++;
            }
            if (end < length && is_han(text[end])) {
                if (spans_push(out, position, end, 0, 0) < 0) {
                    return -1;
                }
                position = end;
                continue;
            }
        }
        position++;
    }
    return 0;
}

/* _Resolver._clause / _sentence: the span between the surrounding breaks. */
static Py_ssize_t
segment_of(const Match *match, const Spans *breaks, Py_ssize_t position,
           Py_ssize_t *start, Py_ssize_t *end)
{
    Py_ssize_t index = spans_bisect(breaks, position);
    *start = index ? breaks->items[index - 1].end : 0;
    *end = index < breaks->length ? breaks->items[index].start : match->length;
    return index;
}

/* _distance: Han characters plus runs of Latin letters and digits. */
static Py_ssize_t
distance(const Py_UCS4 *text, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t units = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        if (is_han(text[i])) {
            units++;
        }
        else if (is_gap_latin(text[i])) {
            units++;
            while (i + 1 < end && is_gap_latin(text[i + 1])) {
                i++;
            }
        }
    }
    return units;
}

/* _uncovered: drop the cues of `kind` inside an exception of `exception`. */
static void
cancel_covered(Match *match, int kind, int exception)
{
    const CueEntry *entries = match->engine->cues;
    Span *cues = match->cues.items;
    Py_ssize_t count = match->cues.length;

    if (match->kind_counts[exception] == 0) {
        return; /* as _uncovered: nothing to cancel */
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (entries[cues[i].entry].kind != kind) {
            continue;
        }
        for (Py_ssize_t j = 0; j < count; j++) {
            const CueEntry *cover = &entries[cues[j].entry];
            if (cover->kind == exception && cues[j].start <= cues[i].start &&
                cues[i].end <= cues[j].end &&
                tracker_serves(cover->tracker, entries[cues[i].entry].tracker)) {
                cues[i].order = -1;
                break;
            }
        }
    }
}

static WordIndexObject *
fetch_words(EngineObject *self)
{
    PyObject *words;
    if (self->words != NULL) {
        return (WordIndexObject *)Py_NewRef(self->words);
    }
    if (self->words_provider == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracker engine was cleared");
        return NULL;
    }
    words = PyObject_CallNoArgs(self->words_provider);
    if (words == NULL) {
        return NULL;
    }
    if (!Py_IS_TYPE(words, (PyTypeObject *)self->word_index_type)) {
        Py_DECREF(words);
        PyErr_SetString(PyExc_TypeError, "tracker engine: words() must return a WordIndex");
        return NULL;
    }
    /* Another thread may have fetched it while the provider ran. */
    if (self->words == NULL) {
        self->words = Py_NewRef(words);
    }
    return (WordIndexObject *)words;
}

/* _Resolver._stands: not inside an exclusion, not across a jieba word. */
static int
stands(Match *match, const Span *found)
{
    EngineObject *self = match->engine;
    const PhraseEntry *entry = &self->phrases[found->entry];
    Py_ssize_t clause_start, clause_end;
    WordIndexObject *words;
    int splits;

    for (Py_ssize_t i = 0; match->kind_counts[KIND_EXCLUDE] && i < match->cues.length;
         i++) {
        const Span *cue = &match->cues.items[i];
        const CueEntry *cue_entry = &self->cues[cue->entry];
        if (cue_entry->kind == KIND_EXCLUDE && cue_entry->tracker == entry->tracker &&
            cue->start <= found->start && found->end <= cue->end) {
            return 0;
        }
    }
    if (!entry->word_check) {
        return 1;
    }
    words = fetch_words(match->engine);
    if (words == NULL) {
        return -1;
    }
    segment_of(match, &match->clauses, found->start, &clause_start, &clause_end);
    splits = splits_word(words, match->folded, found->start, found->end, clause_start,
                         clause_end);
    Py_DECREF(words);
    return splits < 0 ? -1 : !splits;
}

/* _Resolver._is_negated */
static int
is_negated(const Match *match, const Span *found, int32_t tracker,
           Py_ssize_t clause_start, Py_ssize_t clause_end)
{
    const CueEntry *entries = match->engine->cues;

    for (Py_ssize_t i = 0; i < match->cues.length; i++) {
        const Span *cue = &match->cues.items[i];
        const CueEntry *entry = &entries[cue->entry];
        if (cue->order < 0 || !tracker_serves(entry->tracker, tracker)) {
            continue;
        }
        if (entry->kind == KIND_NEGATE_BEFORE && clause_start <= cue->start &&
            cue->end <= found->start &&
            distance(match->folded, cue->end, found->start) <= entry->window) {
            return 1;
        }
        if (entry->kind == KIND_NEGATE_AFTER && found->end <= cue->start &&
            cue->end <= clause_end &&
            distance(match->folded, found->end, cue->start) <= entry->window) {
            return 1;
        }
    }
    return 0;
}

/* _Resolver._only_fillers */
static int
only_fillers(const Match *match, Py_ssize_t start, Py_ssize_t end)
{
    const Py_UCS4 *text = match->folded;
    for (Py_ssize_t i = start; i < end; i++) {
        if (is_han(text[i])) {
            return 0;
        }
    }
    for (Py_ssize_t i = start; i < end; i++) {
        if (is_gap_latin(text[i]) || text[i] == '\'') {
            Py_ssize_t word = i;
            while (i + 1 < end && (is_gap_latin(text[i + 1]) || text[i + 1] == '\'')) {
                i++;
            }
            if (wordset_find(&match->engine->fillers, text + word, i + 1 - word) < 0) {
                return 0;
            }
        }
    }
    return 1;
}

/* _Resolver._asks for the sentence [start, end) ended by break `index`. */
static int
asks(const Match *match, Py_ssize_t index, Py_ssize_t start, Py_ssize_t end)
{
    const Py_UCS4 *text = match->folded;
    const CueEntry *entries = match->engine->cues;

    if (index < match->sentences.length) {
        const Span *terminator = &match->sentences.items[index];
        for (Py_ssize_t i = terminator->start; i < terminator->end; i++) {
            if (text[i] == '?') {
                return 1;
            }
        }
    }
    for (Py_ssize_t i = 0; i < match->cues.length; i++) {
        const Span *cue = &match->cues.items[i];
        if (entries[cue->entry].kind == KIND_QUESTION && cue->order >= 0 &&
            start <= cue->start && cue->end <= end) {
            return 1;
        }
    }
    for (Py_ssize_t i = start; i + 2 < end; i++) {
        /* ([\u3400-\u9fff])[不没]\1 */
        if (is_han(text[i]) && (text[i + 1] == 0x4E0D || text[i + 1] == 0x6CA1) &&
            text[i + 2] == text[i]) {
            return 1;
        }
    }
    for (Py_ssize_t i = 0; i < match->cues.length; i++) {
        const Span *cue = &match->cues.items[i];
        Py_ssize_t clause_start, clause_end;
        int kind = entries[cue->entry].kind;

        if (kind == KIND_QUESTION_LEADING && start <= cue->start && cue->start < end) {
            segment_of(match, &match->clauses, cue->start, &clause_start, &clause_end);
            if (only_fillers(match, clause_start, cue->start)) {
                return 1;
            }
        }
    }
    for (Py_ssize_t i = 0; i < match->cues.length; i++) {
        const Span *cue = &match->cues.items[i];
        Py_ssize_t clause_start, clause_end, rest;
        int kind = entries[cue->entry].kind;

        if (kind == KIND_QUESTION_FINAL && start <= cue->start && cue->end <= end) {
            segment_of(match, &match->clauses, cue->start, &clause_start, &clause_end);
            for (rest = cue->end; rest < clause_end; rest++) {
                if (!Py_UNICODE_ISSPACE(text[rest])) {
                    break;
                }
            }
            if (rest >= clause_end) {
                return 1;
            }
        }
    }
    return 0;
}

static PyObject *
make_hit(const Match *match, const Span *found, int negated, int question)
{
    const EngineObject *self = match->engine;
    const PhraseEntry *entry = &self->phrases[found->entry];
    const Tracker *tracker = &self->trackers[entry->tracker];
    PyObject *values[HIT_FIELDS];
    PyObject *hit;

    values[0] = Py_NewRef(tracker->id);
    values[1] = Py_NewRef(tracker->category);
    values[2] = Py_NewRef(entry->phrase);
    values[3] = PyUnicode_Substring(match->text, found->start, found->end);
    values[4] = PyLong_FromSsize_t(found->start);
    values[5] = PyLong_FromSsize_t(found->end);
    values[6] = Py_NewRef(negated ? Py_True : Py_False);
    values[7] = Py_NewRef(question ? Py_True : Py_False);
    hit = values[3] && values[4] && values[5] ? self->hit_type->tp_alloc(self->hit_type, 0)
                                             : NULL;
    if (hit == NULL) {
        for (int i = 0; i < HIT_FIELDS; i++) {
            Py_XDECREF(values[i]);
        }
        return NULL;
    }
    for (int i = 0; i < HIT_FIELDS; i++) {
        *(PyObject **)((char *)hit + self->hit_offsets[i]) = values[i];
    }
    return hit;
}

static int
compare_phrase_hits(const void *left, const void *right)
{
    /* _longest_per_tracker's sort: start, longest first, then found order */
    const Span *a = left, *b = right;
    if (a->start != b->start) {
        return a->start < b->start ? -1 : 1;
    }
    Py_ssize_t a_length = a->end - a->start, b_length = b->end - b->start;
    if (a_length != b_length) {
        return a_length > b_length ? -1 : 1;
    }
    return (a->order > b->order) - (a->order < b->order);
}

/* _Resolver.resolve, with _longest_per_tracker checking reach before
 * _stands: an item that starts inside its tracker's last hit is skipped
 * whether or not it stands, so the jieba look-up is not needed for it. */
static PyObject *
resolve(Match *match)
{
    EngineObject *self = match->engine;
    Py_ssize_t inline_reach[INLINE_TRACKERS], *reach = inline_reach;
    signed char inline_asked[INLINE_SENTENCES], *asked = inline_asked;
    PyObject *hits = NULL, *result = NULL;

    if (find_breaks(match, 1, &match->clauses) < 0 ||
        find_breaks(match, 0, &match->sentences) < 0) {
        return NULL;
    }
    memset(match->kind_counts, 0, sizeof(match->kind_counts));
    for (Py_ssize_t i = 0; i < match->cues.length; i++) {
        match->kind_counts[self->cues[match->cues.items[i].entry].kind]++;
    }
    cancel_covered(match, KIND_NEGATE_BEFORE, KIND_NEGATION_EXCEPTION);
    cancel_covered(match, KIND_NEGATE_AFTER, KIND_NEGATION_EXCEPTION);
    cancel_covered(match, KIND_QUESTION, KIND_QUESTION_EXCEPTION);
    qsort(match->phrases.items, (size_t)match->phrases.length, sizeof(Span),
          compare_phrase_hits);

    if (self->tracker_count > INLINE_TRACKERS) {
        reach = alloc_array(self->tracker_count, sizeof(Py_ssize_t));
    }
    if (match->sentences.length + 1 > INLINE_SENTENCES) {
        asked = alloc_array(match->sentences.length + 1, 1);
    }
    hits = PyList_New(0);
    if (reach == NULL || asked == NULL || hits == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < self->tracker_count; i++) {
        reach[i] = -1;
    }
    memset(asked, -1, (size_t)(match->sentences.length + 1));

    for (Py_ssize_t i = 0; i < match->phrases.length; i++) {
        const Span *found = &match->phrases.items[i];
        int32_t tracker = self->phrases[found->entry].tracker;
        Py_ssize_t clause_start, clause_end, sentence_start, sentence_end, sentence;
        int standing, negated;
        PyObject *hit;

        if (found->start < reach[tracker]) {
            continue;
        }
        standing = stands(match, found);
        if (standing < 0) {
            goto done;
        }
        if (!standing) {
            continue;
        }
        reach[tracker] = found->end;

        segment_of(match, &match->clauses, found->start, &clause_start, &clause_end);
        negated = is_negated(match, found, tracker, clause_start, clause_end);
        sentence = segment_of(match, &match->sentences, found->start, &sentence_start,
                              &sentence_end);
        if (asked[sentence] < 0) {
            asked[sentence] = (signed char)asks(match, sentence, sentence_start,
                                                sentence_end);
        }
        hit = make_hit(match, found, negated, asked[sentence]);
        if (hit == NULL || PyList_Append(hits, hit) < 0) {
            Py_XDECREF(hit);
            goto done;
        }
        Py_DECREF(hit);
    }
    result = hits;
    hits = NULL;
done:
    Py_XDECREF(hits);
    if (reach != inline_reach) {
        PyMem_Free(reach);
    }
    if (asked != inline_asked) {
        PyMem_Free(asked);
    }
    return result;
}

static PyObject *
engine_match(EngineObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *text, *speaker, *result = NULL;
    Match match;
    int who;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "match() takes text and speaker");
        return NULL;
    }
    text = args[0];
    speaker = args[1];
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "match(): text must be str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    if (self->hit_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracker engine was cleared");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
#endif
    if (speaker == Py_None) {
        who = 0;
    }
    else if (speaker == self->rep) {
        who = 1;
    }
    else if (speaker == self->customer) {
        who = 2;
    }
    else {
        PyErr_SetString(PyExc_TypeError, "match(): speaker must be a Speaker or None");
        return NULL;
    }

    match.engine = self;
    match.text = text;
    match.length = PyUnicode_GET_LENGTH(text);
    match.folded = match.inline_folded;
    spans_init(&match.phrases);
    spans_init(&match.cues);
    spans_init(&match.clauses);
    spans_init(&match.sentences);
    if (match.length > INLINE_CHARACTERS) {
        match.folded = alloc_array(match.length, sizeof(Py_UCS4));
        if (match.folded == NULL) {
            return NULL;
        }
    }

    fold_into(text, match.folded);
    if (scan(&match, who) == 0) {
        result = match.phrases.length ? resolve(&match) : PyList_New(0);
    }

    spans_free(&match.phrases);
    spans_free(&match.cues);
    spans_free(&match.clauses);
    spans_free(&match.sentences);
    if (match.folded != match.inline_folded) {
        PyMem_Free(match.folded);
    }
    return result;
}

static PyMethodDef engine_methods[] = {
    {"match", (PyCFunction)(void (*)(void))engine_match, METH_FASTCALL,
     "match(text, speaker) -> list[TrackerHit]\n\n"
     "TrackerEngine.match once the speaker is resolved to a Speaker or None."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot engine_slots[] = {
    {Py_tp_doc, "Compiled trackers: the native TrackerEngine.match."},
    {Py_tp_new, engine_new},
    {Py_tp_dealloc, engine_dealloc},
    {Py_tp_traverse, engine_traverse},
    {Py_tp_clear, engine_clear},
    {Py_tp_methods, engine_methods},
    {0, NULL},
};

static PyType_Spec engine_spec = {
    .name = "waggle.signals._tracker_native.Engine",
    .basicsize = sizeof(EngineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = engine_slots,
};

/* ------------------------------------------------------------------------
 * Module
 */

static PyObject *
module_fold(PyObject *module, PyObject *text)
{
    Py_ssize_t length;
    Py_UCS4 *buffer;
    PyObject *folded;

    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "fold(): text must be str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return NULL;
    }
    length = PyUnicode_GET_LENGTH(text);
    buffer = alloc_array(length, sizeof(Py_UCS4));
    if (buffer == NULL) {
        return NULL;
    }
    fold_into(text, buffer);
    folded = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buffer, length);
    PyMem_Free(buffer);
    return folded;
}

static PyMethodDef module_methods[] = {
    {"fold", module_fold, METH_O,
     "fold(text) -> str\n\nThe native trackers.fold, for tests."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);

    state->word_index_type = PyType_FromModuleAndSpec(module, &word_index_spec, NULL);
    if (state->word_index_type == NULL ||
        PyModule_AddObjectRef(module, "WordIndex", state->word_index_type) < 0) {
        return -1;
    }
    state->engine_type = PyType_FromModuleAndSpec(module, &engine_spec, NULL);
    if (state->engine_type == NULL ||
        PyModule_AddObjectRef(module, "Engine", state->engine_type) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModuleState *state = PyModule_GetState(module);
    Py_VISIT(state->word_index_type);
    Py_VISIT(state->engine_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);
    Py_CLEAR(state->word_index_type);
    Py_CLEAR(state->engine_type);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "waggle.signals._tracker_native",
    .m_doc = "Native hot path of waggle.signals.trackers.TrackerEngine.match.",
    .m_size = sizeof(ModuleState),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__tracker_native(void)
{
    return PyModuleDef_Init(&module_def);
}
