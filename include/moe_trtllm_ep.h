/**
 * @file moe_trtllm_ep.h
 * @brief moe_ep: expert parallelism (dispatch -> local experts -> combine) over a caller's
 * communicator (docs/ep.md).
 *
 * R ranks each own an equal slice of the E experts: rank r serves [r * E_l, (r + 1) * E_l) with
 * E = R * E_l. moe_ep_forward() takes the rank's own tokens [T_r, H] and their top-K routing
 * (global expert ids and weights), sends every (token, slot) row to the rank of its expert,
 * runs the local experts with moe_runner_run_grouped() (MOE_LAYOUT_CONTIGUOUS), sends the rows
 * back, and sums each token's K rows in slot order k = 0..K-1 in fp32 with its bf16 routing
 * weight, rounding once to bf16: the output of every rank is bit-identical to the single-GPU
 * moe_runner_run() forward (all E experts on one device) of the same tokens and routing.
 *
 * Transports:
 *  - MOE_EP_TRANSPORT_NCCL: the caller's ncclComm_t (passed as void *, so this header needs
 *    no nccl.h), CUDA runners. Built only when CMake found NCCL (and CUDA); otherwise
 *    moe_ep_create() answers MOE_STATUS_NOT_SUPPORTED.
 *  - MOE_EP_TRANSPORT_LOOPBACK: R ranks as threads of one process sharing a moe_ep_loopback
 *    group (memcpy), CPU runners: tests, and single-process simulation of a deployment.
 *
 * Conventions are those of moe_trtllm.h: moe_status_t results, thread-local messages
 * (moe_get_last_error()), versioned option structs with *_init, never abort or print.
 * moe_ep_create() and moe_ep_forward() are collective: every rank of the communicator calls
 * them, with the same options (except rank), in the same order. A rank whose arguments are
 * invalid still takes part in the first exchange of a forward, so every rank returns the
 * error (no rank is left waiting); a NULL handle cannot communicate and returns at once.
 * This header is C99 and needs no CUDA or NCCL header.
 */
#ifndef MOE_TRTLLM_EP_H_
#define MOE_TRTLLM_EP_H_

#include "moe_trtllm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Transports of moe_ep_options.transport (fixed values). */
#define MOE_EP_TRANSPORT_NCCL 0     /**< comm is an ncclComm_t; CUDA runners */
#define MOE_EP_TRANSPORT_LOOPBACK 1 /**< comm is a moe_ep_loopback *; CPU runners */

/** Opaque in-process group of R ranks (threads) for MOE_EP_TRANSPORT_LOOPBACK. */
typedef struct moe_ep_loopback moe_ep_loopback;

/**
 * @brief Create a loopback group of @p world_size ranks (1..4096). Each rank (thread) then
 * creates its moe_ep with this group and its rank. The group must outlive those handles.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT, MOE_STATUS_OUT_OF_MEMORY.
 */
MOE_API moe_status_t moe_ep_loopback_create(int32_t world_size, moe_ep_loopback **out);
/** @brief Destroy a loopback group (after every moe_ep that uses it). NULL is a no-op. */
MOE_API void moe_ep_loopback_destroy(moe_ep_loopback *group);

#define MOE_EP_OPTIONS_VERSION 1
/**
 * Options of moe_ep_create(). Initialise with moe_ep_options_init(). Every rank passes the
 * same values except @c rank (checked at create: a mismatch fails on every rank).
 */
typedef struct moe_ep_options {
  uint32_t version;          /**< MOE_EP_OPTIONS_VERSION */
  int32_t transport;         /**< MOE_EP_TRANSPORT_*; default NCCL */
  void *comm;                /**< ncclComm_t (NCCL) or moe_ep_loopback * (LOOPBACK); borrowed,
                                  must outlive the handle; owned by the caller */
  int32_t rank;              /**< LOOPBACK: this rank, 0..R-1. NCCL: -1 (default) = the
                                  communicator's rank, else must equal it */
  int32_t num_experts;       /**< E = R * local_num_experts */
  int32_t local_num_experts; /**< E_l: rank r owns experts [r * E_l, (r + 1) * E_l) */
  int32_t top_k;             /**< K, 1..min(E, 64) */
  int64_t hidden_size;       /**< H */
  int64_t intermediate_size; /**< I */
  int64_t max_tokens;        /**< T_max: the most tokens a rank passes to one forward */
  int64_t max_recv_rows;     /**< the most rows a rank may receive in one forward; 0 (default)
                                  = the worst case R * T_max * K. A forward in which some rank
                                  would receive more fails on every rank */
  int32_t config;            /**< config of moe_runner_run_grouped; -1 (default) = the
                                  default config of the grouped problem of max_recv_rows rows */
  int32_t reserved[7];       /**< must be zero */
} moe_ep_options;

/** @brief Defaults: transport NCCL, rank -1, config -1, everything else 0. */
MOE_API moe_status_t moe_ep_options_init(moe_ep_options *opts, uint32_t version);

/** Opaque expert-parallel handle: one rank's view of the communicator and the layer shape. */
typedef struct moe_ep moe_ep;

