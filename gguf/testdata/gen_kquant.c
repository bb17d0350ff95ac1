// gen_kquant.c writes ggml_kquant.bin: rows of float32 values and the bytes
// ggml's quantize_row_*_ref writes for them, records as ggml_quant.bin's
// (4-byte type name, int32 value count, int32 byte count, values, bytes).
//
// Built against ggml-org/ggml d99724f (gcc, x86-64, no FMA):
//   gcc -O2 -DNDEBUG -Iinclude -Isrc -Isrc/ggml-cpu -c src/ggml-quants.c -o q.o
//   gcc -O2 -DNDEBUG -Iinclude -Isrc gen_kquant.c q.o -lm -o gen
//   ./gen ggml_quant.bin > ggml_kquant.bin
// It takes the Q4_K row of ggml_quant.bin (twelve 256-value runs) and adds
// twelve edge-case runs (see edge below).
#define GGML_COMMON_DECL_C
#include "ggml-common.h"
#include "ggml-quants.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Stubs for the ggml.c symbols ggml-quants.o names (unused by the _ref paths).
void ggml_abort(const char *file, int line, const char *fmt, ...) { (void)fmt; fprintf(stderr, "abort %s:%d\n", file, line); exit(1); }
size_t ggml_row_size(enum ggml_type t, int64_t n) { (void)t; (void)n; abort(); }
const char *ggml_type_name(enum ggml_type t) { (void)t; abort(); }
size_t ggml_type_size(enum ggml_type t) { (void)t; abort(); }

static uint32_t seed = 12345;
static float rnd(void) { // uniform in [-1, 1)
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
}

#define QK 256
#define NEDGE 12

// edge fills the twelve 256-value runs of edge cases. The last two put
// values exactly halfway between levels when Q6_K and Q5_K requantise
// with the stored scales (nearest_int's ties to even decide them).
static void edge(float *x) {
    for (int i = 0; i < QK; i++) x[0*QK + i] = rnd() * 1e-6f;                  // tiny: f16 scales underflow
    for (int i = 0; i < QK; i++) x[1*QK + i] = rnd() * 1e-3f;                  // small: subnormal f16 scales
    for (int i = 0; i < QK; i++) x[2*QK + i] = rnd() * 0.01f;                  // one large outlier
    x[2*QK + 100] = 50.0f;
    for (int i = 0; i < QK; i++) x[3*QK + i] = -(fabsf(rnd()) + 0.1f) * 3.0f;  // negative only
    for (int i = 0; i < QK; i++) x[4*QK + i] = rnd() * ((i / 16) % 2 ? 1e-4f : 10.0f); // scales rounding to 0
    for (int i = 0; i < QK; i++) x[5*QK + i] = -0.75f;                         // constant, negative
    for (int i = 0; i < QK; i++) x[6*QK + i] = rnd() * 1e-16f;                 // below GROUP_MAX_EPS
    for (int i = 0; i < QK; i++) x[7*QK + i] = rnd() * 1e4f;                   // large
    for (int i = 0; i < QK; i++) x[8*QK + i] = (float)(i % 64 - 32) * 0.25f;   // a grid: rounding ties
    for (int i = 0; i < QK; i++) x[9*QK + i] = (i % 3 == 0) ? -0.0f : (i % 7 == 0 ? rnd() : 0.0f); // signed zeros
    // Q6_K: fifteen sub-blocks of 1 (d = 2^-12, scales -128); the last
    // holds 0.5, eleven -0.5 (scale -66) and 0.5, 2.5, -0.5, -2.5 steps.
    const float u = 66.0f / 4096;
    const float last[16] = {0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, -0.5f, 0.5f*u, 2.5f*u, -0.5f*u, -2.5f*u};
    for (int i = 0; i < QK; i++) x[10*QK + i] = i < 240 ? 1.0f : last[i - 240];
    // Q5_K: seven sub-blocks of i/32 (d = 1040*2^-21, scales 63); the last
    // i*1.5*d (scale 1): every odd i a tie.
    for (int i = 0; i < QK; i++) x[11*QK + i] = i < 224 ? (float)(i % 32) / 32 : (float)((i - 224) * 1560) / (1 << 21);
}

static void put(const char *name, const float *x, int n, const void *y, int len) {
    fwrite(name, 1, 4, stdout);
    int32_t h[2] = {n, len};
    fwrite(h, 4, 2, stdout);
    fwrite(x, 4, n, stdout);
    fwrite(y, 1, len, stdout);
}

// q4kRow reads the values of the Q4_K record of ggml_quant.bin.
static float *q4kRow(const char *path, int *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    char name[4]; int32_t h[2];
    while (fread(name, 1, 4, f) == 4 && fread(h, 4, 2, f) == 2) {
        float *x = malloc(4 * (size_t)h[0]);
        if (fread(x, 4, h[0], f) != (size_t)h[0]) exit(1);
        fseek(f, h[1], SEEK_CUR);
        if (!memcmp(name, "Q4_K", 4)) { *n = h[0]; fclose(f); return x; }
        free(x);
    }
    fprintf(stderr, "no Q4_K record\n");
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: gen ggml_quant.bin\n"); return 2; }
    int n0;
    float *row0 = q4kRow(argv[1], &n0);
    int ne = NEDGE * QK, n = n0 + ne;
    float *x = malloc(4 * (size_t)n);
    memcpy(x, row0, 4 * (size_t)n0);
    edge(x + n0);
    unsigned char *y = malloc(2 * (size_t)n);
    const float *e = x + n0;
    // The older types on the edge runs.
    quantize_row_q4_0_ref(e, (block_q4_0 *)y, ne); put("Q4_0", e, ne, y, ne / 32 * sizeof(block_q4_0));
    quantize_row_q4_1_ref(e, (block_q4_1 *)y, ne); put("Q4_1", e, ne, y, ne / 32 * sizeof(block_q4_1));
    quantize_row_q5_0_ref(e, (block_q5_0 *)y, ne); put("Q5_0", e, ne, y, ne / 32 * sizeof(block_q5_0));
    quantize_row_q5_1_ref(e, (block_q5_1 *)y, ne); put("Q5_1", e, ne, y, ne / 32 * sizeof(block_q5_1));
    quantize_row_q8_0_ref(e, (block_q8_0 *)y, ne); put("Q8_0", e, ne, y, ne / 32 * sizeof(block_q8_0));
    quantize_row_q4_K_ref(e, (block_q4_K *)y, ne); put("Q4_K", e, ne, y, ne / QK * sizeof(block_q4_K));
    // The new ones on all runs.
    quantize_row_q5_K_ref(x, (block_q5_K *)y, n); put("Q5_K", x, n, y, n / QK * sizeof(block_q5_K));
    quantize_row_q6_K_ref(x, (block_q6_K *)y, n); put("Q6_K", x, n, y, n / QK * sizeof(block_q6_K));
    return 0;
}
