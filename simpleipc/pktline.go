package simpleipc

import (
	"io"
	"net"
	"slices"
	"time"
)

const (
	// MaxPacketSize is the largest pkt-line packet, header included
	// (Git's LARGE_PACKET_MAX). Its header is "fff0".
	MaxPacketSize = 65520

	// MaxPacketData is the largest payload of one packet (Git's
	// LARGE_PACKET_DATA_MAX). Writers split longer messages into packets
	// of this size plus a remainder.
	MaxPacketData = MaxPacketSize - 4

	pktHeaderLen = 4
)

// flushPkt ends every message. Never modified.
var flushPkt = []byte("0000")

// aLongTimeAgo is a deadline in the past, used to interrupt blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// hexval maps an ASCII byte to its hexadecimal value, or -1. Upper and
// lower case are accepted, as by Git's hexval_table.
func hexval(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseHeader decodes a packet header: the packet length including the
// header, or -1 if a byte is not a hexadecimal digit.
func parseHeader(h *[4]byte) int {
	n := 0
	for _, c := range h {
		v := hexval(c)
		if v < 0 {
			return -1
		}
		n = n<<4 | v
	}
	return n
}

const hexdigits = "0123456789abcdef"

// putHeader writes the lowercase header for a packet of total length n.
func putHeader(h *[4]byte, n int) {
	h[0] = hexdigits[(n>>12)&0xf]
	h[1] = hexdigits[(n>>8)&0xf]
	h[2] = hexdigits[(n>>4)&0xf]
	h[3] = hexdigits[n&0xf]
}

// writeDeadliner is the part of net.Conn the packet writer uses to bound
// each packet write.
type writeDeadliner interface {
	SetWriteDeadline(t time.Time) error
}

// packetWriter turns writes into pkt-line packets. Every Write is sent at
// once as one or more packets of at most MaxPacketData payload bytes; a
// zero-length Write sends nothing (Git reads an empty data packet "0004" as
// the end of the message, so one must never be written). Flush writes the
// flush packet. The header buffer is reused: writing allocates nothing.
//
// A failed write may have cut a packet short, so the first error sticks:
// later writes and Flush return it without writing anything, and a broken
// message is never made to look complete.
type packetWriter struct {
	w    io.Writer
	hdr  [pktHeaderLen]byte
	bufs [3][]byte
	nb   net.Buffers
	err  error

	// When dl is set, a write deadline of now+idle is set before each
	// packet, so a peer that stops reading cannot block the writer
	// forever.
	dl   writeDeadliner
	idle time.Duration
}

func (pw *packetWriter) setDeadline() error {
	if pw.dl == nil || pw.idle <= 0 {
		return nil
	}
	return pw.dl.SetWriteDeadline(time.Now().Add(pw.idle))
}

// Write sends p as ceil(len(p)/MaxPacketData) packets. It returns the
// number of payload bytes of p that were fully written.
func (pw *packetWriter) Write(p []byte) (int, error) {
	return pw.write(p, false)
}

// WriteMessage sends p and the flush packet, the flush in the same
// writev(2) as the last packet: a small message costs one system call.
func (pw *packetWriter) WriteMessage(p []byte) error {
	if len(p) == 0 {
		return pw.Flush()
	}
	_, err := pw.write(p, true)
	return err
}

func (pw *packetWriter) write(p []byte, flush bool) (int, error) {
	if pw.err != nil {
		return 0, pw.err
	}
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > MaxPacketData {
			chunk = chunk[:MaxPacketData]
		}
		putHeader(&pw.hdr, len(chunk)+pktHeaderLen)
		pw.bufs[0] = pw.hdr[:]
		pw.bufs[1] = chunk
		pw.nb = pw.bufs[:2]
		if flush && len(chunk) == len(p) {
			pw.bufs[2] = flushPkt
			pw.nb = pw.bufs[:3]
		}
		if err := pw.setDeadline(); err != nil {
			pw.err = err
			return n, err
		}
		_, err := pw.nb.WriteTo(pw.w) // writev(2) on a socket
		pw.bufs = [3][]byte{}
		if err != nil {
			pw.err = err
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Flush writes the flush packet "0000" that ends the message.
func (pw *packetWriter) Flush() error {
	if pw.err != nil {
		return pw.err
	}
	if pw.err = pw.setDeadline(); pw.err != nil {
		return pw.err
	}
	_, pw.err = pw.w.Write(flushPkt)
	return pw.err
}

// truncatedError reports EOF in the middle of a message. It matches both
// ErrTruncated and io.ErrUnexpectedEOF.
type truncatedError struct{ where string }

func (e *truncatedError) Error() string {
	return "simpleipc: message truncated " + e.where
}

func (e *truncatedError) Is(target error) bool {
	return target == ErrTruncated || target == io.ErrUnexpectedEOF
}

var (
	errTruncHeader  = &truncatedError{"inside packet header"}
	errTruncPayload = &truncatedError{"inside packet payload"}
	errTruncFlush   = &truncatedError{"before flush packet"}
)

// packetReader reads pkt-line messages the way Git's
// read_packetized_to_strbuf does: packets are concatenated until a
// zero-length packet, which is the flush packet 0000, but also 0001
// (delim), 0002 (response-end) and 0004 (empty data packet). Bytes after
// that packet are left unread.
type packetReader struct {
	r   io.Reader
	hdr [pktHeaderLen]byte
	// started is set once any byte of the current message was read, to
	// tell a peer that sent nothing (io.EOF) from a truncated message.
	started bool
}

// readHeader reads one header and returns the payload length, or end=true
// for a packet that ends the message.
func (pr *packetReader) readHeader() (n int, end bool, err error) {
	got, err := io.ReadFull(pr.r, pr.hdr[:])
	if got > 0 {
		pr.started = true
	}
	switch {
	case err == io.EOF && got == 0:
		if pr.started {
			return 0, false, errTruncFlush
		}
		return 0, false, io.EOF
	case err == io.ErrUnexpectedEOF:
		return 0, false, errTruncHeader
	case err != nil:
		return 0, false, err
	}
	size := parseHeader(&pr.hdr)
	switch {
	case size < 0:
		return 0, false, &ProtocolError{Header: pr.hdr, Length: -1}
	case size == 0, size == 1, size == 2: // flush, delim, response-end
		return 0, true, nil
	case size == 3, size > MaxPacketSize:
		return 0, false, &ProtocolError{Header: pr.hdr, Length: size}
	case size == pktHeaderLen: // empty data packet: Git stops here too
		return 0, true, nil
	}
	return size - pktHeaderLen, false, nil
}

func readPayload(r io.Reader, p []byte) error {
	_, err := io.ReadFull(r, p)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errTruncPayload
	}
	return err
}

// readMessage reads one whole message. max > 0 bounds its size: a packet
// that would take it beyond max is not read and ErrTooLarge is returned.
// The result grows packet by packet (amortised doubling), so memory stays
// within about twice the message size, itself at most max. An empty
// message yields a non-nil empty slice. If the peer closed the connection
// before sending any byte, the error is io.EOF.
func (pr *packetReader) readMessage(max int64) ([]byte, error) {
	pr.started = false
	var msg []byte
	for {
		n, end, err := pr.readHeader()
		if err != nil {
			return nil, err
		}
		if end {
			if msg == nil {
				msg = []byte{}
			}
			return msg, nil
		}
		if max > 0 && int64(len(msg))+int64(n) > max {
			return nil, ErrTooLarge
		}
		msg = slices.Grow(msg, n)
		if err := readPayload(pr.r, msg[len(msg):len(msg)+n]); err != nil {
			return nil, err
		}
		msg = msg[:len(msg)+n]
	}
}

// copyMessage reads one message and writes each packet's payload to w as
// soon as it has arrived, using buf (at least MaxPacketData bytes) as the
// only packet buffer. It returns the number of payload bytes written.
func (pr *packetReader) copyMessage(w io.Writer, max int64, buf []byte) (int64, error) {
	pr.started = false
	var total int64
	for {
		n, end, err := pr.readHeader()
		if err != nil {
			return total, err
		}
		if end {
			return total, nil
		}
		if max > 0 && total+int64(n) > max {
			return total, ErrTooLarge
		}
		if err := readPayload(pr.r, buf[:n]); err != nil {
			return total, err
		}
		wn, err := w.Write(buf[:n])
		total += int64(wn)
		if err != nil {
			return total, err
		}
	}
}
