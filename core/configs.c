/*
 * configs.c - the config catalogues (backend-independent descriptions), validity per problem,
 * and the best-first order of each.
 *
 * A runner's catalogue is fixed by its architecture and dtypes (moe_catalogue_of); its rows come
 * from the X-macro list in kernels/kernels.h that the CUDA launcher instantiates, so the
 * descriptions can never drift from the kernels. The CPU backend executes any config of its
 * catalogue (it builds the same plan for the config's tile and C).
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "kernels/fp8_math.h"
#include "kernels/mxfp4_math.h"

/* One row of an X-macro list of kernels/kernels.h as its description. */
#define MOE_ROW(tile, c, m1, m2, bk, st) {tile, c, m1, m2, bk, st},

static const moe_config_row k_sm90_bf16[] = {MOE_SM90_BF16_CONFIGS(MOE_ROW)};

/* The FP8 per-tensor rows: BF16's tiles with 128-element K stages (kernels/kernels.h). */
#define MOE_ROW_FP8(tile, c, m1, m2, bk, st) {tile, c, m1, m2, MOE_SM90_FP8_BLOCK_K, st},
static const moe_config_row k_sm90_fp8_tensor[] = {MOE_SM90_FP8_TENSOR_CONFIGS(MOE_ROW_FP8)};
#undef MOE_ROW_FP8

/* The block-scaled FP8 rows (kernels/kernels.h, kernels/gemm/sm90_fp8_block_grouped.cuh). */
static const moe_config_row k_sm90_fp8_block[] = {MOE_SM90_FP8_BLOCK_CONFIGS(MOE_ROW)};

/* The MXFP4 x BF16 (W4A16) rows (kernels/kernels.h, kernels/gemm/sm90_w4a16_mxfp4_grouped.cuh). */
static const moe_config_row k_sm90_mxfp4_w4a16[] = {MOE_SM90_MXFP4_W4A16_CONFIGS(MOE_ROW)};
#undef MOE_ROW

static int64_t bf16_score(const moe_problem *p, const moe_config_row *row);
static int64_t fp8_block_score(const moe_problem *p, const moe_config_row *row);
static int64_t mxfp4_score(const moe_problem *p, const moe_config_row *row);

/* One per MOE_K_CATALOGUE_* key. h_align / i_align: what the CUDA kernels need of H and I. The
 * FP8 per-tensor catalogue ranks its rows with the BF16 heuristic: the same mainloop, registers
 * and shared memory per config; its weight stream is half as many bytes per FLOP. */
static const moe_catalogue k_catalogues[] = {
    {MOE_K_CATALOGUE_SM90_BF16, "bf16", k_sm90_bf16,
     (int32_t)(sizeof k_sm90_bf16 / sizeof k_sm90_bf16[0]), MOE_SM90_H_ALIGN, MOE_SM90_I_ALIGN,
     bf16_score},
    {MOE_K_CATALOGUE_SM90_FP8_TENSOR, "fp8pt", k_sm90_fp8_tensor,
     (int32_t)(sizeof k_sm90_fp8_tensor / sizeof k_sm90_fp8_tensor[0]), MOE_FP8_BLOCK,
     MOE_FP8_BLOCK, bf16_score},
    {MOE_K_CATALOGUE_SM90_FP8_BLOCK, "fp8blk", k_sm90_fp8_block,
     (int32_t)(sizeof k_sm90_fp8_block / sizeof k_sm90_fp8_block[0]), MOE_FP8_BLOCK, MOE_FP8_BLOCK,
     fp8_block_score},
    {MOE_K_CATALOGUE_SM90_MXFP4_W4A16, "w4a16", k_sm90_mxfp4_w4a16,
     (int32_t)(sizeof k_sm90_mxfp4_w4a16 / sizeof k_sm90_mxfp4_w4a16[0]), MOE_SM90_MX_K_ALIGN,
     MOE_SM90_MX_K_ALIGN, mxfp4_score},
};

