# ctest "bench_fp8": moe-bench's FP8 presets on the CPU backend, and how a preset the backend
# cannot run is reported.
# 1. mixtral-8x7b-fp8 (per-tensor) and qwen3-30b-fp8 (block) run scaled down (H and I multiples
#    of 128); their JSON rows carry dtype, scaling, the per-tensor input scales, and a byte model
#    of one byte per weight plus the scales; the routing is their BF16 preset's.
# 2. --dry-run --backend cuda (the sm_90 catalogue, no GPU needed): every FP8 preset is either
#    resolved (per-tensor: sm90_fp8pt_ configs) or reported on one line with the library's reason
#    ("NAME: skipped: ..."), never silently dropped; a run of only skipped presets exits non-zero.
# Usage: cmake -DBENCH=<moe-bench> -P fp8.cmake
include(${CMAKE_CURRENT_LIST_DIR}/json_rows.cmake)

# ---- 1. FP8 presets on the CPU ----
bench(out err rc --backend cpu --iters 1 --cpu-weight-gb 0.1 --json --tokens 1,3
      --preset qwen3-30b,qwen3-30b-fp8,mixtral-8x7b,mixtral-8x7b-fp8)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "moe-bench FP8 presets on the CPU failed (${rc}):\n${out}${err}")
endif()
foreach(p qwen3-30b-fp8 mixtral-8x7b-fp8)
  if(NOT err MATCHES "${p} scaled down to H = [0-9]+, I = [0-9]+ on the CPU")
    message(FATAL_ERROR "${p}: no line saying it was scaled down:\n${err}")
  endif()
endforeach()
if(out MATCHES "floor" OR err MATCHES "skipped")
  message(FATAL_ERROR "the CPU rows show a floor or a skipped preset:\n${out}${err}")
endif()
foreach(case "qwen3-30b-fp8;qwen3-30b;block" "mixtral-8x7b-fp8;mixtral-8x7b;per_tensor")
  list(GET case 0 p)
  list(GET case 1 base)
  list(GET case 2 mode)
  foreach(t 1 3)
    row_of("${out}" ${p} ${t} row)
    row_of("${out}" ${base} ${t} brow)
    field("${row}" dtype dtype)
    field("${row}" scaling scaling)
    field("${row}" scaled scaled)
    field("${row}" hidden_size H)
    field("${row}" intermediate_size I)
    field("${row}" active_experts A)
    field("${row}" local_slots slots)
    field("${row}" bytes bytes)
    field("${brow}" active_experts bA)
    field("${brow}" local_slots bslots)
    field("${brow}" bytes bbytes)
    field("${brow}" hidden_size bH)
    field("${brow}" intermediate_size bI)
    field("${brow}" dtype bdtype)
    field("${brow}" scaling bscaling)
    if(NOT dtype STREQUAL "fp8_e4m3" OR NOT scaling STREQUAL mode OR NOT scaled STREQUAL "true"
       OR NOT bdtype STREQUAL "bf16" OR NOT bscaling STREQUAL "none")
      message(FATAL_ERROR "${p} T = ${t}: expected dtype fp8_e4m3, scaling ${mode}, scaled; "
                          "${base}: bf16, none:\n${row}\n${brow}")
    endif()
    math(EXPR hr "${H} % 128")
    math(EXPR ir "${I} % 128")
    if(NOT hr EQUAL 0 OR NOT ir EQUAL 0)
      message(FATAL_ERROR "${p}: scaled to H = ${H}, I = ${I}, not multiples of 128")
    endif()
    if(NOT A EQUAL bA OR NOT slots EQUAL bslots)
      message(FATAL_ERROR "${p} T = ${t}: routing differs from ${base} (active experts ${A} vs "
                          "${bA}, slots ${slots} vs ${bslots})")
    endif()
    # bytes: each active expert's W1 (2I x H) and W2 (H x I), hidden in and output out (bf16)
    if(mode STREQUAL "block") # fp8 + one fp32 scale per 128x128 block
      math(EXPR want "${A} * (3 * ${H} * ${I} + 4 * ((2 * ${I} / 128) * (${H} / 128) + (${H} / 128) * (${I} / 128))) + 4 * ${t} * ${H}")
    else() # fp8 + one fp32 scale per expert and tensor
      math(EXPR want "${A} * (3 * ${H} * ${I} + 8) + 4 * ${t} * ${H}")
    endif()
    math(EXPR bwant "${bA} * 6 * ${bH} * ${bI} + 4 * ${t} * ${bH}")
    if(NOT bytes EQUAL want OR NOT bbytes EQUAL bwant)
      message(FATAL_ERROR "${p} T = ${t}: bytes ${bytes}, expected ${want}; ${base}: bytes "
                          "${bbytes}, expected ${bwant}")
    endif()
    if(mode STREQUAL "per_tensor")
      field("${row}" gemm1_input_scale s1)
      field("${row}" gemm2_input_scale s2)
      # s1 = amax(hidden) / 448 with hidden in [-2, 2): exactly 2 / 448
      if(NOT s1 MATCHES "^0\\.004464285" OR NOT s2 MATCHES "^[0-9]+\\.?[0-9]*(e[-+][0-9]+)?$"
         OR s2 STREQUAL "0" OR s2 MATCHES "^0\\.0*$")
        message(FATAL_ERROR "${p} T = ${t}: input scales ${s1}, ${s2}: expected 2/448 and a "
                            "positive calibrated scale")
      endif()
    elseif(row MATCHES "input_scale")
      message(FATAL_ERROR "${p}: a block-scaled row with per-tensor input scales:\n${row}")
    endif()
  endforeach()
