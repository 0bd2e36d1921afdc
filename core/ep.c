/*
 * ep.c - moe_ep: dispatch -> local experts -> combine over a transport (docs/ep.md). This file
 * is backend- and transport-agnostic: it validates, computes the index tables on the host and
 * orders the exchanges; the transport (ep_internal.h) moves bytes, the memory operations pack,
 * regroup and combine rows on the runner's memory.
 *
 * One forward on rank r of R (E_l experts per rank, slot x = t*K + k of its T tokens):
 *  1. Local checks, then the routing is read on the host. Row x goes to rank id/E_l; the send
 *     buffer holds the rows by global expert id, slots ascending inside an expert (so each
 *     destination's rows are one block, local experts ascending): pos[x] is x's row there.
 *  2. Exchange A (allgather, fixed size): {status, T, count[E]} from every rank, where count[id]
 *     is the number of this rank's slots routed to expert id. A rank whose checks failed sends
 *     its status, and every rank returns an error (no rank is left waiting in a later
 *     exchange). Every rank now knows every rank's receive total and checks them against
 *     max_recv_rows, so all agree.
 *  3. Pack (gather the token rows into the send buffer), exchange B (one send and one recv per
 *     peer; the receive buffer is source-major, local experts ascending inside a source), and
 *     regroup into expert-major order (local expert, then source, then slot): the CONTIGUOUS
 *     layout of moe_runner_run_grouped, with count[e] = rows of local expert e.
 *  4. moe_runner_run_grouped: unweighted FFN rows, each bit-identical to the row moe_runner_run
 *     computes for that token and expert.
 *  5. Un-group into the receive buffer (source-major), exchange C (the reverse of B) into the
 *     send buffer, and combine: out[t] = bf16(sum over k in slot order of w[x] * row[pos[x]])
 *     in fp32 (the finalize of docs/formats.md), bit-identical to the single-device forward.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ep_internal.h"

#define EP_MAX_WORLD 4096
#define EP_MAGIC 0x4d6f45455031LL /* "MoEEP1" */

typedef struct ep_layout {
  /* tables (the host staging copy has the same offsets) */
  int64_t off_send_map, off_pos, off_wts, off_expert_map, off_back_map, off_counts, tables_bytes;
  /* rows */
  int64_t off_send_rows, off_recv_rows, off_in_rows, off_out_rows, off_grouped, total_bytes;
} ep_layout;

struct moe_ep {
  moe_runner *runner;
  moe_ep_transport *tp;
  const moe_ep_mem_ops *mem;
  int32_t rank, world, E, El, K, config;
  int64_t H, I, T_max, S_max, N_max;
  moe_problem gp; /* the grouped problem (num_tokens = N_max) */
  size_t grouped_bytes;
  ep_layout l;
  char *h_tables;         /* host staging of the tables, l.tables_bytes */
  int32_t *h_ids;         /* [S_max] */
  void *h_w;              /* [S_max] fp32 or bf16 as given */
  int32_t *h_hdr, *h_all; /* [2 + E], [R * (2 + E)] */
  int64_t *h_off;         /* [R]: receive offset per source; [R] send offset per dest */
  int64_t *h_send_off;    /* [R] */
  int32_t sync_phases;
  moe_ep_timings timings;
};

/* ---- small helpers --------------------------------------------------------------------------- */

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

#ifndef MOE_WITH_NCCL
moe_status_t moe_ep_nccl_open(void *comm, const moe_runner *r, moe_ep_transport **out,
                              const moe_ep_mem_ops **mem) {
  *out = NULL;
  return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                  "options->transport: MOE_EP_TRANSPORT_NCCL is not built in this library (CMake "
                  "found no NCCL, or the build has no CUDA; see docs/ep.md, MOE_NCCL_ROOT)");
}
#endif

/* ---- options ------------------------------------------------------------------------------- */

MOE_API moe_status_t moe_ep_options_init(moe_ep_options *o, uint32_t version) {
  moe_clear_error();
  if (!o) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "opts: expected a non-NULL pointer");
  if (version < 1 || version > MOE_EP_OPTIONS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "opts version: expected 1..%u, given %u",
                    (unsigned)MOE_EP_OPTIONS_VERSION, version);
  memset(o, 0, sizeof *o);
  o->version = version;
  o->transport = MOE_EP_TRANSPORT_NCCL;
  o->rank = -1;
  o->config = -1;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_ep_forward_args_init(moe_ep_forward_args *a, uint32_t version) {
  moe_clear_error();
  if (!a) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args: expected a non-NULL pointer");
  if (version < 1 || version > MOE_EP_FORWARD_ARGS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "args version: expected 1..%u, given %u",
                    (unsigned)MOE_EP_FORWARD_ARGS_VERSION, version);
  memset(a, 0, sizeof *a);
  a->version = version;
  return MOE_STATUS_SUCCESS;
}