const moe_catalogue *moe_catalogue_of(const moe_runner *r) {
  /* FP8 has a catalogue per scaling mode, MXFP4 with BF16 activations its own; W4A8 runs on
   * the CPU backend only so far (core/fp8.c) and keeps the BF16 rows for its plans. */
  if (r->opts.scaling_mode == MOE_SCALING_MX && r->opts.activation_dtype == MOE_DTYPE_BF16)
    return &k_catalogues[3];
  if (r->opts.activation_dtype == MOE_DTYPE_FP8_E4M3 &&
      r->opts.scaling_mode == MOE_SCALING_PER_TENSOR)
    return &k_catalogues[1];
  if (r->opts.activation_dtype == MOE_DTYPE_FP8_E4M3 && r->opts.scaling_mode == MOE_SCALING_BLOCK)
    return &k_catalogues[2];
  return &k_catalogues[0];
}

int32_t moe_catalogue_size(const moe_runner *r) {
  return moe_catalogue_of(r)->count;
}

const moe_config_row *moe_catalogue_row(const moe_runner *r, int32_t config) {
  const moe_catalogue *c = moe_catalogue_of(r);
  if (config < 0 || config >= c->count) return NULL;
  return &c->rows[config];
}

/* Shape constraints of a config for a problem: NULL if valid, else a reason for the message
 * (in @p why or static). The same arithmetic as workspace sizing (moe_layout_unfit), so a
 * config listed as valid can always be sized and prepared. */
static const char *config_unfit(const moe_runner *r, const moe_problem *p,
                                const moe_config_row *row, char *why, size_t why_len) {
  const moe_catalogue *c = moe_catalogue_of(r);
  if (r->backend == MOE_BACKEND_CUDA) {
    if (p->hidden_size % c->h_align) return "hidden_size is not a multiple of the kernels' K step";
    if (p->intermediate_size % c->i_align)
      return "intermediate_size is not a multiple of the kernels' K step";
  }
  /* FP8 on any backend: its 1x128 / 128x128 scale groups (docs/formats.md), so that listing a
   * config agrees with what prepare and run accept */
  if (r->opts.scaling_mode == MOE_SCALING_MX) {
    if (p->hidden_size % MOE_MX_BLOCK || p->intermediate_size % MOE_MX_BLOCK)
      return "MXFP4 needs hidden_size and intermediate_size to be multiples of 32";
    if (r->backend == MOE_BACKEND_CUDA &&
        (p->hidden_size > MOE_SM90_MX_MAX_K || p->intermediate_size > MOE_SM90_MX_MAX_K))
      return "the CUDA MXFP4 kernels need hidden_size and intermediate_size <= 8192 (a tile "
             "keeps its weight scales in shared memory)";
  } else if (r->opts.scaling_mode != MOE_SCALING_NONE &&
             (p->hidden_size % MOE_FP8_BLOCK || p->intermediate_size % MOE_FP8_BLOCK)) {
    return "FP8 needs hidden_size and intermediate_size to be multiples of 128";
  }
  return moe_layout_unfit(r, p, row->tile, row->cluster, why, why_len);
}

moe_status_t moe_check_config(const moe_runner *r, const moe_problem *p, int32_t config,
                              const char *arg) {
  const moe_config_row *row = moe_catalogue_row(r, config);
  if (!row)
    return moe_fail(MOE_STATUS_INVALID_CONFIG, "%s: expected a config index 0..%d, given %d", arg,
                    moe_catalogue_size(r) - 1, config);
  char buf[256];
  const char *why = config_unfit(r, p, row, buf, sizeof buf);
  if (why)
    return moe_fail(MOE_STATUS_INVALID_CONFIG, "%s: config %d is not valid for this problem: %s",
                    arg, config, why);
  return MOE_STATUS_SUCCESS;
}

/*
 * Best-first heuristic, from the H100/H200 measurements in docs/performance-history.md. With
 * a = T*K/E_l expected tokens per local expert, the target cluster tile is the next power of
 * two >= 2a, within [64, 128] (in prefill 128 fed the tensor pipe best and 256 did not win;
 * below 64, a skewed routing defeats the smaller tile: bf16_score). Rank by log2 distance from
 * the target (a smaller tile than the target ranks after a larger one at the same distance,
 * since it re-reads weights); then C = 1 before 2 before 4 (on the measured presets multicast
 * never beat C = 1 at the same tile); then 128-row weight tiles before 64-row ones; then fewer
 * stages (the configs that fit two CTAs per SM, measured best at tile 64). Pure decode (a < 1)
 * targets tile 8: the 128-row, 13-stage config keeps the most weight bytes in flight per SM.
 * Prefill with a >= 64 ranks the 256-row weight tile configs first (see bf16_score).
 */
