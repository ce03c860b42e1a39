/* Exact "entries before each true match" counts for the Market-1501 evaluation, one pass per row.
 *
 * Optional accelerator of rareid.metrics: where this module is not built, and on GPUs, the
 * pure-torch histogram path gives the same numbers. For every query row and every selected
 * gallery entry j of that row (its true matches) it counts the gallery entries e that come before
 * j in (distance, gallery index) order, the order of a stable sort of the row:
 *
 *     count_j = #{ e : d_e < d_j  or  (d_e == d_j and e < j) }
 *
 * How: the row's m selected entries, sorted, split the row into m + 1 buckets. A monotone linear
 * map puts every entry in one of a few thousand fine bins; a per-row table gives the bucket of
 * every fine bin that holds no selected entry, and the few entries in bins that do are compared
 * exactly. A histogram of the buckets and its running sum give every count: one read of the
 * row, a handful of operations per entry, no sort of the row.
 *
 * Worker threads take rows a few at a time; the GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Exactness needs every bin computed by the same separately rounded operations (GCC: the
 * -ffp-contract=off build flag), in the declared types, and the NaN checks kept. A build that
 * cannot promise this fails, and rareid falls back to its torch path. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "rareid._rankcount needs FLT_EVAL_METHOD == 0 (SSE or other non-x87 floating point)"
#endif
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "rareid._rankcount must not be built with -ffast-math or -ffinite-math-only"
#endif

/* AVX2 copies of the hot loops, picked at import where the CPU has AVX2. */
#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2_COPIES 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,popcnt")))
#endif

/* Fine bins spanning the selected distances (plus a margin bin each side): the row's table of
 * this many int32 stays in the L1 cache. */
#define CORE_BINS 2048
#define ALL_BINS (CORE_BINS + 2)
/* Entries binned at once (vectorised) before they are counted. */
#define BLOCK 512
/* Interleaved copies of the bucket histogram, so that increments of one counter do not wait
 * on each other. */
#define COPIES 4
/* Rows a worker takes at a time. */
#define ROWS_PER_TAKE 8
#define MAX_THREADS 256

enum { ROW_FALLBACK = 0, ROW_DONE = 1 };

typedef struct {
    double value; /* exact for float and double rows */
    int64_t column;
    int64_t slot;    /* position in the row's list of same-identity entries */
    int32_t bin;     /* fine bin */
    int32_t bin_end; /* index after the last threshold in the same bin */
} Threshold;

typedef struct {
    const char *dist;
    int is_double;
    int64_t n_rows, n_cols, row_stride; /* stride in elements */
    const int64_t *columns;             /* (n_rows, slots) gallery indices */
    const uint8_t *selected;            /* (n_rows, slots) which slots to count */
    int64_t slots;
    int64_t *count;   /* (n_rows, slots): written for the selected slots of served rows */
    uint8_t *served;  /* (n_rows,): ROW_DONE or ROW_FALLBACK */
    int64_t next_row; /* shared, advanced atomically */
    int nan_found;    /* shared flags */
    int out_of_memory;
} Job;

typedef struct {
    Threshold *thresholds;
    int64_t *hist; /* COPIES x (capacity + 1) */
    int64_t capacity;
} Scratch;

static int threshold_less(const Threshold *a, const Threshold *b) {
    return a->value < b->value || (a->value == b->value && a->column < b->column);
}

static int threshold_cmp(const void *pa, const void *pb) {
    const Threshold *a = pa, *b = pb;
    return threshold_less(a, b) ? -1 : threshold_less(b, a);
}

static void sort_thresholds(Threshold *t, int64_t m) {
    if (m > 32) {
        qsort(t, (size_t)m, sizeof(Threshold), threshold_cmp);
        return;
    }
    for (int64_t i = 1; i < m; i++) { /* insertion sort: m is a handful */
        Threshold key = t[i];
        int64_t j = i - 1;
        for (; j >= 0 && threshold_less(&key, &t[j]); j--) t[j + 1] = t[j];
        t[j + 1] = key;
    }
}