/* ---- create ------------------------------------------------------------------------------- */

/* Shape options against the world size and the runner; fills the sizes of @p ep. */
static moe_status_t check_options(moe_ep *ep, const moe_ep_options *o) {
  const int32_t R = ep->world;
  const moe_runner *r = ep->runner;
  for (int i = 0; i < 7; ++i)
    if (o->reserved[i])
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "options->reserved[%d]: expected 0, given %d", i,
                      o->reserved[i]);
  if (o->transport == MOE_EP_TRANSPORT_NCCL && o->rank != -1 && o->rank != ep->rank)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->rank: expected -1 or the communicator's rank %d, given %d", ep->rank,
                    o->rank);
  if (ep->tp->device >= 0 && r->backend == MOE_BACKEND_CUDA && ep->tp->device != r->device_id)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->comm: expected a communicator on the runner's CUDA device %d, "
                    "given one on device %d",
                    r->device_id, ep->tp->device);
  if (o->local_num_experts < 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->local_num_experts: expected >= 1, given %d", o->local_num_experts);
  if ((int64_t)R * o->local_num_experts != (int64_t)o->num_experts)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->num_experts: expected world size %d x local_num_experts %d = %lld "
                    "(equal expert slices: rank r owns [r * E_l, (r + 1) * E_l)), given %d",
                    R, o->local_num_experts, (long long)R * o->local_num_experts, o->num_experts);
  const int32_t kmax = o->num_experts < MOE_MAX_TOP_K ? o->num_experts : MOE_MAX_TOP_K;
  if (o->top_k < 1 || o->top_k > kmax)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "options->top_k: expected 1..%d, given %d", kmax,
                    o->top_k);
  if (o->hidden_size < 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "options->hidden_size: expected >= 1, given %lld",
                    (long long)o->hidden_size);
  if (o->intermediate_size < 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->intermediate_size: expected >= 1, given %lld",
                    (long long)o->intermediate_size);
  if (o->max_tokens < 0 || o->max_tokens > INT32_MAX / o->top_k)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->max_tokens: expected 0..%d (max_tokens x top_k %d must fit int32), "
                    "given %lld",
                    INT32_MAX / o->top_k, o->top_k, (long long)o->max_tokens);
  const int64_t worst = (int64_t)R * o->max_tokens * o->top_k;
  if (o->max_recv_rows < 0 || o->max_recv_rows > INT32_MAX ||
      (!o->max_recv_rows && worst > INT32_MAX))
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->max_recv_rows: expected 0..%d (0 = world size x max_tokens x top_k "
                    "= %lld, which must fit int32 too), given %lld",
                    INT32_MAX, (long long)worst, (long long)o->max_recv_rows);
  if (o->config < -1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->config: expected -1 (default) or a config index, given %d",
                    o->config);
  const int32_t want = o->transport == MOE_EP_TRANSPORT_NCCL ? MOE_BACKEND_CUDA : MOE_BACKEND_CPU;
  if (r->backend != want)
    return moe_fail(
        MOE_STATUS_NOT_SUPPORTED, "runner: the %s transport needs a %s runner, given a %s runner",
        o->transport == MOE_EP_TRANSPORT_NCCL ? "NCCL" : "loopback",
        want == MOE_BACKEND_CUDA ? "CUDA" : "CPU", r->backend == MOE_BACKEND_CUDA ? "CUDA" : "CPU");
  if (r->opts.activation_dtype != MOE_DTYPE_BF16 || r->opts.weight_dtype != MOE_DTYPE_BF16)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "runner: moe_ep supports BF16 runners only (moe_runner_run_grouped), given "
                    "activation_dtype %d, weight_dtype %d",
                    r->opts.activation_dtype, r->opts.weight_dtype);

  ep->E = o->num_experts, ep->El = o->local_num_experts, ep->K = o->top_k;
  ep->H = o->hidden_size, ep->I = o->intermediate_size, ep->T_max = o->max_tokens;
  ep->S_max = o->max_tokens * o->top_k;
  ep->N_max = o->max_recv_rows ? o->max_recv_rows : worst;
  moe_problem *p = &ep->gp;
  moe_problem_init(p, MOE_PROBLEM_VERSION);
  p->num_experts = ep->E;
  p->num_tokens = ep->N_max;
  p->top_k = 1;
  p->local_expert_offset = ep->rank * ep->El;
  p->local_num_experts = ep->El;
  p->hidden_size = ep->H;
  p->intermediate_size = ep->I;
  moe_status_t s;
  ep->config = o->config;
  if (ep->config < 0 && (s = moe_runner_get_default_config(r, p, &ep->config))) return s;
  if ((s = moe_runner_get_grouped_workspace_size(r, p, ep->config, &ep->grouped_bytes))) return s;

  /* Workspace and host staging: every size in 64 bits, checked. */
  const int64_t S = ep->S_max, N = ep->N_max, H = ep->H;
  const int64_t rows = S > N ? S : N;
  if (rows > 0 && H > INT64_MAX / 8 / rows)
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "options: %lld rows x hidden_size %lld exceed the addressable range",
                    (long long)rows, (long long)H);
  ep_layout *l = &ep->l;
  int64_t at = 0;
  l->off_send_map = moe_ws_region(&at, 4 * S);
  l->off_pos = moe_ws_region(&at, 4 * S);
  l->off_wts = moe_ws_region(&at, 2 * S);
  l->off_expert_map = moe_ws_region(&at, 4 * N);
  l->off_back_map = moe_ws_region(&at, 4 * N);
  l->off_counts = moe_ws_region(&at, 4 * (int64_t)ep->El);
  l->tables_bytes = at;
  l->off_send_rows = moe_ws_region(&at, 2 * S * H);
  l->off_recv_rows = moe_ws_region(&at, 2 * N * H);
  l->off_in_rows = moe_ws_region(&at, 2 * N * H);
  l->off_out_rows = moe_ws_region(&at, 2 * N * H);
  l->off_grouped = moe_ws_region(&at, (int64_t)ep->grouped_bytes);
  l->total_bytes = at;
  if (!moe_ws_fits(at))
    return moe_fail(MOE_STATUS_NOT_SUPPORTED,
                    "options: the moe_ep workspace for %lld sent and %lld received rows of %lld "
                    "values exceeds size_t",
                    (long long)S, (long long)N, (long long)H);
  ep->h_tables = (char *)malloc((size_t)l->tables_bytes + 1);
  ep->h_ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)(S + 1));
  ep->h_w = malloc(sizeof(float) * (size_t)(S + 1));
  ep->h_hdr = (int32_t *)malloc(sizeof(int32_t) * (size_t)(2 + ep->E));
  ep->h_all = (int32_t *)malloc(sizeof(int32_t) * (size_t)R * (size_t)(2 + ep->E));
  ep->h_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)R);
  ep->h_send_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)R);
  if (!ep->h_tables || !ep->h_ids || !ep->h_w || !ep->h_hdr || !ep->h_all || !ep->h_off ||
      !ep->h_send_off)
    return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_create: out of host memory");
  return MOE_STATUS_SUCCESS;
}