typedef struct {
  int32_t index;
  int64_t score;
} ranked;

static int ilog2(int64_t x) {
  int l = 0;
  while ((int64_t)1 << (l + 1) <= x) ++l;
  return l;
}

static int64_t bf16_score(const moe_problem *p, const moe_config_row *row) {
  const int64_t el = moe_local_experts(p), slots = p->num_tokens * p->top_k;
  const int decode = slots < el; /* a < 1 */
  /* Tile 64 at least, for 1 <= a <= 32 too. A tile sized for balanced routing (2a) is split by
   * a skewed one: an expert that draws 3-10x its share of rows needs several small tiles, each
   * streaming the same weights again. The 64-token, 4-stage config (two CTAs per SM) covers such
   * an expert with one weight stream, and where routing is balanced its padding costs only
   * tensor-core time under a weight-bound stream. Same H100, every preset at T = 32 / 128 / 512
   * (`moe-bench --config 0,1,2,3,16,...`, 2026-11-28): with 1 <= a <= 32 it was
   * within 2.1% of the fastest config in every balanced cell (worst: llama4 T = 512 10059 against
   * 9850 us for tile 16, T = 128 6768 against 6640 for tile 8), while on DeepSeek-V3's skewed
   * benchmark routing the 2a tile ran 29% / 25% slower (T = 128 tile 8 2889 against 2241 us,
   * T = 512 tile 32 3202 against 2557). */
  int64_t target = 64;
  while (target < 128 && target * el < 2 * slots) target *= 2; /* next pow2 >= 2a */
  /* Pure decode: every sweep cell with a < 1 ran fastest, or within 2%, with the 128-row tile-8
   * config (H100, `moe-bench --config all`, 2026-11-28): e.g. deepseek-v3 T = 1 /
   * 8 at 92.6 / 100.8% of the floor against 79.4 / 85.1% with the 64-row tile-16 config that
   * this rule used to pick, llama4 T = 8 99.4 against 84.4%; mixtral T = 1 lost 2%. */
  if (decode) target = 8;
  const int d = ilog2(row->tile) - ilog2(target);
  const int64_t dist = d >= 0 ? 2 * d : -2 * d + 1;
  const int64_t cpref = row->cluster == 1 ? 0 : row->cluster == 2 ? 1 : 2;
  /* Prefill with a >= 64: 256-row weight tiles first (two 64-row wgmma atoms per consumer
   * warpgroup). From a >= 128 the 192-token CTA tile leads (config sm90_bf16_t192_c1_m256_s4:
   * its 192 x 256 tile moves 112 FLOP per L2 byte against 85 for 128 x 256, in 4 stages of
   * 56 KB); below, the tile-128 C = 1 config. H100, cold L2, `moe-bench --config`, 2026-11-28,
   * against the next best config:
   *   a >= 128: t192 fastest in 13 of 14 cells, by up to 14% (qwen3-235b T = 8192 4067 against
   *     4587 us for t128 C1, gpt-oss-120b T = 16384 5292 against 6035, deepseek-v3 T = 16384
   *     17370 against 18734 us for t256 C2); mixtral T = 2048 lost by 5% on one machine and won
   *     by 16% on another (2099 against 2490 us);
   *   a = 64: t128 C1 with 256-row tiles beat the 128-row tile-128 config in all three cells
   *     (gpt-oss-120b T = 2048 2409 against 2467 us, llama4 T = 8192 11384 against 11808,
   *     deepseek-v3 T = 2048 4142 against 4374; t192 lost in two of them).
   * A C = 2 tile-384 variant was slower than t192 in every a >= 128 cell (not in the catalogue).
   * The 144/160/176-token tiles rank after these: they win when routing is balanced and the
   * rows per expert sit just above a multiple of 192 (gpt-oss-120b T = 8192, a = 256: t144 -10%),
   * but lost 14% on DeepSeek-V3 T = 8192 (same a, skewed routing); moe_problem carries no
   * routing statistics, so they are autotune's to pick. */
  const int big = !decode && slots >= 64 * el;
  if (big && row->gemm1_block_m == 256) {
    const int want = slots >= 128 * el ? 192 : 128;
    if (row->tile == want && row->cluster == 1) return 0;
    return row->cluster == 1 ? 1 : 2;
  }
  const int64_t mpref = row->gemm1_block_m == 256 ? 2 : row->gemm1_block_m == 64 ? 1 : 0;
  return dist * 100000 + cpref * 10000 + mpref * 1000 + row->stages;
}

