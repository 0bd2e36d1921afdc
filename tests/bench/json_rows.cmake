# Helpers of the moe-bench ctest scripts that read --json rows (included by fp8.cmake,
# mxfp4.cmake; BENCH is the moe-bench binary).

# Run moe-bench with ARGN: stdout, stderr and the exit code.
function(bench out_var err_var rc_var)
  execute_process(COMMAND ${BENCH} ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err
                  RESULT_VARIABLE rc)
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${err_var} "${err}" PARENT_SCOPE)
  set(${rc_var} "${rc}" PARENT_SCOPE)
endfunction()

# The JSON row of preset p at T = t (fails if there is not exactly one).
function(row_of text p t out_var)
  string(REGEX MATCHALL "{\"preset\":\"${p}\"[^\n]*\"tokens\":${t},[^\n]*}" rows "${text}")
  list(LENGTH rows n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one JSON row of ${p} at T = ${t}, got ${n}:\n${text}")
  endif()
  set(${out_var} "${rows}" PARENT_SCOPE)
endfunction()

# The value of one key of a JSON row (strings without their quotes).
function(field row key out_var)
  if(NOT row MATCHES "\"${key}\":\"?([^,\"}]*)")
    message(FATAL_ERROR "no '${key}' in ${row}")
  endif()
  set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()
