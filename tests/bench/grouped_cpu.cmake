# ctest "bench_grouped_cpu": moe-grouped-bench on the CPU backend at tiny T. It exits 0 (so each
# grouped variant's rows were bit-identical to the plain run's, which the program checks before
# timing), prints a row of every variant (forward, run, contiguous, masked, contiguous_sm) for
# each preset and T, with run's ratio 1; --json rows carry the keys docs/ep.md names; an FP8
# preset is skipped with the reason; a bad --sm-budget fails. Small budget and T: seconds.
# Usage: cmake -DBENCH=<moe-grouped-bench> -P grouped_cpu.cmake
function(bench out_var rc_var)
  execute_process(COMMAND ${BENCH} --backend cpu --iters 1 --cpu-weight-gb 0.05 ${ARGN}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${rc_var} "${rc}" PARENT_SCOPE)
endfunction()

# 1. The default presets at T = 1, 3, two SM budgets (no effect on the CPU; the path runs).
bench(out rc --tokens 1,3 --sm-budget 1,4)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "moe-grouped-bench --backend cpu failed (${rc}):\n${out}")
endif()
foreach(p qwen3-30b deepseek-v3 mixtral-8x7b gpt-oss-120b)
  foreach(t 1 3)
    # preset, T, rows, capacity, variant, sm, us, ratio, plan
    set(row "\n${p} +${t} +[0-9]+ +[0-9]+  ")
    if(NOT out MATCHES "${row}run +0 +[0-9]+\\.[0-9] +1\\.000  tile[0-9]+_c[0-9]")
      message(FATAL_ERROR "no '${p}' run row (ratio 1) at T = ${t}:\n${out}")
    endif()
    foreach(v "forward +0" "contiguous +0" "masked +0" "contiguous_sm +1" "contiguous_sm +4")
      if(NOT out MATCHES "${row}${v} +[0-9]+\\.[0-9] +[0-9]+\\.[0-9][0-9][0-9]  tile")
        message(FATAL_ERROR "no '${p}' row '${v}' at T = ${t}:\n${out}")
      endif()
    endforeach()
  endforeach()
endforeach()
if(out MATCHES "not bit-identical")
  message(FATAL_ERROR "a mismatch was reported:\n${out}")
endif()

# 2. JSON rows.
bench(out rc --preset mixtral-8x7b --tokens 2 --json)
set(json_row "{\"preset\":\"mixtral-8x7b\"[^\n]*\"tokens\":2,[^\n]*\"variant\":\"[a-z_]+\"")
string(APPEND json_row "[^\n]*\"us\":[0-9.]+[^\n]*\"ratio\":[0-9.]+")
string(APPEND json_row "[^\n]*\"config_name\":\"tile[0-9]+_c[0-9]\"}")
string(REGEX MATCHALL "${json_row}" rows "${out}")
list(LENGTH rows n)
if(NOT rc EQUAL 0 OR NOT n EQUAL 5 OR NOT out MATCHES "\"device\":\"host CPU\"")
  message(FATAL_ERROR "--json: expected 5 rows with preset, tokens, variant, us, ratio, device, "
                      "config_name (rc ${rc}, ${n} rows):\n${out}")
endif()

# 3. FP8 presets are skipped with the reason; mistakes fail.
bench(out rc --preset qwen3-30b-fp8 --tokens 1)
if(NOT rc EQUAL 1 OR NOT out MATCHES "qwen3-30b-fp8: skipped: this bench runs BF16 runners only")
  message(FATAL_ERROR "an FP8 preset: expected a skip with the reason and rc 1 (${rc}):\n${out}")
endif()
bench(out rc --sm-budget 70000 --tokens 1)
if(rc EQUAL 0 OR NOT out MATCHES "--sm-budget")
  message(FATAL_ERROR "--sm-budget 70000: expected a failure naming it (${rc}):\n${out}")
endif()
message(STATUS "moe-grouped-bench CPU path: 4 presets x 2 T x 6 variants, bit-identical, JSON")
