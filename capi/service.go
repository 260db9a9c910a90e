package main

/*
#include "capi.h"
*/
import "C"

import (
	"github.com/gwipc/gwipc/engine"
)

// serviceID converts a gwipc_service_id (NULL pointers: GWIPC_E_INVAL).
func serviceID(svc C.capi_csvc) (engine.ServiceID, error) {
	if svc == nil {
		return engine.ServiceID{}, errNull
	}
	id, err := goString(svc.id, "service id")
	if err != nil {
		return engine.ServiceID{}, err
	}
	instance, err := goString(svc.instance, "instance id")
	if err != nil {
		return engine.ServiceID{}, err
	}
	return engine.ServiceID{Interface: engine.Interface{ID: id, Major: uint16(svc.major), Minor: uint16(svc.minor)},
		Instance: instance}, nil
}

//export capi_service_validate
func capi_service_validate(svc C.capi_csvc) C.int {
	return check(nil, func() error {
		s, err := serviceID(svc)
		if err != nil {
			return err
		}
		return s.Validate()
	})
}

//export capi_service_compatible
func capi_service_compatible(offered, wanted C.capi_csvc) C.int {
	return run(nil, func() (int, error) {
		o, err := serviceID(offered)
		if err != nil {
			return 0, err
		}
		w, err := serviceID(wanted)
		if err != nil {
			return 0, err
		}
		if o.CompatibleWith(w) {
			return 1, nil
		}
		return 0, nil
	})
}
