# ctest "bench_plot": bench/plot.py draws moe-bench --json rows: the committed GPU sample
# (tests/bench/h100_sample.jsonl: rows of docs/performance.md's H100 table, with floors and
# same-run ceilings) and rows the CPU bench writes now (no floor). Each must give a PNG.
# Usage: cmake -DPYTHON=<python3 with matplotlib> -DBENCH=<moe-bench> -DSOURCE_DIR=<repo>
#        -DWORK_DIR=<scratch> -P plot.cmake
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
execute_process(COMMAND ${BENCH} --backend cpu --preset qwen3-30b,mixtral-8x7b --tokens 1,2
                        --iters 1 --cpu-weight-gb 0.1 --json
                OUTPUT_FILE ${WORK_DIR}/cpu.jsonl ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "moe-bench --json failed (${rc}): ${err}")
endif()
foreach(input ${SOURCE_DIR}/tests/bench/h100_sample.jsonl ${WORK_DIR}/cpu.jsonl)
  get_filename_component(name ${input} NAME_WE)
  set(png ${WORK_DIR}/${name}.png)
  execute_process(COMMAND ${PYTHON} ${SOURCE_DIR}/bench/plot.py ${input} -o ${png}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "plot.py ${input} failed (${rc}; Debian: apt-get install "
                        "python3-matplotlib):\n${out}${err}")
  endif()
  if(NOT EXISTS ${png})
    message(FATAL_ERROR "plot.py ${input} wrote no ${png}")
  endif()
  file(READ ${png} magic LIMIT 8 HEX)
  file(SIZE ${png} size)
  if(NOT magic STREQUAL "89504e470d0a1a0a" OR size LESS 20000)
    message(FATAL_ERROR "${png} is not a PNG of a figure (${size} bytes, starts ${magic})")
  endif()
  if(NOT out MATCHES "plot.py: [0-9]+ cells of 2 presets")
    message(FATAL_ERROR "plot.py ${input}: expected 2 presets, printed: ${out}")
  endif()
endforeach()
message(STATUS "bench/plot.py: GPU sample and CPU rows drawn")
