/*
 * dtypes.cuh - the element types of the grouped GEMM family, as tags the kernels and the
 * launcher are templated on.
 *
 * Every stage of every mainloop holds 128 bytes of K per operand row (one 128-byte swizzle
 * atom row), whatever the element type: 64 bf16 or 128 e4m3 values. So the stage sizes, the
 * swizzle, the gather's 16-byte chunks and the wgmma descriptor steps are the same in bytes for
 * every dtype; only the K elements a stage covers (kBlockK), the wgmma instruction and the
 * tensor-map element type differ.
 */
#ifndef MOE_GEMM_COMMON_DTYPES_CUH_
#define MOE_GEMM_COMMON_DTYPES_CUH_

#include <cuda.h>
#include <stdint.h>

namespace moe {
namespace sm90 {

/* Bytes of K per operand row in one pipeline stage (the 128-byte swizzle span). */
constexpr int kStageRowBytes = 128;

struct Bf16 {
  using Elem = uint16_t;
  static constexpr int kBytes = 2;
  static constexpr CUtensorMapDataType kTmaType = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
};

/* FP8 e4m3fn, moved as raw bytes (TMA does not interpret the values). */
struct E4m3 {
  using Elem = uint8_t;
  static constexpr int kBytes = 1;
  static constexpr CUtensorMapDataType kTmaType = CU_TENSOR_MAP_DATA_TYPE_UINT8;
};

/* K elements per stage for element type D. */
template <class D>
constexpr int kBlockK = kStageRowBytes / D::kBytes;

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_DTYPES_CUH_
