# libFuzzer targets (issue 15). The project builds with g++, libFuzzer needs clang, so the fuzzers
# are built by custom commands with clang++: every source is compiled once to an object
# (-fsanitize=fuzzer-no-link,address,undefined) and only the final link adds -fsanitize=fuzzer
# (LeakSanitizer included). A library source that several fuzzers list (the tokenizer, jinja,
# vision and model sources, the generated inference.pb.cc) is compiled once for all of them, and
# each object is its own Ninja job, so the fuzzers build in parallel. Used by tests/fuzz,
# tests/server and tests/vision.
#
#   muse_add_fuzzer(NAME
#     SOURCES <.cc ...>        # the fuzzer's own file first, then the library sources it needs
#     [LIBS <-lfoo ...>]       # system libraries besides the absl set below
#     [INCLUDES <dir ...>] [DEFINES <X=Y ...>]   # for the fuzzer's own file only
#     [DEPENDS <file ...>]     # generated headers the sources include, besides the .pb.h below
#     [HEADERS <...>]          # ignored (older calls): clang's depfiles track the headers
#     [SEEDS <dir>]            # copied into the corpus before each run
#     [SEED_TARGET <exe>]      # or/and: run `<exe> <corpus dir>` to write seeds
#     [DICT <file>] [REGRESSIONS <dir>] [MAX_LEN <bytes>] [SECONDS <ctest run, default 20>])
#
# Library sources compile with one flag set for every fuzzer (MUSE_FUZZ_COMPILE_FLAGS and
# MUSE_FUZZ_LIB_INCLUDES), which is what makes sharing their objects safe; header dependencies
# come from clang's depfiles. A generated source in SOURCES (proto/gen/.../x.pb.cc) makes every
# compile of the fuzzer depend on its x.pb.h; that and DEPENDS are file dependencies, which Ninja
# (the generator every script here uses) resolves across directories, so no fuzzer object waits
# for the whole muse_proto library to compile.
#
# Each fuzzer gets bin/NAME, a runner fuzz/NAME.sh (`NAME.sh SECONDS [libFuzzer flags...]`: fresh
# corpus from the seeds, every input in REGRESSIONS replayed first, then fuzzing for SECONDS; what
# scripts/fuzz.sh runs) and a ctest entry NAME (label `fuzz`) running it for SECONDS.
#
# Built whenever clang++ can link a -fsanitize=fuzzer program (clang-14 + libclang-rt-14-dev, as
# scripts/setup.sh installs); a clang without the runtime is reported, never silently skipped.

set(MUSE_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
set(MUSE_FUZZ_COMPILE_FLAGS -std=c++20 -O1 -g -w
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)
find_package(JPEG QUIET)
find_package(PNG QUIET)
set(MUSE_FUZZ_LIB_INCLUDES ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/proto/gen
    ${JPEG_INCLUDE_DIR} ${PNG_PNG_INCLUDE_DIR})
list(REMOVE_DUPLICATES MUSE_FUZZ_LIB_INCLUDES)
list(REMOVE_ITEM MUSE_FUZZ_LIB_INCLUDES /usr/include)  # a system dir as -I breaks #include_next
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

# One clang++ compile of src into obj (a Ninja job of its own, header deps from the depfile).
function(_muse_fuzz_compile src obj)
  cmake_parse_arguments(C "" "" "FLAGS;DEPENDS" ${ARGN})
  get_filename_component(_dir ${obj} DIRECTORY)
  file(MAKE_DIRECTORY ${_dir})
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${MUSE_CLANGXX} ${MUSE_FUZZ_COMPILE_FLAGS} ${C_FLAGS} -MD -MF ${obj}.d -MT ${obj}
            -c ${src} -o ${obj}
    DEPENDS ${src} ${C_DEPENDS}
    DEPFILE ${obj}.d
    COMMENT "Compiling ${src} for the fuzzers (clang++, libFuzzer + ASan + UBSan)"
    VERBATIM)
endfunction()

