/* A program built against the *installed* header and library (tests/install/check.cmake). */
#include <moe_trtllm.h>
#include <moe_trtllm_ep.h> /* installed next to it */
#include <stdio.h>

int main(void) {
  int32_t major = -1;
  moe_get_version(&major, NULL, NULL);
  moe_runner_options o;
  moe_runner *r = NULL;
  moe_ep_options eo;
  if (moe_runner_options_init(&o, MOE_RUNNER_OPTIONS_VERSION) ||
      moe_ep_options_init(&eo, MOE_EP_OPTIONS_VERSION))
    return 1;
  o.backend = MOE_BACKEND_CPU;
  if (moe_runner_create(&o, &r) || major != MOE_VERSION_MAJOR) {
    printf("consumer: %s\n", moe_get_last_error());
    return 1;
  }
  moe_runner_destroy(r);
  printf("consumer: linked against moe_trtllm %d\n", major);
  return 0;
}
