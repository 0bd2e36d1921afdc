package io.moetrtllm;

/** One timed config of Runner.autotune: the config index and its median time. */
public record AutotuneResult(int config, float timeUs) {}
