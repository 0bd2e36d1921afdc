package io.moetrtllm;

/** Description of a kernel config (moe_config_info). */
public record ConfigInfo(int index, int tile, int ctaTile, int clusterSize, int gemm1BlockM,
    int gemm2BlockM, int blockK, int stages, int smVersion, String name) {}