# The object of a library source, compiled the first time any fuzzer lists it. Objects live under
# fuzz/obj/ named after the source's path; the first fuzzer to list one owns its rule (written in
# that fuzzer's directory, built by its <fuzzer>_objects target). out_owner is that target when
# another fuzzer owns the object, else empty (the object is new and now owned by `owner`).
function(_muse_fuzz_library_object src owner deps out_obj out_owner)
  cmake_path(SET src NORMALIZE "${src}")
  cmake_path(IS_PREFIX PROJECT_BINARY_DIR "${src}" NORMALIZE _generated)
  if(_generated)
    cmake_path(RELATIVE_PATH src BASE_DIRECTORY ${PROJECT_BINARY_DIR} OUTPUT_VARIABLE _rel)
    set(_rel gen/${_rel})
  else()
    cmake_path(RELATIVE_PATH src BASE_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _rel)
  endif()
  set(_obj ${CMAKE_BINARY_DIR}/fuzz/obj/${_rel}.o)
  get_property(_owner GLOBAL PROPERTY "MUSE_FUZZ_OBJ_OWNER:${src}")
  if(NOT _owner)
    set(_inc)
    foreach(_d IN LISTS MUSE_FUZZ_LIB_INCLUDES)
      list(APPEND _inc -I${_d})
    endforeach()
    _muse_fuzz_compile(${src} ${_obj} FLAGS ${_inc} DEPENDS ${deps})
    set_property(GLOBAL PROPERTY "MUSE_FUZZ_OBJ_OWNER:${src}" ${owner})
  endif()
  set(${out_obj} ${_obj} PARENT_SCOPE)
  set(${out_owner} "${_owner}" PARENT_SCOPE)
endfunction()

function(muse_add_fuzzer name)
  cmake_parse_arguments(F "" "SEEDS;SEED_TARGET;DICT;REGRESSIONS;MAX_LEN;SECONDS"
                        "SOURCES;LIBS;INCLUDES;DEFINES;DEPENDS;HEADERS" ${ARGN})
  if(F_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "muse_add_fuzzer(${name}): unknown arguments ${F_UNPARSED_ARGUMENTS}")
  endif()
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

  foreach(_src IN LISTS F_SOURCES)
    if(_src MATCHES "^(${PROJECT_BINARY_DIR}/.*)\\.pb\\.cc$")
      list(APPEND F_DEPENDS ${CMAKE_MATCH_1}.pb.h)
    endif()
  endforeach()

  # The fuzzer's own file: its INCLUDES and DEFINES apply here only.
  list(POP_FRONT F_SOURCES _main)
  list(REMOVE_DUPLICATES F_SOURCES)
  set(_incs ${MUSE_FUZZ_LIB_INCLUDES} ${F_INCLUDES})
  list(REMOVE_DUPLICATES _incs)
  list(REMOVE_ITEM _incs /usr/include)
  set(_flags)
  foreach(_d IN LISTS _incs)
    list(APPEND _flags -I${_d})
  endforeach()
  foreach(_d IN LISTS F_DEFINES)
    list(APPEND _flags -D${_d})
  endforeach()
  set(_main_obj ${CMAKE_BINARY_DIR}/fuzz/obj/${name}/${name}.o)
  _muse_fuzz_compile(${_main} ${_main_obj} FLAGS ${_flags} DEPENDS ${F_DEPENDS})

  set(_objs ${_main_obj})
  set(_owned ${_main_obj})
  set(_other_owners)
  foreach(_src IN LISTS F_SOURCES)
    _muse_fuzz_library_object(${_src} ${name}_objects "${F_DEPENDS}" _obj _owner)
    list(APPEND _objs ${_obj})
    if(_owner)
      list(APPEND _other_owners ${_owner})
    else()
      list(APPEND _owned ${_obj})
    endif()
  endforeach()
  add_custom_target(${name}_objects DEPENDS ${_owned})

  set(_bin ${CMAKE_BINARY_DIR}/bin/${name})
  add_custom_command(
    OUTPUT ${_bin}
    COMMAND ${MUSE_CLANGXX} ${MUSE_FUZZ_FLAGS} ${_objs} -o ${_bin} ${F_LIBS} ${MUSE_FUZZ_ABSL_LIBS}
    DEPENDS ${_objs}
    COMMENT "Linking ${name} with ${MUSE_CLANGXX} (libFuzzer + ASan + UBSan)"
    VERBATIM)
  add_custom_target(${name} ALL DEPENDS ${_bin})
  add_dependencies(${name} ${name}_objects)
  list(REMOVE_DUPLICATES _other_owners)
  foreach(_o IN LISTS _other_owners)
    add_dependencies(${name} ${_o})
  endforeach()

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
