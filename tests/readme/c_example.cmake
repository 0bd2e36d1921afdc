# ctest "readme_c_example": the README's C section is examples/forward.c as it is (the file the
# tests compile and run), so the example in the README compiles as pasted.
# Usage: cmake -DREADME=README.md -DEXAMPLE=examples/forward.c -P c_example.cmake
file(READ ${README} readme)
file(READ ${EXAMPLE} example)
string(FIND "${readme}" "```c\n" begin)
if(begin LESS 0)
  message(FATAL_ERROR "${README}: no ```c block")
endif()
math(EXPR begin "${begin} + 5")
string(SUBSTRING "${readme}" ${begin} -1 rest)
string(FIND "${rest}" "```\n" end)
string(SUBSTRING "${rest}" 0 ${end} block)
if(NOT block STREQUAL example)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/readme_block.c "${block}")
  message(FATAL_ERROR "the README's ```c block differs from ${EXAMPLE} "
                      "(block written to ${CMAKE_CURRENT_BINARY_DIR}/readme_block.c)")
endif()
message(STATUS "README C example == ${EXAMPLE}")