/*
 * Block-scaled FP8 ranking (lower is better): the CTA tile nearest above the tokens per local
 * expert a = T*K / E_l (8..64: one CTA holds an expert's rows, the decode and small-prefill
 * case), and from a > 64 the 64-token CTAs in clusters (C = 2, then C = 4 from a >= 256),
 * whose multicast divides each weight tile's L2 reads by C. Not yet tuned on a GPU: autotune
 * measures the others.
 */
static int64_t fp8_block_score(const moe_problem *p, const moe_config_row *row) {
  const int64_t el = moe_local_experts(p);
  const int64_t a = el > 0 ? (int64_t)p->num_tokens * p->top_k / el : 0;
  int32_t want_tile = 8, want_c = 1;
  while (want_tile < 64 && want_tile < a) want_tile *= 2;
  if (a > 64) {
    want_c = a >= 256 ? 4 : 2;
    want_tile = 64 * want_c;
  }
  int64_t dist = 0;
  for (int32_t t = row->tile; t < want_tile; t *= 2) ++dist;
  for (int32_t t = want_tile; t < row->tile; t *= 2) ++dist;
  const int64_t cdist = row->cluster > want_c ? row->cluster / want_c : want_c / row->cluster;
  return dist * 100 + cdist * 10 + (row->tile / row->cluster == 64 ? 0 : 1);
}

/*
 * MXFP4 W4A16 ranking (lower is better), from a = T*K / E_l: a <= 4 the 64-row tile-8 config
 * (two CTAs per SM: the weight stream is the cost), then the cluster tile 32 below a = 32, 128
 * below a = 128 and 256 from there (the expansion of a weight tile is paid once per token tile,
 * so the widest tile the rows fill wins); C = 1 first (a cluster's CTAs each expand the whole
 * multicast tile for fewer tokens), then the nearest tile. H100, the one-shift expansion
 * (`moe-bench --config all`, 2026-12-07): gpt-oss-120b-mxfp4 T = 1 t8 m64 55.1 us (next t16
 * 67.0), T = 8 264.8 (341.7), T = 32 655.4 (831.1), T = 128 (a = 4) t8 m64 1062.1 against t64
 * 1486.3, T = 512 (a = 16) t32 1485.7 against t64 1542.9, T = 2048 (a = 64) t128 2105.7 against
 * t64 2352.2; gpt-oss-20b-mxfp4 T = 32 (a = 4) t8 m64 276.3 against t16 338.6, T = 512 (a = 64)
 * t128 547.3 against t64 634.3; earlier, T = 4096 t256 won over t128; C = 2 / 4 ran 1.5-4x
 * slower in every cell.
 */
static int64_t mxfp4_score(const moe_problem *p, const moe_config_row *row) {
  const int64_t el = moe_local_experts(p), slots = p->num_tokens * p->top_k;
  const int small = slots <= 4 * el;
  const int32_t target = small ? 8 : slots < 32 * el ? 32 : slots < 128 * el ? 128 : 256;
  const int d = ilog2(row->tile) - ilog2(target);
  const int64_t dist = d >= 0 ? 2 * d : -2 * d + 1;
  const int64_t cpref = row->cluster == 1 ? 0 : row->cluster == 2 ? 1 : 2;
  const int64_t mpref = (row->gemm1_block_m == 64) == small ? 0 : 1;
  return cpref * 10000 + dist * 100 + mpref;
}

