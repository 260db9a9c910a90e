package simpleipc

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriterGolden(t *testing.T) {
	big := strings.Repeat("x", MaxPacketData)
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"empty message", nil, "0000"},
		{"zero-length write writes nothing", []string{""}, "0000"},
		{"ping", []string{"ping"}, "0008ping0000"},
		{"lowercase hex", []string{"0123456789"}, "000e01234567890000"},
		{"two writes two packets", []string{"ab", "", "cd"}, "0006ab0006cd0000"},
		{"max packet", []string{big}, "fff0" + big + "0000"},
		{"65517 bytes split in two", []string{big + "y"}, "fff0" + big + "0005y0000"},
		{"binary kept", []string{"a\x00\nb"}, "0008a\x00\nb0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			pw := packetWriter{w: &buf}
			for _, w := range tt.writes {
				n, err := pw.Write([]byte(w))
				require.NoError(t, err)
				assert.Equal(t, len(w), n)
			}
			require.NoError(t, pw.Flush())
			got := buf.String()
			if len(got) > 80 || len(tt.want) > 80 {
				require.Equal(t, len(tt.want), len(got), "length")
				require.True(t, got == tt.want, "bytes differ")
				return
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestWriteMessageGolden(t *testing.T) {
	big := strings.Repeat("x", MaxPacketData)
	for _, tt := range []struct{ in, want string }{
		{"", "0000"},
		{"ping", "0008ping0000"},
		{big + "y", "fff0" + big + "0005y0000"},
		{big, "fff0" + big + "0000"},
	} {
		var buf bytes.Buffer
		pw := packetWriter{w: &buf}
		require.NoError(t, pw.WriteMessage([]byte(tt.in)))
		require.True(t, buf.String() == tt.want, "message of %d bytes", len(tt.in))
	}
	pw := packetWriter{w: io.Discard}
	data := make([]byte, 100)
	assert.Zero(t, testing.AllocsPerRun(100, func() { pw.WriteMessage(data) }))
}

func TestWriterSplitsLongPayload(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 100000) // 1.6 MB
	var buf bytes.Buffer
	pw := packetWriter{w: &buf}
	_, err := pw.Write(data)
	require.NoError(t, err)
	out := buf.Bytes()
	full := len(data) / MaxPacketData
	rest := len(data) % MaxPacketData
	require.Equal(t, len(data)+4*(full+1), len(out))
	for i := 0; i < full; i++ {
		assert.Equal(t, "fff0", string(out[i*MaxPacketSize:i*MaxPacketSize+4]))
	}
	var h [4]byte
	putHeader(&h, rest+4)
	assert.Equal(t, string(h[:]), string(out[full*MaxPacketSize:full*MaxPacketSize+4]))
}

// cutWriter takes room bytes, then fails once with errCut; after that it
// takes everything again, so only the packetWriter itself can keep a
// broken message from being finished.
type cutWriter struct {
	buf    bytes.Buffer
	room   int
	failed bool
}

var errCut = errors.New("cut")

func (w *cutWriter) Write(p []byte) (int, error) {
	if !w.failed && len(p) > w.room {
		w.failed = true
		n, _ := w.buf.Write(p[:w.room])
		return n, errCut
	}
	if !w.failed {
		w.room -= len(p)
	}
	return w.buf.Write(p)
}

func TestWriterErrorSticks(t *testing.T) {
	// The second packet is cut inside its header: "0006ab" + "00". A flush
	// written after that would read as "0006ab" + "0000", the complete
	// message "ab".
	w := &cutWriter{room: 8}
	pw := packetWriter{w: w}
	_, err := pw.Write([]byte("ab"))
	require.NoError(t, err)
	_, err = pw.Write([]byte("cd"))
	require.ErrorIs(t, err, errCut)

	n, err := pw.Write([]byte("ef"))
	assert.ErrorIs(t, err, errCut)
	assert.Zero(t, n)
	assert.ErrorIs(t, pw.Flush(), errCut)
	assert.ErrorIs(t, pw.WriteMessage([]byte("gh")), errCut)
	require.Equal(t, "0006ab00", w.buf.String(), "nothing written after the failure")

	pr := packetReader{r: &w.buf}
	_, err = pr.readMessage(0)
	assert.ErrorIs(t, err, ErrTruncated)
}

func TestWriterAllocs(t *testing.T) {
	pw := packetWriter{w: io.Discard}
	data := make([]byte, 3*MaxPacketData+7)
	allocs := testing.AllocsPerRun(100, func() {
		pw.Write(data)
		pw.Flush()
	})
	assert.Zero(t, allocs)
}

func TestReadMessageVectors(t *testing.T) {
	big := strings.Repeat("z", MaxPacketData)
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
		rest    string // bytes that must remain unread
	}{
		{name: "empty request", in: "0000", want: ""},
		{name: "ping", in: "0008ping0000", want: "ping"},
		{name: "two packets concatenated", in: "0006ab0006cd0000", want: "abcd"},
		{name: "upper-case hex", in: "000A" + "abcdef" + "0000", want: "abcdef"},
		{name: "mixed-case hex", in: "000aabcdef" + "0000", want: "abcdef"},
		{name: "max packet fff0", in: "fff0" + big + "0000", want: big},
		{name: "max packet FFF0", in: "FFF0" + big + "0000", want: big},
		{name: "65517 bytes in two packets", in: "fff0" + big + "0005y0000", want: big + "y"},
		{name: "delim 0001 ends message", in: "0008ping0001" + "0008more0000", want: "ping", rest: "0008more0000"},
		{name: "response-end 0002 ends message", in: "0008ping0002tail", want: "ping", rest: "tail"},
		{name: "empty data packet 0004 ends message", in: "00040008ping0000", want: "", rest: "0008ping0000"},
		{name: "0004 after data", in: "0008ping00040005x0000", want: "ping", rest: "0005x0000"},
		{name: "bytes after flush left unread", in: "0008ping0000junk", want: "ping", rest: "junk"},
		{name: "newlines and NUL kept", in: "0009a\nb\x00c0000", want: "a\nb\x00c"},
		{name: "0003 is an error", in: "0003", wantErr: ErrProtocol},
		{name: "0003 after data", in: "0005x0003", wantErr: ErrProtocol},
		{name: "non-hex", in: "00g8ping0000", wantErr: ErrProtocol},
		{name: "non-hex space", in: " 008ping0000", wantErr: ErrProtocol},
		{name: "fff1 oversize", in: "fff1" + big + "x0000", wantErr: ErrProtocol},
		{name: "ffff oversize", in: "ffff", wantErr: ErrProtocol},
		{name: "EOF at start", in: "", wantErr: io.EOF},
		{name: "EOF before flush", in: "0008ping", wantErr: ErrTruncated},
		{name: "EOF inside header", in: "0008ping00", wantErr: ErrTruncated},
		{name: "EOF inside first header", in: "00", wantErr: io.ErrUnexpectedEOF},
		{name: "EOF inside payload", in: "0008pi", wantErr: ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReader(tt.in)
			pr := packetReader{r: r}
			got, err := pr.readMessage(0)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, got)
			assert.True(t, string(got) == tt.want, "message: got %d bytes, want %d", len(got), len(tt.want))
			rest, _ := io.ReadAll(r)
			assert.Equal(t, tt.rest, string(rest), "unread bytes")

			// The streaming reader agrees.
			var out bytes.Buffer
			pr = packetReader{r: strings.NewReader(tt.in)}
			n, err := pr.copyMessage(&out, 0, make([]byte, MaxPacketData))
			require.NoError(t, err)
			assert.Equal(t, int64(len(tt.want)), n)
			assert.True(t, out.String() == tt.want)
		})
	}
}

