/*
 * ep_nccl.c - the NCCL transport of moe_ep and the CUDA memory operations (ep_internal.h).
 * Compiled only when CMake found NCCL and the build has CUDA (MOE_WITH_NCCL); with
 * core/backend_cuda.c, the only file of core/ that includes CUDA headers (nccl.h includes the
 * CUDA runtime).
 *
 * The communicator is the caller's: it is borrowed, never created, aborted or destroyed here.
 * Counts travel through ncclAllGather on a small device staging buffer the transport owns
 * ((world + 1) x the exchange size: a few KiB, grown on demand); rows through ncclSend /
 * ncclRecv inside ncclGroupStart / ncclGroupEnd, on the caller's stream.
 */
#include <nccl.h>
#include <stdlib.h>

#include "ep_internal.h"

typedef struct nccl_tp {
  moe_ep_transport base;
  ncclComm_t comm;
  int32_t device;
  char *stage; /* device: [world * bytes] gathered, then [bytes] this rank's */
  size_t stage_bytes;
} nccl_tp;

static moe_status_t nccl_fail(ncclResult_t e, ncclComm_t c, const char *what) {
  const char *last = c ? ncclGetLastError(c) : NULL;
  return moe_fail(MOE_STATUS_CUDA_ERROR, "NCCL %s: %s%s%s", what, ncclGetErrorString(e),
                  last && *last ? ": " : "", last && *last ? last : "");
}

static moe_status_t cuda_fail(cudaError_t e, const char *what) {
  return moe_fail(MOE_STATUS_CUDA_ERROR, "CUDA %s: %s", what, cudaGetErrorString(e));
}

/* Set the device for a call and restore the caller's afterwards. */
typedef struct dev_guard {
  int prev, switched;
} dev_guard;

static moe_status_t enter(int32_t device, dev_guard *g) {
  g->switched = 0;
  cudaError_t e = cudaGetDevice(&g->prev);
  if (e != cudaSuccess) return cuda_fail(e, "cudaGetDevice");
  if (g->prev != device) {
    if ((e = cudaSetDevice(device)) != cudaSuccess) return cuda_fail(e, "cudaSetDevice");
    g->switched = 1;
  }
  return MOE_STATUS_SUCCESS;
}

static void leave(dev_guard *g) {
  if (g->switched) cudaSetDevice(g->prev);
}

/* ---- transport --------------------------------------------------------------------------------
 */

static moe_status_t tp_allgather(moe_ep_transport *t, const void *send, void *recv, size_t bytes,
                                 moe_cuda_stream_t stream) {
  nccl_tp *n = (nccl_tp *)t;
  if (!bytes) return MOE_STATUS_SUCCESS;
  const size_t need = bytes * ((size_t)t->world + 1);
  dev_guard g;
  moe_status_t s = enter(n->device, &g);
  if (s) return s;
  cudaError_t e = cudaSuccess;
  if (need > n->stage_bytes) {
    if (n->stage) cudaFree(n->stage);
    n->stage = NULL;
    n->stage_bytes = 0;
    if ((e = cudaMalloc((void **)&n->stage, need)) == cudaSuccess) n->stage_bytes = need;
  }
  char *mine = n->stage + bytes * (size_t)t->world;
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(mine, send, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream);
  if (e != cudaSuccess) {
    leave(&g);
    return cuda_fail(e, "count exchange staging");
  }
  ncclResult_t r = ncclAllGather(mine, n->stage, bytes, ncclUint8, n->comm, (cudaStream_t)stream);
  if (r != ncclSuccess) {
    leave(&g);
    return nccl_fail(r, n->comm, "ncclAllGather (counts)");
  }
  e = cudaMemcpyAsync(recv, n->stage, bytes * (size_t)t->world, cudaMemcpyDeviceToHost,
                      (cudaStream_t)stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize((cudaStream_t)stream);
  leave(&g);
  return e ? cuda_fail(e, "count exchange") : MOE_STATUS_SUCCESS;
}

static moe_status_t tp_group_start(moe_ep_transport *t) {
  ncclResult_t r = ncclGroupStart();
  return r ? nccl_fail(r, ((nccl_tp *)t)->comm, "ncclGroupStart") : MOE_STATUS_SUCCESS;
}

/* ncclSend (@p is_send) or ncclRecv of @p bytes with @p peer. */
static moe_status_t p2p(moe_ep_transport *t, void *buf, size_t bytes, int32_t peer,
                        moe_cuda_stream_t stream, int is_send) {
  nccl_tp *n = (nccl_tp *)t;
  dev_guard g;
  moe_status_t s = enter(n->device, &g);
  if (s) return s;
  ncclResult_t r = is_send ? ncclSend(buf, bytes, ncclUint8, peer, n->comm, (cudaStream_t)stream)
                           : ncclRecv(buf, bytes, ncclUint8, peer, n->comm, (cudaStream_t)stream);
  leave(&g);
  return r ? nccl_fail(r, n->comm, is_send ? "ncclSend" : "ncclRecv") : MOE_STATUS_SUCCESS;
}

static moe_status_t tp_send(moe_ep_transport *t, const void *buf, size_t bytes, int32_t peer,
                            moe_cuda_stream_t stream) {
  return p2p(t, (void *)buf, bytes, peer, stream, 1);
}

static moe_status_t tp_recv(moe_ep_transport *t, void *buf, size_t bytes, int32_t peer,
                            moe_cuda_stream_t stream) {
  return p2p(t, buf, bytes, peer, stream, 0);
}

static moe_status_t tp_group_end(moe_ep_transport *t, moe_cuda_stream_t stream) {
  nccl_tp *n = (nccl_tp *)t;
  dev_guard g;
  moe_status_t s = enter(n->device, &g);
  if (s) return s;
  ncclResult_t r = ncclGroupEnd();
  leave(&g);
  return r ? nccl_fail(r, n->comm, "ncclGroupEnd") : MOE_STATUS_SUCCESS;
}

static void tp_destroy(moe_ep_transport *t) {
  nccl_tp *n = (nccl_tp *)t;
  if (!n) return;
  if (n->stage) {
    dev_guard g;
    if (!enter(n->device, &g)) {
      cudaFree(n->stage);
      leave(&g);
    }
  }
  free(n);
}

/* ---- CUDA memory operations ------------------------------------------------------------------ */

static moe_status_t cu_upload(const moe_runner *r, void *dst, const void *src, size_t bytes,
                              moe_cuda_stream_t stream) {
  if (!bytes) return MOE_STATUS_SUCCESS;
  dev_guard g;
  moe_status_t s = enter(r->device_id, &g);
  if (s) return s;
  /* pageable source: the call returns once the source is staged, so it may be reused */
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream);
  leave(&g);
  return e ? cuda_fail(e, "moe_ep table upload") : MOE_STATUS_SUCCESS;
}

