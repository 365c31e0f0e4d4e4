# libFuzzer targets (issue 15). The project builds with g++, libFuzzer needs clang, so each fuzzer
# is one custom command that compiles the few library sources it needs straight into one binary
# with clang++ -fsanitize=fuzzer,address,undefined (LeakSanitizer included). Used by tests/fuzz and
# tests/vision.
#
#   muse_add_fuzzer(NAME
#     SOURCES <.cc ...>        # the fuzzer's own file first, then the library sources it needs
#     [HEADERS <.h ...>]       # rebuild when these change (globs are fine)
#     [LIBS <-lfoo ...>]       # system libraries besides the absl set below
#     [INCLUDES <dir ...>] [DEFINES <X=Y ...>]
#     [SEEDS <dir>]            # copied into the corpus before each run
#     [SEED_TARGET <exe>]      # or/and: run `<exe> <corpus dir>` to write seeds
#     [DICT <file>] [REGRESSIONS <dir>] [MAX_LEN <bytes>] [SECONDS <ctest run, default 20>])
#
# Each fuzzer gets bin/NAME, a runner fuzz/NAME.sh (`NAME.sh SECONDS [libFuzzer flags...]`: fresh
# corpus from the seeds, every input in REGRESSIONS replayed first, then fuzzing for SECONDS; what
# scripts/fuzz.sh runs) and a ctest entry NAME (label `fuzz`) running it for SECONDS.
#
# Built whenever clang++ can link a -fsanitize=fuzzer program (clang-14 + libclang-rt-14-dev, as
# scripts/setup.sh installs); a clang without the runtime is reported, never silently skipped.

