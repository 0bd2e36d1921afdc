/*
 * ep.c - the host memory operations of moe_ep (core/ep_internal.h) for CPU runners: row
 * gathers (pack, regroup, un-group) and the combine.
 *
 * The combine is the finalize of docs/formats.md (core/cpu/finalize.c): per token and column,
 * acc = 0.0f, then for k = 0..K-1 acc = acc + w(t,k) * y(t,k) with explicitly rounded fp32
 * operations (MOE_FMUL, MOE_FADD; core/ is compiled with -ffp-contract=off), rounded once to
 * bf16. With every slot of a token present, this is bit for bit what the single-device
 * forward writes.
 */
#include <string.h>

#include "cpu_internal.h"
#include "../ep_internal.h"

typedef struct gather_job {
  uint16_t *dst;
  const uint16_t *src;
  const int32_t *map;
  int64_t H;
} gather_job;

static void gather_body(void *ctx, int64_t begin, int64_t end) {
  const gather_job *j = (const gather_job *)ctx;
  for (int64_t i = begin; i < end; ++i)
    memcpy(j->dst + i * j->H, j->src + (int64_t)j->map[i] * j->H, sizeof(uint16_t) * (size_t)j->H);
}

typedef struct combine_job {
  uint16_t *out;
  const uint16_t *rows, *w;
  const int32_t *pos;
  int64_t K, H;
} combine_job;

#define EP_CHUNK 256 /* columns accumulated at once (fp32 on the stack) */

static void combine_body(void *ctx, int64_t begin, int64_t end) {
  const combine_job *j = (const combine_job *)ctx;
  const int64_t H = j->H, K = j->K;
  float acc[EP_CHUNK];
  for (int64_t t = begin; t < end; ++t)
    for (int64_t h0 = 0; h0 < H; h0 += EP_CHUNK) {
      const int64_t n = H - h0 < EP_CHUNK ? H - h0 : EP_CHUNK;
      for (int64_t h = 0; h < n; ++h) acc[h] = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float w = moe_bf16_to_f32(j->w[t * K + k]);
        const uint16_t *y = j->rows + (int64_t)j->pos[t * K + k] * H + h0;
        for (int64_t h = 0; h < n; ++h)
          acc[h] = MOE_FADD(acc[h], MOE_FMUL(w, moe_bf16_to_f32(y[h])));
      }
      for (int64_t h = 0; h < n; ++h) j->out[t * H + h0 + h] = moe_f32_to_bf16(acc[h]);
    }
}

static moe_status_t host_copy(const moe_runner *r, void *dst, const void *src, size_t bytes,
                              moe_cuda_stream_t stream) {
  if (bytes) memcpy(dst, src, bytes);
  return MOE_STATUS_SUCCESS;
}

static moe_status_t host_gather(const moe_runner *r, uint16_t *dst, const uint16_t *src,
                                const int32_t *map, int64_t n, int64_t H,
                                moe_cuda_stream_t stream) {
  gather_job j = {dst, src, map, H};
  if (n > 0 && H > 0) moe_cpu_parallel_for(n, 64, r->num_threads, gather_body, &j);
  return MOE_STATUS_SUCCESS;
}

static moe_status_t host_combine(const moe_runner *r, uint16_t *out, const uint16_t *rows,
                                 const int32_t *pos, const uint16_t *w, int64_t T, int32_t K,
                                 int64_t H, moe_cuda_stream_t stream) {
  combine_job j = {out, rows, w, pos, K, H};
  if (T > 0 && H > 0) moe_cpu_parallel_for(T, 16, r->num_threads, combine_body, &j);
  return MOE_STATUS_SUCCESS;
}

static moe_status_t host_sync(const moe_runner *r, moe_cuda_stream_t stream) {
  return MOE_STATUS_SUCCESS;
}

const moe_ep_mem_ops moe_ep_host_mem_ops = {host_copy, host_copy, host_gather, host_combine,
                                            host_sync};