static int scratch_reserve(Scratch *s, int64_t m) {
    if (m <= s->capacity) return 1;
    free(s->thresholds);
    free(s->hist);
    s->thresholds = malloc(sizeof(Threshold) * (size_t)m);
    s->hist = malloc(sizeof(int64_t) * COPIES * (size_t)(m + 1));
    s->capacity = (s->thresholds && s->hist) ? m : 0;
    return s->capacity > 0;
}

/* Per row type: the fine bin of a value, (v - origin) * scale clamped and truncated, in the
 * row's own type. It is monotone in v, and thresholds and entries get their bins from the same
 * operations, so a threshold and an equal entry share a bin. NaN lands in bin 0 (reported
 * separately). */
#define DEFINE_BLOCK_BINS(NAME, TYPE, SUFFIX, ATTRIBUTES)                                     \
    ATTRIBUTES static int NAME(const TYPE *row, int64_t n, TYPE origin, TYPE scale,          \
                               int32_t *bins) {                                              \
        int nan = 0;                                                                         \
        for (int64_t k = 0; k < n; k++) {                                                    \
            nan |= row[k] != row[k];                                                         \
            bins[k] = fine_bin_##SUFFIX(row[k], origin, scale);                              \
        }                                                                                    \
        return nan;                                                                          \
    }
#ifdef HAVE_AVX2_COPIES
#define AVX2_COPY(definition) definition
#else
#define AVX2_COPY(definition)
#endif
#define DEFINE_BINNING(SUFFIX, TYPE)                                                           \
    static inline int32_t fine_bin_##SUFFIX(TYPE v, TYPE origin, TYPE scale) {               \
        TYPE x = (v - origin) * scale;                                                       \
        x = x > (TYPE)0 ? x : (TYPE)0;                                                       \
        x = x < (TYPE)(ALL_BINS - 1) ? x : (TYPE)(ALL_BINS - 1);                             \
        return (int32_t)x;                                                                   \
    }                                                                                        \
    static void threshold_bins_##SUFFIX(Threshold *t, int64_t m, double origin, double scale) { \
        for (int64_t u = 0; u < m; u++)                                                      \
            t[u].bin = fine_bin_##SUFFIX((TYPE)t[u].value, (TYPE)origin, (TYPE)scale);       \
    }                                                                                        \
    /* The hot loop: bins of a block of entries; returns whether any is NaN. */              \
    DEFINE_BLOCK_BINS(block_bins_##SUFFIX, TYPE, SUFFIX, )                                  \
    AVX2_COPY(DEFINE_BLOCK_BINS(block_bins_##SUFFIX##_avx2, TYPE, SUFFIX, AVX2))            \
    static int row_has_nan_##SUFFIX(const TYPE *row, int64_t n) {                            \
        int nan = 0;                                                                         \
        for (int64_t e = 0; e < n; e++) nan |= row[e] != row[e];                             \
        return nan;                                                                          \
    }
DEFINE_BINNING(float, float)
DEFINE_BINNING(double, double)

/* Appends to ``kept`` (holding n_kept) the positions q in [from, n) of the block whose bin is
 * at most ``last``, in order, branch-free; returns the new n_kept. */
static int64_t compact_from(const int32_t *bins, int64_t from, int64_t n, int32_t last,
                            int32_t *kept, int64_t n_kept) {
    for (int64_t q = from; q < n; q++) {
        kept[n_kept] = (int32_t)q;
        n_kept += bins[q] <= last;
    }
    return n_kept;
}

/* Positions (within the block) of the entries binned at most ``last``, in order. */
static int64_t compact_block(const int32_t *bins, int64_t n, int32_t last, int32_t *kept) {
    return compact_from(bins, 0, n, last, kept, 0);
}

#ifdef HAVE_AVX2_COPIES
/* For each 8-bit mask, the lanes it selects, packed to the front. */
static int32_t pack_lanes[256][8];

static void init_pack_lanes(void) {
    for (int mask = 0; mask < 256; mask++)
        for (int lane = 0, k = 0; lane < 8; lane++)
            if (mask & (1 << lane)) pack_lanes[mask][k++] = lane;
}

/* compact_block 8 entries at a time: compare, then pack the kept positions with a shuffle. */
AVX2 static int64_t compact_block_avx2(const int32_t *bins, int64_t n, int32_t last,
                                        int32_t *kept) {
    int64_t n_kept = 0, q = 0;
    const __m256i limit = _mm256_set1_epi32(last + 1), step = _mm256_set1_epi32(8);
    __m256i positions = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; q + 8 <= n; q += 8) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(bins + q));
        int mask = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(limit, b)));
        __m256i lanes = _mm256_loadu_si256((const __m256i *)pack_lanes[mask]);
        /* Writes 8 slots from n_kept <= q: within the block's buffer. */
        _mm256_storeu_si256((__m256i *)(kept + n_kept),
                            _mm256_permutevar8x32_epi32(positions, lanes));
        n_kept += __builtin_popcount((unsigned)mask);
        positions = _mm256_add_epi32(positions, step);
    }
    return compact_from(bins, q, n, last, kept, n_kept);
}
#endif

