/*
 * routing.c - routing of the CPU reference backend: top-K ids and bf16 weights per token,
 * then the plan (plan.c).
 *
 * =============================================================================================
 * EXACT ARITHMETIC (normative for kernels/routing/: the CUDA kernels must do the same float32
 * operations in the same order to give the same bits)
 * =============================================================================================
 * Notation: every operation is one IEEE float32 operation, round to nearest even, no FMA
 * contraction (core/ builds with -ffp-contract=off; the device uses __fadd_rn & co through
 * MOE_FADD / MOE_FSUB / MOE_FMUL / MOE_FDIV). exp = moe_expf, sig = moe_sigmoidf
 * (kernels/moe_math.h; sig(x) = 1 / (1 + exp(-x))). bf16(v) = moe_f32_to_bf16(v) (RNE, NaN ->
 * canonical quiet NaN). Denormals are kept (no flush to zero).
 *
 * Per token t with logits l[0..E) (fp32 as given; bf16 widened exactly to fp32):
 *
 * Top-K selection (every method): candidate i is better than j iff
 *   moe_order_key(v_i) > moe_order_key(v_j), or the keys are equal and i < j,
 * where v is the method's selection value below (moe_order_key: IEEE total order, so
 * -0.0 < +0.0; NaN below -inf). Slot k = 0..K-1 holds the k-th best; the K are distinct.
 * Any algorithm that returns exactly this order is conforming.
 *
 * Softmax statistics over all E (Default 0, RenormalizeNaive 4):
 *   m   = max_i l[i]  -- NaN entries ignored (fmaxf semantics); -inf if all are NaN/-inf. The
 *                        max is exact, so any reduction order gives the same m (a +0/-0
 *                        difference cannot change the results below).
 *   sum = 0.0f; for i = 0, 1, ..., E-1 (ascending expert index, sequential):
 *           sum = sum + exp(l[i] - m)
 *   p_i = exp(l[i] - m) / sum                              (exp recomputed: same bits)
 *
 * Default (0):          v_i = p_i.        w_k = bf16(p_{id_k}).
 *
 * Renormalize (1):      v_i = l[i].
 *   m1 = l[id_0] (the selected maximum);  e_k = exp(l[id_k] - m1)
 *   s  = 0.0f; for k = 0..K-1: s = s + e_k            (slot order)
 *   w_k = bf16(e_k / s)
 *
 * DeepSeekV3 (2):       s_i = sig(l[i]);  v'_i = s_i + b[i]   (b = bias widened to fp32;
 *                                                              NULL bias: b = 0.0f)
 *   G = E / n_group. If n_group > 1 and topk_group < n_group (grouped selection):
 *     group g = experts [g*G, (g+1)*G);  score_g = v'_{a} + v'_{b} where a, b are the best
 *     and second-best experts of g by the order above (a single-expert group: score = v'_a);
 *     the topk_group best groups by (moe_order_key(score) desc, g asc) are selected;
 *     v_i = v'_i if group(i) is selected, else -inf.
 *   otherwise v_i = v'_i for every expert.
 *   ss  = 0.0f; for k = 0..K-1: ss = ss + s_{id_k}     (slot order, un-biased sigmoids)
 *   den = ss + 1e-20f
 *   w_k = bf16((s_{id_k} / den) * routed_scaling_factor)
 *   (All-underflowed sigmoids give w = 0, never NaN.)
 *
 * Llama4 (3):           v_i = l[i] (K = 1: the argmax, lowest index on ties).
 *   w_k = bf16(sig(l[id_k]))
 *
 * RenormalizeNaive (4): v_i = p_i (softmax statistics above).
 *   q  = 0.0f; for k = 0..K-1: q = q + p_{id_k}       (slot order)
 *   w_k = bf16(p_{id_k} / q)
 *
 * TopK (5):             v_i = l[i].       w_k = bf16(l[id_k])   (may be negative)
 *
 * NaN logits are not rejected here: they rank below every number (never chosen before a
 * number) and make the softmax statistics NaN (weights become the canonical bf16 NaN).
 *
 * Pre-routed input (method math skipped, same plan):
 *   ids + weights: topk_ids[x] = ids[x]; weight bf16 as given, fp32 -> bf16(w) (RNE).
 *   packed int32 v: id = (uint32)v >> 16; weight bits = (uint32)v & 0xFFFF.
 * =============================================================================================
 */
