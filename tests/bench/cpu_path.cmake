# ctest "bench_cpu_path": what scripts/main.sh runs on a machine without a GPU (it passes its
# arguments to moe-bench): every preset gets rows, the presets too large for the CPU weight budget
# say they were scaled down and why, no floor columns (there are no ceilings on the CPU) and no
# GPU kernel names; --preset X --tokens .. runs X (scaled, said so); an unknown preset fails;
# --help explains every column the table prints. Small budget and T so it takes seconds.
# Usage: cmake -DBENCH=<moe-bench> -P cpu_path.cmake
set(presets deepseek-v3 qwen3-235b qwen3-30b mixtral-8x7b gpt-oss-120b llama4-maverick
            deepseek-v3-fp8 qwen3-235b-fp8 qwen3-30b-fp8 mixtral-8x7b-fp8 llama4-maverick-fp8
            gpt-oss-120b-mxfp4 gpt-oss-20b-mxfp4)

function(bench out_var rc_var)
  execute_process(COMMAND ${BENCH} --backend cpu --iters 1 --cpu-weight-gb 0.2 ${ARGN}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${rc_var} "${rc}" PARENT_SCOPE)
endfunction()

# 1. The default run (all presets) at T = 1, 2.
bench(out rc --tokens 1,2)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "moe-bench --backend cpu failed (${rc}):\n${out}")
endif()
foreach(p ${presets})
  foreach(t 1 2)
    # preset, T, H, I, slots, us, TFLOP/s, TB/s, plan: a row with a positive time
    if(NOT out MATCHES "\n${p} +${t} +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+\\.[0-9] +[0-9.]+ +[0-9.]+  tile[0-9]+_c[0-9]")
      message(FATAL_ERROR "no '${p}' row at T = ${t}:\n${out}")
    endif()
  endforeach()
endforeach()
foreach(p deepseek-v3 llama4-maverick deepseek-v3-fp8 llama4-maverick-fp8)
  if(NOT out MATCHES "${p} scaled down to H = [0-9]+, I = [0-9]+ on the CPU: its [0-9.]+ GB")
    message(FATAL_ERROR "${p}: no line saying it was scaled down and why:\n${out}")
  endif()
endforeach()
if(out MATCHES "floor|sm90_|skipped")
  message(FATAL_ERROR "the CPU table shows a floor, a GPU kernel name or a skipped preset:\n${out}")
endif()

# 2. One preset as the README's example names it; JSON rows without floor keys.
bench(out rc --preset deepseek-v3 --tokens 1,3 --json)
string(REGEX MATCHALL "\"preset\":\"deepseek-v3\"[^\n]*\"scaled\":true" rows "${out}")
list(LENGTH rows n)
if(NOT rc EQUAL 0 OR NOT n EQUAL 2 OR out MATCHES "floor" OR
   NOT out MATCHES "deepseek-v3 scaled down")
  message(FATAL_ERROR "--preset deepseek-v3 --json: expected 2 scaled rows, no floor keys, "
                      "and the scaling said (rc ${rc}):\n${out}")
endif()

# 3. Mistakes fail with a message and a non-zero exit.
bench(out rc --preset deepseek-v4 --tokens 1)
if(rc EQUAL 0 OR NOT out MATCHES "unknown preset 'deepseek-v4'")
  message(FATAL_ERROR "--preset deepseek-v4: expected a failure naming it, got rc ${rc}:\n${out}")
endif()
bench(out rc --cpu-weight-gb 0.0000001 --preset deepseek-v3 --tokens 1)
if(rc EQUAL 0 OR NOT out MATCHES "does not fit")
  message(FATAL_ERROR "a budget nothing fits: expected a failure, got rc ${rc}:\n${out}")
endif()

# 4. --help explains every column of the CPU and the GPU tables.
execute_process(COMMAND ${BENCH} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
foreach(col preset T "H, I" slots us TFLOP/s TB/s floor_us %floor config plan)
  string(FIND "${help}" "\n  ${col} " at)
  if(rc OR at LESS 0)
    message(FATAL_ERROR "--help does not explain the column '${col}':\n${help}")
  endif()
endforeach()
message(STATUS "moe-bench CPU path: 11 presets (5 FP8), scaled ones said, no floor, --help explains the columns")
