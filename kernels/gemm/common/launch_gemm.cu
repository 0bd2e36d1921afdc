/*
 * launch_gemm.cu - attributes, residency and launch of the grouped GEMM kernels
 * (launch_gemm.cuh).
 */
#include "kernels/gemm/common/launch_gemm.cuh"

#include "kernels/kernels.h"

#include <atomic>

namespace moe {
namespace sm90 {
namespace {

/* M tiles per rasterisation group: ~132 resident CTAs cover group_m M tiles x a few token CTAs. */
constexpr int64_t kGroupM = 16;

/* Resident CTAs per SM per (device, kernel), filled on first use: a small open-addressed table
 * keyed by the kernel's address (the catalogues hold a few hundred kernels). 0 = empty. Per
 * SM, not per device: the SM count of a call may be capped (moe_runner_options.sm_budget). */
constexpr int kMaxDevices = 64;
constexpr int kSlots = 1024;
std::atomic<const void *> g_func[kMaxDevices][kSlots];
std::atomic<int64_t> g_per_sm[kMaxDevices][kSlots];

}  // namespace

cudaError_t device_sms(int32_t num_sms, int32_t *out) {
  if (num_sms > 0) {
    *out = num_sms;
    return cudaSuccess;
  }
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  return cudaDeviceGetAttribute(out, cudaDevAttrMultiProcessorCount, dev);
}

cudaError_t prepare_gemm_kernel(const GemmKernel &k, int32_t num_sms, int64_t *resident) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  int32_t sms = 0;
  if ((e = device_sms(num_sms, &sms)) != cudaSuccess) return e;
  const bool cache = dev >= 0 && dev < kMaxDevices;
  int slot = -1;
  if (cache) {
    const uintptr_t h = reinterpret_cast<uintptr_t>(k.func);
    for (int i = 0; i < kSlots; ++i) {
      const int j = static_cast<int>((h / 16 + i) % kSlots);
      const void *f = g_func[dev][j].load(std::memory_order_acquire);
      if (f == k.func) {
        const int64_t r = g_per_sm[dev][j].load(std::memory_order_acquire);
        if (r > 0) {
          *resident = r * sms;
          return cudaSuccess;
        }
        slot = j;
        break;
      }
      if (f == nullptr) {
        const void *expected = nullptr;
        if (g_func[dev][j].compare_exchange_strong(expected, k.func) || expected == k.func) {
          slot = j;
          break;
        }
      }
    }
  }
  e = cudaFuncSetAttribute(k.func, cudaFuncAttributeMaxDynamicSharedMemorySize, k.smem_bytes);
  if (e != cudaSuccess) return e;
  int per_sm = 0;
  e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.func, k.threads,
                                                    static_cast<size_t>(k.smem_bytes));
  if (e != cudaSuccess) return e;
  if (per_sm < 1) per_sm = 1;
  *resident = static_cast<int64_t>(per_sm) * sms;
  if (slot >= 0) g_per_sm[dev][slot].store(per_sm, std::memory_order_release);
  return cudaSuccess;
}

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
  /* A run of K < MOE_SM90_MX_MAX_K needs only its K's share of the MXFP4 scale region (the
   * attribute keeps the compile-time maximum): at gpt-oss's K = 2880 the 16-stage decode
   * config then fits four CTAs an SM instead of three. Only where the grid is more than one
   * wave of the full-size kernel: below that, more CTAs an SM only crowd fewer SMs (H100,
   * gpt-oss-120b-mxfp4: T = 8-128 10-13% faster trimmed, T = 1 (360 GEMM1 CTAs) 8% slower). */
  int64_t smem = k.smem_bytes;
  if (k.smem_per_k32 > 0 && grid_x > resident) {
    smem -= static_cast<int64_t>(MOE_SM90_MX_MAX_K / 32 - 2 * p.k_blocks) * k.smem_per_k32;
  }
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
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

}  // namespace sm90
}  // namespace moe
