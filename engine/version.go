package engine

import (
	"fmt"

	"github.com/gwipc/gwipc/engine/internal/wire"
)

// Version is gwipc's release version.
const Version = "0.2.0"

// VersionString describes the library and its protocol version, as the
// status endpoint's "version" command answers.
func VersionString() string {
	return fmt.Sprintf("gwipc %s (protocol %d)", Version, wire.Version)
}
