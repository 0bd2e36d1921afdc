/*
 * bench_device.h - what moe-bench needs from the device it runs on: memory, a stream, timing
 * of prepare+run (CUDA-graph replays on the GPU), and the same-run ceilings.
 */
#ifndef MOE_BENCH_DEVICE_H_
#define MOE_BENCH_DEVICE_H_

#include <stddef.h>

#include "moe_trtllm.h"

typedef struct bench_dev bench_dev;

/* The program name that messages start with ("moe-bench" unless a main sets it). */
extern const char *bench_prog;

/* One timed case: routing prepare (+ run unless routing_only) over `copies` weight sets. */
typedef struct {
  moe_runner *runner;
  const moe_problem *problem;
  const moe_routing_args *routing;
  const moe_run_args *runs; /* [copies] */
  int copies;
  int32_t config;
  void *workspace;
  size_t workspace_bytes;
  moe_plan *plan;
  int routing_only;
} bench_case;

/* backend: MOE_BACKEND_AUTO / CPU / CUDA. Returns nonzero (with a message) on failure. */
int bench_open(int backend, bench_dev **out);
void bench_close(bench_dev *d);
int bench_is_gpu(const bench_dev *d);
const char *bench_device_name(const bench_dev *d);
void *bench_alloc(bench_dev *d, size_t bytes);
void bench_free(bench_dev *d, void *p);
int bench_upload(bench_dev *d, void *dst, const void *src, size_t bytes);
int bench_download(bench_dev *d, void *dst, const void *src, size_t bytes);
/* The device's SM count (0 on the CPU). */
int bench_sm_count(const bench_dev *d);
/* Fill dst with repeats of the host block src (block bytes). */
int bench_fill_repeat(bench_dev *d, void *dst, size_t bytes, const void *src, size_t block);
moe_cuda_stream_t bench_stream(bench_dev *d);
void bench_sync(bench_dev *d);
size_t bench_l2_bytes(bench_dev *d);
size_t bench_free_bytes(bench_dev *d);
/* Measure the same-run ceilings (GPU only): device copy bandwidth, read-only streaming
 * bandwidth, dense bf16 GEMM rate (cuBLAS) and dense e4m3 GEMM rate (cuBLASLt). */
void bench_measure_ceilings(bench_dev *d);
double bench_copy_bw(const bench_dev *d);       /* bytes/s (read + written), 0 if unknown */
double bench_read_bw(const bench_dev *d);       /* bytes/s read, 0 if unknown */
double bench_gemm_rate(const bench_dev *d);     /* bf16 FLOP/s, 0 if unknown */
double bench_fp8_gemm_rate(const bench_dev *d); /* e4m3 FLOP/s, 0 if unknown */
/* Whether the fastest e4m3 GEMM measured used cuBLASLt's fast accumulation (no promotion). */
int bench_fp8_gemm_fast_accum(const bench_dev *d);
/* Time `iters` graph replays of per_graph forwards each (GPU; the CPU times single calls);
 * t_us[i] = microseconds per forward of replay i. */
int bench_time(bench_dev *d, const bench_case *c, int per_graph, int iters, double *t_us);

/* Weight copies (and so graphs) a timing rotates over, at most. */
#define BENCH_MAX_COPIES 4
/* Enqueue one timed call on weight copy @p copy; nonzero (with a message) on failure. */
typedef int (*bench_enqueue_fn)(void *ctx, int copy, moe_cuda_stream_t stream);
/* The timing loop of bench_time for any call: on the GPU @p graphs CUDA graphs of @p reps
 * calls each (graphs == copies: graph k on copy k; graphs == 1: call i on copy i % copies),
 * t_us[i] = microseconds per call of replay i; on the CPU single calls. */
/* routing prepare (+ run unless routing_only) of the bench_case @p ctx on weight copy @p copy. */
int bench_forward_once(void *ctx, int copy, moe_cuda_stream_t stream);
int bench_time_fn(bench_dev *d, bench_enqueue_fn fn, void *ctx, int copies, int reps, int graphs,
                  int iters, double *t_us);

#endif
