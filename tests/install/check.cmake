# ctest "install": install the build into a scratch prefix, then, with no LD_LIBRARY_PATH:
#  1. build tests/install/consumer.c and the README's C example (examples/forward.c) through
#     `pkg-config moe_trtllm` (PKG_CONFIG_PATH=<prefix>/<libdir>/pkgconfig, as the README says)
#     and run them; the example's output must equal the in-tree build's (EXAMPLE);
#  2. the same two programs through find_package(moe_trtllm);
#  3. the installed moe-bench (BENCH_INSTALLED=ON) starts and runs one CPU forward: its run path
#     finds the installed library.
# Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, C_COMPILER, LIBDIR, BINDIR, EXAMPLE, BENCH_INSTALLED.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
unset(ENV{LD_LIBRARY_PATH})

function(run_program what out_var exe)
  execute_process(COMMAND ${exe} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "${what} failed to run (${rc}):\n${out}${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

execute_process(COMMAND ${EXAMPLE} RESULT_VARIABLE rc OUTPUT_VARIABLE expected)
if(rc OR NOT expected MATCHES "checksum")
  message(FATAL_ERROR "the in-tree example ${EXAMPLE} failed (${rc}): ${expected}")
endif()

# 1. pkg-config
set(ENV{PKG_CONFIG_PATH} ${prefix}/${LIBDIR}/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs moe_trtllm OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(rc)
  message(FATAL_ERROR "pkg-config moe_trtllm failed")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
foreach(src tests/install/consumer.c examples/forward.c)
  get_filename_component(name ${src} NAME_WE)
  execute_process(COMMAND ${C_COMPILER} ${SOURCE_DIR}/${src} ${flags} -o ${WORK_DIR}/${name}_pc
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "compiling ${src} with `pkg-config --cflags --libs moe_trtllm` failed")
  endif()
endforeach()
run_program("pkg-config consumer" out ${WORK_DIR}/consumer_pc)
run_program("pkg-config example" out ${WORK_DIR}/forward_pc)
if(NOT out STREQUAL expected)
  message(FATAL_ERROR "installed example printed '${out}', the in-tree one '${expected}'")
endif()

# 2. find_package
file(WRITE ${WORK_DIR}/proj/CMakeLists.txt
  "cmake_minimum_required(VERSION 3.24)\nproject(consumer C)\n"
  "find_package(moe_trtllm 0.1 REQUIRED)\n"
  "add_executable(consumer ${SOURCE_DIR}/tests/install/consumer.c)\n"
  "target_link_libraries(consumer PRIVATE moe_trtllm::moe_trtllm)\n"
  "add_executable(forward ${SOURCE_DIR}/examples/forward.c)\n"
  "target_link_libraries(forward PRIVATE moe_trtllm::moe_trtllm)\n")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${WORK_DIR}/proj -B ${WORK_DIR}/proj/build
                        -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc)
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/proj/build RESULT_VARIABLE rc
                  OUTPUT_QUIET)
endif()
if(rc)
  message(FATAL_ERROR "find_package(moe_trtllm) consumer failed to configure or build")
endif()
run_program("find_package consumer" out ${WORK_DIR}/proj/build/consumer)
run_program("find_package example" out ${WORK_DIR}/proj/build/forward)
if(NOT out STREQUAL expected)
  message(FATAL_ERROR "find_package example printed '${out}', the in-tree one '${expected}'")
endif()

# 3. the installed moe-bench finds the installed library by its run path
if(BENCH_INSTALLED)
  run_program("installed moe-bench" out ${prefix}/${BINDIR}/moe-bench --backend cpu
              --preset qwen3-30b --tokens 1 --iters 1 --cpu-weight-gb 0.05)
  if(NOT out MATCHES "qwen3-30b +1 ")
    message(FATAL_ERROR "installed moe-bench printed no qwen3-30b row:\n${out}")
  endif()
endif()
message(STATUS "installed package: pkg-config and find_package consumers, the README example "
               "(${expected}) and moe-bench all run from ${prefix}")
