package engine

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/gwipc/gwipc/engine/internal/wire"
)

// Interface identifies a service interface: an id and a version.
type Interface struct {
	ID    string // 1 to 64 bytes of printable UTF-8 without spaces
	Major uint16 // incompatible changes
	Minor uint16 // compatible additions
}

// ServiceID names one service instance.
type ServiceID struct {
	Interface
	Instance string // like ID; "*" is reserved (it means any instance to Find)
}

func (s ServiceID) String() string {
	return fmt.Sprintf("%s/%s@%d.%d", s.ID, s.Instance, s.Major, s.Minor)
}

// Validate reports whether s can be offered or required: the id and the
// instance are 1 to 64 bytes of printable UTF-8 without spaces or control
// characters, and the instance is not "*".
func (s ServiceID) Validate() error {
	if err := validName("service id", s.ID); err != nil {
		return err
	}
	if s.Instance == "*" {
		return fmt.Errorf("%w: instance id %q is reserved for Find", ErrInvalidService, s.Instance)
	}
	return validName("instance id", s.Instance)
}

// validName checks an id or instance: 1 to 64 bytes, valid UTF-8, every rune
// printable and not a space.
func validName(what, s string) error {
	if s == "" || len(s) > wire.MaxIDLen {
		return fmt.Errorf("%w: %s %q must be 1 to %d bytes", ErrInvalidService, what, s, wire.MaxIDLen)
	}
	for i, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%w: %s %q has a space, control character or invalid UTF-8 at byte %d", ErrInvalidService, what, s, i)
		}
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