/* The options every rank must pass alike, for the exchange at create. */
enum { FP_STATUS, FP_MAGIC, FP_EL, FP_E, FP_K, FP_H, FP_I, FP_TMAX, FP_RECV, FP_CONFIG, FP_COUNT };
static const char *const fp_names[FP_COUNT] = {"",
                                               "",
                                               "local_num_experts",
                                               "num_experts",
                                               "top_k",
                                               "hidden_size",
                                               "intermediate_size",
                                               "max_tokens",
                                               "max_recv_rows",
                                               "config"};

static moe_status_t check_peers(const moe_ep *ep, const int64_t *all) {
  const int32_t R = ep->world;
  for (int32_t j = 0; j < R; ++j)
    if (all[j * FP_COUNT + FP_STATUS])
      return moe_fail((moe_status_t)all[j * FP_COUNT + FP_STATUS],
                      "moe_ep_create: rank %d of %d failed its own checks (status %d: %s); its "
                      "moe_get_last_error() names the argument",
                      j, R, (int)all[j * FP_COUNT + FP_STATUS],
                      moe_status_string((moe_status_t)all[j * FP_COUNT + FP_STATUS]));
  for (int32_t j = 0; j < R; ++j) {
    if (all[j * FP_COUNT + FP_MAGIC] != EP_MAGIC)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "options->comm: rank %d is not running moe_ep_create of this library "
                      "version (the ranks' collectives are out of step)",
                      j);
    for (int f = FP_EL; f < FP_COUNT; ++f)
      if (all[j * FP_COUNT + f] != all[f])
        return moe_fail(
            MOE_STATUS_INVALID_ARGUMENT,
            "options->%s: every rank must pass the same value%s; expected %lld (rank 0), given "
            "%lld by rank %d (this is rank %d)",
            fp_names[f], f == FP_EL || f == FP_E ? " (equal expert slices)" : "", (long long)all[f],
            (long long)all[j * FP_COUNT + f], j, ep->rank);
  }
  return MOE_STATUS_SUCCESS;
}

