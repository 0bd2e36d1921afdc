/*
 * tensor_map.cuh - host side: TMA descriptors of the grouped GEMM operands.
 *
 * Encoded on the host for every call (no device allocation, no sync: the call is CUDA-graph
 * capturable) through cuTensorMapEncodeTiled, reached with cudaGetDriverEntryPointByVersion
 * (no link against libcuda).
 */
#ifndef MOE_GEMM_COMMON_TENSOR_MAP_CUH_
#define MOE_GEMM_COMMON_TENSOR_MAP_CUH_

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/gemm/common/dtypes.cuh"

namespace moe {
namespace sm90 {

/*
 * 2-D map over a row-major [outer, inner] tensor of `elem_bytes`-byte elements of TMA type
 * `type`, box {128 bytes of inner, box_rows}, 128-byte swizzle (the stage layout of every
 * mainloop: dtypes.cuh). cudaErrorInvalidValue for a pointer or pitch TMA cannot take.
 */
cudaError_t encode_stage_map(CUtensorMap *map, CUtensorMapDataType type, int elem_bytes,
                             const void *ptr, int64_t inner, int64_t outer, int32_t box_rows);

/*
 * 3-D map over prepared MXFP4 values (kernels/mxfp4_math.h, layout v4): {K/2 bytes, rows,
 * experts}, expert e's section at e * expert_bytes; box {row_bytes bytes, box_rows, 1}, no
 * swizzle (the consumers read whole packed rows). Rows past `rows` read as zeros.
 */
cudaError_t encode_mx_weight_map(CUtensorMap *map, const void *ptr, int64_t rows, int64_t k,
                                 int64_t experts, int64_t expert_bytes, int32_t row_bytes,
                                 int32_t box_rows);

}  // namespace sm90
}  // namespace moe

#endif  // MOE_GEMM_COMMON_TENSOR_MAP_CUH_
