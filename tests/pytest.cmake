# Python end-to-end tests of the CLI (pytest), one CTest test per file.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
foreach(t test_scan test_avro_python test_detect_v2 test_dedup_order test_backtest
    test_schema_evolution test_deploy test_architecture test_produce_cli test_kafka_locks
    test_state_churn test_alert_fields)
  add_test(NAME py.${t}
    COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/${t}.py)
  set_tests_properties(py.${t} PROPERTIES LABELS e2e
    ENVIRONMENT "TH_BIN=$<TARGET_FILE:trailhound>;TH_SHARED=${TH_SHARED_DATA};TH_SRC=${CMAKE_SOURCE_DIR}")
endforeach()

# The sample generator's own tests (determinism, framings, an independent model of the rules).
add_test(NAME py.test_gen_sample
  COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider ${CMAKE_SOURCE_DIR}/tools/test_gen_sample.py)
set_tests_properties(py.test_gen_sample PROPERTIES LABELS e2e
  ENVIRONMENT "TRAILHOUND=$<TARGET_FILE:trailhound>;TH_SHARED=${TH_SHARED_DATA};TH_SRC=${CMAKE_SOURCE_DIR}")

# In the sanitizer build (scripts/test.sh's second pass) the two longest of
# them start first (COST; CI builds afresh, so CTest has no timings of its own
# to order by). There py.test_backtest takes ~6 min and, declared near the end,
# it started when 205 of 216 tests were done and ran alone for its last ~4 min.
# Below the Kafka tests' costs (tests/kafka.cmake): a worker test whose lock is
# free still goes first. Not in the first pass: there they take 1-1.5 min, and
# the Kafka lock chain, nearly as long as that pass, should start at once.
if(TH_SANITIZE)
  set_tests_properties(py.test_backtest PROPERTIES COST 60)
  set_tests_properties(py.test_scan PROPERTIES COST 50)
endif()