MOE_API void moe_ep_destroy(moe_ep *ep) {
  if (!ep) return;
  if (ep->tp) ep->tp->ops->destroy(ep->tp);
  free(ep->h_tables);
  free(ep->h_ids);
  free(ep->h_w);
  free(ep->h_hdr);
  free(ep->h_all);
  free(ep->h_off);
  free(ep->h_send_off);
  free(ep);
}

MOE_API moe_status_t moe_ep_create(moe_runner *runner, const moe_ep_options *o, moe_ep **out) {
  moe_clear_error();
  if (!out) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "out: expected a non-NULL pointer");
  *out = NULL;
  if (!runner) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!o) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "opts: expected a non-NULL pointer");
  if (o->version < 1 || o->version > MOE_EP_OPTIONS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "options->version: expected 1..%u, given %u",
                    (unsigned)MOE_EP_OPTIONS_VERSION, o->version);
  moe_ep *ep = (moe_ep *)calloc(1, sizeof *ep);
  if (!ep) return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_create: out of host memory");
  ep->runner = runner;
  moe_status_t s;
  if (o->transport == MOE_EP_TRANSPORT_LOOPBACK) {
    ep->mem = &moe_ep_host_mem_ops;
    s = moe_ep_loopback_open((moe_ep_loopback *)o->comm, o->rank, &ep->tp);
  } else if (o->transport == MOE_EP_TRANSPORT_NCCL) {
    if (!o->comm)
      s = moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                   "options->comm: expected the caller's ncclComm_t with MOE_EP_TRANSPORT_NCCL, "
                   "given NULL");
    else if (runner->backend != MOE_BACKEND_CUDA) /* before the communicator is touched */
      s = moe_fail(MOE_STATUS_NOT_SUPPORTED,
                   "runner: the NCCL transport needs a CUDA runner, given a CPU runner (use "
                   "MOE_EP_TRANSPORT_LOOPBACK for CPU runners)");
    else
      s = moe_ep_nccl_open(o->comm, runner, &ep->tp, &ep->mem);
  } else {
    s = moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                 "options->transport: expected MOE_EP_TRANSPORT_NCCL (%d) or "
                 "MOE_EP_TRANSPORT_LOOPBACK (%d), given %d",
                 MOE_EP_TRANSPORT_NCCL, MOE_EP_TRANSPORT_LOOPBACK, o->transport);
  }
  if (s) { /* no transport: nothing to tell the other ranks */
    moe_ep_destroy(ep);
    return s;
  }
  ep->rank = ep->tp->rank;
  ep->world = ep->tp->world;
  /* Local checks; their status travels in the exchange so that every rank fails together. */
  const moe_status_t local = check_options(ep, o);
  int64_t mine[FP_COUNT] = {local,
                            EP_MAGIC,
                            o->local_num_experts,
                            o->num_experts,
                            o->top_k,
                            o->hidden_size,
                            o->intermediate_size,
                            o->max_tokens,
                            o->max_recv_rows,
                            o->config};
  int64_t *all = (int64_t *)malloc(sizeof(int64_t) * FP_COUNT * (size_t)ep->world);
  if (!all) {
    moe_ep_destroy(ep);
    return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_create: out of host memory");
  }
  s = ep->tp->ops->allgather_host(ep->tp, mine, all, sizeof mine, NULL);
  if (!s && !local) s = check_peers(ep, all);
  if (local) s = local; /* this rank's own message is still the thread's last error */
  free(all);
  if (s) {
    moe_ep_destroy(ep);
    return s;
  }
  *out = ep;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_ep_get_rank(const moe_ep *ep, int32_t *rank, int32_t *world_size) {
  moe_clear_error();
  if (!ep) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "ep: expected a non-NULL handle");
  if (rank) *rank = ep->rank;
  if (world_size) *world_size = ep->world;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_ep_get_workspace_size(const moe_ep *ep, size_t *bytes) {
  moe_clear_error();
  if (!ep) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "ep: expected a non-NULL handle");
  if (!bytes) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "bytes: expected a non-NULL pointer");
  *bytes = (size_t)ep->l.total_bytes;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_ep_set_timing(moe_ep *ep, int32_t sync_phases) {
  moe_clear_error();
  if (!ep) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "ep: expected a non-NULL handle");
  if (sync_phases != 0 && sync_phases != 1)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "sync_phases: expected 0 or 1, given %d",
                    sync_phases);
  ep->sync_phases = sync_phases;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_ep_get_timings(const moe_ep *ep, moe_ep_timings *t) {
  moe_clear_error();
  if (!ep) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "ep: expected a non-NULL handle");
  if (!t) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "timings: expected a non-NULL pointer");
  *t = ep->timings;
  return MOE_STATUS_SUCCESS;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* This rank's arguments; sets *T. */
