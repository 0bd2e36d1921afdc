/*
 * ep_world.h - an NCCL world for the moe_ep tests and benchmark on GPUs (tests/test_ep_nccl.c,
 * bench/ep_bench.c): one process per GPU (rank r uses device r), the ncclUniqueId shared
 * through a file (scripts/ep-nccl-run.sh), or world 1 in-process; seeded layer data that every
 * rank generates alike; the single-GPU reference forward and the moe_ep forward of a rank.
 * Built only when CMake found NCCL (it needs nccl.h and the CUDA runtime).
 */
#ifndef MOE_TESTS_EP_WORLD_H_
#define MOE_TESTS_EP_WORLD_H_

#include <stdint.h>

#include "common.h"
#include "moe_trtllm_ep.h"

#define EP_SKIP 77 /* exit code of a skipped run (ctest SKIP_RETURN_CODE) */

typedef struct ep_world {
  int32_t rank, world;
  void *comm;    /* ncclComm_t */
  moe_runner *r; /* CUDA runner on device `rank` */
} ep_world;

/* Parse --world R --rank r --id-file F from argv (world 1, rank 0 in-process without them),
 * check the GPUs, set device `rank`, create the communicator and the runner. Returns 0, or
 * EP_SKIP with a printed reason (no device, fewer devices than ranks), or 1 on error. */
int ep_world_init(ep_world *w, int argc, char **argv);
void ep_world_free(ep_world *w);

#define EP_ROUTE_BALANCED 0 /* ids uniform over [0, E) */
#define EP_ROUTE_SKEWED 1   /* ids from rank 0's experts only (K <= E_l): others receive 0 rows */

typedef struct ep_layer {
  int32_t El, K;
  int64_t H, I, T; /* T tokens per rank */
  int route;
  uint64_t seed;
} ep_layer;

/* One rank's data on its GPU: the tokens and routing of this rank (every rank draws the whole
 * world's alike and keeps its slice), all E experts prepared (reference) and its E_l slice. */
typedef struct ep_data {
  ep_layer L;
  int32_t E;
  t_expert_data d; /* hidden [R*T, H], weights of E experts */
  int32_t *ids;    /* [T, K] this rank's */
  float *wts;      /* [T, K] */
  t_weights full, local;
  ttensor *hid, *tids, *twts, *out, *b1, *b2, *al, *be, *cl; /* this rank's, on the GPU */
} ep_data;

int ep_data_make(const ep_world *w, const ep_layer *L, ep_data *d);
void ep_data_free(ep_data *d);
/* The single-GPU moe_runner_run forward (all E experts, do_finalize = 1) into host out[T, H]. */
int ep_reference(const ep_world *w, ep_data *d, uint16_t *out);
/* moe_ep options of this layer (NCCL transport) and forward args over @p d. */
void ep_options(const ep_world *w, const ep_data *d, moe_ep_options *o);
void ep_args(ep_data *d, moe_ep_forward_args *a);

#endif /* MOE_TESTS_EP_WORLD_H_ */