#include "moe_trtllm.h"

#include "cpu_internal.h"

typedef struct tok_ctx {
  int32_t method, E;
  const float *lf;    /* fp32 logits row, or NULL */
  const uint16_t *lb; /* bf16 logits row, or NULL */
  const float *bf;    /* fp32 bias, or NULL */
  const uint16_t *bb; /* bf16 bias, or NULL */
  float m, sum;       /* softmax statistics (Default, RenormalizeNaive) */
  /* DeepSeekV3 grouping */
  int32_t grouped, n_group, topk_group, group_size;
  int32_t n_sel; /* number of groups in sel[], or -1: rank test (topk_group too large) */
  int32_t sel[MOE_CPU_TOPK_STACK];
} tok_ctx;

typedef float (*value_fn)(const tok_ctx *c, int32_t i);

static inline float neg_inf(void) {
  return moe_bits_f32(0xFF800000u);
}

static inline float logit(const tok_ctx *c, int32_t i) {
  return c->lf ? c->lf[i] : moe_bf16_to_f32(c->lb[i]);
}

static inline float bias_of(const tok_ctx *c, int32_t i) {
  if (c->bf) return c->bf[i];
  if (c->bb) return moe_bf16_to_f32(c->bb[i]);
  return 0.0f;
}

/* softmax probability p_i (Default, RenormalizeNaive) */
static float prob(const tok_ctx *c, int32_t i) {
  return MOE_FDIV(moe_expf(MOE_FSUB(logit(c, i), c->m)), c->sum);
}

/* DeepSeekV3 selection score before group masking: sigmoid + bias */
static float ds_score(const tok_ctx *c, int32_t i) {
  return MOE_FADD(moe_sigmoidf(logit(c, i)), bias_of(c, i));
}

/* DeepSeekV3 group score: best + second best selection score of the group */
static float group_score(const tok_ctx *c, int32_t g) {
  const int32_t begin = g * c->group_size, end = begin + c->group_size;
  uint32_t k1 = 0, k2 = 0;
  int32_t i1 = -1, i2 = -1;
  float v1 = 0.0f, v2 = 0.0f;
  for (int32_t i = begin; i < end; ++i) {
    const float v = ds_score(c, i);
    const uint32_t k = moe_order_key(v);
    if (i1 < 0 || moe_better(k, i, k1, i1)) {
      k2 = k1, i2 = i1, v2 = v1;
      k1 = k, i1 = i, v1 = v;
    } else if (i2 < 0 || moe_better(k, i, k2, i2)) {
      k2 = k, i2 = i, v2 = v;
    }
  }
  return i2 < 0 ? v1 : MOE_FADD(v1, v2);
}

static int group_selected(const tok_ctx *c, int32_t g) {
  if (!c->grouped) return 1;
  if (g >= c->n_group) return 0; /* E % n_group != 0: rejected by core/, never selected */
  if (c->n_sel >= 0) {
    for (int32_t j = 0; j < c->n_sel; ++j)
      if (c->sel[j] == g) return 1;
    return 0;
  }
  /* rank test: selected iff fewer than topk_group groups are better */
  const uint32_t kg = moe_order_key(group_score(c, g));
  int32_t better = 0;
  for (int32_t h = 0; h < c->n_group && better < c->topk_group; ++h)
    if (h != g && moe_better(moe_order_key(group_score(c, h)), h, kg, g)) ++better;
  return better < c->topk_group;
}

/* The selection value v_i of the method (see the comment block at the top). */
static float select_value(const tok_ctx *c, int32_t i) {
  switch (c->method) {
    case MOE_ROUTING_DEFAULT:
    case MOE_ROUTING_RENORMALIZE_NAIVE:
      return prob(c, i);
    case MOE_ROUTING_DEEPSEEK_V3:
      return group_selected(c, i / c->group_size) ? ds_score(c, i) : neg_inf();
    default: /* Renormalize, Llama4, TopK */
      return logit(c, i);
  }
}