static moe_status_t check_forward(const moe_ep *ep, const moe_ep_forward_args *a, void *ws,
                                  size_t ws_bytes, moe_cuda_stream_t stream, int64_t *T) {
  const moe_runner *r = ep->runner;
  if (!a) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args: expected a non-NULL pointer");
  if (a->version < 1 || a->version > MOE_EP_FORWARD_ARGS_VERSION)
    return moe_fail(MOE_STATUS_VERSION_MISMATCH, "args->version: expected 1..%d, given %u",
                    MOE_EP_FORWARD_ARGS_VERSION, a->version);
  if (a->reserved0)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->reserved0: expected 0, given %d",
                    a->reserved0);
  for (int i = 0; i < 8; ++i)
    if (a->reserved[i])
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "args->reserved[%d]: expected 0, given %d", i,
                      a->reserved[i]);
  if (r->backend == MOE_BACKEND_CPU && stream)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "stream: expected NULL on the CPU backend, given %p", (void *)stream);
  moe_status_t s;
  const int64_t any_h[2] = {-1, ep->H};
  if ((s = moe_check_tensor(r, a->hidden_states, "args->hidden_states", 0, MOE_T_BF16, 2, any_h)))
    return s;
  *T = a->hidden_states->shape[0];
  if (*T > ep->T_max)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "args->hidden_states: expected at most options->max_tokens = %lld rows, "
                    "given %lld",
                    (long long)ep->T_max, (long long)*T);
  const int64_t tk[2] = {*T, ep->K}, th[2] = {*T, ep->H};
  moe_k_run k;
  memset(&k, 0, sizeof k);
  const moe_expert_tensors et = {a->gemm1_weights,    a->gemm2_weights, a->gemm1_bias,
                                 a->gemm2_bias,       a->gemm1_alpha,   a->gemm1_beta,
                                 a->gemm1_clamp_limit};
  if ((s = moe_check_tensor(r, a->topk_ids, "args->topk_ids", 0, MOE_T_I32, 2, tk)) ||
      (s = moe_check_tensor(r, a->topk_weights, "args->topk_weights", 0, MOE_T_F32_OR_BF16, 2,
                            tk)) ||
      (s = moe_check_tensor(r, a->output, "args->output", 0, MOE_T_BF16, 2, th)) ||
      (s = moe_check_tensor_vector_aligned(r, a->hidden_states, "args->hidden_states")) ||
      (s = moe_check_tensor_vector_aligned(r, a->output, "args->output")) ||
      (s = moe_check_expert_tensors(r, &ep->gp, &et, &k)))
    return s;
  return moe_check_workspace(ws, ws_bytes, ep->l.total_bytes);
}

/* Read the routing to the host, check the ids, count the rows per expert into h_hdr[2..] and
 * fill pos, send_map and the bf16 weights of the host tables. */