typedef struct {
    int (*bins_float)(const float *, int64_t, float, float, int32_t *);
    int (*bins_double)(const double *, int64_t, double, double, int32_t *);
    int64_t (*compact)(const int32_t *, int64_t, int32_t, int32_t *);
} Kernels;

static const Kernels portable_kernels = {block_bins_float, block_bins_double, compact_block};
static Kernels kernels; /* set at import by choose_kernels */

/* The fastest kernels this CPU runs, or the portable ones; returns the name of those chosen. */
static const char *choose_kernels(int portable) {
    kernels = portable_kernels;
#ifdef HAVE_AVX2_COPIES
    __builtin_cpu_init();
    if (!portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) {
        kernels = (Kernels){block_bins_float_avx2, block_bins_double_avx2, compact_block_avx2};
        return "avx2";
    }
#endif
    return "portable";
}

static inline double load(const char *row, int is_double, int64_t e) {
    return is_double ? ((const double *)row)[e] : (double)((const float *)row)[e];
}

static int row_has_nan(const char *row, int is_double, int64_t n) {
    return is_double ? row_has_nan_double((const double *)row, n)
                     : row_has_nan_float((const float *)row, n);
}

/* One row: ROW_DONE with its counts written, or ROW_FALLBACK (non-finite selected distances,
 * NaN, no memory); NaN anywhere in the row sets *nan. */
