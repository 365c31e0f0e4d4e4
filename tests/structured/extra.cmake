# Tests beyond the fixed list in CMakeLists.txt, and extra link dependencies.
# regex_test: the regex front end against PCRE2 (the oracle), as frontend_test's regular grammars.
add_executable(structured_regex_test regex_test.cc)
target_link_libraries(structured_regex_test PRIVATE muse_structured GTest::gtest_main)
gtest_discover_tests(structured_regex_test DISCOVERY_TIMEOUT 60)
foreach(t structured_frontend_test structured_regex_test)
  if(TARGET ${t})
    # PCRE2 is the regex oracle the regex front end is compared against.
    target_link_libraries(${t} PRIVATE PkgConfig::PCRE2)
  endif()
endforeach()
if(TARGET structured_matcher_test)
  # The 128k-vocabulary tests read the Llama 3 tokenizer from tests/node (skipped when absent).
  target_compile_definitions(structured_matcher_test PRIVATE MUSE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endif()
# JSON Schema Test Suite conformance (Debian json-schema-test-suite, installed by setup.sh); prints
# the cases used and skipped by keyword.
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/json_schema_suite_test.cc)
  add_executable(structured_json_schema_suite_test json_schema_suite_test.cc)
  target_link_libraries(structured_json_schema_suite_test PRIVATE muse_structured
                        nlohmann_json::nlohmann_json absl::strings GTest::gtest_main)
  target_compile_definitions(structured_json_schema_suite_test
                             PRIVATE MUSE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(structured_json_schema_suite_test DISCOVERY_TIMEOUT 60)
endif()
