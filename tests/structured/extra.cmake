# Extra link dependencies of individual structured tests.
if(TARGET structured_frontend_test)
  # PCRE2 is the regex oracle the regex front end is compared against.
  target_link_libraries(structured_frontend_test PRIVATE PkgConfig::PCRE2)
endif()
if(TARGET structured_matcher_test)
  # The 128k-vocabulary tests read the Llama 3 tokenizer from tests/node (skipped when absent).
  target_compile_definitions(structured_matcher_test PRIVATE MUSE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
endif()