static int count_row(Job *job, int64_t i, Scratch *scratch, int *nan) {
    const char *row = job->dist + (size_t)(i * job->row_stride) * (job->is_double ? 8 : 4);
    const int64_t *columns = job->columns + i * job->slots;
    const uint8_t *selected = job->selected + i * job->slots;
    const int64_t n = job->n_cols;
    int64_t m = 0;
    for (int64_t j = 0; j < job->slots; j++) m += selected[j] != 0;
    if (m == 0) {
        *nan |= row_has_nan(row, job->is_double, n);
        return ROW_DONE;
    }
    if (!scratch_reserve(scratch, m)) {
        __atomic_store_n(&job->out_of_memory, 1, __ATOMIC_RELAXED);
        return ROW_FALLBACK;
    }
    Threshold *t = scratch->thresholds;
    int selected_nan = 0;
    for (int64_t j = 0, k = 0; j < job->slots; j++) {
        if (!selected[j]) continue;
        t[k] = (Threshold){load(row, job->is_double, columns[j]), columns[j], j, 0, 0};
        selected_nan |= t[k].value != t[k].value;
        k++;
    }
    if (selected_nan) { /* before sorting: NaN has no order */
        *nan = 1;
        return ROW_FALLBACK;
    }
    /* The map: the selected range onto the core bins, the smallest selected distance in bin ~1.
     * A scale too large for the row's type is capped: any monotone map is exact, a coarse one
     * only compares more entries exactly. Non-finite selected distances, or a range beyond the
     * type, leave no usable map (a NaN or zero scale, an infinite origin): the row is sorted. */
    sort_thresholds(t, m);
    double lo = t[0].value, hi = t[m - 1].value;
    double span = hi > lo ? hi - lo : fabs(lo);
    double max_scale = job->is_double ? 1e300 : 1e30;
    double scale = span > 0.0 ? (double)(CORE_BINS - 1) / span : max_scale;
    scale = scale < max_scale ? scale : max_scale;
    double origin = scale > 0.0 ? lo - 1.0 / scale : NAN;
    double max_origin = job->is_double ? 1e308 : 3e38;
    if (!(fabs(origin) < max_origin)) {
        *nan |= row_has_nan(row, job->is_double, n);
        return ROW_FALLBACK;
    }
    if (job->is_double)
        threshold_bins_double(t, m, origin, scale);
    else
        threshold_bins_float(t, m, origin, scale);
    for (int64_t u = m - 1; u >= 0; u--)
        t[u].bin_end = (u + 1 < m && t[u + 1].bin == t[u].bin) ? t[u + 1].bin_end : (int32_t)(u + 1);

    /* Table: per fine bin, its bucket (thresholds in lower bins), or for a bin that holds
     * thresholds, -(index of its first threshold + 1). */
    int32_t table[ALL_BINS];
    for (int32_t b = 0, u = 0; b < ALL_BINS; b++) {
        while (u < m && t[u].bin < b) u++;
        table[b] = (u < m && t[u].bin == b) ? -(u + 1) : u;
    }
    const int32_t last_bin = t[m - 1].bin; /* entries in higher bins follow every threshold */

    int64_t *hist = scratch->hist;
    memset(hist, 0, sizeof(int64_t) * COPIES * (size_t)(m + 1));
    int32_t bins[BLOCK], kept[BLOCK];
    int row_nan = 0;
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t len = n - start < BLOCK ? n - start : BLOCK;
        row_nan |= job->is_double ? kernels.bins_double((const double *)row + start, len,
                                                        origin, scale, bins)
                                  : kernels.bins_float((const float *)row + start, len,
                                                       (float)origin, (float)scale, bins);
        /* Only entries at or below the last threshold's bin matter (branch-free compaction). */
        int64_t n_kept = kernels.compact(bins, len, last_bin, kept);
        for (int64_t k = 0; k < n_kept; k++) {
            int64_t q = kept[k];
            int32_t bucket = table[bins[q]];
            if (bucket < 0) { /* shares a bin with thresholds: compare exactly */
                /* The bin's thresholds are sorted: the first not before the entry is its
                 * bucket (binary search, as all of them may share one bin in tied rows). */
                int32_t lo_u = -bucket - 1, hi_u = t[lo_u].bin_end;
                Threshold entry = {load(row, job->is_double, start + q), start + q, 0, 0, 0};
                while (lo_u < hi_u) {
                    int32_t mid = lo_u + (hi_u - lo_u) / 2;
                    if (threshold_less(&t[mid], &entry))
                        lo_u = mid + 1;
                    else
                        hi_u = mid;
                }
                bucket = lo_u;
            }
            hist[(k & (COPIES - 1)) * (m + 1) + bucket]++;
        }
    }
    if (row_nan) {
        *nan = 1;
        return ROW_FALLBACK;
    }
    /* Entries before sorted threshold u: those in buckets <= u, less the threshold itself. */
    int64_t *count = job->count + i * job->slots;
    int64_t running = 0;
    for (int64_t u = 0; u < m; u++) {
        for (int c = 0; c < COPIES; c++) running += hist[c * (m + 1) + u];
        count[t[u].slot] = running - 1;
    }
    return ROW_DONE;
}

