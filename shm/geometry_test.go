package shm

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGeometry(t *testing.T) {
	tests := []struct {
		name       string
		g          Geometry
		wantErr    bool
		wantStride int64
		wantSize   int64
	}{
		{"one byte", Geometry{1, 1}, false, 64, 64},
		{"cache line", Geometry{64, 10}, false, 64, 640},
		{"just above a line", Geometry{65, 2}, false, 128, 256},
		{"page slots", Geometry{4096, 256}, false, 4096, 1 << 20},
		{"max slots", Geometry{64, MaxSlots}, false, 64, 64 << 20},
		{"max bytes", Geometry{4096, MaxSlots}, false, 4096, MaxPoolBytes},
		{"one slot of max bytes", Geometry{MaxPoolBytes - 64, 1}, false, MaxPoolBytes - 64, MaxPoolBytes - 64},
		{"zero size", Geometry{0, 1}, true, 0, 0},
		{"zero count", Geometry{64, 0}, true, 64, 0},
		{"too many slots", Geometry{64, MaxSlots + 1}, true, 64, 64 * (MaxSlots + 1)},
		{"too many bytes", Geometry{4097, MaxSlots}, true, 4160, 4160 * MaxSlots},
		{"largest slot", Geometry{1<<32 - 1, 1}, false, 1 << 32, 1 << 32},
		{"huge slot rounds above max", Geometry{1<<32 - 1, 2}, true, 1 << 32, 1 << 33},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.g.Validate()
			// On 32-bit platforms pools of 2 GiB and more cannot be mapped.
			if tt.wantErr || uint64(tt.g.Size()) > math.MaxInt {
				assert.ErrorIs(t, err, ErrBadGeometry)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tt.wantStride, tt.g.Stride(), "Stride")
			assert.Equal(t, tt.wantSize, tt.g.Size(), "Size")
		})
	}
}
