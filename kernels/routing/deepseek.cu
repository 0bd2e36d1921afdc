/*
 * deepseek.cu - DeepSeekV3 (2), exactly as core/cpu/routing.c:
 *   s_i = sigmoid(l_i) (moe_sigmoidf), v'_i = s_i + b_i (NULL bias: + 0.0f).
 *   Grouped when n_group > 1 and topk_group < n_group: group g = experts [g*G, (g+1)*G),
 *   score_g = v'_a + v'_b (best and second best of g by (order key desc, index asc));
 *   the topk_group best groups by (order key of score desc, g asc) stay; every other
 *   expert's selection value is -inf (not removed: it still ranks above NaN).
 *   Top-K (K <= 22) by the selection value; ss = sum of the K sigmoids in slot order;
 *   w_k = bf16((s_k / (ss + 1e-20f)) * routed_scaling_factor).
 * One warp per token; group scores by 32/n_group lanes per group (n_group <= 32, validated
 * by core/), the group choice by each group's rank (n_group shuffles). Groups of exactly 32
 * experts with n_group = P (DeepSeek-V3: E = 256, n_group = 8) take a register-only path:
 * group g is register slot g, no shared-memory round trip. Sigmoids are branch-free (the P
 * of a lane overlap) and bit-exact with moe_sigmoidf.
 */
#include "kernels/routing/route_kernels.cuh"
#include "kernels/routing/topk.cuh"

namespace moe {
namespace routing {

/* moe_expf(y) bit for bit, without branches (so the P evaluations of a lane overlap instead of
 * running one after another): the same operations on y clamped to [-104, 89] (a no-op inside
 * moe_expf's finite range [-103.97.., 88.72..]; it only keeps the int conversion in range),
 * moe_expf's three scalings folded into one form (p * 1.0f == p exactly, so the common case
 * is unchanged), and its special cases (NaN, overflow, underflow) as selects. */
__device__ __forceinline__ float expf_nobranch(float y) {
  const float yc = fminf(fmaxf(y, -104.0f), 89.0f);
  const float n = rintf(MOE_FMUL(yc, 1.44269502162933349609375f));
  const float q = moe_exp_reduced(yc, n);
  const int ni = (int)n;
  const bool hi = ni > 127, lo = ni < -126;
  const float a = hi ? moe_pow2i(127) : (lo ? moe_pow2i(-126) : 1.0f);
  const int nb = hi ? ni - 127 : (lo ? ni + 126 : ni);
  float e = MOE_FMUL(MOE_FMUL(q, a), moe_pow2i(nb));
  e = (y < -103.97208404541015625f) ? 0.0f : e;
  e = (y > 88.72283935546875f) ? __int_as_float(0x7F800000) : e;
  return moe_isnan(y) ? y : e;
}

/* 1/d correctly rounded for d in [1, 2^126): MUFU.RCP and one Newton step, exactly the fast path
 * ptxas emits for rcp.rn.f32 (its slow path only covers exponents outside [2^-126, 2^126)). */
__device__ __forceinline__ float rcp_rn_fast(float d) {
  float r0;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r0) : "f"(d));
  const float e = fmaf(d, r0, -1.0f);
  return fmaf(r0, -e, r0);
}

/* moe_expf(y) for |y| <= 87 (so no NaN, no overflow / underflow, n in [-126, 126]: moe_expf's
 * main branch), bit for bit: rintf(t) by the 1.5 * 2^23 shifter (round to nearest even, exact
 * for |t| < 2^22) and n's integer from the shifter's low bits, instead of FRND / F2I. A zero n
 * may come out as +0 where rintf gives -0: n only enters as n * c added to y, which is y for
 * y != 0, and for y = +-0 the polynomial is 1 either way. */
__device__ __forceinline__ float expf_fast(float y) {
  const float t = MOE_FMUL(y, 1.44269502162933349609375f);
  const float sh = MOE_FADD(t, 12582912.0f);
  const float n = MOE_FSUB(sh, 12582912.0f);
  const int ni = (int)(__float_as_uint(sh) - 0x4B400000u);
  return MOE_FMUL(moe_exp_reduced(y, n), moe_pow2i(ni));
}

