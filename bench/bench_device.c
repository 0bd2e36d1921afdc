/*
 * bench_device.c - moe-bench's device layer: the CPU (host memory, wall clock) and, in CUDA
 * builds, the GPU (cudaMalloc, CUDA-graph replays timed by events, the same-run ceilings:
 * copy and read-only bandwidth, cuBLAS bf16 and cuBLASLt e4m3 GEMM rates; NVTX ranges around
 * timed regions).
 */
#define _POSIX_C_SOURCE 200809L
#include "bench_device.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(MOE_BENCH_WITH_CUDA)
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

/* bench_read.cu: one read-only pass over a buffer. */
int bench_read_launch(const void *p, size_t bytes, unsigned *out, int blocks, cudaStream_t stream);
#endif

const char *bench_prog = "moe-bench";

struct bench_dev {
  int gpu;
  char name[256];
  double copy_bw, read_bw, gemm_rate, fp8_gemm_rate;
  int fp8_fast_accum;
#if defined(MOE_BENCH_WITH_CUDA)
  cudaStream_t stream;
  struct cudaDeviceProp prop;
#endif
};

int bench_forward_once(void *ctx, int copy, moe_cuda_stream_t stream) {
  const bench_case *c = (const bench_case *)ctx;
  moe_status_t s = moe_routing_prepare(c->runner, c->problem, c->routing, c->config, c->workspace,
                                       c->workspace_bytes, c->plan, stream);
  if (!s && !c->routing_only)
    s = moe_runner_run(c->runner, c->problem, &c->runs[copy], c->config, c->plan, c->workspace,
                       c->workspace_bytes, stream);
  if (s)
    fprintf(stderr, "%s: forward failed: %s: %s\n", bench_prog, moe_status_string(s),
            moe_get_last_error());
  return s != 0;
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

int bench_open(int backend, bench_dev **out) {
  bench_dev *d = (bench_dev *)calloc(1, sizeof *d);
  if (!d) return 1;
  snprintf(d->name, sizeof d->name, "host CPU");
  int32_t n = 0;
  moe_cuda_device_count(&n);
#if defined(MOE_BENCH_WITH_CUDA)
  if (backend != MOE_BACKEND_CPU && n > 0) {
    d->gpu = 1;
    cudaGetDeviceProperties(&d->prop, 0);
    snprintf(d->name, sizeof d->name, "%s", d->prop.name);
    if (cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking) != cudaSuccess) {
      free(d);
      return 1;
    }
  }
#endif
  if (backend == MOE_BACKEND_CUDA && !d->gpu) {
    fprintf(stderr, "%s: --backend cuda: no CUDA device available\n", bench_prog);
    free(d);
    return 1;
  }
  *out = d;
  return 0;
}

void bench_close(bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) cudaStreamDestroy(d->stream);
#endif
  free(d);
}

int bench_is_gpu(const bench_dev *d) {
  return d->gpu;
}
const char *bench_device_name(const bench_dev *d) {
  return d->name;
}
double bench_copy_bw(const bench_dev *d) {
  return d->copy_bw;
}
double bench_read_bw(const bench_dev *d) {
  return d->read_bw;
}
double bench_gemm_rate(const bench_dev *d) {
  return d->gemm_rate;
}
double bench_fp8_gemm_rate(const bench_dev *d) {
  return d->fp8_gemm_rate;
}
int bench_fp8_gemm_fast_accum(const bench_dev *d) {
  return d->fp8_fast_accum;
}

void *bench_alloc(bench_dev *d, size_t bytes) {
  if (bytes == 0) bytes = 256;
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) {
    void *p = NULL;
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
  }
#endif
  void *p = NULL;
  return posix_memalign(&p, 256, bytes) == 0 ? p : NULL;
}

void bench_free(bench_dev *d, void *p) {
  if (!p) return;
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) {
    cudaFree(p);
    return;
  }
#endif
  free(p);
}

