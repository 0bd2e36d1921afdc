/*
 * gen.c - the conformance generator and digests (docs/conformance.md).
 */
#include "gen.h"

#include <string.h>

#define GEN_GOLDEN 0x9E3779B97F4A7C15ull

void gen_init(gen_stream *g, uint64_t seed, uint64_t stream) {
  g->state = seed ^ (stream * GEN_GOLDEN);
}

uint64_t gen_next(gen_stream *g) {
  g->state += GEN_GOLDEN;
  uint64_t z = g->state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Exact m * 2^-scale as a float (|m| < 2^24, so it is representable). */
static float scaled(int64_t m, int scale) {
  float v = (float)m;
  for (int i = 0; i < scale; ++i) v *= 0.5f;
  return v;
}

static uint16_t f32_bits_hi(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)(u >> 16); /* exact: |m| <= 128 needs 8 significant bits */
}

uint16_t gen_bf16(gen_stream *g, int scale) {
  int64_t m = (int64_t)(gen_next(g) >> 56) - 128;
  return f32_bits_hi(scaled(m, scale));
}

float gen_f32(gen_stream *g, int scale) {
  int64_t m = (int64_t)(gen_next(g) >> 40) - (int64_t)(1 << 23);
  return scaled(m, scale);
}

uint8_t gen_e4m3(gen_stream *g) {
  return (uint8_t)((gen_next(g) >> 56) & 0xBFu);
}

float gen_fp8_scale(gen_stream *g, int scale) {
  return scaled((int64_t)(gen_next(g) >> 60) + 1, scale);
}

uint8_t gen_e2m1x2(gen_stream *g) {
  return (uint8_t)(gen_next(g) >> 56);
}

uint8_t gen_ue8m0(gen_stream *g) {
  return (uint8_t)(GEN_MX_SCALE_BASE + (gen_next(g) >> 61));
}

/* Fill n one-byte codes of one stream with `code`. */
static void fill_codes(uint64_t seed, uint64_t stream, uint8_t (*code)(gen_stream *), uint8_t *dst,
                       int64_t n) {
  gen_stream g;
  gen_init(&g, seed, stream);
  for (int64_t i = 0; i < n; ++i) dst[i] = code(&g);
}

void gen_fill_e4m3(uint64_t seed, uint64_t stream, uint8_t *dst, int64_t n) {
  fill_codes(seed, stream, gen_e4m3, dst, n);
}

void gen_fill_e2m1x2(uint64_t seed, uint64_t stream, uint8_t *dst, int64_t n) {
  fill_codes(seed, stream, gen_e2m1x2, dst, n);
}

void gen_fill_ue8m0(uint64_t seed, uint64_t stream, uint8_t *dst, int64_t n) {
  fill_codes(seed, stream, gen_ue8m0, dst, n);
}

void gen_fill_fp8_scale(uint64_t seed, uint64_t stream, int scale, float *dst, int64_t n) {
  gen_stream g;
  gen_init(&g, seed, stream);
  for (int64_t i = 0; i < n; ++i) dst[i] = gen_fp8_scale(&g, scale);
}

void gen_fill_bf16(uint64_t seed, uint64_t stream, int scale, uint16_t *dst, int64_t n) {
  gen_stream g;
  gen_init(&g, seed, stream);
  for (int64_t i = 0; i < n; ++i) dst[i] = gen_bf16(&g, scale);
}

void gen_fill_f32(uint64_t seed, uint64_t stream, int scale, float *dst, int64_t n) {
  gen_stream g;
  gen_init(&g, seed, stream);
  for (int64_t i = 0; i < n; ++i) dst[i] = gen_f32(&g, scale);
}

void gen_swiglu_params(uint64_t seed, int64_t local_experts, float *alpha, float *beta,
                       float *clamp_limit) {
  gen_stream g;
  gen_init(&g, seed, GEN_STREAM_SWIGLU);
  for (int64_t e = 0; e < local_experts; ++e) {
    alpha[e] = 1.0f + (float)(gen_next(&g) >> 60) / 16.0f;
    beta[e] = (float)(gen_next(&g) >> 60) / 16.0f;
    clamp_limit[e] = 4.0f + (float)(gen_next(&g) >> 60) / 4.0f;
  }
}

void gen_routed(uint64_t seed, int64_t num_tokens, int32_t top_k, int32_t num_experts, int32_t *ids,
                uint16_t *weights) {
  gen_stream g;
  gen_init(&g, seed, GEN_STREAM_IDS);
  for (int64_t t = 0; t < num_tokens; ++t) {
    int32_t *row = ids + t * top_k;
    for (int32_t k = 0; k < top_k; ++k) {
      int32_t e;
      int dup;
      do {
        e = (int32_t)(gen_next(&g) % (uint64_t)num_experts);
        dup = 0;
        for (int32_t j = 0; j < k; ++j) dup |= row[j] == e;
      } while (dup);
      row[k] = e;
    }
  }
  gen_fill_bf16(seed, GEN_STREAM_WEIGHTS, GEN_SCALE_WEIGHTS, weights, num_tokens * top_k);
}

int32_t gen_pack(int32_t id, uint16_t weight_bits) {
  return (int32_t)(((uint32_t)id << 16) | ((uint32_t)weight_bits & 0xFFFFu));
}

uint64_t gen_fnv_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t gen_fnv_i32(uint64_t h, const int32_t *v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = (uint32_t)v[i];
    unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                          (unsigned char)(u >> 24)};
    h = gen_fnv_bytes(h, b, 4);
  }
  return h;
}

uint64_t gen_fnv_u16(uint64_t h, const uint16_t *v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    unsigned char b[2] = {(unsigned char)v[i], (unsigned char)(v[i] >> 8)};
    h = gen_fnv_bytes(h, b, 2);
  }
  return h;
}
