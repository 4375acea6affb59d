# Helpers shared by every podgate target.

# Warnings as errors on project code (generated code is exempt).
function(podgate_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
                                           -Wno-unused-parameter)
endfunction()

# podgate_test(NAME name SOURCES ... LIBS ... LABELS ...)
# A GoogleTest executable whose tests are discovered one by one, labelled for `ctest -L`.
function(podgate_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;DEFINITIONS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${T_NAME} PRIVATE ${T_DEFINITIONS})
  podgate_warnings(${T_NAME})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  gtest_discover_tests(${T_NAME}
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${T_TIMEOUT})
  # gtest_discover_tests flattens a list-valued LABELS property ("unit;policy" arrives as
  # LABELS unit policy, so only the first label sticks). Set the labels from a ctest include
  # file that runs after the discovered tests are added.
  set(labels_file "${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}_labels.cmake")
  file(WRITE "${labels_file}"
    "set(_tests_file \"${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}[1]_tests.cmake\")\n"
    "if(EXISTS \"\${_tests_file}\")\n"
    "  file(STRINGS \"\${_tests_file}\" _lines REGEX \"^add_test\")\n"
    "  foreach(_line IN LISTS _lines)\n"
    "    if(_line MATCHES \"^add_test\\\\(\\\\[=\\\\[([^]]*)\\\\]=\\\\]\")\n"
    "      set_tests_properties(\"\${CMAKE_MATCH_1}\" PROPERTIES LABELS \"${T_LABELS}\")\n"
    "    endif()\n"
    "  endforeach()\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${labels_file}")
endfunction()
