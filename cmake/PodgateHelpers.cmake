# Helpers shared by every podgate target.

# Warnings as errors on project code (generated code is exempt).
function(podgate_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
                                           -Wno-unused-parameter)
endfunction()

# podgate_test(NAME name SOURCES ... LIBS ... LABELS ... [VARIANT v VARIANT_ENVIRONMENT K=V])
# A GoogleTest executable whose tests are discovered one by one, labelled for `ctest -L`.
function(podgate_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT;VARIANT;VARIANT_ENVIRONMENT"
                        "SOURCES;LIBS;LABELS;DEFINITIONS" ${ARGN})
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
  # Labels are set by a script ctest includes after discovery: a list value ("unit;audit")
  # does not survive gtest_discover_tests' PROPERTIES (it arrives split into two arguments).
  set(label_script "${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}_labels.cmake")
  file(WRITE "${label_script}"
    "if(${T_NAME}_TESTS)\n  set_tests_properties(\${${T_NAME}_TESTS} PROPERTIES LABELS \"${T_LABELS}\")\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${label_script}")
  # VARIANT: the same tests once more, named "<VARIANT>.<test>", with VARIANT_ENVIRONMENT set.
  if(T_VARIANT)
    gtest_discover_tests(${T_NAME}
      TEST_PREFIX "${T_VARIANT}."
      TEST_LIST ${T_NAME}_${T_VARIANT}_TESTS
      DISCOVERY_TIMEOUT 60
      PROPERTIES TIMEOUT ${T_TIMEOUT} ENVIRONMENT "${T_VARIANT_ENVIRONMENT}")
    set(variant_script "${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}_${T_VARIANT}_labels.cmake")
    file(WRITE "${variant_script}"
      "if(${T_NAME}_${T_VARIANT}_TESTS)\n  set_tests_properties(\${${T_NAME}_${T_VARIANT}_TESTS} PROPERTIES LABELS \"${T_LABELS}\")\nendif()\n")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${variant_script}")
  endif()
  # For the per-label build targets (tests-<label>, top-level CMakeLists.txt).
  foreach(label IN LISTS T_LABELS)
    set_property(GLOBAL APPEND PROPERTY PODGATE_TEST_LABELS ${label})
    set_property(GLOBAL APPEND PROPERTY PODGATE_TESTS_${label} ${T_NAME})
  endforeach()
endfunction()
