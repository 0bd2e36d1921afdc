# ctest "install": install the build into a scratch prefix, then build a consumer of the
# installed package twice - through pkg-config and through find_package(moe_trtllm) - and run it.
# Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, C_COMPILER.
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed: ${rc}")
endif()
# 1. pkg-config
set(ENV{PKG_CONFIG_PATH} ${WORK_DIR}/prefix/lib/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs moe_trtllm OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(rc)
  message(FATAL_ERROR "pkg-config moe_trtllm failed")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
execute_process(COMMAND ${C_COMPILER} ${SOURCE_DIR}/tests/install/consumer.c ${flags}
                        -Wl,-rpath,${WORK_DIR}/prefix/lib -o ${WORK_DIR}/consumer_pc
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "compiling against pkg-config flags failed")
endif()
execute_process(COMMAND ${WORK_DIR}/consumer_pc RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "pkg-config consumer failed to run")
endif()
# 2. find_package
file(WRITE ${WORK_DIR}/proj/CMakeLists.txt
  "cmake_minimum_required(VERSION 3.24)\nproject(consumer C)\n"
  "find_package(moe_trtllm 0.1 REQUIRED)\n"
  "add_executable(consumer ${SOURCE_DIR}/tests/install/consumer.c)\n"
  "target_link_libraries(consumer PRIVATE moe_trtllm::moe_trtllm)\n")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${WORK_DIR}/proj -B ${WORK_DIR}/proj/build
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_C_COMPILER=${C_COMPILER}
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc)
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/proj/build RESULT_VARIABLE rc
                  OUTPUT_QUIET)
endif()
if(rc)
  message(FATAL_ERROR "find_package(moe_trtllm) consumer failed to configure or build")
endif()
execute_process(COMMAND ${WORK_DIR}/proj/build/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "find_package consumer failed to run")
endif()