static moe_status_t read_routing(moe_ep *ep, const moe_ep_forward_args *a, int64_t T,
                                 moe_cuda_stream_t stream) {
  const int64_t S = T * ep->K;
  const int32_t E = ep->E;
  const int f32 = moe_tensor_kdtype(a->topk_weights) == MOE_K_F32;
  moe_status_t s;
  if ((s = ep->mem->download(ep->runner, ep->h_ids, moe_tensor_data(a->topk_ids),
                             sizeof(int32_t) * (size_t)S, stream)) ||
      (s = ep->mem->download(ep->runner, ep->h_w, moe_tensor_data(a->topk_weights),
                             (f32 ? 4 : 2) * (size_t)S, stream)))
    return s;
  int32_t *cnt = ep->h_hdr + 2;
  memset(cnt, 0, sizeof(int32_t) * (size_t)E);
  for (int64_t x = 0; x < S; ++x) {
    const int32_t id = ep->h_ids[x];
    if (id < 0 || id >= E)
      return moe_fail(
          MOE_STATUS_INVALID_ARGUMENT,
          "args->topk_ids[%lld, %lld]: expected a global expert id in [0, %d), given %d",
          (long long)(x / ep->K), (long long)(x % ep->K), E, id);
    cnt[id]++;
  }
  /* Send order: by global expert id (destination rank, then local expert), slots ascending. */
  int32_t *send_map = (int32_t *)(ep->h_tables + ep->l.off_send_map);
  int32_t *pos = (int32_t *)(ep->h_tables + ep->l.off_pos);
  uint16_t *wts = (uint16_t *)(ep->h_tables + ep->l.off_wts);
  int32_t *cursor = ep->h_all; /* [E] scratch: exchange A fills h_all later */
  int64_t run = 0;
  for (int32_t e = 0; e < E; ++e) {
    if (e % ep->El == 0) ep->h_send_off[e / ep->El] = run;
    cursor[e] = (int32_t)run;
    run += cnt[e];
  }
  for (int64_t x = 0; x < S; ++x) {
    const int32_t p = cursor[ep->h_ids[x]]++;
    pos[x] = p;
    send_map[p] = (int32_t)(x / ep->K);
    wts[x] = f32 ? moe_f32_to_bf16(((const float *)ep->h_w)[x]) : ((const uint16_t *)ep->h_w)[x];
  }
  return MOE_STATUS_SUCCESS;
}

/* After exchange A: receive totals of every rank against max_recv_rows; this rank's regroup
 * maps and expert counts. Returns this rank's receive total in *N. */
static moe_status_t plan_receive(moe_ep *ep, int64_t *N) {
  const int32_t R = ep->world, El = ep->El, me = ep->rank;
  const int64_t stride = 2 + (int64_t)ep->E;
  const int32_t *all = ep->h_all;
  for (int32_t j = 0; j < R; ++j) {
    int64_t n = 0;
    for (int32_t s = 0; s < R; ++s)
      for (int32_t e = 0; e < El; ++e) n += all[s * stride + 2 + (int64_t)j * El + e];
    if (n > ep->N_max)
      return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                      "options->max_recv_rows: rank %d would receive %lld rows in this forward, "
                      "expected at most %lld (max_recv_rows; 0 = world size x max_tokens x top_k)",
                      j, (long long)n, (long long)ep->N_max);
    if (j == me) *N = n;
  }
  int32_t *expert_map = (int32_t *)(ep->h_tables + ep->l.off_expert_map);
  int32_t *back_map = (int32_t *)(ep->h_tables + ep->l.off_back_map);
  int32_t *counts = (int32_t *)(ep->h_tables + ep->l.off_counts);
  /* Receive buffer: source-major, local experts ascending inside a source. */
  int64_t run = 0;
  for (int32_t s = 0; s < R; ++s) {
    ep->h_off[s] = run;
    for (int32_t e = 0; e < El; ++e) run += all[s * stride + 2 + (int64_t)me * El + e];
  }
  /* Expert-major order: local expert, then source, then the source's order (slots ascending). */
  int64_t j = 0;
  for (int32_t e = 0; e < El; ++e) {
    int64_t c = 0;
    for (int32_t s = 0; s < R; ++s) {
      const int32_t *cs = all + s * stride + 2 + (int64_t)me * El;
      int64_t first = ep->h_off[s];
      for (int32_t e2 = 0; e2 < e; ++e2) first += cs[e2];
      for (int32_t i = 0; i < cs[e]; ++i, ++j) {
        expert_map[j] = (int32_t)(first + i);
        back_map[first + i] = (int32_t)j;
      }
      c += cs[e];
    }
    counts[e] = (int32_t)c;
  }
  return MOE_STATUS_SUCCESS;
}

