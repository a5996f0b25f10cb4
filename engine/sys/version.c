// SPDX-License-Identifier: MIT
/* The version of the library running (include/rtioreq/version.h). */
#include "rtioreq/version.h"

unsigned int rtioreq_version(void)
{
	return RTIOREQ_VERSION_HEX;
}

const char *rtioreq_version_string(void)
{
	return RTIOREQ_VERSION_STRING;
}