func TestProtocolErrorDetails(t *testing.T) {
	pr := packetReader{r: strings.NewReader("fff1")}
	_, err := pr.readMessage(0)
	var pe *ProtocolError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 0xfff1, pe.Length)
	assert.Contains(t, err.Error(), "simpleipc: protocol error")

	pr = packetReader{r: strings.NewReader("zzzz")}
	_, err = pr.readMessage(0)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, -1, pe.Length)
	assert.False(t, errors.Is(err, ErrTruncated))
}

func TestReadMessageLimit(t *testing.T) {
	in := "0008ping" + "0008pong" + "0000"
	for _, tc := range []struct {
		max     int64
		wantErr bool
	}{{7, true}, {8, false}, {4, true}, {3, true}, {0, false}} {
		pr := packetReader{r: strings.NewReader(in)}
		_, err := pr.readMessage(tc.max)
		if tc.wantErr {
			require.ErrorIs(t, err, ErrTooLarge, "max %d", tc.max)
			continue
		}
		require.NoError(t, err, "max %d", tc.max)
	}
	var out bytes.Buffer
	pr := packetReader{r: strings.NewReader(in)}
	n, err := pr.copyMessage(&out, 5, make([]byte, MaxPacketData))
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Equal(t, int64(4), n)
}

// The oversized packet's payload is never read nor allocated.
func TestReadMessageLimitDoesNotReadPayload(t *testing.T) {
	r := strings.NewReader("fff0" + strings.Repeat("a", MaxPacketData) + "0000")
	pr := packetReader{r: r}
	_, err := pr.readMessage(100)
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Equal(t, MaxPacketData+4, r.Len())
}

func TestWriteReadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, MaxPacketData - 1, MaxPacketData, MaxPacketData + 1, 2 * MaxPacketData, 5<<20 + 3} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		var buf bytes.Buffer
		pw := packetWriter{w: &buf}
		_, err := pw.Write(data)
		require.NoError(t, err)
		require.NoError(t, pw.Flush())
		pr := packetReader{r: &buf}
		got, err := pr.readMessage(0)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "size %d", size)
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, s := range []string{
		"0000", "0008ping0000", "000Aabcdef0000", "0003", "0001", "0002", "0004",
		"fff0", "fff1", "zzzz", "0008pi", "00", "0006ab0006cd0000",
	} {
		f.Add([]byte(s), int64(0))
		f.Add([]byte(s), int64(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, max int64) {
		if max < 0 {
			max = -max
		}
		pr := packetReader{r: bytes.NewReader(in)}
		msg, err := pr.readMessage(max)
		if err != nil {
			if msg != nil {
				t.Fatalf("message %q with error %v", msg, err)
			}
			if !(errors.Is(err, ErrProtocol) || errors.Is(err, ErrTruncated) ||
				errors.Is(err, ErrTooLarge) || err == io.EOF) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		// A message is never larger than the input nor the limit, and
		// costs at most twice its size.
		if len(msg) > len(in) || (max > 0 && int64(len(msg)) > max) {
			t.Fatalf("message of %d bytes from %d bytes of input (max %d)", len(msg), len(in), max)
		}
		if cap(msg) > 2*len(in)+64 {
			t.Fatalf("capacity %d for %d bytes of input", cap(msg), len(in))
		}
		// Re-encoding and reading again gives the same message.
		var buf bytes.Buffer
		pw := packetWriter{w: &buf}
		pw.Write(msg)
		pw.Flush()
		pr = packetReader{r: &buf}
		again, err := pr.readMessage(0)
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