static moe_status_t upload_table(moe_ep *ep, char *ws, int64_t off, int64_t bytes,
                                 moe_cuda_stream_t stream) {
  return ep->mem->upload(ep->runner, ws + off, ep->h_tables + off, (size_t)bytes, stream);
}

/* One point-to-point exchange: rows of @p send_off / @p recv_off blocks. Block sizes in rows:
 * to peer p: send_rows(p); from peer p: recv_rows(p). */
static moe_status_t exchange(moe_ep *ep, const uint16_t *send, const int64_t *send_off,
                             const int64_t *send_rows, uint16_t *recv, const int64_t *recv_off,
                             const int64_t *recv_rows, moe_cuda_stream_t stream) {
  moe_ep_transport *tp = ep->tp;
  const size_t row = sizeof(uint16_t) * (size_t)ep->H;
  moe_status_t s = tp->ops->group_start(tp);
  for (int32_t p = 0; p < ep->world && !s; ++p) {
    if (send_rows[p])
      s = tp->ops->send(tp, send + send_off[p] * ep->H, row * (size_t)send_rows[p], p, stream);
    if (!s && recv_rows[p])
      s = tp->ops->recv(tp, recv + recv_off[p] * ep->H, row * (size_t)recv_rows[p], p, stream);
  }
  const moe_status_t e = tp->ops->group_end(tp, stream); /* always close the group */
  return s ? s : e;
}

static moe_status_t phase_end(moe_ep *ep, moe_cuda_stream_t stream, double *t0, double *acc) {
  moe_status_t s = MOE_STATUS_SUCCESS;
  if (ep->sync_phases) s = ep->mem->sync(ep->runner, stream);
  const double t = now_us();
  *acc = t - *t0;
  *t0 = t;
  return s;
}

