package benchmark

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The baseline: a SOCK_STREAM socketpair, each message a 4-byte
// little-endian length and the bytes. Both ends use blocking read and write
// system calls on a locked thread (no Go netpoller), which is the cheapest a
// hand-written C program would do. Two lengths are reserved for control.
const (
	frameMark uint32 = 0xFFFF_FFFE // start counting
	frameStop uint32 = 0xFFFF_FFFF // report, acknowledge (8 bytes) and exit

	// readBuf is the receivers' read buffer: small frames are read many per
	// system call, large ones go straight into the destination.
	readBuf = 64 << 10
)

// fdRW reads and writes a blocking file descriptor directly.
type fdRW int

func (f fdRW) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeAll writes all of p (a blocking write may still be cut short by a
// signal).
func (f fdRW) writeAll(p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(int(f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		p = p[n:]
	}
	return nil
}

// sockSide is the measuring process's baseline end.
type sockSide struct {
	fd    fdRW
	r     *frameReader
	child *child
}

func startSocket(spec peerSpec) (*sockSide, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("benchmark: creating the baseline socketpair: %w", os.NewSyscallError("socketpair", err))
	}
	theirs := os.NewFile(uintptr(fds[1]), "bench-peer")
	spec.FD = 3
	c, err := startChild(spec, theirs)
	theirs.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return &sockSide{fd: fdRW(fds[0]), r: newFrameReader(fdRW(fds[0])), child: c}, nil
}

func (s *sockSide) close() {
	unix.Close(int(s.fd)) // the peer sees EOF if it is still waiting
	s.child.kill()
}

func (s *sockSide) control(v uint32) error {
	var h [4]byte
	binary.LittleEndian.PutUint32(h[:], v)
	return s.fd.writeAll(h[:])
}

// stop sends frameStop, reads the acknowledgement and returns the peer's
// result.
func (s *sockSide) stop() (peerResult, error) {
	if err := s.control(frameStop); err != nil {
		return peerResult{}, err
	}
	var ack [8]byte
	if _, err := io.ReadFull(s.r.r, ack[:]); err != nil {
		return peerResult{}, fmt.Errorf("benchmark: reading the baseline acknowledgement: %w", err)
	}
	return s.child.result()
}

// frame is a message ready to write: length prefix and payload.
func frame(size int) []byte {
	b := make([]byte, 4+size)
	binary.LittleEndian.PutUint32(b, uint32(size))
	copy(b[4:], pattern(size))
	return b
}

// frameReader reads frames through a buffer. The header buffer lives with
// it so that reading does not allocate.
type frameReader struct {
	r   *bufio.Reader
	hdr [4]byte
}

func newFrameReader(fd fdRW) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(fd, readBuf)}
}

// readFrame reads one frame's header and, for a data frame, its payload into
// buf (which must be large enough); it returns the header value.
func (fr *frameReader) readFrame(buf []byte) (uint32, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(fr.hdr[:])
	if v == frameMark || v == frameStop {
		return v, nil
	}
	if int(v) > len(buf) {
		return 0, fmt.Errorf("frame of %d bytes, buffer holds %d", v, len(buf))
	}
	_, err := io.ReadFull(fr.r, buf[:v])
	return v, err
}

func socketLatency(spec peerSpec, n, warm int) (side, error) {
	s, err := startSocket(spec)
	if err != nil {
		return side{}, err
	}
	defer s.close()
	out := frame(spec.Size)
	in := make([]byte, spec.Size)
	rtts := make([]time.Duration, n)
	var m0 uint64
	for i := -warm; i < n; i++ {
		if i == -1 || (i == 0 && warm == 0) {
			if err := s.control(frameMark); err != nil {
				return side{}, err
			}
		}
		if i == 0 {
			m0 = mallocs()
		}
		t0 := time.Now()
		if err := s.fd.writeAll(out); err != nil {
			return side{}, err
		}
		v, err := s.r.readFrame(in)
		if err != nil {
			return side{}, fmt.Errorf("benchmark: reading a baseline echo: %w", err)
		}
		if int(v) != spec.Size {
			return side{}, fmt.Errorf("benchmark: baseline echo of %d bytes, want %d", v, spec.Size)
		}
		if i >= 0 {
			rtts[i] = time.Since(t0)
		}
	}
	m1 := mallocs()
	peer, err := s.stop()
	if err != nil {
		return side{}, err
	}
	return side{rtts: rtts, mallocsA: m1 - m0, msgsA: uint64(n), peer: peer}, nil
}

func socketThroughput(spec peerSpec, d, warm time.Duration) (side, error) {
	s, err := startSocket(spec)
	if err != nil {
		return side{}, err
	}
	defer s.close()
	out := frame(spec.Size)
	send := func() error { return s.fd.writeAll(out) }
	if _, err := burst(warm, send); err != nil {
		return side{}, err
	}
	if err := s.control(frameMark); err != nil {
		return side{}, err
	}
	m0 := mallocs()
	t0 := time.Now()
	sent, err := burst(d, send)
	if err != nil {
		return side{}, err
	}
	m1 := mallocs()
	peer, err := s.stop()
	if err != nil {
		return side{}, err
	}
	return side{elapsed: time.Since(t0), sent: sent, mallocsA: m1 - m0, msgsA: sent, peer: peer}, nil
}

// socketPeer is B for the baseline: echo or count frames until frameStop.
func socketPeer(spec peerSpec) (peerResult, error) {
	fd := fdRW(spec.FD)
	defer unix.Close(spec.FD)
	r := newFrameReader(fd)
	buf := make([]byte, 4+spec.Size)
	binary.LittleEndian.PutUint32(buf, uint32(spec.Size))
	echo := spec.Scenario == scenarioLatency
	var (
		res peerResult
		m0  uint64
	)
	for {
		v, err := r.readFrame(buf[4:])
		if err != nil {
			return res, fmt.Errorf("reading a frame: %w", err)
		}
		switch v {
		case frameMark:
			res = peerResult{}
			m0 = mallocs()
			continue
		case frameStop:
			res.Mallocs = mallocs() - m0
			var ack [8]byte
			binary.LittleEndian.PutUint64(ack[:], res.Messages)
			return res, fd.writeAll(ack[:])
		}
		res.Messages++
		res.Bytes += uint64(v)
		if echo {
			if int(v) != spec.Size {
				return res, errors.New("echo of an unexpected size")
			}
			if err := fd.writeAll(buf); err != nil {
				return res, err
			}
		}
	}
}