/* v[i] = moe_sigmoidf(v[i]) = 1 / (1 + moe_expf(-v[i])), bit for bit. Common case (every
 * |v| <= 87): d = 1 + expf_fast(-v) lies in [1, 2^126), where rcp_rn_fast is the correctly
 * rounded 1/d (as is MOE_FDIV(1, d): both round the exact 1/d to nearest even). Otherwise
 * (some |v| > 87 or NaN) the full branch-free moe_expf form and __frcp_rn, for all P. */
template <int P>
__device__ __forceinline__ void sigmoid_vec(float (&v)[P]) {
  float d[P];
  bool special = false;
#pragma unroll
  for (int i = 0; i < P; ++i) {
    special |= !(fabsf(v[i]) <= 87.0f);
    d[i] = MOE_FADD(1.0f, expf_fast(-v[i]));
  }
  if (special) {
#pragma unroll
    for (int i = 0; i < P; ++i) v[i] = __frcp_rn(MOE_FADD(1.0f, expf_nobranch(-v[i])));
  } else {
#pragma unroll
    for (int i = 0; i < P; ++i) v[i] = rcp_rn_fast(d[i]);
  }
}

__device__ __forceinline__ float sigmoid_exact(float x) {
  float v[1] = {x};
  sigmoid_vec<1>(v);
  return v[0];
}

/* ---- DeepSeek-V3's shape: E = 256 in 8 groups of 32, topk_group <= 4, K <= 8 ------------- */
/* A token's 256 v' values, lane l holding experts 8l..8l+7 (so group g is lanes 4g..4g+3). */
template <bool kBf16>
__device__ __forceinline__ void v3_load8(const void *base, int64_t elem, float (&x)[8]) {
  if (kBf16) {
    const uint4 r = __ldg(
        reinterpret_cast<const uint4 *>(reinterpret_cast<const unsigned short *>(base) + elem));
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) { /* bf16 -> f32 is exact: the bits move up */
      x[2 * i] = __uint_as_float(w[i] << 16);
      x[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    }
  } else {
    const float4 *q =
        reinterpret_cast<const float4 *>(reinterpret_cast<const float *>(base) + elem);
    const float4 a = __ldg(q), b = __ldg(q + 1);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w;
    x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  }
}

/* Order key of a finite float (no NaN): unsigned order = float order, -0 < +0; 0 is below
 * every finite key, so it marks "no candidate". */
__device__ __forceinline__ uint32_t finite_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u);
}

/*
 * Fast path for DeepSeek-V3's routing shape (p.v3_fast: E = 256, n_group = 8, topk_group <= 4,
 * K <= 8, logits and bias 16-byte aligned), the same selection as the general path below:
 *  - two 16-byte loads per lane, no per-expert index arithmetic, no shared memory;
 *  - group top-2 in registers (a max/min tree over 8, then a butterfly over 4 lanes);
 *  - group choice by topk_group rounds of redux max / min over lanes 0..7;
 *  - the topk_group <= 4 chosen groups compacted into 4 candidates per lane in ascending
 *    expert order (candidate 4*lane + i), sorted per lane, and K rounds of redux max / min.
 * It is exact when every logit has |x| <= 87 (expf_fast's range: no NaN, no inf) and every
 * v' = s + b is finite: then all keys are plain float order (s >= +0, so no -0 arises), and
 * every chosen expert ranks above the -inf that the general rule gives the others, so the
 * top-K over the chosen groups alone is the top-K. Otherwise (checked warp-wide) it returns
 * false before writing anything and the general path takes the token.
 */
template <bool kBf16>
__device__ __forceinline__ bool route_v3(const Params &p, int t, int lane, int *out_id,
                                         float *out_s) {
  const int K = p.top_k, tg = p.topk_group;
  float x[8], v[8];
  v3_load8<kBf16>(p.logits, (int64_t)t * 256 + 8 * lane, x);
  if (p.bias == nullptr) {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = 0.0f;
  } else if (p.bias_bf16) {
    v3_load8<true>(p.bias, 8 * lane, v);
  } else {
    v3_load8<false>(p.bias, 8 * lane, v);
  }
  bool special = false;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    special |= !(fabsf(x[i]) <= 87.0f);
    const float s = rcp_rn_fast(MOE_FADD(1.0f, expf_fast(-x[i]))); /* moe_sigmoidf, |x| <= 87 */
    v[i] = MOE_FADD(s, v[i]);
    special |= !(fabsf(v[i]) <= 3.40282346638528859812e+38f);
  }
  if (__any_sync(kFull, special)) return false;

  /* group top-2 (values; equal keys are equal values, so the sum is the CPU's) */
  float h[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    h[i] = fmaxf(v[2 * i], v[2 * i + 1]);
    l[i] = fminf(v[2 * i], v[2 * i + 1]);
  }
