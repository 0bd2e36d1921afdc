/* One MoE forward on the CPU backend: T tokens, E experts, top-K routing, SwiGLU experts.
 * Build: cc forward.c $(pkg-config --cflags --libs moe_trtllm) -o forward */
#include <moe_trtllm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T = 16, E = 8, K = 2, H = 128, I = 64 };

static uint64_t rng = 42;           /* seeded: the same inputs, and so the same output, every run */
static uint16_t random_bf16(void) { /* a bf16 in [-1/16, 1/16): the top half of an fp32 */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  float f = ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) / 8.0f;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)(u >> 16);
}
static float bf16_to_float(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static uint16_t *random_bf16_array(size_t n) {
  uint16_t *a = malloc(n * sizeof *a);
  for (size_t i = 0; a && i < n; ++i) a[i] = random_bf16();
  return a;
}
/* A borrowed view of host memory: DLPack, compact row-major (strides NULL). */
static DLTensor host_tensor(void *data, uint8_t code, uint8_t bits, int32_t ndim, int64_t *shape) {
  DLTensor t = {data, {kDLCPU, 0}, ndim, {code, bits, 1}, shape, NULL, 0};
  return t;
}

int main(void) {
  moe_runner_options opts;
  moe_runner_options_init(&opts, MOE_RUNNER_OPTIONS_VERSION); /* SwiGLU, bf16 */
  opts.backend = MOE_BACKEND_CPU;
  moe_runner *runner = NULL;
  if (moe_runner_create(&opts, &runner)) {
    fprintf(stderr, "moe_runner_create: %s\n", moe_get_last_error());
    return 1;
  }
  moe_problem p;
  moe_problem_init(&p, MOE_PROBLEM_VERSION);
  p.num_tokens = T, p.num_experts = E, p.top_k = K, p.hidden_size = H, p.intermediate_size = I;

  /* Inputs: hidden states x [T,H], router logits [T,E], canonical W1 [E,2I,H] (up rows, then
   * gate rows) and W2 [E,H,I], all bf16. */
  uint16_t *x = random_bf16_array((size_t)T * H), *logits = random_bf16_array((size_t)T * E);
  uint16_t *w1 = random_bf16_array((size_t)E * 2 * I * H),
           *w2 = random_bf16_array((size_t)E * H * I);
  uint16_t *out = calloc((size_t)T * H, sizeof *out);
  int64_t sh_x[2] = {T, H}, sh_logits[2] = {T, E}, sh_w1[3] = {E, 2 * I, H}, sh_w2[3] = {E, H, I};
  DLTensor tx = host_tensor(x, kDLBfloat, 16, 2, sh_x),
           tout = host_tensor(out, kDLBfloat, 16, 2, sh_x);
  DLTensor tlogits = host_tensor(logits, kDLBfloat, 16, 2, sh_logits);
  DLTensor tw1 = host_tensor(w1, kDLBfloat, 16, 3, sh_w1),
           tw2 = host_tensor(w2, kDLBfloat, 16, 3, sh_w2);

  /* Prepared weights: sized by the library, converted once at load time. */
  size_t w1_bytes = 0, w2_bytes = 0;
  moe_weights_prepared_size(runner, &p, MOE_WEIGHTS_GEMM1, &w1_bytes);
  moe_weights_prepared_size(runner, &p, MOE_WEIGHTS_GEMM2, &w2_bytes);
  void *w1p = malloc(w1_bytes), *w2p = malloc(w2_bytes);
  int64_t sh_w1p[1] = {(int64_t)w1_bytes}, sh_w2p[1] = {(int64_t)w2_bytes};
  DLTensor tw1p = host_tensor(w1p, kDLUInt, 8, 1, sh_w1p),
           tw2p = host_tensor(w2p, kDLUInt, 8, 1, sh_w2p);

  /* The workspace for the default config (256-byte aligned). */
  int32_t cfg = -1;
  size_t ws_bytes = 0;
  moe_runner_get_default_config(runner, &p, &cfg);
  moe_runner_get_workspace_size(runner, &p, cfg, &ws_bytes);
  void *ws = aligned_alloc(256, (ws_bytes + 255) / 256 * 256);

  moe_routing_args ra;
  moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
  ra.method = MOE_ROUTING_RENORMALIZE, ra.logits = &tlogits;
  moe_run_args a;
  moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
  a.hidden_states = &tx, a.gemm1_weights = &tw1p, a.gemm2_weights = &tw2p, a.output = &tout;
  moe_plan plan;
  moe_plan_init(&plan, MOE_PLAN_VERSION);
  moe_status_t s = !x || !logits || !w1 || !w2 || !out || !w1p || !w2p || !ws
                       ? MOE_STATUS_OUT_OF_MEMORY
                   : cfg < 0 ? MOE_STATUS_INTERNAL
                             : MOE_STATUS_SUCCESS;
  if (!s) s = moe_weights_prepare(runner, &p, MOE_WEIGHTS_GEMM1, &tw1, &tw1p, NULL);
  if (!s) s = moe_weights_prepare(runner, &p, MOE_WEIGHTS_GEMM2, &tw2, &tw2p, NULL);
  if (!s) s = moe_routing_prepare(runner, &p, &ra, cfg, ws, ws_bytes, &plan, NULL);
  if (!s) s = moe_runner_run(runner, &p, &a, cfg, &plan, ws, ws_bytes, NULL);
  double sum = 0.0, abs_sum = 0.0;
  for (size_t i = 0; !s && i < (size_t)T * H; ++i) {
    sum += bf16_to_float(out[i]);
    abs_sum += bf16_to_float(out[i]) < 0 ? -bf16_to_float(out[i]) : bf16_to_float(out[i]);
  }
  if (s)
    fprintf(stderr, "moe forward failed: %s: %s\n", moe_status_string(s), moe_get_last_error());
  else
    printf("forward T=%d E=%d K=%d H=%d I=%d config %d: checksum %.9e, sum |out| %.9e\n", T, E, K,
           H, I, cfg, sum, abs_sum);
  free(x), free(logits), free(w1), free(w2), free(out), free(w1p), free(w2p), free(ws);
  moe_runner_destroy(runner);
  return s || !(abs_sum > 0.0) ? 1 : 0; /* an all-zero (or NaN) output is a failure too */
}