/**
 * @brief Create the rank's handle (collective: every rank calls it). Checks, on every rank,
 * that all ranks passed the same shape (num_experts, local_num_experts, top_k, hidden_size,
 * intermediate_size, max_tokens, max_recv_rows, config) and that E = R * E_l.
 * @param runner a BF16 runner (moe_runner_run_grouped) of the backend the transport needs
 *        (NCCL: CUDA, on the communicator's device; LOOPBACK: CPU); borrowed, must outlive the
 *        handle.
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (names the option, the expected and
 *         the given value), MOE_STATUS_VERSION_MISMATCH, MOE_STATUS_NOT_SUPPORTED (transport
 *         not built, runner backend or dtype), MOE_STATUS_INVALID_CONFIG,
 *         MOE_STATUS_OUT_OF_MEMORY, MOE_STATUS_CUDA_ERROR (NCCL errors included).
 */
MOE_API moe_status_t moe_ep_create(moe_runner *runner, const moe_ep_options *opts, moe_ep **out);

/** @brief Destroy a handle (not collective). NULL is a no-op. */
MOE_API void moe_ep_destroy(moe_ep *ep);

/** @brief World size R and this handle's rank. Either pointer may be NULL. */
MOE_API moe_status_t moe_ep_get_rank(const moe_ep *ep, int32_t *rank, int32_t *world_size);

/**
 * @brief Workspace bytes of moe_ep_forward() (on the runner's device, 256-byte aligned):
 * the send/receive row buffers, the index tables and the grouped workspace for max_recv_rows.
 */
MOE_API moe_status_t moe_ep_get_workspace_size(const moe_ep *ep, size_t *bytes);

#define MOE_EP_FORWARD_ARGS_VERSION 1
/**
 * Inputs and output of moe_ep_forward(), all on the runner's device. T = this rank's tokens
 * (0..max_tokens; may differ between ranks).
 */
typedef struct moe_ep_forward_args {
  uint32_t version;                  /**< MOE_EP_FORWARD_ARGS_VERSION */
  int32_t reserved0;                 /**< must be zero */
  const DLTensor *hidden_states;     /**< [T, H] bf16 */
  const DLTensor *topk_ids;          /**< [T, K] int32 global expert ids in [0, E) */
  const DLTensor *topk_weights;      /**< [T, K] bf16, or fp32 (rounded to bf16, nearest even,
                                          as moe_routing_prepare does) */
  const DLTensor *gemm1_weights;     /**< this rank's prepared W1 (E_l experts) */
  const DLTensor *gemm2_weights;     /**< this rank's prepared W2 */
  const DLTensor *gemm1_bias;        /**< [E_l, f*I] fp32, optional */
  const DLTensor *gemm2_bias;        /**< [E_l, H] fp32, optional */
  const DLTensor *gemm1_alpha;       /**< [E_l] fp32, optional */
  const DLTensor *gemm1_beta;        /**< [E_l] fp32, optional */
  const DLTensor *gemm1_clamp_limit; /**< [E_l] fp32, optional */
  const DLTensor *output;            /**< [T, H] bf16: the finalized forward of the T tokens */
  int32_t reserved[8];               /**< must be zero */
} moe_ep_forward_args;

/** @brief Defaults: every tensor NULL. */
MOE_API moe_status_t moe_ep_forward_args_init(moe_ep_forward_args *args, uint32_t version);

/** Wall-clock split of the last successful moe_ep_forward() of a handle (microseconds). */
typedef struct moe_ep_timings {
  double dispatch_us; /**< counts exchange, pack, row exchange, regroup */
  double experts_us;  /**< moe_runner_run_grouped */
  double combine_us;  /**< un-group, row exchange back, weighted sum */
  int64_t sent_rows;  /**< rows this rank sent (T * K) */
  int64_t recv_rows;  /**< rows this rank received (its local experts' rows) */
} moe_ep_timings;

/**
 * @brief Dispatch -> local experts -> combine (collective). Reads the routing (ids and
 * weights) and the exchanged counts on the host: on CUDA this synchronises @p stream three times
 * (ids, weights, counts), so a forward is not CUDA-graph capturable.
 * @param stream CUDA stream (NCCL transport) or NULL (LOOPBACK).
 * @retval MOE_STATUS_SUCCESS, MOE_STATUS_INVALID_ARGUMENT (this rank's arguments, or "rank j
 *         reported invalid arguments" on the others), MOE_STATUS_INSUFFICIENT_WORKSPACE,
 *         MOE_STATUS_NOT_SUPPORTED (moe_runner_run_grouped on this backend), the statuses of
 *         moe_runner_run_grouped, MOE_STATUS_CUDA_ERROR.
 */
MOE_API moe_status_t moe_ep_forward(moe_ep *ep, const moe_ep_forward_args *args, void *workspace,
                                    size_t workspace_bytes, moe_cuda_stream_t stream);

/**
 * @brief Timings of the last successful forward (host wall clock; on CUDA each phase ends with
 * a stream synchronisation when @p sync_phases of moe_ep_set_timing() is on).
 */
MOE_API moe_status_t moe_ep_get_timings(const moe_ep *ep, moe_ep_timings *timings);

/**
 * @brief Synchronise the stream at the end of each phase so moe_ep_get_timings() splits the
 * device time (benchmarks). Off by default.
 */
MOE_API moe_status_t moe_ep_set_timing(moe_ep *ep, int32_t sync_phases);

#ifdef __cplusplus
}
#endif

#endif /* MOE_TRTLLM_EP_H_ */
