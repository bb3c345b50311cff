# Smoke run of one benchmark binary (ctest label `bench`): lists its cases and runs only the
# first (by convention the smallest shape on one thread) for a moment. It checks that the binary
# starts, that a case sets up and finishes, and times nothing; the measured runs are
# benchmarks/run's job.
execute_process(COMMAND ${PROGRAM} --benchmark_list_tests=true
                OUTPUT_VARIABLE cases RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} --benchmark_list_tests exited with ${rc}")
endif()
string(REGEX MATCH "^[^\n]+" first "${cases}")
if(first STREQUAL "")
  message(STATUS "${PROGRAM}: no benchmark case registered (missing input data?)")
  return()
endif()
string(REPLACE "." "\\." pattern "${first}")
execute_process(COMMAND ${PROGRAM} --benchmark_min_time=0.01 "--benchmark_filter=^${pattern}$"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} (case ${first}) exited with ${rc}")
endif()