/* Host <-> device copy (to_device: host src to device dst); plain memcpy on the CPU. */
static int transfer(bench_dev *d, void *dst, const void *src, size_t bytes, int to_device) {
#if defined(MOE_BENCH_WITH_CUDA)
  /* The bench's stream is non-blocking, so cudaMemcpy (legacy default stream) does not order
   * itself after its work: a download waits for the stream first, and an upload (whose DMA
   * from pageable memory may still run when cudaMemcpy returns) completes before the stream's
   * next work. */
  if (d->gpu)
    return (!to_device && cudaStreamSynchronize(d->stream) != cudaSuccess) ||
           cudaMemcpy(dst, src, bytes,
                      to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost) != cudaSuccess ||
           (to_device && cudaDeviceSynchronize() != cudaSuccess);
#endif
  memcpy(dst, src, bytes);
  return 0;
}
int bench_download(bench_dev *d, void *dst, const void *src, size_t bytes) {
  return transfer(d, dst, src, bytes, 0);
}
int bench_upload(bench_dev *d, void *dst, const void *src, size_t bytes) {
  return transfer(d, dst, src, bytes, 1);
}

int bench_sm_count(const bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) return d->prop.multiProcessorCount;
#endif
  return 0;
}

int bench_fill_repeat(bench_dev *d, void *dst, size_t bytes, const void *src, size_t block) {
  if (!bytes) return 0;
  if (bench_upload(d, dst, src, block < bytes ? block : bytes)) return 1;
  /* Double the filled prefix each step (device-to-device on the GPU). */
  for (size_t done = block < bytes ? block : bytes; done < bytes;) {
    size_t n = done < bytes - done ? done : bytes - done;
#if defined(MOE_BENCH_WITH_CUDA)
    if (d->gpu) {
      if (cudaMemcpy((char *)dst + done, dst, n, cudaMemcpyDeviceToDevice) != cudaSuccess) return 1;
    } else
#endif
      memcpy((char *)dst + done, dst, n);
    done += n;
  }
  return 0;
}

moe_cuda_stream_t bench_stream(bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) return (moe_cuda_stream_t)d->stream;
#endif
  return NULL;
}

void bench_sync(bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) cudaStreamSynchronize(d->stream);
#endif
}

size_t bench_l2_bytes(bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) return (size_t)d->prop.l2CacheSize;
#endif
  return 0;
}

size_t bench_free_bytes(bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  size_t f = 0, t = 0;
  if (d->gpu && cudaMemGetInfo(&f, &t) == cudaSuccess) return f;
#endif
  return (size_t)1 << 40;
}

#if defined(MOE_BENCH_WITH_CUDA)
/* Milliseconds of the work between e0 and e1 on the stream (after both were recorded). */
static float elapsed_ms(cudaEvent_t e0, cudaEvent_t e1) {
  float ms = 0;
  cudaEventSynchronize(e1);
  cudaEventElapsedTime(&ms, e0, e1);
  return ms;
}

/* Copy: 1 GiB device to device, bytes read + written, best of 10. */
static void measure_copy(bench_dev *d, cudaEvent_t e0, cudaEvent_t e1) {
  size_t n = (size_t)1 << 30;
  void *a = NULL, *b = NULL;
  if (cudaMalloc(&a, n) == cudaSuccess && cudaMalloc(&b, n) == cudaSuccess) {
    float best = 1e30f;
    cudaMemsetAsync(a, 0x3C, n, d->stream);
    for (int i = 0; i < 10; ++i) {
      cudaEventRecord(e0, d->stream);
      cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, d->stream);
      cudaEventRecord(e1, d->stream);
      const float ms = elapsed_ms(e0, e1);
      if (ms < best) best = ms; /* best: the ceiling */
    }
    d->copy_bw = 2.0 * (double)n / (best * 1e-3);
  }
  cudaFree(a);
  cudaFree(b);
}

/* Read-only streaming: one pass of bench_read.cu's kernel over a buffer of at least 1 GiB and
 * 8x L2 (four 16-byte loads in flight per thread, 4 blocks of 512 threads per SM), one atomic
 * per warp written; bytes read, best of 10 after 2 warm-up passes. */
