# End-to-end tests of the state store and alert text through the CLI
# (tests/test_state_cli.py): legal long identifiers, UTF-8 cuts, an untrusted
# store, inspect on a read-only filesystem.
add_test(NAME py.test_state_cli
  COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider
          ${CMAKE_CURRENT_SOURCE_DIR}/test_state_cli.py)
set_tests_properties(py.test_state_cli PROPERTIES LABELS e2e
  ENVIRONMENT "TH_BIN=$<TARGET_FILE:trailhound>;TH_SHARED=${TH_SHARED_DATA};TH_SRC=${CMAKE_SOURCE_DIR}")
