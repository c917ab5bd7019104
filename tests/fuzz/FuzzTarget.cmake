# tests/fuzz/FuzzTarget.cmake - mg_fuzz_target(): one fuzz target, two builds.
#
#   mg_fuzz_target(NAME fuzz_x SOURCES fuzz_x.c ... [INSTRUMENT lib ...] [LIBS lib ...]
#                  [INCLUDES dir ...] CORPUS dir)
#
# With -DMG_FUZZ=ON (clang): the libFuzzer executable NAME (bin/), the
# sources of the INSTRUMENT libraries compiled into it again with coverage
# (the ordinary libraries stay uninstrumented), and a ctest NAME (label
# fuzz) that fuzzes for MG_FUZZ_SECONDS (default 10) from CORPUS, writing
# what it finds into the build tree, never into the repository.
# Without it (any compiler, `make test`): NAME_replay, the same
# LLVMFuzzerTestOneInput driven by replay.c over every file of CORPUS, as a
# ctest NAME_replay (label unit), so the corpus and every regression input
# in it run on each build.
set(MG_FUZZ_SECONDS 10 CACHE STRING "seconds each fuzz target runs under ctest -L fuzz")

function(mg_fuzz_target)
    cmake_parse_arguments(F "" "NAME;CORPUS" "SOURCES;INSTRUMENT;LIBS;INCLUDES" ${ARGN})
    if(MG_FUZZ)
        set(_sources ${F_SOURCES})
        foreach(_lib IN LISTS F_INSTRUMENT)
            get_target_property(_lib_sources ${_lib} SOURCES)
            get_target_property(_lib_dir ${_lib} SOURCE_DIR)
            foreach(_src IN LISTS _lib_sources)
                if(IS_ABSOLUTE ${_src})
                    list(APPEND _sources ${_src})
                else()
                    list(APPEND _sources ${_lib_dir}/${_src})
                endif()
            endforeach()
        endforeach()
        add_executable(${F_NAME} ${_sources})
        foreach(_lib IN LISTS F_INSTRUMENT)
            target_include_directories(${F_NAME}
                PRIVATE $<TARGET_PROPERTY:${_lib},INCLUDE_DIRECTORIES>)
        endforeach()
        target_include_directories(${F_NAME} PRIVATE ${F_INCLUDES} ${CMAKE_SOURCE_DIR}/tests/fuzz)
        target_compile_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined
            -fno-omit-frame-pointer)
        target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
        target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
        set_target_properties(${F_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
        set(_work ${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}.corpus)
        file(MAKE_DIRECTORY ${_work})
        add_test(NAME ${F_NAME}
                 COMMAND ${CMAKE_BINARY_DIR}/bin/${F_NAME} -max_total_time=${MG_FUZZ_SECONDS}
                         -timeout=20 -rss_limit_mb=2048 ${_work} ${F_CORPUS})
        set_tests_properties(${F_NAME} PROPERTIES LABELS fuzz)
    else()
        add_executable(${F_NAME}_replay ${F_SOURCES} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay.c)
        foreach(_lib IN LISTS F_INSTRUMENT)
            target_include_directories(${F_NAME}_replay
                PRIVATE $<TARGET_PROPERTY:${_lib},INCLUDE_DIRECTORIES>)
        endforeach()
        target_include_directories(${F_NAME}_replay PRIVATE ${F_INCLUDES}
            ${CMAKE_SOURCE_DIR}/tests/fuzz)
        target_link_libraries(${F_NAME}_replay PRIVATE ${F_INSTRUMENT} ${F_LIBS})
        add_test(NAME ${F_NAME}_replay COMMAND ${F_NAME}_replay ${F_CORPUS})
        set_tests_properties(${F_NAME}_replay PROPERTIES LABELS unit)
    endif()
endfunction()