static void measure_read(bench_dev *d, cudaEvent_t e0, cudaEvent_t e1) {
  size_t n = (size_t)1 << 30;
  if (n < 8 * (size_t)d->prop.l2CacheSize) n = 8 * (size_t)d->prop.l2CacheSize;
  void *a = NULL;
  unsigned *out = NULL;
  if (cudaMalloc(&a, n) == cudaSuccess && cudaMalloc((void **)&out, 256) == cudaSuccess) {
    const int blocks = 4 * d->prop.multiProcessorCount;
    float best = 1e30f;
    int rc = cudaMemsetAsync(a, 0x5A, n, d->stream) != cudaSuccess;
    for (int i = 0; i < 12 && !rc; ++i) {
      cudaEventRecord(e0, d->stream);
      rc = bench_read_launch(a, n, out, blocks, d->stream);
      cudaEventRecord(e1, d->stream);
      const float ms = elapsed_ms(e0, e1);
      if (!rc && i >= 2 && ms < best) best = ms;
    }
    if (!rc && cudaStreamSynchronize(d->stream) == cudaSuccess)
      d->read_bw = (double)n / (best * 1e-3);
    else
      fprintf(stderr, "moe-bench: read-only bandwidth kernel failed: %s\n",
              cudaGetErrorString(cudaGetLastError()));
  }
  cudaFree(a);
  cudaFree(out);
}

/* Dense bf16 GEMM: 8192^3 through cuBLAS on random data, best of 10. */
static void measure_bf16_gemm(bench_dev *d, cudaEvent_t e0, cudaEvent_t e1) {
  const int N = 8192;
  size_t mb = (size_t)N * N * 2;
  void *A = NULL, *B = NULL, *C = NULL;
  cublasHandle_t h = NULL;
  if (cudaMalloc(&A, mb) == cudaSuccess && cudaMalloc(&B, mb) == cudaSuccess &&
      cudaMalloc(&C, mb) == cudaSuccess && cublasCreate(&h) == CUBLAS_STATUS_SUCCESS) {
    unsigned short *hb = (unsigned short *)malloc((size_t)1 << 24);
    uint64_t s = 12345;
    for (size_t i = 0; i < ((size_t)1 << 23); ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      hb[i] = (unsigned short)(0x3C00 + ((s >> 40) & 0x7F) - 0x40 + ((s >> 60) << 15));
    }
    bench_fill_repeat(d, A, mb, hb, (size_t)1 << 24);
    bench_fill_repeat(d, B, mb, hb, (size_t)1 << 24);
    free(hb);
    cublasSetStream(h, d->stream);
    float one = 1.0f, zero = 0.0f, best = 1e30f;
    for (int i = 0; i < 12; ++i) {
      cudaEventRecord(e0, d->stream);
      cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A, CUDA_R_16BF, N, B, CUDA_R_16BF, N,
                   &zero, C, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      cudaEventRecord(e1, d->stream);
      const float ms = elapsed_ms(e0, e1);
      if (i >= 2 && ms < best) best = ms;
    }
    d->gemm_rate = 2.0 * N * (double)N * N / (best * 1e-3);
  }
  if (h) cublasDestroy(h);
  cudaFree(A);
  cudaFree(B);
  cudaFree(C);
}

/* Dense e4m3 GEMM: D[bf16] = A^T B through cuBLASLt, 8192^3, e4m3 x e4m3 with fp32 accumulation
 * and per-tensor scale pointers (1.0), the TN layout FP8 needs (A stored K x M, B K x N, both
 * K-major; D M x N, column-major). Operands: random e4m3 (random sign and mantissa, exponents
 * 2^-2..2^1, never NaN). cuBLASLt's first 3 heuristic algorithms, each with fast accumulation
 * off (fp32 promotion) and on; the fastest, best of 10 after 2 warm-ups, is the ceiling. */
