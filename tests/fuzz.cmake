# Fuzz targets (fluent-bit's pattern). Each target always builds with a
# replay main() (tests/fuzz/replay_main.c) that runs its committed corpus
# tests/fuzz/corpus/<corpus>/ under CTest with any compiler (test
# fuzz.replay.<corpus>, label fuzz-replay), so past crashes and the corpus
# stay regression tests; with TH_FUZZ=ON (clang) it also links with libFuzzer.
#
#   fuzz_event_parse  the parser and file framing alone          corpus/event
#   fuzz_pipeline     JSON lines → parser → detector (LMDB state in a scratch
#                     dir on /dev/shm, enrichment from TH_SHARED_DATA) →
#                     commits → JSON and Avro alerts, with oracles    corpus/pipeline
#   fuzz_config       config file and --set key=value parsing     corpus/config
#   fuzz_awsranges    ip-ranges.json walker + loader + lookups    corpus/awsranges
#   fuzz_records      state/changelog record decoders, round trip, th_key
#                                                                 corpus/records
#   fuzz_avro         Avro + JSON alert encoders on fuzzed strings corpus/avro
#
# Findings, run logs and known-crash reproducers: tests/fuzz/FINDINGS.md and
# tests/fuzz/crashes/<target>/ (NOT replayed: they crash until fixed; move a
# reproducer into corpus/<corpus>/ once its fix is merged).
#
# Running a campaign (ASan+UBSan+libFuzzer; the machine is shared, so nice
# it and run at most two fuzzers at once):
#
#   CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DTH_FUZZ=ON
#   cmake --build build-fuzz -j2 --target fuzz_all
#   # seeds from the shared reference data, generated at run time (never
#   # committed): stratus logs as small JSON-lines stories, ip-ranges.json cut
#   python3 tests/fuzz/make_seeds.py --shared ../shared/data --out build-fuzz/seeds
#   T=pipeline; mkdir -p build-fuzz/corpus-$T
#   nice -n 10 build-fuzz/tests/fuzz_$T -fork=1 -ignore_crashes=1 \
#     -max_total_time=600 -max_len=65536 -timeout=30 -rss_limit_mb=2048 \
#     -dict=tests/fuzz/event.dict -artifact_prefix=build-fuzz/crash-$T- \
#     build-fuzz/corpus-$T tests/fuzz/corpus/$T build-fuzz/seeds/$T
#   # (-dict: event.dict for event_parse/pipeline, config.dict for config,
#   #  awsranges.dict for awsranges; none for records/avro.
#   #  -max_len: 65536 for pipeline/awsranges, 8192 for the others.)
#   # minimise the new corpus into the committed one (keep it under ~2 MB):
#   nice -n 10 build-fuzz/tests/fuzz_$T -merge=1 -max_len=65536 \
#     tests/fuzz/corpus/$T build-fuzz/corpus-$T
#   # a crash: reproduce with build-fuzz/tests/fuzz_$T FILE, or under the
#   # normal build with build/tests/fuzz_${T}_replay FILE; save it as
#   # tests/fuzz/crashes/$T/crash-<what> and describe it in FINDINGS.md.
#
# tests/fuzz/run_campaign.sh does the above for every target.
set(TH_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

add_library(th_fuzz_common STATIC ${TH_FUZZ_DIR}/fuzz_common.c ${TH_FUZZ_DIR}/fuzz_json.cpp)
target_link_libraries(th_fuzz_common PUBLIC thcore)
target_compile_definitions(th_fuzz_common PRIVATE TH_SHARED_DATA="${TH_SHARED_DATA}")

add_custom_target(fuzz_all)

# th_fuzz_target(<name> <corpus dir name>): tests/fuzz/fuzz_<name>.c
function(th_fuzz_target name corpus)
  set(src ${TH_FUZZ_DIR}/fuzz_${name}.c)
  add_executable(fuzz_${name}_replay ${src} ${TH_FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_${name}_replay PRIVATE th_fuzz_common)
  target_compile_definitions(fuzz_${name}_replay PRIVATE TH_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
  # fuzz_awsranges reaches the ip-ranges walker's private header in src/.
  target_include_directories(fuzz_${name}_replay PRIVATE ${TH_FUZZ_DIR} ${CMAKE_SOURCE_DIR}/src)
  set_target_properties(fuzz_${name}_replay PROPERTIES LINKER_LANGUAGE CXX)
  add_test(NAME fuzz.replay.${corpus}
    COMMAND fuzz_${name}_replay ${TH_FUZZ_DIR}/corpus/${corpus})
  set_tests_properties(fuzz.replay.${corpus} PROPERTIES LABELS fuzz-replay)
  if(TH_FUZZ)
    add_executable(fuzz_${name} ${src})
    target_link_libraries(fuzz_${name} PRIVATE th_fuzz_common)
    target_compile_definitions(fuzz_${name} PRIVATE TH_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
    target_include_directories(fuzz_${name} PRIVATE ${TH_FUZZ_DIR} ${CMAKE_SOURCE_DIR}/src)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    set_target_properties(fuzz_${name} PROPERTIES LINKER_LANGUAGE CXX)
    add_dependencies(fuzz_all fuzz_${name})
  endif()
endfunction()

th_fuzz_target(event_parse event)
th_fuzz_target(pipeline pipeline)
th_fuzz_target(config config)
th_fuzz_target(awsranges awsranges)
th_fuzz_target(records records)
th_fuzz_target(avro avro)
