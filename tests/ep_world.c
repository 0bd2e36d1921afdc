/*
 * ep_world.c - see ep_world.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "ep_world.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Rank 0 writes the id to F.tmp and renames it to F; the others wait for F (120 s). */
static int share_id(ncclUniqueId *id, int32_t rank, const char *file) {
  if (rank == 0) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(id, sizeof *id, 1, f) != 1 || fclose(f) || rename(tmp, file)) {
      fprintf(stderr, "rank 0: cannot write the NCCL id to %s\n", file);
      return 1;
    }
    return 0;
  }
  for (int i = 0; i < 12000; ++i) {
    FILE *f = fopen(file, "rb");
    if (f) {
      const size_t n = fread(id, sizeof *id, 1, f);
      fclose(f);
      if (n == 1) return 0;
    }
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  fprintf(stderr, "rank %d: no NCCL id in %s after 120 s\n", rank, file);
  return 1;
}

int ep_world_init(ep_world *w, int argc, char **argv) {
  memset(w, 0, sizeof *w);
  w->world = 1;
  const char *id_file = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--world"))
      w->world = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rank"))
      w->rank = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--id-file"))
      id_file = argv[i + 1];
  }
  if (w->world < 1 || w->rank < 0 || w->rank >= w->world || (w->world > 1 && !id_file)) {
    fprintf(stderr, "usage: %s [--world R --rank r --id-file F] (R > 1 needs --id-file)\n",
            argv[0]);
    return 1;
  }
  int n = 0;
  if (!t_have_cuda() || cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
    printf("SKIP: no CUDA device (moe_ep over NCCL runs on GPUs)\n");
    return EP_SKIP;
  }
  if (n < w->world) {
    printf("SKIP: %d ranks need %d GPUs, %d present\n", w->world, w->world, n);
    return EP_SKIP;
  }
  if (cudaSetDevice(w->rank) != cudaSuccess) return 1;
  ncclUniqueId id;
  ncclComm_t comm = NULL;
  ncclResult_t e = w->rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
  if (e != ncclSuccess) {
    fprintf(stderr, "ncclGetUniqueId: %s\n", ncclGetErrorString(e));
    return 1;
  }
  if (w->world > 1 && share_id(&id, w->rank, id_file)) return 1;
  if ((e = ncclCommInitRank(&comm, w->world, id, w->rank)) != ncclSuccess) {
    fprintf(stderr, "rank %d: ncclCommInitRank: %s\n", w->rank, ncclGetErrorString(e));
    return 1;
  }
  w->comm = comm;
  moe_runner_options o;
  moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION);
  o.backend = MOE_BACKEND_CUDA;
  o.device_id = w->rank;
  if (CHECK_OK(moe_runner_create(&o, &w->r))) return 1;
  return 0;
}

void ep_world_free(ep_world *w) {
  moe_runner_destroy(w->r);
  if (w->comm) ncclCommDestroy((ncclComm_t)w->comm);
  memset(w, 0, sizeof *w);
}

int ep_data_make(const ep_world *w, const ep_layer *L, ep_data *d) {
  memset(d, 0, sizeof *d);
  d->L = *L;
  const int32_t R = w->world, El = L->El, K = L->K;
  const int64_t T = L->T, H = L->H, I = L->I, Ts = (int64_t)R * T, e0 = (int64_t)w->rank * El;
  d->E = R * El;
  if (K > 64 || (L->route == EP_ROUTE_SKEWED && K > El)) {
    fprintf(stderr, "ep_data_make: K = %d needs K <= 64 and, skewed, K <= E_l = %d\n", K, El);
    return 1;
  }
  t_expert_data_gen(L->seed, Ts, d->E, H, I, 1, 1, 1, &d->d);
  d->ids = t_xmalloc(sizeof(int32_t) * (size_t)(T * K + 1));
  d->wts = t_xmalloc(sizeof(float) * (size_t)(T * K + 1));
  t_rng rng = {L->seed * 1000003u + 7u};
  /* The whole world's routing (distinct ids per token); this rank keeps its slice. T = 0 has
   * no tokens anywhere. */
  for (int64_t t = 0; t < Ts; ++t) {
    const int mine = t / T == w->rank;
    int32_t prev[64];
    for (int32_t k = 0; k < K && k < 64; ++k) {
      int32_t id, dup;
      do {
        id = (int32_t)(L->route == EP_ROUTE_SKEWED ? t_rng_range(&rng, 0, El - 1)
                                                   : t_rng_range(&rng, 0, d->E - 1));
        dup = 0;
        for (int32_t j = 0; j < k; ++j) dup |= prev[j] == id;
      } while (dup);
      prev[k] = id;
      const float v = (float)(t_rng_next(&rng) % 100000) / 50000.0f - 0.5f;
      if (mine) {
        const int64_t x = (t - (int64_t)w->rank * T) * K + k;
        d->ids[x] = id, d->wts[x] = v;
      }
    }
  }
  const t_moe_in in = t_expert_data_in(&d->d);
  moe_problem p;
  t_problem(&p, d->E, T, K, 0, d->E, H, I);
  if (CHECK_OK(t_weights_prepare(w->r, MOE_BACKEND_CUDA, &p, MOE_ACTIVATION_SWIGLU, &in, &d->full)))
    return 1;
  t_moe_in li = in;
  li.w1 = in.w1 + e0 * 2 * I * H;
  li.w2 = in.w2 + e0 * H * I;
  t_problem(&p, d->E, T, K, (int32_t)e0, El, H, I);
  if (CHECK_OK(
          t_weights_prepare(w->r, MOE_BACKEND_CUDA, &p, MOE_ACTIVATION_SWIGLU, &li, &d->local)))
    return 1;
  const int C = MOE_BACKEND_CUDA;
  d->hid = tt_from_host(C, DT_BF16, 2, (int64_t[]){T, H}, d->d.hidden + (int64_t)w->rank * T * H);
  d->tids = tt_from_host(C, DT_I32, 2, (int64_t[]){T, K}, d->ids);
  d->twts = tt_from_host(C, DT_F32, 2, (int64_t[]){T, K}, d->wts);
  d->out = tt_new(C, DT_BF16, 2, (int64_t[]){T, H});
  d->b1 = tt_from_host(C, DT_F32, 2, (int64_t[]){El, 2 * I}, d->d.b1 + e0 * 2 * I);
  d->b2 = tt_from_host(C, DT_F32, 2, (int64_t[]){El, H}, d->d.b2 + e0 * H);
  d->al = tt_from_host(C, DT_F32, 1, (int64_t[]){El}, d->d.alpha + e0);
  d->be = tt_from_host(C, DT_F32, 1, (int64_t[]){El}, d->d.beta + e0);
  d->cl = tt_from_host(C, DT_F32, 1, (int64_t[]){El}, d->d.clamp + e0);
  return 0;
}

