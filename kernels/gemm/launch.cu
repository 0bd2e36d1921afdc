/*
 * launch.cu - moe_cuda_run: GEMM1 (+ fused activation) -> GEMM2 -> finalize on one stream.
 *
 * Tensor maps are encoded on the host for every call (no device allocation, no sync: the call
 * is CUDA-graph capturable) through cuTensorMapEncodeTiled, reached with
 * cudaGetDriverEntryPointByVersion (no link against libcuda). With enable_pdl, every kernel is
 * launched with programmatic stream serialisation and waits (griddepcontrol.wait) before it
 * reads anything its predecessor wrote. Order: [permute] -> GEMM1 -> GEMM2 -> [finalize].
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <atomic>
#include <mutex>

#include "../finalize.cuh"
#include "../kernels.h"
#include "configs.cuh"
#include "sm90_bf16_grouped.cuh"

namespace moe {
namespace sm90 {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 g_encode = nullptr;
cudaError_t g_encode_err = cudaSuccess;
std::once_flag g_encode_once;

cudaError_t get_encode(PFN_cuTensorMapEncodeTiled_v12000 *fn) {
  std::call_once(g_encode_once, [] {
    void *p = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
                                                     cudaEnableDefault, &q);
    if (e == cudaSuccess && (p == nullptr || q != cudaDriverEntryPointSuccess)) {
      e = cudaErrorSymbolNotFound;
    }
    g_encode_err = e;
    g_encode = e == cudaSuccess ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p) : nullptr;
  });
  *fn = g_encode;
  return g_encode_err;
}

/* 2-D bf16 map over [outer, inner] (row pitch inner), box {64, box_rows}, 128B swizzle. */
cudaError_t encode_2d(PFN_cuTensorMapEncodeTiled_v12000 enc, CUtensorMap *map, const void *ptr,
                      int64_t inner, int64_t outer, int32_t box_rows) {
  if (ptr == nullptr || inner <= 0 || outer <= 0 || outer > 0xFFFFFFFFLL ||
      (reinterpret_cast<uintptr_t>(ptr) & 15u) != 0 || (inner * 2) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  cuuint64_t dims[2] = {static_cast<cuuint64_t>(inner), static_cast<cuuint64_t>(outer)};
  cuuint64_t strides[1] = {static_cast<cuuint64_t>(inner * 2)};
  cuuint32_t box[2] = {64u, static_cast<cuuint32_t>(box_rows)};
  cuuint32_t estr[2] = {1u, 1u};
  CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(ptr), dims, strides,
                   box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

/* Once per (device, kernel): cudaFuncSetAttribute, and how many CTAs of it are resident at once
 * (the grid of a persistent kernel). */
constexpr int kMaxDevices = 64;
constexpr int kMaxCachedConfigs = 64;
/* GEMM1, GEMM1 gathering, GEMM2, persistent GEMM2; 0 = not prepared yet */
std::atomic<int32_t> g_resident[kMaxDevices][4][kMaxCachedConfigs];

cudaError_t prepare_kernel(int32_t config, int which, const GemmKernel &k, int32_t num_sms,
                           int64_t *resident) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const bool cache = dev >= 0 && dev < kMaxDevices && config < kMaxCachedConfigs;
  if (cache && (*resident = g_resident[dev][which][config].load()) > 0) return cudaSuccess;
  e = cudaFuncSetAttribute(k.func, cudaFuncAttributeMaxDynamicSharedMemorySize, k.smem_bytes);
  if (e != cudaSuccess) return e;
  if (num_sms <= 0 &&
      (e = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) {
    return e;
  }
  int per_sm = 0;
  e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.func, k.threads,
                                                    static_cast<size_t>(k.smem_bytes));
  if (e != cudaSuccess) return e;
  *resident = static_cast<int64_t>(per_sm > 0 ? per_sm : 1) * num_sms;
  if (cache) g_resident[dev][which][config].store(static_cast<int32_t>(*resident));
  return cudaSuccess;
}

/* M tiles per rasterisation group: ~132 resident CTAs cover group_m M tiles x a few token CTAs. */
constexpr int64_t kGroupM = 16;

/*
 * Tokens per local expert (T*K / E_l, the config heuristic's a) from which GEMM1 reads a
 * permuted copy of hidden (one TMA box per stage) instead of gathering its rows with cp.async.
 * The permute pass writes and re-reads T*K rows of H; the gather feeds the tensor pipe less
 * well. H100, 256-row configs 17 / 19 (docs/performance.md, state E): at a <= 128 the gather was
 * 3-7% faster per forward (qwen3-30b T = 2048 568 against 611 us, qwen3-235b T = 2048 1909
 * against 1973), at a = 256 / 512 it was 6-17% slower (gpt-oss-120b T = 8192 4223 against 3601,
 * qwen3-235b T = 8192 4761 against 4101); with the 128-row tile-64 default at a = 32 it was 3-5%
 * faster (qwen3-30b T = 512 444 against 468 us, qwen3-235b T = 512 1681 against 1741). Both
 * read the same operands in the same order, so the output is bit-identical either way. With
 * every cell gathering (state L, H100) the a >= 256 cells ran 23-47% slower per forward, 11-37%
 * with an asynchronous (.noinc) arrival: the cp.async path, not L2 or DRAM, is the limit.
 */
constexpr int64_t kPermuteFromTokensPerExpert = 256;

/*
 * Longest GEMM2 (K = I, in 64-element k-blocks) that runs the persistent kernel where a config
 * has one. H100, same-run A/B (docs/performance.md, state J): it gained where GEMM2's tiles are
 * short (qwen3-30b 12, qwen3-235b 24, DeepSeek-V3 32 k-blocks: -1.5 to -4.3% per forward at
 * T >= 8192) and lost or tied where they are long (gpt-oss-120b 45: +3.4% at T = 8192; llama4
 * 128: +1-1.6%; mixtral 224: +-0.5%): there the fill is a small share of a tile, and the two
 * ring stages held through the epilogue halve the prefetch depth.
 */
constexpr int64_t kPersistentGemm2MaxKBlocks = 32;

/* A persistent kernel (C = 1 only) gets min(launch tiles, resident CTAs) CTAs: the valid tile
 * count (*num_ctas x m_tiles) is only known on the device. */
cudaError_t launch_gemm(const GemmKernel &k, int32_t cluster, int64_t launch_ctas, int64_t m_tiles,
                        int64_t resident, const CUtensorMap &tw, const CUtensorMap &tx,
                        const CUtensorMap &txs, GroupedGemmParams p, bool pdl,
                        cudaStream_t stream) {
  if (launch_ctas <= 0 || m_tiles <= 0) return cudaSuccess;
  int64_t grid_x = launch_ctas * m_tiles;
  if (grid_x > 0x7FFFFFFFLL) return cudaErrorInvalidConfiguration;
  if (k.persistent && resident < grid_x) grid_x = resident; /* C = 1 configs only */
  p.m_tiles = static_cast<int32_t>(m_tiles);
  p.token_clusters = static_cast<int32_t>(launch_ctas / cluster);
  p.group_m = static_cast<int32_t>(m_tiles < kGroupM ? m_tiles : kGroupM);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(grid_x), 1, 1);
  cfg.blockDim = dim3(static_cast<unsigned>(k.threads), 1, 1);
  cfg.dynamicSmemBytes = static_cast<size_t>(k.smem_bytes);
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  int n = 0;
  attrs[n].id = cudaLaunchAttributeClusterDimension;
  attrs[n].val.clusterDim.x = static_cast<unsigned>(cluster);
  attrs[n].val.clusterDim.y = 1;
  attrs[n].val.clusterDim.z = 1;
  ++n;
  if (pdl) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attrs;
  cfg.numAttrs = n;
  void *args[4] = {const_cast<CUtensorMap *>(&tw), const_cast<CUtensorMap *>(&tx),
                   const_cast<CUtensorMap *>(&txs), const_cast<GroupedGemmParams *>(&p)};
  return cudaLaunchKernelExC(&cfg, k.func, args);
}

}  // namespace
}  // namespace sm90
}  // namespace moe

