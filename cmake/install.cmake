# SPDX-License-Identifier: MIT
# cmake --install: headers, librtioreq.so (with soname) and librtioreq.a, the rtioreq
# program and its man page, rtioreq.pc, and the CMake package
# (find_package(rtioreq CONFIG) -> rtioreq::rtioreq, rtioreq::rtioreq_static).
include(CMakePackageConfigHelpers)

install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
	FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/rtioreq/version.h
	DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/rtioreq)
install(TARGETS rtioreq rtioreq_static EXPORT rtioreqTargets
	LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
	ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
	INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(RTIOREQ_BUILD_PROGRAM)
	install(TARGETS rtioreq-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
	install(FILES docs/rtioreq.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

# pkg-config: the shared library by default; `pkg-config --static` adds what
# librtioreq.a needs.
set(RTIOREQ_PC_REQUIRES_PRIVATE "liburcu-qsbr")
if(RTIOREQ_BUILD_PROFILES)
	string(APPEND RTIOREQ_PC_REQUIRES_PRIVATE ", libcyaml, yaml-0.1")
endif()
# The .pc file finds the prefix from its own place (pkg-config's ${pcfiledir}), so an
# install with `cmake --install --prefix P` or DESTDIR works where it lands.
file(RELATIVE_PATH RTIOREQ_PC_PREFIX_REL "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
	"${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" RTIOREQ_PC_PREFIX_REL "${RTIOREQ_PC_PREFIX_REL}")
foreach(dir LIBDIR INCLUDEDIR)
	if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
		set(RTIOREQ_PC_${dir} "${CMAKE_INSTALL_${dir}}")
	else()
		set(RTIOREQ_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
	endif()
endforeach()
configure_file(cmake/rtioreq.pc.in rtioreq.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/rtioreq.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

set(RTIOREQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/rtioreq)
install(EXPORT rtioreqTargets NAMESPACE rtioreq:: DESTINATION ${RTIOREQ_CMAKE_DIR})
configure_package_config_file(cmake/rtioreqConfig.cmake.in rtioreqConfig.cmake
	INSTALL_DESTINATION ${RTIOREQ_CMAKE_DIR})
# Before 1.0 a minor release may break the API: only the same MAJOR.MINOR is compatible.
if(PROJECT_VERSION_MAJOR EQUAL 0)
	set(rtioreq_compat SameMinorVersion)
else()
	set(rtioreq_compat SameMajorVersion)
endif()
write_basic_package_version_file(rtioreqConfigVersion.cmake COMPATIBILITY ${rtioreq_compat})
install(FILES ${PROJECT_BINARY_DIR}/rtioreqConfig.cmake
	${PROJECT_BINARY_DIR}/rtioreqConfigVersion.cmake DESTINATION ${RTIOREQ_CMAKE_DIR})
