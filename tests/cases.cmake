# Declarative detection cases: one CTest test per tests/cases/<group>/<name>.jsonl.
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
