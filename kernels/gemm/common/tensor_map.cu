/*
 * tensor_map.cu - cuTensorMapEncodeTiled through the runtime's driver entry point, and the
 * stage-layout maps of the grouped GEMMs (tensor_map.cuh).
 */
#include "kernels/gemm/common/tensor_map.cuh"

#include <cudaTypedefs.h>

#include <mutex>

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

}  // namespace

cudaError_t encode_stage_map(CUtensorMap *map, CUtensorMapDataType type, int elem_bytes,
                             const void *ptr, int64_t inner, int64_t outer, int32_t box_rows) {
  const int64_t row_bytes = inner * elem_bytes;
  /* TMA: 16-byte aligned base and pitch, at most 2^32 rows, pitch below 2^40 bytes. */
  if (ptr == nullptr || inner <= 0 || outer <= 0 || outer > 0xFFFFFFFFLL ||
      (reinterpret_cast<uintptr_t>(ptr) & 15u) != 0 || row_bytes % 16 != 0 ||
      row_bytes >= (int64_t{1} << 40)) {
    return cudaErrorInvalidValue;
  }
  PFN_cuTensorMapEncodeTiled_v12000 enc = nullptr;
  cudaError_t e = get_encode(&enc);
  if (e != cudaSuccess) return e;
  cuuint64_t dims[2] = {static_cast<cuuint64_t>(inner), static_cast<cuuint64_t>(outer)};
  cuuint64_t strides[1] = {static_cast<cuuint64_t>(row_bytes)};
  cuuint32_t box[2] = {static_cast<cuuint32_t>(kStageRowBytes / elem_bytes),
                       static_cast<cuuint32_t>(box_rows)};
  cuuint32_t estr[2] = {1u, 1u};
  CUresult r = enc(map, type, 2, const_cast<void *>(ptr), dims, strides, box, estr,
                   CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t encode_mx_weight_map(CUtensorMap *map, const void *ptr, int64_t rows, int64_t k,
                                 int64_t experts, int64_t expert_bytes, int32_t row_bytes,
                                 int32_t box_rows) {
  const int64_t pitch = k / 2;
  /* TMA: 16-byte aligned base and strides, dimensions below 2^32, strides below 2^40 bytes. */
  if (ptr == nullptr || k <= 0 || k % 32 != 0 || rows <= 0 || experts <= 0 || rows > 0xFFFFFFFFLL ||
      experts > 0xFFFFFFFFLL || (reinterpret_cast<uintptr_t>(ptr) & 15u) || pitch % 16 != 0 ||
      expert_bytes % 16 != 0 || expert_bytes >= (int64_t{1} << 40) || row_bytes <= 0 ||
      row_bytes % 16 != 0 || box_rows <= 0 || box_rows > 256) {
    return cudaErrorInvalidValue;
  }
  PFN_cuTensorMapEncodeTiled_v12000 enc = nullptr;
  cudaError_t e = get_encode(&enc);
  if (e != cudaSuccess) return e;
  cuuint64_t dims[3] = {static_cast<cuuint64_t>(pitch), static_cast<cuuint64_t>(rows),
                        static_cast<cuuint64_t>(experts)};
  cuuint64_t strides[2] = {static_cast<cuuint64_t>(pitch), static_cast<cuuint64_t>(expert_bytes)};
  cuuint32_t box[3] = {static_cast<cuuint32_t>(row_bytes), static_cast<cuuint32_t>(box_rows), 1u};
  cuuint32_t estr[3] = {1u, 1u, 1u};
  CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<void *>(ptr), dims, strides,
                   box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace sm90
}  // namespace moe
