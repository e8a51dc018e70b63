# Fuzzing the event parser (fluent-bit's pattern). The target always builds
# with a replay main() that runs the saved corpus under CTest with any
# compiler, so past crashes stay regression tests; with TH_FUZZ=ON (clang) the
# same target also links with libFuzzer:
#   CC=clang-14 CXX=clang++-14 cmake -DTH_FUZZ=ON -S . -B build-fuzz
#   cmake --build build-fuzz --target fuzz_event_parse
#   build-fuzz/tests/fuzz_event_parse -dict=tests/fuzz/event.dict \
#     -max_total_time=180 NEW_CORPUS_DIR tests/fuzz/corpus/event
set(TH_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

add_executable(fuzz_event_replay ${TH_FUZZ_DIR}/fuzz_event_parse.c ${TH_FUZZ_DIR}/replay_main.c)
target_link_libraries(fuzz_event_replay PRIVATE thcore)
set_target_properties(fuzz_event_replay PROPERTIES LINKER_LANGUAGE CXX)
add_test(NAME fuzz.replay COMMAND fuzz_event_replay ${TH_FUZZ_DIR}/corpus/event)
set_tests_properties(fuzz.replay PROPERTIES LABELS fuzz-replay)

if(TH_FUZZ)
  add_executable(fuzz_event_parse ${TH_FUZZ_DIR}/fuzz_event_parse.c)
  target_link_libraries(fuzz_event_parse PRIVATE thcore)
  target_link_options(fuzz_event_parse PRIVATE -fsanitize=fuzzer)
  set_target_properties(fuzz_event_parse PROPERTIES LINKER_LANGUAGE CXX)
endif()
