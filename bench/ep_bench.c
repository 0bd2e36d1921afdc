/*
 * ep_bench.c - moe-ep-bench: times moe_ep_forward's phases over NCCL, one process per GPU
 * (scripts/ep-nccl-run.sh R build/bench/moe-ep-bench ...; docs/ep.md):
 *   dispatch (count exchange, pack, row exchange, regroup), local experts
 *   (moe_runner_run_grouped) and combine (un-group, row exchange back, weighted sum), in µs
 *   and GB/s of this rank's row payload (T * K rows of H bf16 each way), median of --iters
 *   forwards with the stream synchronised after each phase (moe_ep_set_timing);
 * and, in the same run on the same communicator, the baseline: an NCCL all-to-all
 * (ncclSend / ncclRecv of equal chunks in one group) of the same bytes, synchronised and timed
 * the same way. Every configuration is first checked bit-identical to the single-GPU forward.
 * Options: --tokens 1,128,4096 (per rank) --iters 20 --hidden 1024 --inter 512
 *          --local-experts 8 --topk 4.
 */
#define _POSIX_C_SOURCE 200809L

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ep_world.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n ? v[n / 2] : 0.0;
}

static const char *opt(int argc, char **argv, const char *name, const char *def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!strcmp(argv[i], name)) return argv[i + 1];
  return def;
}

/* The baseline: all-to-all of @p bytes (equal chunks per peer), median µs. */
static double alltoall_us(const ep_world *w, size_t bytes, int iters) {
  const size_t chunk = bytes / (size_t)w->world;
  void *s = NULL, *r = NULL;
  if (cudaMalloc(&s, chunk * w->world + 1) || cudaMalloc(&r, chunk * w->world + 1)) return -1;
  double *t = (double *)malloc(sizeof(double) * (size_t)iters);
  ncclComm_t c = (ncclComm_t)w->comm;
  for (int it = -3; it < iters; ++it) {
    const double t0 = now_us();
    ncclGroupStart();
    for (int p = 0; p < w->world && chunk; ++p) {
      ncclSend((char *)s + chunk * p, chunk, ncclUint8, p, c, NULL);
      ncclRecv((char *)r + chunk * p, chunk, ncclUint8, p, c, NULL);
    }
    ncclGroupEnd();
    cudaStreamSynchronize(NULL);
    if (it >= 0) t[it] = now_us() - t0;
  }
  const double m = median(t, iters);
  free(t);
  cudaFree(s);
  cudaFree(r);
  return m;
}

int main(int argc, char **argv) {
  ep_world w;
  int rc = ep_world_init(&w, argc, argv);
  if (rc) {
    ep_world_free(&w);
    return rc;
  }
  const int iters = atoi(opt(argc, argv, "--iters", "20"));
  ep_layer base = {atoi(opt(argc, argv, "--local-experts", "8")),
                   atoi(opt(argc, argv, "--topk", "4")),
                   atoll(opt(argc, argv, "--hidden", "1024")),
                   atoll(opt(argc, argv, "--inter", "512")),
                   0,
                   EP_ROUTE_BALANCED,
                   1};
  char tokens[256];
  snprintf(tokens, sizeof tokens, "%s", opt(argc, argv, "--tokens", "1,128,4096"));
  if (w.rank == 0)
    printf(
        "# moe-ep-bench: R=%d E_l=%d K=%d H=%lld I=%lld iters=%d (per rank: payload = T*K "
        "rows of H bf16)\n# rank T route | dispatch us GB/s | experts us | combine us GB/s "
        "| nccl all-to-all us GB/s\n",
        w.world, base.El, base.K, (long long)base.H, (long long)base.I, iters);
  double *td = (double *)malloc(sizeof(double) * (size_t)(iters + 1) * 3);
  for (char *tok = strtok(tokens, ","); tok && !rc; tok = strtok(NULL, ","))
    for (int route = 0; route < 2 && !rc; ++route) {
      ep_layer L = base;
      L.T = atoll(tok);
      L.route = route;
      if (route == EP_ROUTE_SKEWED && L.K > L.El) continue;
      ep_data d;
      if (ep_data_make(&w, &L, &d)) rc = 1;
      const int64_t n = L.T * L.H;
      uint16_t *ref = t_xmalloc(sizeof(uint16_t) * (size_t)(n + 1));
      uint16_t *got = t_xmalloc(sizeof(uint16_t) * (size_t)(n + 1));
      moe_ep_options o;
      ep_options(&w, &d, &o);
      moe_ep *ep = NULL;
      size_t bytes = 0;
      if (!rc)
        rc = ep_reference(&w, &d, ref) || CHECK_OK(moe_ep_create(w.r, &o, &ep)) ||
             CHECK_OK(moe_ep_get_workspace_size(ep, &bytes));
      void *ws = rc ? NULL : tmem_alloc(MOE_BACKEND_CUDA, bytes);
      moe_ep_forward_args a;
      ep_args(&d, &a);
      moe_status_t s = rc ? MOE_STATUS_SUCCESS : moe_ep_forward(ep, &a, ws, bytes, NULL);
      if (s) {
        fprintf(stderr, "rank %d: moe_ep_forward: %s\n", w.rank, moe_get_last_error());
        rc = s == MOE_STATUS_NOT_SUPPORTED ? EP_SKIP : 1;
      }
      if (!rc) {
        tmem_download(MOE_BACKEND_CUDA, got, d.out->t.data, sizeof(uint16_t) * (size_t)n);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) bad += got[i] != ref[i];
        if (bad) {
          fprintf(stderr, "rank %d T=%lld: %lld elements differ from the single-GPU forward\n",
                  w.rank, (long long)L.T, (long long)bad);
          rc = 1;
        }
      }
      if (!rc) {
        moe_ep_set_timing(ep, 1);
        moe_ep_timings tm = {0};
        for (int it = -3; it < iters && !rc; ++it) {
          if (moe_ep_forward(ep, &a, ws, bytes, NULL)) rc = 1;
          moe_ep_get_timings(ep, &tm);
          if (it >= 0) {
            td[it] = tm.dispatch_us;
            td[iters + it] = tm.experts_us;
            td[2 * iters + it] = tm.combine_us;
          }
        }
        const double dis = median(td, iters), exp = median(td + iters, iters),
                     com = median(td + 2 * iters, iters);
        const double payload = (double)L.T * L.K * L.H * 2.0;
        const double a2a = alltoall_us(&w, (size_t)payload, iters);
        printf("%d %lld %s | %.1f %.2f | %.1f | %.1f %.2f | %.1f %.2f\n", w.rank, (long long)L.T,
               route ? "skewed" : "balanced", dis, payload / dis / 1e3, exp, com,
               payload / com / 1e3, a2a, payload / a2a / 1e3);
        fflush(stdout);
      }
      tmem_free(MOE_BACKEND_CUDA, ws);
      moe_ep_destroy(ep);
      free(ref);
      free(got);
      ep_data_free(&d);
    }
  free(td);
  ep_world_free(&w);
  return rc;
}
