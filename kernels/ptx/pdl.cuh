/*
 * pdl.cuh - programmatic dependent launch (griddepcontrol, sm_90).
 *
 * grid_dependency_wait(): blocks until every prerequisite grid has completed and its memory
 * operations are visible. Call it before reading anything a predecessor kernel writes and
 * before writing anything a predecessor may still read.
 * launch_dependents(): lets the dependent grid be scheduled once every CTA of this grid has
 * issued it or exited; it carries no memory visibility (the dependent still waits).
 * Both are no-ops when the kernel was not launched with programmatic stream serialization.
 */
#ifndef MOE_PTX_PDL_CUH_
#define MOE_PTX_PDL_CUH_

namespace moe {
namespace ptx {

__device__ __forceinline__ void grid_dependency_wait() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

__device__ __forceinline__ void launch_dependents() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

}  // namespace ptx
}  // namespace moe

#endif /* MOE_PTX_PDL_CUH_ */