static moe_status_t cu_download(const moe_runner *r, void *dst, const void *src, size_t bytes,
                                moe_cuda_stream_t stream) {
  return moe_gpu_read(r, dst, src, bytes, stream);
}

static moe_status_t cu_gather(const moe_runner *r, uint16_t *dst, const uint16_t *src,
                              const int32_t *map, int64_t n, int64_t H, moe_cuda_stream_t stream) {
  dev_guard g;
  moe_status_t s = enter(r->device_id, &g);
  if (s) return s;
  const int e = moe_cuda_ep_gather_rows(dst, src, map, n, H, (void *)stream);
  leave(&g);
  return e ? cuda_fail((cudaError_t)e, "moe_ep row gather") : MOE_STATUS_SUCCESS;
}

static moe_status_t cu_combine(const moe_runner *r, uint16_t *out, const uint16_t *rows,
                               const int32_t *pos, const uint16_t *w, int64_t T, int32_t K,
                               int64_t H, moe_cuda_stream_t stream) {
  dev_guard g;
  moe_status_t s = enter(r->device_id, &g);
  if (s) return s;
  const int e = moe_cuda_ep_combine(out, rows, pos, w, T, K, H, (void *)stream);
  leave(&g);
  return e ? cuda_fail((cudaError_t)e, "moe_ep combine") : MOE_STATUS_SUCCESS;
}

static moe_status_t cu_sync(const moe_runner *r, moe_cuda_stream_t stream) {
  dev_guard g;
  moe_status_t s = enter(r->device_id, &g);
  if (s) return s;
  const cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
  leave(&g);
  return e ? cuda_fail(e, "cudaStreamSynchronize") : MOE_STATUS_SUCCESS;
}

static const moe_ep_transport_ops tp_ops = {tp_allgather, tp_group_start, tp_send,
                                            tp_recv,      tp_group_end,   tp_destroy};

static const moe_ep_mem_ops cuda_mem_ops = {cu_upload, cu_download, cu_gather, cu_combine, cu_sync};

moe_status_t moe_ep_nccl_open(void *comm, const moe_runner *r, moe_ep_transport **out,
                              const moe_ep_mem_ops **mem) {
  *out = NULL;
  ncclComm_t c = (ncclComm_t)comm;
  int count = 0, me = 0, dev = -1;
  ncclResult_t e;
  if ((e = ncclCommCount(c, &count)) != ncclSuccess ||
      (e = ncclCommUserRank(c, &me)) != ncclSuccess ||
      (e = ncclCommCuDevice(c, &dev)) != ncclSuccess)
    return nccl_fail(e, c, "communicator query (options->comm)");
  nccl_tp *n = (nccl_tp *)calloc(1, sizeof *n);
  if (!n) return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_create: out of host memory");
  n->comm = c;
  n->device = dev;
  n->base.ops = &tp_ops;
  n->base.rank = me;
  n->base.world = count;
  n->base.device = dev;
  *out = &n->base;
  *mem = &cuda_mem_ops;
  return MOE_STATUS_SUCCESS;
}