static void measure_fp8_gemm(bench_dev *d, cudaEvent_t e0, cudaEvent_t e1) {
  const int N = 8192;
  const size_t ab = (size_t)N * N, db = (size_t)N * N * 2, wsb = (size_t)32 << 20;
  void *A = NULL, *B = NULL, *D = NULL, *ws = NULL;
  float *scale = NULL;
  cublasLtHandle_t lt = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  float best = 1e30f;
  int best_fast = 0, ok = 0;
  cublasStatus_t lt_status = CUBLAS_STATUS_SUCCESS;
  if (cudaMalloc(&A, ab) != cudaSuccess || cudaMalloc(&B, ab) != cudaSuccess ||
      cudaMalloc(&D, db) != cudaSuccess || cudaMalloc(&ws, wsb) != cudaSuccess ||
      cudaMalloc((void **)&scale, 256) != cudaSuccess ||
      cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS)
    goto done;
  {
    const size_t hn = (size_t)1 << 24;
    unsigned char *hb = (unsigned char *)malloc(hn);
    if (!hb) goto done;
    uint64_t s = 67890;
    for (size_t i = 0; i < hn; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const unsigned sign = (unsigned)(s >> 63), exp = 5 + (unsigned)((s >> 40) % 4),
                     mant = (unsigned)(s >> 50) & 7;
      hb[i] = (unsigned char)(sign << 7 | exp << 3 | mant); /* exp <= 8 < 15: never NaN */
    }
    const float ones[2] = {1.0f, 1.0f};
    int e = bench_fill_repeat(d, A, ab, hb, hn) || bench_fill_repeat(d, B, ab, hb + 7, hn - 7) ||
            bench_upload(d, scale, ones, sizeof ones);
    free(hb);
    if (e) goto done;
  }
  if (cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, N, N, N) ||
      cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, N, N, N) ||
      cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, N, N, N) ||
      cublasLtMatmulPreferenceCreate(&pref) ||
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                           sizeof wsb))
    goto done;
  /* Variants, best first: scale pointers set (the form FP8 checkpoints run) or left at their
   * default 1; fast accumulation off (fp32 promotion) or on. A variant cuBLASLt rejects is
   * skipped; its status is reported when none runs. */
  for (int v = 0; v < 4; ++v) {
    const int fast = v & 1, scaled = v < 2;
    cublasLtMatmulDesc_t op = NULL;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const void *sa = scale, *sb = scale + 1;
    const int8_t fa = (int8_t)fast;
    cublasLtMatmulHeuristicResult_t heur[3];
    int nh = 0;
    if ((lt_status = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ||
        (lt_status =
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) ||
        (lt_status =
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)) ||
        (scaled && (lt_status = cublasLtMatmulDescSetAttribute(
                        op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof sa))) ||
        (scaled && (lt_status = cublasLtMatmulDescSetAttribute(
                        op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof sb))) ||
        (lt_status =
             cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa, sizeof fa)) ||
        (lt_status = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 3, heur, &nh))) {
      if (op) cublasLtMatmulDescDestroy(op);
      continue;
    }
    if (nh == 0) lt_status = CUBLAS_STATUS_NOT_SUPPORTED;
    const float one = 1.0f, zero = 0.0f;
    for (int a = 0; a < nh; ++a) {
      for (int i = 0; i < 12; ++i) {
        cudaEventRecord(e0, d->stream);
        const cublasStatus_t st = cublasLtMatmul(lt, op, &one, A, la, B, lb, &zero, D, ld, D, ld,
                                                 &heur[a].algo, ws, wsb, d->stream);
        cudaEventRecord(e1, d->stream);
        const float ms = elapsed_ms(e0, e1);
        if (st != CUBLAS_STATUS_SUCCESS) {
          lt_status = st;
          break;
        }
        if (i >= 2 && ms < best) {
          best = ms;
          best_fast = fast;
          ok = 1;
        }
      }
    }
    cublasLtMatmulDescDestroy(op);
  }
  if (ok && cudaStreamSynchronize(d->stream) == cudaSuccess) {
    d->fp8_gemm_rate = 2.0 * N * (double)N * N / (best * 1e-3);
    d->fp8_fast_accum = best_fast;
  }
done:
  if (!d->fp8_gemm_rate)
    fprintf(stderr,
            "moe-bench: the cuBLASLt e4m3 GEMM ceiling could not be measured (no algorithm, or "
            "a CUDA or cuBLASLt call failed; last cuBLASLt status %d, last CUDA error: %s); FP8 "
            "rows get no floor\n",
            (int)lt_status, cudaGetErrorString(cudaGetLastError()));
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (ld) cublasLtMatrixLayoutDestroy(ld);
  if (lt) cublasLtDestroy(lt);
  cudaFree(A);
  cudaFree(B);
  cudaFree(D);
  cudaFree(ws);
  cudaFree(scale);
}
#endif

