/*
 * plan_registry.c - which plan each workspace holds now, so that a stale plan is an error.
 *
 * A workspace sized for T_max serves every T <= T_max, so plan B can be prepared into the
 * workspace that holds plan A; every field of A still matches its workspace, and running A
 * would read B's tables (a heap overflow when B's layout differs, wrong output when it does
 * not). A device workspace cannot be stamped from the host without a copy and a sync, so the
 * library remembers on the host, process-wide (two runners may share a workspace): per
 * workspace address range, a copy of the descriptor prepare returned last, with a unique
 * nonzero stamp in moe_plan.state. A prepare forgets every plan whose workspace overlaps its
 * own range before it writes anything; run and the plan readers accept a plan only if it is,
 * field for field, the copy recorded for its workspace.
 *
 * The table is bounded (MOE_REGISTRY_SLOTS ranges, least recently used evicted), so the host
 * state stays small when callers allocate a fresh workspace per call; a plan whose workspace
 * was evicted (more than MOE_REGISTRY_SLOTS other workspaces prepared or used since) is
 * refused like a stale one: refusing is safe, accepting might not be. One mutex guards it;
 * each call holds it for one scan of the table.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

#define MOE_REGISTRY_SLOTS 1024

typedef struct entry {
  int used;
  uint64_t lo, hi; /* [lo, hi): the workspace's address range */
  int32_t backend, device_id;
  uint64_t last_use; /* LRU clock */
  moe_plan plan;     /* the descriptor prepare returned */
} entry;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static entry g_slots[MOE_REGISTRY_SLOTS];
static uint64_t g_clock;
static uint32_t g_stamp;

/* Same address space: CPU memory, or one CUDA device's (UVA makes them disjoint anyway). */
static int same_space(const entry *e, int32_t backend, int32_t device_id) {
  return e->backend == backend && e->device_id == device_id;
}

static void range_of(const moe_plan *p, uint64_t *lo, uint64_t *hi) {
  *lo = p->workspace;
  /* The range was validated when the plan was recorded; saturate for edited copies. */
  *hi = p->workspace_bytes > UINT64_MAX - p->workspace ? UINT64_MAX
                                                       : p->workspace + p->workspace_bytes;
}

uint32_t moe_registry_begin(int32_t backend, int32_t device_id, const void *workspace,
                            size_t bytes) {
  const uint64_t lo = (uint64_t)(uintptr_t)workspace;
  const uint64_t hi = bytes > UINT64_MAX - lo ? UINT64_MAX : lo + bytes;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < MOE_REGISTRY_SLOTS; ++i) {
    entry *e = &g_slots[i];
    if (e->used && same_space(e, backend, device_id) && e->lo < hi && lo < e->hi) e->used = 0;
  }
  if (++g_stamp == 0) g_stamp = 1; /* 0 means "not prepared" */
  const uint32_t stamp = g_stamp;
  pthread_mutex_unlock(&g_lock);
  return stamp;
}

void moe_registry_commit(const moe_plan *plan, int32_t device_id) {
  pthread_mutex_lock(&g_lock);
  entry *slot = NULL;
  for (int i = 0; i < MOE_REGISTRY_SLOTS && !slot; ++i)
    if (!g_slots[i].used) slot = &g_slots[i];
  if (!slot) { /* full: evict the least recently used */
    slot = &g_slots[0];
    for (int i = 1; i < MOE_REGISTRY_SLOTS; ++i)
      if (g_slots[i].last_use < slot->last_use) slot = &g_slots[i];
  }
  slot->used = 1;
  range_of(plan, &slot->lo, &slot->hi);
  slot->backend = plan->backend;
  slot->device_id = device_id;
  slot->last_use = ++g_clock;
  slot->plan = *plan;
  pthread_mutex_unlock(&g_lock);
}

/* Field-wise (no reliance on the struct having no padding). */
static int plan_equal(const moe_plan *a, const moe_plan *b) {
  return a->version == b->version && a->config == b->config && a->tile == b->tile &&
         a->cluster_size == b->cluster_size && a->num_tokens == b->num_tokens &&
         a->num_experts == b->num_experts && a->top_k == b->top_k &&
         a->local_expert_offset == b->local_expert_offset &&
         a->local_num_experts == b->local_num_experts && a->hidden_size == b->hidden_size &&
         a->intermediate_size == b->intermediate_size && a->max_padded_rows == b->max_padded_rows &&
         a->max_ctas == b->max_ctas && a->workspace == b->workspace &&
         a->workspace_bytes == b->workspace_bytes && a->runner == b->runner &&
         a->state == b->state && a->backend == b->backend;
}

moe_status_t moe_registry_check(const moe_plan *plan, int32_t device_id) {
  uint64_t lo, hi;
  range_of(plan, &lo, &hi);
  pthread_mutex_lock(&g_lock);
  const entry *found = NULL;
  for (int i = 0; i < MOE_REGISTRY_SLOTS && !found; ++i) {
    entry *e = &g_slots[i];
    if (e->used && same_space(e, plan->backend, device_id) && e->lo == lo && e->hi == hi) {
      e->last_use = ++g_clock;
      found = e;
    }
  }
  const int current = found && plan_equal(&found->plan, plan);
  const int newer = found && found->plan.state != plan->state;
  const uint32_t found_state = found ? found->plan.state : 0;
  pthread_mutex_unlock(&g_lock);
  if (current) return MOE_STATUS_SUCCESS;
  if (!found)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan: stale: workspace %p holds no current plan (another plan was prepared "
                    "into memory overlapping it since, or more than %d other workspaces were "
                    "used since); prepare again",
                    (void *)(uintptr_t)plan->workspace, MOE_REGISTRY_SLOTS);
  if (newer)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "plan: stale: workspace %p was prepared again since this plan (stamp %u, "
                    "the workspace holds %u); prepare again",
                    (void *)(uintptr_t)plan->workspace, plan->state, found_state);
  return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                  "plan: its fields differ from the descriptor moe_routing_prepare returned for "
                  "workspace %p (an edited plan)",
                  (void *)(uintptr_t)plan->workspace);
}

void moe_registry_forget_runner(const moe_runner *r) {
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < MOE_REGISTRY_SLOTS; ++i)
    if (g_slots[i].used && g_slots[i].plan.runner == (uint64_t)(uintptr_t)r) g_slots[i].used = 0;
  pthread_mutex_unlock(&g_lock);
}
