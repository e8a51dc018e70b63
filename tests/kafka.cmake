# Kafka integration tests against a real single-node broker (scripts/kafka-local.sh):
# one CTest test per tests/kafka/test_kafka_*.py (pytest), label `kafka`.
#
# The broker is a CTest fixture: kafka.broker.start runs before the first of them
# (the first start fetches the jars with Maven, hence its long timeout) and
# kafka.broker.stop after the last. RESOURCE_LOCK kafka runs the worker tests one
# at a time (they share the broker and kill -9/restart workers with
# timing-sensitive steps), while the bridge's tests and other labels may run
# alongside under `ctest -j` (below).
#
# Environment of the tests, like tests/pytest.cmake: TH_BIN (the binary), TH_SHARED
# (reference data, used in place), TH_SRC (the repository). Each file gets its own
# pytest --basetemp under the build directory: worker logs and state dirs of the
# last run stay there for a post-mortem.
find_package(Python3 REQUIRED COMPONENTS Interpreter)

add_test(NAME kafka.broker.start COMMAND ${CMAKE_SOURCE_DIR}/scripts/kafka-local.sh start)
set_tests_properties(kafka.broker.start PROPERTIES
  FIXTURES_SETUP kafka LABELS kafka TIMEOUT 900 RESOURCE_LOCK kafka)
add_test(NAME kafka.broker.stop COMMAND ${CMAKE_SOURCE_DIR}/scripts/kafka-local.sh stop)
set_tests_properties(kafka.broker.stop PROPERTIES
  FIXTURES_CLEANUP kafka LABELS kafka TIMEOUT 120 RESOURCE_LOCK kafka)

file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/kafka-tmp)
file(GLOB TH_KAFKA_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/kafka/test_kafka_*.py)
foreach(py ${TH_KAFKA_TESTS})
  get_filename_component(name ${py} NAME_WE)
  string(REPLACE "test_kafka_" "" short ${name})
  add_test(NAME kafka.${short}
    COMMAND ${Python3_EXECUTABLE} -m pytest -q -s -p no:cacheprovider --durations=0
            --basetemp=${CMAKE_CURRENT_BINARY_DIR}/kafka-tmp/${short} ${py}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/kafka)
  # The bridge's tests spend their time waiting on moto and SQS visibility
  # timeouts, on topics and ports of their own: they take a lock of their own
  # and run alongside the worker tests. The tests that freeze (SIGSTOP) or stop
  # the shared broker take both locks (py.test_kafka_locks checks it): a broker
  # gone under a test that runs alongside fails it, and a test file starting
  # meanwhile starts a broker of its own and stops it when done. The longest
  # start first (COST).
  if(short STREQUAL "bridge")
    set(lock kafka-bridge)
    set(cost 1000)
  elseif(short STREQUAL "outage" OR short STREQUAL "fencing" OR short STREQUAL "bridge_brokers")
    set(lock "kafka;kafka-bridge")
    set(cost 500)
  else()
    set(lock kafka)
    set(cost 100)
  endif()
  set_tests_properties(kafka.${short} PROPERTIES
    FIXTURES_REQUIRED kafka LABELS kafka TIMEOUT 600 RESOURCE_LOCK "${lock}" COST ${cost}
    ENVIRONMENT "TH_BIN=$<TARGET_FILE:trailhound>;TH_SHARED=${TH_SHARED_DATA};TH_SRC=${CMAKE_SOURCE_DIR}")
endforeach()