static void *worker(void *arg) {
    Job *job = arg;
    Scratch scratch = {NULL, NULL, 0};
    int nan = 0;
    for (;;) {
        int64_t first = __atomic_fetch_add(&job->next_row, ROWS_PER_TAKE, __ATOMIC_RELAXED);
        if (first >= job->n_rows) break;
        int64_t last = first + ROWS_PER_TAKE < job->n_rows ? first + ROWS_PER_TAKE : job->n_rows;
        for (int64_t i = first; i < last; i++)
            job->served[i] = (uint8_t)count_row(job, i, &scratch, &nan);
    }
    if (nan) __atomic_store_n(&job->nan_found, 1, __ATOMIC_RELAXED);
    free(scratch.thresholds);
    free(scratch.hist);
    return NULL;
}

static PyObject *count_before(PyObject *self, PyObject *args) {
    unsigned long long dist, columns, selected, count, served;
    int is_double, threads;
    long long n_rows, n_cols, row_stride, slots;
    (void)self;
    if (!PyArg_ParseTuple(args, "KpLLLKKLKKi", &dist, &is_double, &n_rows, &n_cols, &row_stride,
                          &columns, &selected, &slots, &count, &served, &threads))
        return NULL;
    if (n_rows < 0 || n_cols < 0 || slots < 0 || row_stride < n_cols) {
        PyErr_SetString(PyExc_ValueError, "count_before: inconsistent shapes or strides");
        return NULL;
    }
    Job job = {(const char *)(uintptr_t)dist,
               is_double,
               n_rows,
               n_cols,
               row_stride,
               (const int64_t *)(uintptr_t)columns,
               (const uint8_t *)(uintptr_t)selected,
               slots,
               (int64_t *)(uintptr_t)count,
               (uint8_t *)(uintptr_t)served,
               0,
               0,
               0};
    long long takes = (n_rows + ROWS_PER_TAKE - 1) / ROWS_PER_TAKE; /* no idle workers */
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > takes) threads = (int)takes;
    if (threads < 1) threads = 1;
    pthread_t ids[MAX_THREADS];
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    while (started < threads - 1 && pthread_create(&ids[started], NULL, worker, &job) == 0)
        started++;
    worker(&job); /* this thread works too; fewer helpers if creating them failed */
    for (int w = 0; w < started; w++) pthread_join(ids[w], NULL);
    Py_END_ALLOW_THREADS
    if (job.out_of_memory) return PyErr_NoMemory();
    return PyBool_FromLong(job.nan_found);
}

static PyObject *select_kernels(PyObject *self, PyObject *args) {
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (strcmp(name, "auto") != 0 && strcmp(name, "portable") != 0) {
        PyErr_Format(PyExc_ValueError, "select_kernels: expected 'auto' or 'portable', got %R",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    return PyUnicode_FromString(choose_kernels(strcmp(name, "portable") == 0));
}

static PyMethodDef methods[] = {
    {"count_before", count_before, METH_VARARGS,
     "count_before(dist, is_double, n_rows, n_cols, row_stride, columns, selected, slots, count, "
     "served, threads) -> nan_found\n\nData pointers of CPU buffers that stay alive and unchanged "
     "during the call; see rareid.metrics._count_by_native."},
    {"select_kernels", select_kernels, METH_VARARGS,
     "select_kernels('auto' | 'portable') -> name of the kernels now in use ('avx2' or "
     "'portable'). 'auto' (the default at import) takes the fastest this CPU runs; not to be "
     "called while count_before runs."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rankcount", "Exact rank counts for the Market-1501 evaluation (C).",
    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rankcount(void) {
#ifdef HAVE_AVX2_COPIES
    init_pack_lanes();
#endif
    choose_kernels(0);
    return PyModule_Create(&module);
}
