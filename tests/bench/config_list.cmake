# moe-bench --config on the CPU backend: a list gives one row per config, in order; 'all' gives
# every valid config, the default first; 'tuned' gives one row, a valid config chosen by
# moe_runner_autotune; a malformed list or an invalid index fails with a message.
# Usage: cmake -DBENCH=<moe-bench> -P config_list.cmake
set(args --backend cpu --preset qwen3-30b --tokens 1 --iters 1 --json)

function(bench out_var rc_var)
  execute_process(COMMAND ${BENCH} ${args} ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err
                  RESULT_VARIABLE rc)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${rc_var} "${rc}" PARENT_SCOPE)
endfunction()

function(configs_of text out_var)
  string(REGEX MATCHALL "\"config\":[0-9]+" m "${text}")
  string(REPLACE "\"config\":" "" m "${m}")
  set(${out_var} "${m}" PARENT_SCOPE)
endfunction()

bench(out rc --config 0,15)
configs_of("${out}" got)
if(NOT rc EQUAL 0 OR NOT got STREQUAL "0;15")
  message(FATAL_ERROR "--config 0,15: expected rows for configs 0;15, got '${got}' (rc ${rc}):\n${out}")
endif()

bench(out rc)
configs_of("${out}" default)
list(LENGTH default n)
if(NOT rc EQUAL 0 OR NOT n EQUAL 1)
  message(FATAL_ERROR "default config: expected one row, got '${default}' (rc ${rc}):\n${out}")
endif()

bench(out rc --config all)
configs_of("${out}" all)
list(LENGTH all n_all)
list(GET all 0 first)
list(REMOVE_DUPLICATES all)
list(LENGTH all n_unique)
if(NOT rc EQUAL 0 OR n_all LESS 2 OR NOT n_unique EQUAL n_all OR NOT first STREQUAL default)
  message(FATAL_ERROR "--config all: expected distinct configs, the default (${default}) first; "
                      "got '${all}' (rc ${rc})")
endif()

bench(out rc --config tuned)
configs_of("${out}" tuned)
list(LENGTH tuned n_tuned)
list(FIND all "${tuned}" tuned_at)
if(NOT rc EQUAL 0 OR NOT n_tuned EQUAL 1 OR tuned_at LESS 0)
  message(FATAL_ERROR "--config tuned: expected one row with a valid config (one of '${all}'); "
                      "got '${tuned}' (rc ${rc}):\n${out}")
endif()

bench(out rc --config 0,x)
if(rc EQUAL 0 OR NOT out MATCHES "--config")
  message(FATAL_ERROR "--config 0,x: expected a failure naming --config, got rc ${rc}:\n${out}")
endif()

bench(out rc --config 999)
if(rc EQUAL 0 OR NOT out MATCHES "config")
  message(FATAL_ERROR "--config 999: expected a failure naming the config, got rc ${rc}:\n${out}")
endif()
message(STATUS "moe-bench --config: list, default, all (${n_all} configs), tuned (${tuned}) and an invalid index OK")
