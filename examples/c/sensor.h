/*
 * sensor.h - the service shared by sensor_daemon.c and consumer.c.
 *
 * A service is identified by an interface id, a version and an instance.
 * Both sides must agree on the event and method ids: they are just numbers
 * (0..events-1, 0..methods-1) fixed by this header.
 */
#ifndef EXAMPLE_SENSOR_H
#define EXAMPLE_SENSOR_H

#include <gwipc.h>

/* id, major, minor, instance */
#define SENSOR_SERVICE {"example.sensor", 1, 0, "kitchen"}

enum {
    SENSOR_EV_READING = 0,  /* event: "21.53" (degrees Celsius), one per interval */
    SENSOR_EV_SETPOINT = 1, /* field: "20.0", the target temperature (cached) */
    SENSOR_EVENTS = 2
};

enum {
    SENSOR_M_SET_SETPOINT = 0, /* request "22.5" -> reply "old=20.0"; app error 1 if not a number */
    SENSOR_METHODS = 1
};

#endif