#pragma unroll
  for (int st = 1; st < 4; st *= 2)
#pragma unroll
    for (int i = 0; i + st < 4; i += 2 * st) {
      const float n2 = fmaxf(fminf(h[i], h[i + st]), fmaxf(l[i], l[i + st]));
      h[i] = fmaxf(h[i], h[i + st]);
      l[i] = n2;
    }
  float m1 = h[0], m2 = l[0];
#pragma unroll
  for (int d = 1; d < 4; d <<= 1) {
    const float o1 = __shfl_xor_sync(kFull, m1, d), o2 = __shfl_xor_sync(kFull, m2, d);
    const float n2 = fmaxf(fminf(m1, o1), fmaxf(m2, o2));
    m1 = fmaxf(m1, o1);
    m2 = n2;
  }
  const float score = MOE_FADD(m1, m2);

  /* group choice: tg rounds of (best score key, then lowest group) over lanes 0..7 */
  const float sg = __shfl_sync(kFull, score, 4 * (lane & 7)); /* every lane: a .sync op */
  uint32_t gk = lane < 8 ? finite_key(sg) : 0u;
  uint32_t sel = 0u;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    if (r < tg) { /* warp-uniform */
      const uint32_t gmax = __reduce_max_sync(kFull, gk);
      const uint32_t gw = __reduce_min_sync(kFull, gk == gmax ? (uint32_t)lane : 32u);
      sel |= 1u << gw;
      gk = lane == (int)gw ? 0u : gk;
    }
  }

  /* compaction: lane l takes experts 32*s_j + 4*(l & 7) + i, i < 4, of the j = (l >> 3)-th
   * chosen group s_j (lane 4*s_j + ((l & 7) >> 1), registers 4*(l & 1) + i) */
  const int j = lane >> 3;
  uint32_t m = sel;
#pragma unroll
  for (int q = 0; q < 3; ++q) m = q < j ? (m & (m - 1u)) : m;
  const bool valid = j < tg;
  const int src = valid ? 4 * (__ffs(m) - 1) + ((lane & 7) >> 1) : lane;
  float w[8];
#pragma unroll
  for (int r = 0; r < 8; ++r) w[r] = __shfl_sync(kFull, v[r], src);
  uint32_t key[4], ci[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    key[i] = valid ? finite_key((lane & 1) ? w[4 + i] : w[i]) : 0u;
    ci[i] = (uint32_t)(4 * lane + i);
  }
  /* per-lane sort by key desc: odd-even transposition swapping only on a strictly greater
   * key is stable, so equal keys stay in ascending candidate order */
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int i = r & 1; i + 1 < 4; i += 2) {
      const bool sw = key[i + 1] > key[i];
      const uint32_t ka = key[i], kb = key[i + 1], ia = ci[i], ib = ci[i + 1];
      key[i] = sw ? kb : ka;
      key[i + 1] = sw ? ka : kb;
      ci[i] = sw ? ib : ia;
      ci[i + 1] = sw ? ia : ib;
    }
  uint32_t mine = 0u;
#pragma unroll
  for (int r = 0; r < 8; ++r) {
    if (r < K) { /* warp-uniform */
      const uint32_t wmax = __reduce_max_sync(kFull, key[0]);
      const uint32_t widx = __reduce_min_sync(kFull, key[0] == wmax ? ci[0] : 0xFFFFFFFFu);
      if (lane == (int)(widx >> 2)) {
#pragma unroll
        for (int i = 0; i < 3; ++i) {
          key[i] = key[i + 1];
          ci[i] = ci[i + 1];
        }
        key[3] = 0u;
      }
      mine = lane == r ? widx : mine;
    }
  }
  /* candidate c = j*32 + r is expert 32*s_j + r */
  const int cj = (int)(mine >> 5);
  uint32_t mm = sel;
#pragma unroll
  for (int q = 0; q < 3; ++q) mm = q < cj ? (mm & (mm - 1u)) : mm;
  const int id = 32 * (__ffs(mm) - 1) + (int)(mine & 31u);
  const float xs = load_value<kBf16>(p.logits, (int64_t)t * 256 + id);
  *out_s = rcp_rn_fast(MOE_FADD(1.0f, expf_fast(-xs)));
  *out_id = id;
  return true;
}