/*
 * The k best of candidates [0, n) by (moe_order_key(fn(i)) desc, i asc), best first, into
 * out[0..k). k <= n. Insertion into an on-stack list when k fits, else k selection passes
 * (each pass takes the best candidate worse than the previous pick): same result.
 */
static void select_topk(const tok_ctx *c, value_fn fn, int32_t n, int32_t k, int32_t *out) {
  if (k <= MOE_CPU_TOPK_STACK) {
    uint32_t keys[MOE_CPU_TOPK_STACK];
    int32_t idx[MOE_CPU_TOPK_STACK];
    int32_t have = 0;
    for (int32_t i = 0; i < n; ++i) {
      const uint32_t key = moe_order_key(fn(c, i));
      if (have == k && !moe_better(key, i, keys[k - 1], idx[k - 1])) continue;
      int32_t pos = have < k ? have++ : k - 1;
      while (pos > 0 && moe_better(key, i, keys[pos - 1], idx[pos - 1])) {
        keys[pos] = keys[pos - 1];
        idx[pos] = idx[pos - 1];
        --pos;
      }
      keys[pos] = key;
      idx[pos] = i;
    }
    for (int32_t j = 0; j < k; ++j) out[j] = idx[j];
    return;
  }
  uint32_t prev_key = 0;
  int32_t prev = -1;
  for (int32_t j = 0; j < k; ++j) {
    uint32_t best_key = 0;
    int32_t best = -1;
    for (int32_t i = 0; i < n; ++i) {
      const uint32_t key = moe_order_key(fn(c, i));
      if (prev >= 0 && !moe_better(prev_key, prev, key, i)) continue;
      if (best < 0 || moe_better(key, i, best_key, best)) best_key = key, best = i;
    }
    out[j] = best;
    prev_key = best_key, prev = best;
  }
}

static float group_value(const tok_ctx *c, int32_t g) {
  return group_score(c, g);
}