void ep_data_free(ep_data *d) {
  t_weights_free(&d->full);
  t_weights_free(&d->local);
  tt_free(d->hid), tt_free(d->tids), tt_free(d->twts), tt_free(d->out), tt_free(d->b1);
  tt_free(d->b2), tt_free(d->al), tt_free(d->be), tt_free(d->cl);
  t_expert_data_free(&d->d);
  free(d->ids);
  free(d->wts);
}

int ep_reference(const ep_world *w, ep_data *d, uint16_t *out) {
  const ep_layer *L = &d->L;
  moe_problem p;
  t_problem(&p, d->E, L->T, L->K, 0, d->E, L->H, L->I);
  t_route rt;
  t_route_init(&rt);
  rt.method = MOE_ROUTING_TOPK;
  rt.input = T_INPUT_IDS;
  rt.ids = d->ids;
  rt.weights_f32 = 1;
  rt.weights = d->wts;
  t_moe_in in = t_expert_data_in(&d->d);
  in.hidden += (int64_t)w->rank * L->T * L->H;
  int32_t cfg = 0;
  t_ws ws = {0};
  moe_plan plan;
  const int bad = CHECK_OK(moe_runner_get_default_config(w->r, &p, &cfg)) ||
                  CHECK_OK(t_ws_alloc(w->r, MOE_BACKEND_CUDA, &p, cfg, &ws)) ||
                  CHECK_OK(t_prepare(w->r, MOE_BACKEND_CUDA, &p, &rt, cfg, &ws, &plan)) ||
                  CHECK_OK(t_run(w->r, MOE_BACKEND_CUDA, &p, MOE_ACTIVATION_SWIGLU, &in, &d->full,
                                 cfg, &plan, &ws, 1, out));
  t_ws_free(&ws);
  return bad;
}

void ep_options(const ep_world *w, const ep_data *d, moe_ep_options *o) {
  moe_ep_options_init(o, MOE_EP_OPTIONS_VERSION);
  o->transport = MOE_EP_TRANSPORT_NCCL;
  o->comm = w->comm;
  o->num_experts = d->E;
  o->local_num_experts = d->L.El;
  o->top_k = d->L.K;
  o->hidden_size = d->L.H;
  o->intermediate_size = d->L.I;
  o->max_tokens = d->L.T;
}

void ep_args(ep_data *d, moe_ep_forward_args *a) {
  moe_ep_forward_args_init(a, MOE_EP_FORWARD_ARGS_VERSION);
  a->hidden_states = &d->hid->t;
  a->topk_ids = &d->tids->t;
  a->topk_weights = &d->twts->t;
  a->gemm1_weights = &d->local.w1->t;
  a->gemm2_weights = &d->local.w2->t;
  a->gemm1_bias = &d->b1->t;
  a->gemm2_bias = &d->b2->t;
  a->gemm1_alpha = &d->al->t;
  a->gemm1_beta = &d->be->t;
  a->gemm1_clamp_limit = &d->cl->t;
  a->output = &d->out->t;
}
