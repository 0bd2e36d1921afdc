/*
 * test_ep_nccl.c - moe_ep over NCCL on GPUs: every rank's output is bit-identical to the
 * single-GPU moe_runner_run forward (all E experts, do_finalize = 1) of its tokens.
 *  - no arguments (ctest test_ep_nccl): world 1 in this process (ncclCommInitRank with one
 *    rank), T = 0, 1, 128, 1000, and the NCCL-specific misuse (rank option);
 *  - --world R --rank r --id-file F, one process per GPU (scripts/ep-nccl-run.sh R ...):
 *    T = 1, 128, 4096 tokens per rank, balanced and skewed routing (ranks receiving nothing).
 * Exits 77 (skipped) with a printed reason without a GPU, with fewer GPUs than ranks, or while
 * moe_runner_run_grouped answers NOT_SUPPORTED on CUDA. Built only when CMake found NCCL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep_world.h"

/* One layer: returns 0 (checked), EP_SKIP or 1. */
static int run_layer(const ep_world *w, const ep_layer *L) {
  ep_data d;
  if (ep_data_make(w, L, &d)) {
    ep_data_free(&d);
    return 1;
  }
  const int64_t n = L->T * L->H;
  uint16_t *ref = t_xmalloc(sizeof(uint16_t) * (size_t)(n + 1));
  uint16_t *got = t_xmalloc(sizeof(uint16_t) * (size_t)(n + 1));
  int rc = ep_reference(w, &d, ref);
  moe_ep_options o;
  ep_options(w, &d, &o);
  moe_ep *ep = NULL;
  if (!rc) rc = CHECK_OK(moe_ep_create(w->r, &o, &ep)) != 0;
  size_t bytes = 0;
  if (!rc) rc = CHECK_OK(moe_ep_get_workspace_size(ep, &bytes)) != 0;
  void *ws = rc ? NULL : tmem_alloc(MOE_BACKEND_CUDA, bytes);
  if (!rc) {
    tmem_poison(MOE_BACKEND_CUDA, d.out->t.data, d.out->bytes);
    moe_ep_forward_args a;
    ep_args(&d, &a);
    const moe_status_t s = moe_ep_forward(ep, &a, ws, bytes, NULL);
    if (s == MOE_STATUS_NOT_SUPPORTED && strstr(moe_get_last_error(), "moe_runner_run_grouped")) {
      printf("SKIP: %s\n", moe_get_last_error());
      rc = EP_SKIP;
    } else if (CHECK_OK(s)) {
      rc = 1;
    } else {
      tmem_download(MOE_BACKEND_CUDA, got, d.out->t.data, sizeof(uint16_t) * (size_t)n);
      int64_t bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += got[i] != ref[i];
      CHECK(bad == 0,
            "rank %d/%d T=%lld route=%d: %lld of %lld elements differ from the "
            "single-GPU forward",
            w->rank, w->world, (long long)L->T, L->route, (long long)bad, (long long)n);
      printf("rank %d/%d T=%lld route=%s: %s\n", w->rank, w->world, (long long)L->T,
             L->route == EP_ROUTE_SKEWED ? "skewed" : "balanced",
             bad ? "DIFFERS" : "bit-identical to the single-GPU forward");
    }
  }
  tmem_free(MOE_BACKEND_CUDA, ws);
  moe_ep_destroy(ep);
  free(ref);
  free(got);
  ep_data_free(&d);
  return rc;
}

/* NCCL misuse (world 1): a rank option that is not the communicator's. */
static void misuse(const ep_world *w) {
  moe_ep_options o;
  moe_ep_options_init(&o, MOE_EP_OPTIONS_VERSION);
  o.comm = w->comm;
  o.rank = 3;
  o.num_experts = 4, o.local_num_experts = 4, o.top_k = 2, o.hidden_size = 256;
  o.intermediate_size = 128, o.max_tokens = 8;
  moe_ep *ep = NULL;
  const moe_status_t s = moe_ep_create(w->r, &o, &ep);
  CHECK(s == MOE_STATUS_INVALID_ARGUMENT && strstr(moe_get_last_error(), "options->rank") &&
            strstr(moe_get_last_error(), "given 3"),
        "rank 3 of a one-rank communicator: %d '%s'", s, moe_get_last_error());
  moe_ep_destroy(ep);
}

int main(int argc, char **argv) {
  ep_world w;
  int rc = ep_world_init(&w, argc, argv);
  if (rc) {
    ep_world_free(&w);
    return rc == EP_SKIP ? EP_SKIP : 1;
  }
  const int64_t one[] = {0, 1, 128, 1000}, multi[] = {1, 128, 4096};
  const int64_t *Ts = w.world == 1 ? one : multi;
  const int nT = w.world == 1 ? 4 : 3;
  int skipped = 0;
  for (int route = 0; route < (w.world == 1 ? 1 : 2) && !skipped; ++route)
    for (int i = 0; i < nT && !skipped; ++i) {
      const ep_layer L = {8, 4, 1024, 512, Ts[i], route, 100 + (uint64_t)i * 10 + route};
      const int r = run_layer(&w, &L);
      if (r == EP_SKIP)
        skipped = 1;
      else if (r)
        CHECK(0, "rank %d: layer T=%lld route=%d failed", w.rank, (long long)Ts[i], route);
    }
  if (w.world == 1) misuse(&w);
  ep_world_free(&w);
  if (skipped && tc_failures == 0) return EP_SKIP;
  return tc_summary("test_ep_nccl");
}
