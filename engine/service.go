package engine

import (
	"fmt"

	"github.com/gwipc/gwipc/engine/wire"
)

// Interface identifies a service interface: an id and a version.
type Interface struct {
	ID    string // at most 64 bytes, not empty
	Major uint16 // incompatible changes
	Minor uint16 // compatible additions
}

// ServiceID names one service instance.
type ServiceID struct {
	Interface
	Instance string // at most 64 bytes, not empty
}

func (s ServiceID) String() string {
	return fmt.Sprintf("%s/%s@%d.%d", s.ID, s.Instance, s.Major, s.Minor)
}

// Validate reports whether s can be offered or required.
func (s ServiceID) Validate() error {
	switch {
	case s.ID == "" || len(s.ID) > wire.MaxIDLen:
		return fmt.Errorf("%w: service id %q must be 1 to %d bytes", ErrInvalidService, s.ID, wire.MaxIDLen)
	case s.Instance == "" || len(s.Instance) > wire.MaxIDLen:
		return fmt.Errorf("%w: instance id %q must be 1 to %d bytes", ErrInvalidService, s.Instance, wire.MaxIDLen)
	}
	return nil
}

// CompatibleWith reports whether a consumer asking for want can use the
// provider's offer s: same id, major and instance, and want.Minor <= s.Minor.
func (s ServiceID) CompatibleWith(want ServiceID) bool {
	return s.key() == want.key() && want.Minor <= s.Minor
}

// serviceKey is what the node's tables are keyed by: the minor version is
// left out because compatible minors name the same service instance.
type serviceKey struct {
	id       string
	major    uint16
	instance string
}

func (s ServiceID) key() serviceKey { return serviceKey{s.ID, s.Major, s.Instance} }

func (s ServiceID) wire() wire.Service {
	return wire.Service{ID: s.ID, Major: s.Major, Minor: s.Minor, Instance: s.Instance}
}

func serviceFromWire(w wire.Service) ServiceID {
	return ServiceID{Interface: Interface{ID: w.ID, Major: w.Major, Minor: w.Minor}, Instance: w.Instance}
}