void bench_measure_ceilings(bench_dev *d) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (!d->gpu) return;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  measure_copy(d, e0, e1);
  measure_read(d, e0, e1);
  measure_bf16_gemm(d, e0, e1);
  measure_fp8_gemm(d, e0, e1);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
#endif
}

int bench_time_fn(bench_dev *d, bench_enqueue_fn fn, void *ctx, int copies, int reps, int graphs,
                  int iters, double *t_us) {
#if defined(MOE_BENCH_WITH_CUDA)
  if (d->gpu) {
    cudaGraphExec_t exec[BENCH_MAX_COPIES] = {0};
    if (graphs > BENCH_MAX_COPIES) return 1;
    int rc = 0;
    for (int k = 0; k < graphs && !rc; ++k) {
      cudaGraph_t g = NULL;
      if (cudaStreamBeginCapture(d->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
        return 1;
      for (int i = 0; i < reps && !rc; ++i)
        rc = fn(ctx, graphs > 1 ? k : i % copies, (moe_cuda_stream_t)d->stream);
      cudaError_t e = cudaStreamEndCapture(d->stream, &g);
      if (!rc && e == cudaSuccess)
        rc = cudaGraphInstantiate(&exec[k], g, 0) != cudaSuccess;
      else
        rc = 1;
      if (g) cudaGraphDestroy(g);
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    /* Warm up for at least 200 ms of replays (and 3 rounds over the weight copies): with one
     * round, the first config timed after weight preparation ran 10-25% slower than the same
     * config timed later in the same process, over its whole measurement (H100, decode cells,
     * `--config all` sweeps: whichever config came first was the slow one). */
    const double w0 = now_us();
    for (int round = 0; !rc && (round < 3 || now_us() - w0 < 200e3); ++round) {
      for (int k = 0; k < graphs && !rc; ++k) rc = cudaGraphLaunch(exec[k], d->stream) != 0;
      if (!rc) rc = cudaStreamSynchronize(d->stream) != cudaSuccess;
    }
    nvtxRangePushA("moe-bench timed forwards");
    for (int i = 0; i < iters && !rc; ++i) {
      cudaEventRecord(e0, d->stream);
      rc = cudaGraphLaunch(exec[i % graphs], d->stream) != cudaSuccess;
      cudaEventRecord(e1, d->stream);
      float ms = 0;
      if (!rc) rc = cudaEventSynchronize(e1) != cudaSuccess;
      if (!rc) cudaEventElapsedTime(&ms, e0, e1);
      t_us[i] = ms * 1e3 / reps;
    }
    nvtxRangePop();
    if (rc)
      fprintf(stderr, "%s: CUDA error: %s\n", bench_prog, cudaGetErrorString(cudaGetLastError()));
    for (int k = 0; k < graphs; ++k)
      if (exec[k]) cudaGraphExecDestroy(exec[k]);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return rc;
  }
#endif
  if (fn(ctx, 0, NULL)) return 1; /* warm-up */
  for (int i = 0; i < iters; ++i) {
    double a = now_us();
    if (fn(ctx, i % copies, NULL)) return 1;
    t_us[i] = now_us() - a;
  }
  return 0;
}

int bench_time(bench_dev *d, const bench_case *c, int per_graph, int iters, double *t_us) {
  /* Routing alone is a few microseconds: capture 20 back-to-back calls per graph so the graph
   * launch overhead is amortised (steady-state latency per call, as in a model's graph). A
   * forward: per_graph == 1 captures one forward per graph (one graph per weight copy, replayed
   * in turn); per_graph > 1 captures that many back to back in one graph, forward i on weight
   * copy i % copies, so the weights stay cold in L2 while the launch of the graph is amortised
   * as in a model's graph of many layers. */
  const int reps = c->routing_only ? 20 : per_graph;
  const int graphs = (c->routing_only || per_graph == 1) ? c->copies : 1;
  return bench_time_fn(d, bench_forward_once, (void *)c, c->copies, reps, graphs, iters, t_us);
}
