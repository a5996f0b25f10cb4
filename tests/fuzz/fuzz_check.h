/* SPDX-License-Identifier: MIT */
/*
 * The fuzz targets' invariant check: a wrong answer aborts, so libFuzzer keeps the input
 * as a crash (a memory error alone is not the only failure). One copy for every target.
 */
#ifndef RTIOREQ_FUZZ_CHECK_H
#define RTIOREQ_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                               \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                  \
			fputc('\n', stderr);                                           \
			abort();                                                       \
		}                                                                      \
	} while (0)

#endif /* RTIOREQ_FUZZ_CHECK_H */