set(MUSE_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
set(MUSE_FUZZ_ABSL_LIBS
    -labsl_status -labsl_statusor -labsl_strings -labsl_strings_internal -labsl_cord
    -labsl_cord_internal -labsl_cordz_info -labsl_cordz_functions -labsl_cordz_handle -labsl_int128
    -labsl_raw_logging_internal -labsl_throw_delegate -labsl_str_format_internal
    -labsl_bad_optional_access -labsl_bad_variant_access -labsl_hash -labsl_city
    -labsl_low_level_hash -labsl_raw_hash_set -labsl_hashtablez_sampler -labsl_synchronization
    -labsl_time -labsl_base -labsl_spinlock_wait)

# Probes once per configure; the answer is a global property so every directory sees it.
function(_muse_fuzz_probe out_var)
  get_property(_done GLOBAL PROPERTY MUSE_FUZZ_PROBED SET)
  if(NOT _done)
    find_program(MUSE_CLANGXX NAMES clang++-14 clang++)
    set(_ok FALSE)
    if(MUSE_CLANGXX)
      set(_probe_dir ${CMAKE_BINARY_DIR}/fuzz/probe)
      file(MAKE_DIRECTORY ${_probe_dir})
      file(WRITE ${_probe_dir}/probe.cc
           "#include <cstddef>\n#include <cstdint>\n"
           "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
      execute_process(COMMAND ${MUSE_CLANGXX} ${MUSE_FUZZ_FLAGS} probe.cc -o probe
                      WORKING_DIRECTORY ${_probe_dir} RESULT_VARIABLE _probe_rc
                      OUTPUT_VARIABLE _probe_out ERROR_VARIABLE _probe_out)
      if(_probe_rc EQUAL 0)
        set(_ok TRUE)
      else()
        message(WARNING "${MUSE_CLANGXX} cannot link -fsanitize=fuzzer (install libclang-rt-14-dev):"
                        " no fuzzers built.\n${_probe_out}")
      endif()
    else()
      message(WARNING "clang++ not found: no fuzzers built "
                      "(apt-get install clang-14 libclang-rt-14-dev)")
    endif()
    set_property(GLOBAL PROPERTY MUSE_FUZZ_PROBED TRUE)
    set_property(GLOBAL PROPERTY MUSE_FUZZ_OK ${_ok})
  endif()
  get_property(_ok GLOBAL PROPERTY MUSE_FUZZ_OK)
  set(${out_var} ${_ok} PARENT_SCOPE)
endfunction()

function(muse_add_fuzzer name)
  cmake_parse_arguments(F "" "SEEDS;SEED_TARGET;DICT;REGRESSIONS;MAX_LEN;SECONDS"
                        "SOURCES;HEADERS;LIBS;INCLUDES;DEFINES" ${ARGN})
  _muse_fuzz_probe(_ok)
  if(NOT _ok)
    return()
  endif()
  if(NOT F_MAX_LEN)
    set(F_MAX_LEN 65536)
  endif()
  if(NOT F_SECONDS)
    set(F_SECONDS 20)
  endif()
  set(_inc -I${PROJECT_SOURCE_DIR})
  foreach(_d IN LISTS F_INCLUDES)
    list(APPEND _inc -I${_d})
  endforeach()
  set(_defs)
  foreach(_d IN LISTS F_DEFINES)
    list(APPEND _defs -D${_d})
  endforeach()
  file(GLOB _hdrs ${F_HEADERS})
  set(_bin ${CMAKE_BINARY_DIR}/bin/${name})
  add_custom_command(
    OUTPUT ${_bin}
    COMMAND ${MUSE_CLANGXX} -std=c++20 -O1 -g -w ${MUSE_FUZZ_FLAGS} ${_inc} ${_defs} ${F_SOURCES}
            -o ${_bin} ${F_LIBS} ${MUSE_FUZZ_ABSL_LIBS}
    DEPENDS ${F_SOURCES} ${_hdrs}
    COMMENT "Building ${name} with ${MUSE_CLANGXX} (libFuzzer + ASan + UBSan)"
    VERBATIM)
  add_custom_target(${name} ALL DEPENDS ${_bin})

  # The runner script: shell-quoted paths, generator expressions resolved at generate time.
  set(_seed_lines "")
  if(F_SEEDS)
    string(APPEND _seed_lines "cp \"${F_SEEDS}\"/* \"$work/corpus/\"\n")
  endif()
  if(F_SEED_TARGET)
    add_dependencies(${name} ${F_SEED_TARGET})
    string(APPEND _seed_lines "\"$<TARGET_FILE:${F_SEED_TARGET}>\" \"$work/corpus\"\n")
  endif()
  set(_dict_flag "")
  if(F_DICT)
    set(_dict_flag "-dict=\"${F_DICT}\"")
  endif()
  set(_regs "")
  if(F_REGRESSIONS)
    set(_regs "${F_REGRESSIONS}")
  endif()
  set(_runner ${CMAKE_BINARY_DIR}/fuzz/${name}.sh)
  file(GENERATE OUTPUT ${_runner} CONTENT
"#!/bin/sh
# Generated by cmake/MuseFuzz.cmake. Usage: ${name}.sh [SECONDS] [libFuzzer flags...]
# Works in \$MUSE_FUZZ_WORKDIR (default ./${name}): a fresh corpus/ from the seeds, the inputs in
# ${_regs} replayed first, crash artifacts written there.
set -e
secs=\${1:-${F_SECONDS}}
[ \$# -gt 0 ] && shift
work=\${MUSE_FUZZ_WORKDIR:-\$PWD/${name}}
rm -rf \"\$work/corpus\"
mkdir -p \"\$work/corpus\"
${_seed_lines}regs=
[ -n \"${_regs}\" ] && [ -d \"${_regs}\" ] && regs=\"${_regs}\"
cd \"\$work\"
exec \"${_bin}\" -max_total_time=\"\$secs\" -max_len=${F_MAX_LEN} -rss_limit_mb=2048 -timeout=10 \\
  ${_dict_flag} -artifact_prefix=./ \"\$@\" corpus \$regs
" FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ
       WORLD_EXECUTE)
  add_test(NAME ${name} COMMAND ${_runner} ${F_SECONDS} WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120 LABELS fuzz)
  set_property(GLOBAL APPEND PROPERTY MUSE_FUZZERS ${name})
endfunction()