/* Route token t from logits: ids and weights into the plan. */
static void route_logits(const moe_k_routing *a, const moe_k_plan *p, int64_t t) {
  const int32_t E = a->num_experts, K = a->top_k;
  tok_ctx c;
  c.method = a->method;
  c.E = E;
  c.lf = a->logits_dtype == MOE_K_F32 ? (const float *)a->logits + t * E : NULL;
  c.lb = a->logits_dtype == MOE_K_F32 ? NULL : (const uint16_t *)a->logits + t * E;
  c.bf = a->bias && a->bias_dtype == MOE_K_F32 ? (const float *)a->bias : NULL;
  c.bb = a->bias && a->bias_dtype != MOE_K_F32 ? (const uint16_t *)a->bias : NULL;
  c.m = 0.0f;
  c.sum = 1.0f;
  c.n_group = a->n_group > 1 ? a->n_group : 1;
  c.topk_group = a->topk_group > 0 ? a->topk_group : c.n_group;
  c.group_size = E / c.n_group;
  if (c.group_size < 1) c.group_size = 1;
  c.grouped = a->method == MOE_ROUTING_DEEPSEEK_V3 && c.n_group > 1 && c.topk_group < c.n_group;
  c.n_sel = 0;

  if (a->method == MOE_ROUTING_DEFAULT || a->method == MOE_ROUTING_RENORMALIZE_NAIVE) {
    float m = neg_inf();
    for (int32_t i = 0; i < E; ++i) {
      const float l = logit(&c, i);
      if (l > m) m = l;
    }
    float sum = 0.0f;
    for (int32_t i = 0; i < E; ++i) sum = MOE_FADD(sum, moe_expf(MOE_FSUB(logit(&c, i), m)));
    c.m = m;
    c.sum = sum;
  }
  if (c.grouped) {
    if (c.topk_group <= MOE_CPU_TOPK_STACK) {
      select_topk(&c, group_value, c.n_group, c.topk_group, c.sel);
      c.n_sel = c.topk_group;
    } else {
      c.n_sel = -1;
    }
  }

  int32_t *ids = p->topk_ids + t * K;
  uint16_t *w = p->expert_weights + t * K;
  select_topk(&c, select_value, E, K, ids);

  switch (a->method) {
    case MOE_ROUTING_DEFAULT:
      for (int32_t k = 0; k < K; ++k) w[k] = moe_f32_to_bf16(prob(&c, ids[k]));
      break;
    case MOE_ROUTING_RENORMALIZE: {
      const float m1 = logit(&c, ids[0]);
      float s = 0.0f;
      for (int32_t k = 0; k < K; ++k) s = MOE_FADD(s, moe_expf(MOE_FSUB(logit(&c, ids[k]), m1)));
      for (int32_t k = 0; k < K; ++k)
        w[k] = moe_f32_to_bf16(MOE_FDIV(moe_expf(MOE_FSUB(logit(&c, ids[k]), m1)), s));
      break;
    }
    case MOE_ROUTING_DEEPSEEK_V3: {
      float ss = 0.0f;
      for (int32_t k = 0; k < K; ++k) ss = MOE_FADD(ss, moe_sigmoidf(logit(&c, ids[k])));
      const float den = MOE_FADD(ss, 1e-20f);
      for (int32_t k = 0; k < K; ++k)
        w[k] = moe_f32_to_bf16(
            MOE_FMUL(MOE_FDIV(moe_sigmoidf(logit(&c, ids[k])), den), a->routed_scaling_factor));
      break;
    }
    case MOE_ROUTING_LLAMA4:
      for (int32_t k = 0; k < K; ++k) w[k] = moe_f32_to_bf16(moe_sigmoidf(logit(&c, ids[k])));
      break;
    case MOE_ROUTING_RENORMALIZE_NAIVE: {
      float q = 0.0f;
      for (int32_t k = 0; k < K; ++k) q = MOE_FADD(q, prob(&c, ids[k]));
      for (int32_t k = 0; k < K; ++k) w[k] = moe_f32_to_bf16(MOE_FDIV(prob(&c, ids[k]), q));
      break;
    }
    default: /* TopK: the raw logit */
      for (int32_t k = 0; k < K; ++k) w[k] = moe_f32_to_bf16(logit(&c, ids[k]));
      break;
  }
}

typedef struct route_job {
  const moe_k_routing *a;
  const moe_k_plan *p;
} route_job;

static void route_body(void *ctx, int64_t begin, int64_t end) {
  const route_job *job = (const route_job *)ctx;
  const moe_k_routing *a = job->a;
  const moe_k_plan *p = job->p;
  const int64_t K = a->top_k;
  if (a->input_kind == MOE_K_INPUT_LOGITS) {
    for (int64_t t = begin; t < end; ++t) route_logits(a, p, t);
  } else if (a->input_kind == MOE_K_INPUT_PACKED) {
    for (int64_t x = begin * K; x < end * K; ++x) {
      const uint32_t v = (uint32_t)a->topk_packed_in[x];
      p->topk_ids[x] = (int32_t)(v >> 16);
      p->expert_weights[x] = (uint16_t)(v & 0xFFFFu);
    }
  } else {
    for (int64_t x = begin * K; x < end * K; ++x) {
      p->topk_ids[x] = a->topk_ids_in[x];
      p->expert_weights[x] = a->topk_weights_dtype == MOE_K_F32
                                 ? moe_f32_to_bf16(((const float *)a->topk_weights_in)[x])
                                 : ((const uint16_t *)a->topk_weights_in)[x];
    }
  }
}

void moe_cpu_routing(const moe_k_routing *args, const moe_k_plan *plan, int32_t num_threads) {
  route_job job = {args, plan};
  /* Per-token work is independent; the grain keeps thread start-up cost below the work. */
  const int64_t grain = args->input_kind == MOE_K_INPUT_LOGITS ? 64 : 16384;
  moe_cpu_parallel_for(args->num_tokens, grain, num_threads, route_body, &job);
  moe_cpu_build_plan(args, plan);
}