endforeach()

# ---- 2. the CUDA catalogue: resolved or reported ----
set(fp8_presets deepseek-v3-fp8 qwen3-235b-fp8 qwen3-30b-fp8 mixtral-8x7b-fp8 llama4-maverick-fp8)
# with one BF16 preset, so the run resolves something whatever the CUDA backend runs of FP8
string(REPLACE ";" "," list "qwen3-30b;${fp8_presets}")
bench(out err rc --dry-run --backend cuda --preset ${list} --tokens 1,4096)
set(text "${out}${err}")
set(skipped "")
foreach(p ${fp8_presets})
  string(REGEX MATCHALL "\n${p} +(1|4096) +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9.]+  sm90_[a-z0-9_]+" rows "${text}")
  list(LENGTH rows n)
  if(text MATCHES "(^|\n)${p}: skipped: ([^\n]+)")
    if(n GREATER 0 OR NOT CMAKE_MATCH_2 MATCHES "[A-Za-z]")
      message(FATAL_ERROR "${p}: skipped, yet ${n} rows, or no reason given:\n${text}")
    endif()
    list(APPEND skipped ${p})
  elseif(NOT n EQUAL 2)
    message(FATAL_ERROR "${p}: neither rows at T = 1 and 4096 nor a 'skipped' line "
                        "(silently dropped?):\n${text}")
  endif()
endforeach()
foreach(p mixtral-8x7b-fp8 llama4-maverick-fp8) # per-tensor rows run the sm90_fp8pt_ catalogue
  list(FIND skipped ${p} was_skipped)
  if(was_skipped EQUAL -1 AND NOT text MATCHES "\n${p} +1 +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9.]+  sm90_fp8pt_")
    message(FATAL_ERROR "${p}: expected a row with an sm90_fp8pt_ config:\n${text}")
  endif()
endforeach()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "--dry-run --backend cuda failed (${rc}):\n${text}")
endif()
if(skipped)
  list(GET skipped 0 p)
  bench(out err rc --dry-run --backend cuda --preset ${p} --tokens 1)
  if(rc EQUAL 0 OR NOT "${out}${err}" MATCHES "${p}: skipped: .*every preset asked for was skipped")
    message(FATAL_ERROR "--preset ${p} alone (skipped): expected the reason and a non-zero exit, "
                        "got rc ${rc}:\n${out}${err}")
  endif()
endif()
message(STATUS "moe-bench FP8: CPU rows with dtype, scaling, scales and the FP8 byte model; "
               "CUDA catalogue: skipped with a reason: '${skipped}'")
