/*
 * pdl_launch.cuh - host side: launch a plain (non-cluster) kernel with programmatic stream
 * serialisation when `pdl` is set (the kernel then waits with ptx::grid_dependency_wait before
 * it reads what its predecessor wrote; kernels/ptx/pdl.cuh).
 */
#ifndef MOE_PDL_LAUNCH_CUH_
#define MOE_PDL_LAUNCH_CUH_

#include <cuda_runtime.h>
#include <stdint.h>

namespace moe {

template <typename... KArgs, typename... Args>
inline cudaError_t launch_pdl(void (*kernel)(KArgs...), int64_t blocks, int threads,
                              cudaStream_t stream, bool pdl, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks), 1, 1);
  cfg.blockDim = dim3(static_cast<unsigned>(threads), 1, 1);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

}  // namespace moe

#endif /* MOE_PDL_LAUNCH_CUH_ */
