/*
 * gen.h - the portable seeded input generator and digests of the conformance suite, exactly as
 * docs/conformance.md specifies (SplitMix64 streams, exactly representable values, FNV-1a 64).
 * Every binding implements the same functions; this is the C one.
 */
#ifndef MOE_TEST_GEN_H_
#define MOE_TEST_GEN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Stream numbers. */
#define GEN_STREAM_LOGITS 1
#define GEN_STREAM_ROUTING_BIAS 2
#define GEN_STREAM_HIDDEN 3
#define GEN_STREAM_W1 4
#define GEN_STREAM_W2 5
#define GEN_STREAM_IDS 6
#define GEN_STREAM_WEIGHTS 7
#define GEN_STREAM_GEMM1_BIAS 8
#define GEN_STREAM_GEMM2_BIAS 9
#define GEN_STREAM_SWIGLU 10
/* FP8 cases: fp32 scales of e4m3 inputs (e4m3 hidden/W1/W2 codes reuse streams 3, 4, 5). */
#define GEN_STREAM_HIDDEN_SCALE 11
#define GEN_STREAM_W1_SCALE 12
#define GEN_STREAM_W2_SCALE 13
/* MXFP4 cases: packed e2m1 W1/W2 bytes reuse streams 4, 5; their ue8m0 scales streams 12, 13. */

/* Scales (value = m * 2^-scale). */
#define GEN_SCALE_LOGITS_BF16 5
#define GEN_SCALE_ROUTING_BIAS 7
#define GEN_SCALE_HIDDEN 6
#define GEN_SCALE_W1 8
#define GEN_SCALE_W2 8
#define GEN_SCALE_WEIGHTS 7
#define GEN_SCALE_LOGITS_F32 21
#define GEN_SCALE_GEMM_BIAS 26
/* bf16 gemm biases (gemm_bias_dtype=bf16, MXFP4 cases): bf16 values with this scale. */
#define GEN_SCALE_GEMM_BIAS_BF16 10
/* FP8 scales (value = (1 + (next() >> 60)) * 2^-scale). */
#define GEN_SCALE_HIDDEN_SCALE 4
#define GEN_SCALE_WEIGHT_SCALE 6
/* MXFP4 ue8m0 scale codes: GEN_MX_SCALE_BASE + (next() >> 61), i.e. 2^-9 .. 2^-2. */
#define GEN_MX_SCALE_BASE 118

typedef struct gen_stream {
  uint64_t state;
} gen_stream;

/* state = seed ^ (stream * golden). */
void gen_init(gen_stream *g, uint64_t seed, uint64_t stream);
/* SplitMix64 step. */
uint64_t gen_next(gen_stream *g);
/* bf16 bit pattern of m * 2^-scale, m = (next() >> 56) - 128. */
uint16_t gen_bf16(gen_stream *g, int scale);
/* fp32 value m * 2^-scale, m = (next() >> 40) - 2^23. */
float gen_f32(gen_stream *g, int scale);

/* e4m3 code (next() >> 56) & 0xBF: exponent field 0..7, so |value| <= 1.875, never NaN. */
uint8_t gen_e4m3(gen_stream *g);
/* Positive fp32 scale (1 + (next() >> 60)) * 2^-scale (1..16 times 2^-scale). */
float gen_fp8_scale(gen_stream *g, int scale);

/* MXFP4: a byte of two e2m1 codes, next() >> 56 (every code is finite); a ue8m0 scale code,
 * GEN_MX_SCALE_BASE + (next() >> 61). */
uint8_t gen_e2m1x2(gen_stream *g);
uint8_t gen_ue8m0(gen_stream *g);

/* Fill n values of one stream in row-major order. */
void gen_fill_bf16(uint64_t seed, uint64_t stream, int scale, uint16_t *dst, int64_t n);
void gen_fill_f32(uint64_t seed, uint64_t stream, int scale, float *dst, int64_t n);
void gen_fill_e4m3(uint64_t seed, uint64_t stream, uint8_t *dst, int64_t n);
void gen_fill_fp8_scale(uint64_t seed, uint64_t stream, int scale, float *dst, int64_t n);
void gen_fill_e2m1x2(uint64_t seed, uint64_t stream, uint8_t *dst, int64_t n);
void gen_fill_ue8m0(uint64_t seed, uint64_t stream, uint8_t *dst, int64_t n);
/* Stream 10: per local expert e, alpha, beta, clamp (in that order). */
void gen_swiglu_params(uint64_t seed, int64_t local_experts, float *alpha, float *beta,
                       float *clamp_limit);
/* Streams 6 and 7: pre-routed distinct ids [T, K] in [0, E) and bf16 weights [T, K]. */
void gen_routed(uint64_t seed, int64_t num_tokens, int32_t top_k, int32_t num_experts, int32_t *ids,
                uint16_t *weights);
/* Packed form: (id << 16) | (bits & 0xFFFF). */
int32_t gen_pack(int32_t id, uint16_t weight_bits);

/* FNV-1a 64 over bytes (little-endian values are fed by the helpers below). */
#define GEN_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t gen_fnv_bytes(uint64_t h, const void *p, size_t n);
uint64_t gen_fnv_i32(uint64_t h, const int32_t *v, int64_t n);
uint64_t gen_fnv_u16(uint64_t h, const uint16_t *v, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* MOE_TEST_GEN_H_ */
