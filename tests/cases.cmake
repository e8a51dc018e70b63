# Declarative detection cases: one CTest test per tests/cases/<group>/<name>.jsonl
# (a no-alert case's test also runs its positive twin; see tests/run_cases.py).
find_package(Python3 REQUIRED COMPONENTS Interpreter)
file(GLOB_RECURSE TH_CASES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cases/*.jsonl)
list(FILTER TH_CASES EXCLUDE REGEX "\\.expected\\.jsonl$")
foreach(case ${TH_CASES})
  file(RELATIVE_PATH rel ${CMAKE_CURRENT_SOURCE_DIR}/cases ${case})
  string(REGEX REPLACE "\\.jsonl$" "" rel ${rel})
  string(REPLACE "/" "." name ${rel})
  add_test(NAME case.${name}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_cases.py
      --trailhound $<TARGET_FILE:trailhound> --shared ${TH_SHARED_DATA} ${case})
  set_tests_properties(case.${name} PROPERTIES LABELS cases)
endforeach()

# The committed case files are exactly what make_cases.py generates (INDEX.md included).
add_test(NAME cases.generated_up_to_date
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cases/make_cases.py --check
    --trailhound $<TARGET_FILE:trailhound>)
# The runner reports a missing or wrong twin and a wrong counter (broken copies of real cases).
add_test(NAME cases.runner_can_fail
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/cases/selftest_runner.py
    --trailhound $<TARGET_FILE:trailhound> --shared ${TH_SHARED_DATA})
set_tests_properties(cases.generated_up_to_date cases.runner_can_fail PROPERTIES LABELS cases)
