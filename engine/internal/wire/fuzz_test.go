package wire

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary packets to the decoder. It must never panic;
// every message it accepts must re-encode to exactly the bytes it came from,
// and every rejection must be a *DecodeError.
func FuzzDecode(f *testing.F) {
	for _, m := range samples {
		b, err := m.Append(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{13, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		for len(p) > 0 {
			m, rest, err := Decode(p)
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %v is not a *DecodeError", err)
				}
				return
			}
			consumed := p[:len(p)-len(rest)]
			again, err := m.Append(nil)
			if err != nil {
				t.Fatalf("re-encoding %T: %v", m, err)
			}
			if !bytes.Equal(again, consumed) {
				t.Fatalf("%T re-encodes to %x, decoded from %x", m, again, consumed)
			}
			p = rest
		}
	})
}