extern "C" int moe_cuda_run(const moe_k_run *a, const moe_k_plan *plan, void *stream_ptr) {
  using namespace moe::sm90;
  if (a == nullptr || plan == nullptr) return cudaErrorInvalidValue;
  if (a->config < 0 || a->config >= kNumBf16Configs) return cudaErrorInvalidValue;
  const ConfigEntry &cfg = kBf16Configs[a->config];
  if (a->tile != cfg.tile || a->cluster_size != cfg.cluster) return cudaErrorInvalidValue;
  if (a->num_tokens <= 0) return cudaSuccess;
  if (a->launch_ctas <= 0 || a->launch_ctas % cfg.cluster != 0) return cudaErrorInvalidValue;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);

  const int64_t H = a->hidden_size, I = a->intermediate_size, E = a->local_num_experts;
  if (H % 64 != 0 || I % 64 != 0 || H <= 0 || I <= 0 || E <= 0) return cudaErrorInvalidValue;
  const bool gated =
      a->activation == MOE_ACTIVATION_SWIGLU || a->activation == MOE_ACTIVATION_GEGLU;
  const int64_t rows1 = gated ? 2 * I : I;
  const bool pdl = a->enable_pdl != 0;

  PFN_cuTensorMapEncodeTiled_v12000 enc = nullptr;
  cudaError_t e = get_encode(&enc);
  if (e != cudaSuccess) return e;

  /* Token rows: GEMM1 gathers them with cp.async (no activation map) for small CTA tiles and
   * below kPermuteFromTokensPerExpert; otherwise it reads a permuted copy of hidden, written
   * into the GEMM2 output buffer by a permute kernel first ([max_rows, H], overwritten by GEMM2
   * afterwards), with one {64, ctaTile} box per stage, as GEMM2 reads its rows of gemm1_out. */
  /* tx*: one {64, ctaTile} box per stage; txs*: {64, kLiveStep} boxes, for the token rows of a
   * partly filled tile's trimmed main loop (sm90_bf16_grouped.cuh). */
  CUtensorMap tw1, tx1, tx1s, tw2, tx2, tx2s;
  const int32_t n_cta = cfg.tile / cfg.cluster;
  const int32_t slice = n_cta < kLiveStep ? n_cta : kLiveStep;
  /* Rows this call can touch: the padded capacity for this T (<= the workspace's max_rows);
   * a caller's permuted_output may be sized for this T only. */
  int64_t rows_t = a->launch_ctas / cfg.cluster * cfg.tile;
  if (rows_t > plan->max_rows) rows_t = plan->max_rows;
  const int32_t C = cfg.cluster;
  if (a->hidden == nullptr || (reinterpret_cast<uintptr_t>(a->hidden) & 15u) != 0) {
    return cudaErrorInvalidValue;
  }
  if ((e = encode_2d(enc, &tw1, a->w1, H, E * rows1, cfg.gemm1.block_m / C)) != cudaSuccess ||
      (e = encode_2d(enc, &tw2, a->w2, I, E * H, cfg.gemm2.block_m / C)) != cudaSuccess ||
      (e = encode_2d(enc, &tx2, a->gemm1_out, I, rows_t, cfg.tile / C)) != cudaSuccess ||
      (e = encode_2d(enc, &tx2s, a->gemm1_out, I, rows_t, slice)) != cudaSuccess) {
    return e;
  }
  const bool gather = a->num_tokens * a->top_k < kPermuteFromTokensPerExpert * E;
  const GemmKernel &g1 = gather ? cfg.gemm1_gather : cfg.gemm1;
  const bool permuted = g1.permuted_input != 0;
  if (permuted) {
    if ((e = encode_2d(enc, &tx1, a->gemm2_out, H, rows_t, cfg.tile / C)) != cudaSuccess ||
        (e = encode_2d(enc, &tx1s, a->gemm2_out, H, rows_t, slice)) != cudaSuccess) {
      return e;
    }
  } else {
    tx1 = tx1s = tw1; /* unused by the gathering kernels */
  }
  const GemmKernel &g2 =
      cfg.gemm2_persistent.func != nullptr && I / 64 <= kPersistentGemm2MaxKBlocks
          ? cfg.gemm2_persistent
          : cfg.gemm2;
  int64_t resident1 = 0, resident2 = 0;
  if ((e = prepare_kernel(a->config, gather ? 1 : 0, g1, a->num_sms, &resident1)) != cudaSuccess ||
      (e = prepare_kernel(a->config, g2.persistent ? 3 : 2, g2, a->num_sms, &resident2)) !=
          cudaSuccess) {
    return e;
  }

  GroupedGemmParams p1 = {};
  p1.out = a->gemm1_out;
  p1.bias = a->bias1;
  p1.alpha = a->alpha;
  p1.beta = a->beta;
  p1.clamp_limit = a->clamp_limit;
  p1.permuted_to_token = plan->permuted_to_token;
  p1.gather_src = a->hidden;
  p1.gather_ld = H;
  p1.cta_to_batch = plan->cta_to_batch;
  p1.cta_to_mn_limit = plan->cta_to_mn_limit;
  p1.num_ctas = plan->num_ctas;
  p1.tile_counter = plan->gemm_tile_counter;
  p1.w_rows = static_cast<int32_t>(rows1);
  p1.k_blocks = static_cast<int32_t>(H / 64);
  p1.out_ld = static_cast<int32_t>(I);
  p1.out_cols = static_cast<int32_t>(I);
  p1.bias_stride = static_cast<int32_t>(rows1);
  p1.activation = a->activation;
  p1.gated = gated ? 1 : 0;

  GroupedGemmParams p2 = p1;
  p2.out = a->gemm2_out;
  p2.bias = a->bias2;
  p2.alpha = p2.beta = p2.clamp_limit = nullptr;
  p2.permuted_to_token = nullptr;
  p2.gather_src = nullptr;
  p2.gather_ld = 0;
  p2.w_rows = static_cast<int32_t>(H);
  p2.k_blocks = static_cast<int32_t>(I / 64);
  p2.out_ld = static_cast<int32_t>(H);
  p2.out_cols = static_cast<int32_t>(H);
  p2.bias_stride = static_cast<int32_t>(H);
  p2.activation = MOE_ACTIVATION_IDENTITY;
  p2.gated = 0;

  const int64_t m1 = (rows1 + g1.block_m - 1) / g1.block_m;
  const int64_t m2 = (H + g2.block_m - 1) / g2.block_m;
  if (permuted && (e = launch_permute(a->gemm2_out, a->hidden, plan->expanded_to_permuted,
                                      a->num_tokens, a->top_k, H, pdl, stream)) != cudaSuccess) {
    return e;
  }
  if ((e = launch_gemm(g1, C, a->launch_ctas, m1, resident1, tw1, tx1, tx1s, p1, pdl, stream)) !=
      cudaSuccess) {
    return e;
  }
  if ((e = launch_gemm(g2, C, a->launch_ctas, m2, resident2, tw2, tx2, tx2s, p2, pdl, stream)) !=
      cudaSuccess) {
    return e;
  }
  if (a->do_finalize && a->output != nullptr) {
    e = moe::launch_finalize(a->output, a->gemm2_out, plan->expert_weights,
                             plan->expanded_to_permuted, a->num_tokens, a->top_k, H, pdl, stream);
  }
  return e;
}