MOE_API moe_status_t moe_ep_forward(moe_ep *ep, const moe_ep_forward_args *a, void *workspace,
                                    size_t workspace_bytes, moe_cuda_stream_t stream) {
  moe_clear_error();
  if (!ep) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "ep: expected a non-NULL handle");
  double t0 = now_us();
  moe_ep_timings tm;
  memset(&tm, 0, sizeof tm);
  int64_t T = 0;
  moe_status_t local = check_forward(ep, a, workspace, workspace_bytes, stream, &T);
  if (!local) local = read_routing(ep, a, T, stream);
  const int32_t R = ep->world, El = ep->El, me = ep->rank;
  const int64_t stride = 2 + (int64_t)ep->E, H = ep->H;
  ep->h_hdr[0] = local;
  ep->h_hdr[1] = (int32_t)T;
  if (local) memset(ep->h_hdr + 2, 0, sizeof(int32_t) * (size_t)ep->E);

  /* Exchange A: status, T and counts of every rank. */
  moe_status_t s = ep->tp->ops->allgather_host(ep->tp, ep->h_hdr, ep->h_all,
                                               sizeof(int32_t) * (size_t)stride, stream);
  if (s) return s;
  if (local) return local; /* the message of this rank's check is the thread's last error */
  for (int32_t j = 0; j < R; ++j)
    if (ep->h_all[j * stride])
      return moe_fail((moe_status_t)ep->h_all[j * stride],
                      "moe_ep_forward: rank %d of %d reported invalid arguments (status %d: %s); "
                      "its moe_get_last_error() names the argument",
                      j, R, ep->h_all[j * stride],
                      moe_status_string((moe_status_t)ep->h_all[j * stride]));
  int64_t N = 0;
  if ((s = plan_receive(ep, &N))) return s;

  /* Rows per peer, both directions. */
  int64_t *send_rows = (int64_t *)calloc((size_t)R * 2, sizeof(int64_t));
  if (!send_rows) return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_forward: out of host memory");
  int64_t *recv_rows = send_rows + R;
  for (int32_t p = 0; p < R; ++p)
    for (int32_t e = 0; e < El; ++e) {
      send_rows[p] += ep->h_hdr[2 + (int64_t)p * El + e];
      recv_rows[p] += ep->h_all[p * stride + 2 + (int64_t)me * El + e];
    }

  char *ws = (char *)workspace;
  const ep_layout *l = &ep->l;
  const int64_t S = T * ep->K;
  uint16_t *send_buf = (uint16_t *)(ws + l->off_send_rows);
  uint16_t *recv_buf = (uint16_t *)(ws + l->off_recv_rows);
  uint16_t *in_rows = (uint16_t *)(ws + l->off_in_rows);
  uint16_t *out_rows = (uint16_t *)(ws + l->off_out_rows);
  const int32_t *d_send_map = (const int32_t *)(ws + l->off_send_map);
  const int32_t *d_pos = (const int32_t *)(ws + l->off_pos);
  const uint16_t *d_wts = (const uint16_t *)(ws + l->off_wts);
  const int32_t *d_expert_map = (const int32_t *)(ws + l->off_expert_map);
  const int32_t *d_back_map = (const int32_t *)(ws + l->off_back_map);
  const moe_ep_mem_ops *m = ep->mem;
  moe_runner *r = ep->runner;

  /* Dispatch: tables, pack, exchange B, regroup. */
  if (!(s = upload_table(ep, ws, l->off_send_map, 4 * S, stream)) &&
      !(s = upload_table(ep, ws, l->off_pos, 4 * S, stream)) &&
      !(s = upload_table(ep, ws, l->off_wts, 2 * S, stream)) &&
      !(s = upload_table(ep, ws, l->off_expert_map, 4 * N, stream)) &&
      !(s = upload_table(ep, ws, l->off_back_map, 4 * N, stream)) &&
      !(s = upload_table(ep, ws, l->off_counts, 4 * (int64_t)El, stream)) &&
      !(s = m->gather_rows(r, send_buf, (const uint16_t *)moe_tensor_data(a->hidden_states),
                           d_send_map, S, H, stream)) &&
      !(s = exchange(ep, send_buf, ep->h_send_off, send_rows, recv_buf, ep->h_off, recv_rows,
                     stream)) &&
      !(s = m->gather_rows(r, in_rows, recv_buf, d_expert_map, N, H, stream)))
    s = phase_end(ep, stream, &t0, &tm.dispatch_us);

  /* Local experts. Called on every rank, also with N = 0, so that a status of the grouped
   * path (NOT_SUPPORTED on a backend, a weight check) is the same on every rank and no rank
   * goes on to exchange C alone. */
  if (!s) {
    moe_problem gp = ep->gp;
    gp.num_tokens = N;
    const DLDevice dev = a->hidden_states->device;
    int64_t rows_shape[2] = {N, H}, el_shape[1] = {El};
    DLTensor hid = {in_rows, dev, 2, {kDLBfloat, 16, 1}, rows_shape, NULL, 0};
    DLTensor out = {out_rows, dev, 2, {kDLBfloat, 16, 1}, rows_shape, NULL, 0};
    DLTensor cnt = {ws + l->off_counts, dev, 1, {kDLInt, 32, 1}, el_shape, NULL, 0};
    moe_grouped_args g;
    moe_grouped_args_init(&g, MOE_GROUPED_ARGS_VERSION);
    g.layout = MOE_LAYOUT_CONTIGUOUS;
    g.hidden_states = &hid;
    g.expert_counts = &cnt;
    g.gemm1_weights = a->gemm1_weights;
    g.gemm2_weights = a->gemm2_weights;
    g.gemm1_bias = a->gemm1_bias;
    g.gemm2_bias = a->gemm2_bias;
    g.gemm1_alpha = a->gemm1_alpha;
    g.gemm1_beta = a->gemm1_beta;
    g.gemm1_clamp_limit = a->gemm1_clamp_limit;
    g.output = &out;
    s = moe_runner_run_grouped(r, &gp, &g, ep->config, ws + l->off_grouped,
                               (size_t)(l->total_bytes - l->off_grouped), stream);
  }
  if (!s) s = phase_end(ep, stream, &t0, &tm.experts_us);

  /* Combine: un-group into the receive buffer, exchange C, weighted sum in slot order. */
  if (!s && !(s = m->gather_rows(r, recv_buf, out_rows, d_back_map, N, H, stream)) &&
      !(s = exchange(ep, recv_buf, ep->h_off, recv_rows, send_buf, ep->h_send_off, send_rows,
                     stream)) &&
      !(s = m->combine(r, (uint16_t *)moe_tensor_data(a->output), send_buf, d_pos, d_wts, T, ep->K,
                       H, stream)))
    s = phase_end(ep, stream, &t0, &tm.combine_us);
  free(send_rows);
  if (s) return s;
  tm.sent_rows = S;
  tm.recv_rows = N;
  ep->timings = tm;
  return MOE_STATUS_SUCCESS;
}