static int cmp_ranked(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->score != y->score) return x->score < y->score ? -1 : 1;
  return x->index - y->index;
}

static moe_status_t list_valid(const moe_runner *r, const moe_problem *p, ranked *out, int32_t *n) {
  moe_status_t s = moe_check_problem(p, "problem");
  if (s) return s;
  const moe_catalogue *c = moe_catalogue_of(r);
  *n = 0;
  char buf[256];
  for (int32_t i = 0; i < c->count && i < MOE_MAX_CATALOGUE_ROWS; ++i) {
    if (config_unfit(r, p, &c->rows[i], buf, sizeof buf)) continue;
    out[*n].index = i;
    out[*n].score = c->score(p, &c->rows[i]);
    ++*n;
  }
  qsort(out, (size_t)*n, sizeof *out, cmp_ranked);
  if (*n == 0) {
    const char *why = config_unfit(r, p, &c->rows[0], buf, sizeof buf);
    return moe_fail(MOE_STATUS_NOT_SUPPORTED, "problem: no config supports it (%s)", why);
  }
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_get_valid_configs(const moe_runner *r, const moe_problem *p,
                                                  int32_t *configs, int32_t capacity,
                                                  int32_t *count) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!count) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "count: expected a non-NULL pointer");
  if (capacity < 0)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "capacity: expected >= 0, given %d", capacity);
  if (capacity > 0 && !configs)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "configs: expected a non-NULL array for capacity %d", capacity);
  ranked list[MOE_MAX_CATALOGUE_ROWS];
  int32_t n = 0;
  moe_status_t s = list_valid(r, p, list, &n);
  *count = s ? 0 : n;
  if (s) return s;
  for (int32_t i = 0; i < n && i < capacity; ++i) configs[i] = list[i].index;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_get_default_config(const moe_runner *r, const moe_problem *p,
                                                   int32_t *config) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!config) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "config: expected a non-NULL pointer");
  ranked list[MOE_MAX_CATALOGUE_ROWS];
  int32_t n = 0;
  moe_status_t s = list_valid(r, p, list, &n);
  if (s) return s;
  *config = list[0].index;
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_get_num_configs(const moe_runner *r, int32_t *count) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!count) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "count: expected a non-NULL pointer");
  *count = moe_catalogue_size(r);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_describe_config(const moe_runner *r, int32_t config,
                                                moe_config_info *info) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!info) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "info: expected a non-NULL pointer");
  const moe_config_row *row = moe_catalogue_row(r, config);
  if (!row)
    return moe_fail(MOE_STATUS_INVALID_CONFIG, "config: expected 0..%d, given %d",
                    moe_catalogue_size(r) - 1, config);
  info->version = MOE_CONFIG_INFO_VERSION;
  info->index = config;
  info->tile = row->tile;
  info->cta_tile = row->tile / row->cluster;
  info->cluster_size = row->cluster;
  info->gemm1_block_m = row->gemm1_block_m;
  info->gemm2_block_m = row->gemm2_block_m;
  info->block_k = row->block_k;
  info->stages = row->stages;
  info->sm_version = r->sm_version;
  snprintf(info->name, sizeof info->name, "sm%d_%s_t%d_c%d_m%d_s%d", r->sm_version,
           moe_catalogue_of(r)->dtype_name, row->tile, row->cluster, row->gemm1_block_m,
           row->stages);
  return MOE_STATUS_SUCCESS;
}

MOE_API moe_status_t moe_runner_get_cluster_size(const moe_runner *r, int32_t config,
                                                 int32_t *cluster_size) {
  moe_clear_error();
  if (!r) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "runner: expected a non-NULL runner");
  if (!cluster_size)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "cluster_size: expected a non-NULL pointer");
  const moe_config_row *row = moe_catalogue_row(r, config);
  if (!row)
    return moe_fail(MOE_STATUS_INVALID_CONFIG, "config: expected 0..%d, given %d",
                    moe_catalogue_size(r) - 1, config);
  *cluster_size = row->cluster;
  return MOE_STATUS_SUCCESS;
}
