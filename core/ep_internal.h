/*
 * ep_internal.h - internals of moe_ep (docs/ep.md): the transport vtable and the memory
 * operations of a backend. core/ep.c holds the backend-agnostic flow (validation, the index
 * tables, the order of the exchanges); a transport moves bytes between ranks; the memory
 * operations pack, regroup and combine rows on the runner's device.
 *
 * Implementations: the loopback transport (ep_loopback.c, host memory, ranks as threads) with
 * the host memory operations (core/cpu/ep.c), and the NCCL transport with the CUDA memory
 * operations (ep_nccl.c, compiled only when CMake found NCCL and CUDA: MOE_WITH_NCCL).
 */
#ifndef MOE_CORE_EP_INTERNAL_H_
#define MOE_CORE_EP_INTERNAL_H_

#include "internal.h"
#include "moe_trtllm_ep.h"

typedef struct moe_ep_transport moe_ep_transport;

/* The operations of a transport (one const table per implementation). */
typedef struct moe_ep_transport_ops {
  /* Every rank gives @p bytes of host memory; @p recv (host, world * bytes) gets them in rank
   * order. Synchronous (on CUDA it synchronises @p stream). */
  moe_status_t (*allgather_host)(moe_ep_transport *t, const void *send, void *recv, size_t bytes,
                                 moe_cuda_stream_t stream);
  /* Point-to-point exchange of buffers on the runner's device: group_start, then at most one
   * send and one recv per peer (the rank itself included), then group_end, which completes
   * (loopback) or enqueues (NCCL, on @p stream) all of them. Zero-byte operations are not
   * posted. */
  moe_status_t (*group_start)(moe_ep_transport *t);
  moe_status_t (*send)(moe_ep_transport *t, const void *buf, size_t bytes, int32_t peer,
                       moe_cuda_stream_t stream);
  moe_status_t (*recv)(moe_ep_transport *t, void *buf, size_t bytes, int32_t peer,
                       moe_cuda_stream_t stream);
  moe_status_t (*group_end)(moe_ep_transport *t, moe_cuda_stream_t stream);
  void (*destroy)(moe_ep_transport *t);
} moe_ep_transport_ops;

/* The common head of every transport's state. */
struct moe_ep_transport {
  const moe_ep_transport_ops *ops;
  int32_t rank, world;
  int32_t device; /* CUDA device of the communicator; -1 for host transports */
};

/* Row and table operations on the runner's memory (host for CPU runners, device for CUDA). */
typedef struct moe_ep_mem_ops {
  /* Host -> runner memory (stream-ordered on CUDA; the host source may be reused on return). */
  moe_status_t (*upload)(const moe_runner *r, void *dst, const void *src, size_t bytes,
                         moe_cuda_stream_t stream);
  /* Runner memory -> host; synchronises @p stream. */
  moe_status_t (*download)(const moe_runner *r, void *dst, const void *src, size_t bytes,
                           moe_cuda_stream_t stream);
  /* dst[i, :] = src[map[i], :] for i < n, rows of H bf16 values. */
  moe_status_t (*gather_rows)(const moe_runner *r, uint16_t *dst, const uint16_t *src,
                              const int32_t *map, int64_t n, int64_t H, moe_cuda_stream_t stream);
  /* out[t, h] = bf16(sum over k = 0..K-1 in order of w[t*K+k] * rows[pos[t*K+k], h]), fp32,
   * explicitly rounded (the finalize of docs/formats.md). */
  moe_status_t (*combine)(const moe_runner *r, uint16_t *out, const uint16_t *rows,
                          const int32_t *pos, const uint16_t *w, int64_t T, int32_t K, int64_t H,
                          moe_cuda_stream_t stream);
  /* Wait for the work enqueued on @p stream (no-op on the host). */
  moe_status_t (*sync)(const moe_runner *r, moe_cuda_stream_t stream);
} moe_ep_mem_ops;

/* Host memory operations (core/cpu/ep.c). */
extern const moe_ep_mem_ops moe_ep_host_mem_ops;

/* Loopback transport (ep_loopback.c): rank @p rank of @p group. */
moe_status_t moe_ep_loopback_open(moe_ep_loopback *group, int32_t rank, moe_ep_transport **out);

/* NCCL transport and the CUDA memory operations (ep_nccl.c). @p comm is an ncclComm_t. Fails
 * only when the communicator cannot be queried; the rank option and the device are checked by
 * ep.c with the other options (so that every rank fails together).
 * allgather_host stages through a small device buffer the transport owns (grown on demand:
 * (world + 1) x the largest exchange, a few KiB). Builds without NCCL answer NOT_SUPPORTED. */
moe_status_t moe_ep_nccl_open(void *comm, const moe_runner *r, moe_ep_transport **out,
                              const moe_ep_mem_ops **mem);

#endif /* MOE_CORE_EP_INTERNAL_H_ */