struct DeepSeekMethod {
  static constexpr bool kWarpSmem = true;

  template <int P, bool kBf16>
  static __device__ __forceinline__ int route(const Params &p, int t, int lane, float *wsm) {
    const int E = p.num_experts, K = p.top_k;
    prefetch_next_row<kBf16>(p, t, lane);
    if constexpr (P == 8) {
      int id;
      float sk;
      if (p.v3_fast && route_v3<kBf16>(p, t, lane, &id, &sk)) return finish(p, t, lane, id, sk);
    }
    float vb[P];
    load_logits<P, kBf16>(p, t, lane, vb);
    /* v' = sigmoid + bias, 8 values at a time (P = 16 would spill otherwise). Bias: uniform
     * branches on presence and dtype, then unconditional loads (index clamped into [0, E);
     * values past E are never used), so the loads issue together. */
    constexpr int kChunk = P < 8 ? P : 8;
    const int ng = p.n_group, tg = p.topk_group;
    /* E == 32 * P, grouped, and group g is register slot g (see below). The per-warp scratch
     * is unused on that path: it keeps the sigmoids for the weights. */
    constexpr bool kSlotGroups = P >= 2 && P <= 8; /* (P = 16 would need a stack frame) */
    const bool slot_groups = kSlotGroups && ng > 1 && tg < ng && p.group_size == 32 && ng == P;
    if (slot_groups) __syncwarp(); /* the previous token's readers are done with wsm */
#pragma unroll
    for (int c = 0; c < P; c += kChunk) {
      float sv[kChunk], bias[kChunk];
#pragma unroll
      for (int i = 0; i < kChunk; ++i) sv[i] = vb[c + i];
      if (p.bias == nullptr) {
#pragma unroll
        for (int i = 0; i < kChunk; ++i) bias[i] = 0.0f;
      } else if (p.bias_bf16) {
#pragma unroll
        for (int i = 0; i < kChunk; ++i)
          bias[i] = load_value<true>(p.bias, min((c + i) * 32 + lane, E - 1));
      } else {
#pragma unroll
        for (int i = 0; i < kChunk; ++i)
          bias[i] = load_value<false>(p.bias, min((c + i) * 32 + lane, E - 1));
      }
      sigmoid_vec<kChunk>(sv);
      if (slot_groups) {
#pragma unroll
        for (int i = 0; i < kChunk; ++i) wsm[pad_idx((c + i) * 32 + lane)] = sv[i];
      }
#pragma unroll
      for (int i = 0; i < kChunk; ++i) vb[c + i] = MOE_FADD(sv[i], bias[i]);
    }
    uint32_t key[P];
    int id = 0;
    bool done = false;
    if (ng > 1 && tg < ng) {
      const int G = p.group_size;
      const uint32_t ninf = topk_key(__int_as_float(0xFF800000));
      /* top-2 keys of group (lane >> lg) on every lane: 2^lg lanes per group */
      const int lg = p.lanes_per_group_log2, lpg = 1 << lg;
      uint32_t k1 = 0u, k2 = 0u;
      if (slot_groups) {
        /* E == 32 * P and group g is register slot g. Transposed butterfly: at the level with
         * offset d the lane keeps half of its c groups (the upper half iff lane & d) and
         * merges the partner's top-2 of that half; after log2(P) levels slot 0 holds the top-2
         * of group lane >> (5 - log2 P) over the lanes agreeing in the bits above, and the
         * usual butterfly over the lpg = 32 / P lanes of the group finishes it. */
        constexpr int kLog2P = P >= 16 ? 4 : P >= 8 ? 3 : P >= 4 ? 2 : P >= 2 ? 1 : 0;
        uint32_t h1[P], h2[P];
#pragma unroll
        for (int i = 0; i < P; ++i) {
          key[i] = topk_key(vb[i]);
          h1[i] = key[i];
          h2[i] = 0u;
        }
#pragma unroll
        for (int lv = 0; lv < kLog2P; ++lv) {
          const int c = P >> lv, d = 16 >> lv;
          const bool up = (lane & d) != 0;
#pragma unroll
          for (int j = 0; j < c / 2; ++j) {
            const uint32_t m1 = up ? h1[j + c / 2] : h1[j], m2 = up ? h2[j + c / 2] : h2[j];
            const uint32_t s1 = up ? h1[j] : h1[j + c / 2], s2 = up ? h2[j] : h2[j + c / 2];
            const uint32_t r1 = __shfl_xor_sync(kFull, s1, d);
            const uint32_t r2 = lv == 0 ? 0u : __shfl_xor_sync(kFull, s2, d);
            h1[j] = max(m1, r1);
            h2[j] = max(min(m1, r1), max(m2, r2));
          }
        }
        k1 = h1[0];
        k2 = h2[0];
      } else {
        __syncwarp(); /* previous token's readers are done with wsm */
#pragma unroll
        for (int i = 0; i < P; ++i) {
          const int e = i * 32 + lane;
          if (e < E) wsm[pad_idx(e)] = vb[i];
        }
        __syncwarp();
        /* group scores: each of the lpg lanes of a group walks a strided part of it */
        const int g = lane >> lg, q = lane & (lpg - 1);
        if (g < ng) {
#pragma unroll 4
          for (int j = q; j < G; j += lpg) {
            const uint32_t kk = topk_key(wsm[pad_idx(g * G + j)]);
            if (kk > k1) {
              k2 = k1;
              k1 = kk;
            } else if (kk > k2) {
              k2 = kk;
            }
          }
        }
      }
      /* the parts' top-2 keys merge by butterfly. Equal keys are equal values, so the two
       * best values (hence the score) match the CPU's index-ordered top-2. */
      for (int d = 1; d < lpg; d <<= 1) {
        const uint32_t b1 = __shfl_xor_sync(kFull, k1, d), b2 = __shfl_xor_sync(kFull, k2, d);
        const uint32_t n2 = max(min(k1, b1), max(k2, b2));
        k1 = max(k1, b1);
        k2 = n2;
      }
      const uint32_t sk =
          k2 == 0u ? k1 : topk_key(MOE_FADD(topk_key_value(k1), topk_key_value(k2)));
      const uint32_t gsk = __shfl_sync(kFull, sk, (lane << lg) & 31);
      /* group choice: lane g < ng ranks its group among all (score key desc, g asc); the
       * topk_group of rank < topk_group are selected (ranks are a permutation: total order) */
      const uint32_t gk = lane < ng ? gsk : 0u;
      int grank = 0;
      for (int h = 0; h < ng; ++h) {
        const uint32_t o = __shfl_sync(kFull, gk, h);
        grank += (o > gk || (o == gk && h < lane)) ? 1 : 0;
      }
      const uint32_t sel = __ballot_sync(kFull, lane < ng && grank < tg);
      if (slot_groups) {
        constexpr int PC = P >= 2 ? P / 2 : 1;
        /* Fast path: the tg <= P/2 selected slots s_0 < s_1 < .. (warp-uniform) compacted
         * into PC slots: candidate j*32 + lane is expert s_j*32 + lane, so candidate order is
         * expert order and index ties resolve the same. Exact whenever at least K of them
         * rank above -inf (every unselected expert's value); else the full path. */
        if (tg <= PC) {
          uint32_t ck[PC];
          uint32_t m = sel;
          int ok = 0;
#pragma unroll
          for (int j = 0; j < PC; ++j) {
            const uint32_t bit = m & (0u - m); /* slot s_j as a bit; 0 past the last */
            m &= m - 1u;
            uint32_t v = 0u;
#pragma unroll
            for (int i = 0; i < P; ++i) v = ((bit >> i) & 1u) ? key[i] : v;
            ck[j] = v;
            ok += ck[j] > ninf ? 1 : 0;
          }
          if ((int)__reduce_add_sync(kFull, (unsigned)ok) >= K) {
            int cid = 0;
            warp_topk_sorted<PC>(ck, K, lane, &cid);
            const int cj = cid >> 5;
            uint32_t mm = sel; /* drop the cj lowest selected slots: s_cj is the lowest left */
#pragma unroll
            for (int j = 0; j < PC - 1; ++j) mm = (j < cj) ? (mm & (mm - 1u)) : mm;
            id = (__ffs(mm) - 1) * 32 + (cid & 31);
            done = true;
          }
        }
        if (!done) {
#pragma unroll
          for (int i = 0; i < P; ++i) key[i] = ((sel >> i) & 1u) ? key[i] : ninf;
        }
      } else {
        const uint32_t gm = (uint32_t)p.group_mul; /* x / G == (x * gm) >> 21 for x < 4096 */
        if constexpr (P >= 2) {
          /* Fast path: top-K over the selected groups only, compacted in ascending expert
           * order (so index ties resolve the same), in P/2 slots per lane. Exact whenever at
           * least K of them rank above -inf (the value of every unselected expert); else the
           * full path. */
          const int nc = tg * G;
          if (nc <= 16 * P) {
            constexpr int PC = P / 2;
            uint32_t *ck_s = reinterpret_cast<uint32_t *>(wsm);
            __syncwarp(); /* group scores have read wsm */
#pragma unroll
            for (int i = 0; i < P; ++i) {
              const uint32_t e = (uint32_t)(i * 32 + lane);
              const uint32_t ge = (e * gm) >> 21;
              if (e < (uint32_t)E && ((sel >> ge) & 1u)) {
                const uint32_t c = (uint32_t)__popc(sel & ((1u << ge) - 1u)) * G + (e - ge * G);
                ck_s[pad_idx((int)c)] = topk_key(vb[i]);
              }
            }
            __syncwarp();
            uint32_t ck[PC];
            int ok = 0;
#pragma unroll
            for (int i = 0; i < PC; ++i) {
              const int c = i * 32 + lane;
              ck[i] = c < nc ? ck_s[pad_idx(c)] : 0u;
              ok += ck[i] > ninf ? 1 : 0;
            }
            if ((int)__reduce_add_sync(kFull, (unsigned)ok) >= K) {
              int cid = 0;
              warp_topk<PC>(ck, K, lane, &cid);
              const int r = (int)(((uint32_t)cid * gm) >> 21); /* rank of its group in sel */
              uint32_t m = sel;
              for (int j = 0; j < r; ++j) m &= m - 1u;
              const int gg = __ffs(m) - 1;
              id = gg * G + (cid - r * G);
              done = true;
            }
          }
        }
        if (!done) {
#pragma unroll
          for (int i = 0; i < P; ++i) {
            const uint32_t e = (uint32_t)(i * 32 + lane);
            const uint32_t ge = (e * gm) >> 21;
            key[i] = (e < (uint32_t)E) ? (((sel >> ge) & 1u) ? topk_key(vb[i]) : ninf) : 0u;
          }
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < P; ++i) key[i] = (i * 32 + lane < E) ? topk_key(vb[i]) : 0u;
    }
    if (!done) warp_topk<P>(key, K, lane, &id);
    float sk; /* s of slot `lane`'s expert (any in-range expert for lane >= K) */
    if (slot_groups) {
      __syncwarp(); /* every lane's sigmoids are in wsm */
      sk = wsm[pad_idx(id)];
    } else {
      sk = sigmoid_exact(load_value<kBf16>(p.logits, (int64_t)t * E + id));
    }
    return finish(p, t, lane, id, sk);
  }

  /* the next token's row towards L2 while this one is computed (multi-CTA path: a warp
   * routes its tokens one after another) */
  template <bool kBf16>
  static __device__ __forceinline__ void prefetch_next_row(const Params &p, int t, int lane) {
    if (t + 1 < p.num_tokens) {
      const int row_bytes = p.num_experts * (kBf16 ? 2 : 4);
      if (lane * 128 < row_bytes + 127) {
        const char *nxt = reinterpret_cast<const char *>(p.logits) + (int64_t)(t + 1) * row_bytes;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(nxt + min(lane * 128, row_bytes - 1)));
      }
    }
  }

  /* weights from the slot's sigmoid sk: w = bf16((sk / (ss + 1e-20)) * scale) */
  static __device__ __forceinline__ int finish(const Params &p, int t, int lane, int id, float sk) {
    const float ss = warp_ordered_sum(sk, p.top_k);
    const float den = MOE_FADD(ss, 1e-20f);
    write_slot(p, t, lane, id, MOE_FMUL(MOE_FDIV(sk, den), p.scale));
    return id;
  }
};

cudaError_t launch_deepseek(const Params &p, bool single, cudaStream_t s, bool pdl) {
  return launch_family<DeepSeekMethod>(p, single, s, pdl);
}

}  // namespace routing
}  // namespace moe
