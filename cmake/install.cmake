# Install rules: headers, both libraries, the ravel::ravel CMake package and ravel.pc.
install(TARGETS ravel ravel_static EXPORT ravelTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/ravel.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/ravel DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT ravelTargets NAMESPACE ravel:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ravel)
configure_package_config_file(cmake/ravel-config.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/ravel-config.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ravel)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ravel-config-version.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ravel-config.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/ravel-config-version.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ravel)
configure_file(cmake/ravel.pc.in ${CMAKE_CURRENT_BINARY_DIR}/ravel.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ravel.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
