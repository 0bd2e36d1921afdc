/*
 * bench_preset.h - what moe-bench and moe-grouped-bench share: the model presets, the seeded
 * random inputs of a cell, the runner of a preset (scaled down to a CPU weight budget), list
 * parsing and the status check.
 */
#ifndef MOE_BENCH_PRESET_H_
#define MOE_BENCH_PRESET_H_

#include <stddef.h>
#include <stdint.h>

#include "bench_device.h"
#include "moe_trtllm.h"

typedef struct {
  const char *name;
  int32_t E, K, method, n_group, topk_group;
  int64_t H, I;
  float scale;
  int32_t scaling;  /* MOE_SCALING_NONE: bf16; PER_TENSOR or BLOCK: e4m3 weights and activations;
                       MX: MXFP4 weights, bf16 activations (W4A16) */
  const char *base; /* FP8: the BF16 preset whose shape, routing and inputs it shares */
  int gpt_oss;      /* biases on both GEMMs (fp32) and gpt-oss's clamped SwiGLU (alpha 1.702,
                       beta 1, limit 7) */
} preset;

extern const preset k_presets[];
extern const int k_num_presets;

/* Each cell's inputs depend only on (preset, T), not on the cells a run measured before it. */
void seed_cell(const char *preset_name, int64_t T);
uint64_t rnd(void);
uint16_t rnd_bf16(int shift); /* exact bf16 value m * 2^-shift, m in [-128, 127] */

/* 0 on success, else a message "<prog>: <what> failed: ..." and 1. */
int check(moe_status_t s, const char *what);

DLTensor bench_tensor(void *data, int dev_type, DLDataTypeCode code, int bits, int ndim,
                      int64_t *shape);

/* "a,b,c" -> out[0..n); -1 on anything but comma-separated integers (or more than cap). */
int parse_list(const char *s, int64_t *out, int cap);
/* --backend: auto, cpu or cuda -> MOE_BACKEND_*; -2 for anything else. */
int parse_backend(const char *v);
/* Whether NAME is in the comma-separated list (or the list is "all"). */
int in_list(const char *list, const char *name);
/* Every name of --preset is a preset (or the list is "all"); else a message and 0. */
int presets_known(const char *list);

/* The problem of preset @p p at @p T tokens, with its own H and I. */
moe_problem preset_problem(const preset *p, int64_t T);
/* The runner of preset @p p: its dtype and scaling mode on @p backend (sm_version 90 with
 * @p query_only: the CUDA catalogue without a device). */
moe_status_t open_runner(const preset *p, int32_t backend, int query_only, int32_t sm_budget,
                         moe_runner **r);
/* CPU backend: halve H and I of @p q (a copy of a preset) until its prepared weights fit
 * @p budget_gb (multiples of 64, of 128 for FP8). Returns 1 if scaled, 0 if it fits as it is,
 * -1 if it cannot fit or on failure (with a message); @p full_gb gets the size at the preset's
 * own H and I. */
int scale_to_budget(moe_runner *r, preset *q, double budget_gb, double *full_gb);

int cmp_double(const void *a, const void *b);

/* A random bf16 host block, repeated to fill a tensor (its element i is h[i % n]). */
typedef struct {
  uint16_t *h;
  size_t n;
} host_block;

/* Fill @p bytes of (device) memory with repeats of a random bf16 host block (values m * 2^-shift,
 * m in [-128, 127]); with @p keep the block is handed to the caller (free keep->h), else freed. */
int fill_random_keep(bench_dev *d, void *dst, size_t bytes, int shift, host_block *keep);
int fill_random(bench_dev *d, void *dst, size_t bytes, int shift);

/* Random routing logits [T, E] (fp32 for DeepSeekV3, bf16 otherwise) into @p logits, then a
 * bf16 bias [E] into @p bias (used by DeepSeekV3); nonzero on failure. */
int upload_logits(bench_dev *d, const preset *p, int64_t T, void *logits, void *bias);
/* The routing arguments of preset @p p (its method, groups and scale) on these tensors. */
moe_routing_args routing_args_of(const preset *p, const DLTensor *logits, const DLTensor *bias);
/* GPU: how many weight copies (of @p weight_bytes, W1 + W2) to rotate over so that L2 stays
 * cold (enough that one pass exceeds it 4x; 2..BENCH_MAX_COPIES), fewer where they and
 * @p other_bytes would not fit 90% of the free device memory. */
int weight_copies(bench_dev *d, double weight_bytes, double other_bytes);

#endif
