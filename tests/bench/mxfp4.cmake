# ctest "bench_mxfp4": moe-bench's MXFP4 presets (W4A16).
# 1. On the CPU backend gpt-oss-120b-mxfp4 (biases, clamped SwiGLU) and gpt-oss-20b-mxfp4 run
#    scaled down; their JSON rows carry dtype mxfp4, scaling mx, and a byte model of 4.25 bits a
#    weight (+ the fp32 biases of gpt-oss-120b-mxfp4); gpt-oss-120b-mxfp4 routes as gpt-oss-120b.
# 2. --dry-run --backend cuda: both list a sm90_w4a16_* config (the CUDA W4A16 catalogue), and
#    the run exits 0.
# Usage: cmake -DBENCH=<moe-bench> -P mxfp4.cmake
include(${CMAKE_CURRENT_LIST_DIR}/json_rows.cmake)

# ---- 1. on the CPU ----
bench(out err rc --backend cpu --iters 1 --cpu-weight-gb 0.05 --json --tokens 1,3
      --preset gpt-oss-120b,gpt-oss-120b-mxfp4,gpt-oss-20b-mxfp4)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "moe-bench MXFP4 presets on the CPU failed (${rc}):\n${out}${err}")
endif()
if(err MATCHES "skipped")
  message(FATAL_ERROR "an MXFP4 preset was skipped on the CPU:\n${err}")
endif()
foreach(p gpt-oss-120b-mxfp4 gpt-oss-20b-mxfp4)
  foreach(t 1 3)
    row_of("${out}" ${p} ${t} row)
    field("${row}" dtype dtype)
    field("${row}" scaling scaling)
    field("${row}" hidden_size H)
    field("${row}" intermediate_size I)
    field("${row}" active_experts A)
    field("${row}" local_slots slots)
    field("${row}" bytes bytes)
    if(NOT dtype STREQUAL "mxfp4" OR NOT scaling STREQUAL "mx")
      message(FATAL_ERROR "${p} T = ${t}: expected dtype mxfp4, scaling mx:\n${row}")
    endif()
    math(EXPR hr "${H} % 32")
    math(EXPR ir "${I} % 32")
    if(NOT hr EQUAL 0 OR NOT ir EQUAL 0)
      message(FATAL_ERROR "${p}: scaled to H = ${H}, I = ${I}, not multiples of 32")
    endif()
    # 4.25 bits a weight of W1 (2I x H) and W2 (H x I): 3HI * 17 / 32 bytes; the fp32 biases
    # (2I + H) of gpt-oss-120b-mxfp4; hidden in and output out (bf16)
    if(p STREQUAL "gpt-oss-120b-mxfp4")
      math(EXPR want "${A} * (3 * ${H} * ${I} * 17 / 32 + 4 * (2 * ${I} + ${H})) + 4 * ${t} * ${H}")
      row_of("${out}" gpt-oss-120b ${t} brow)
      field("${brow}" active_experts bA)
      field("${brow}" local_slots bslots)
      if(NOT A EQUAL bA OR NOT slots EQUAL bslots)
        message(FATAL_ERROR "${p} T = ${t}: routing differs from gpt-oss-120b")
      endif()
    else()
      math(EXPR want "${A} * (3 * ${H} * ${I} * 17 / 32) + 4 * ${t} * ${H}")
    endif()
    if(NOT bytes EQUAL want)
      message(FATAL_ERROR "${p} T = ${t}: bytes ${bytes}, expected ${want}:\n${row}")
    endif()
  endforeach()
endforeach()

# ---- 2. the CUDA catalogue: the W4A16 configs (a dry run: listed, not run) ----
bench(out err rc --dry-run --backend cuda --preset gpt-oss-120b-mxfp4,gpt-oss-20b-mxfp4 --tokens 1)
set(text "${out}${err}")
foreach(p gpt-oss-120b-mxfp4 gpt-oss-20b-mxfp4)
  if(NOT text MATCHES "(^|\n)${p} +1 +2880 +2880 [^\n]* sm90_w4a16_t[0-9]+_c[124]_m[0-9]+_s[0-9]+")
    message(FATAL_ERROR "${p}: expected a row with a sm90_w4a16_* config:\n${text}")
  endif()
endforeach()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the CUDA dry run exited ${rc}:\n${text}")
endif()
message(STATUS "moe-bench MXFP4: CPU rows with the 4.25-bit byte model; CUDA: the W4A16 configs")
