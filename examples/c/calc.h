/*
 * calc.h - the service shared by method_server.c and method_client.c.
 */
#ifndef EXAMPLE_CALC_H
#define EXAMPLE_CALC_H

#include <gwipc.h>

/* id, major, minor, instance */
#define CALC_SERVICE {"example.calc", 1, 0, "main"}

enum {
    CALC_M_UPPER = 0, /* "abc" -> "ABC", answered later; "" -> application error CALC_E_EMPTY */
    CALC_M_LOG = 1,   /* fire-and-forget: the server prints the text */
    CALC_METHODS = 2
};

#define CALC_E_EMPTY 22 /* application error code: empty request */

#endif
