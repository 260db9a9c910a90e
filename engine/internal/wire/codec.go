package wire

import "encoding/binary"

var le = binary.LittleEndian

// Split reads the message at the start of p. It returns the header, the
// body (aliasing p) and the remaining bytes of the packet. It checks the
// header only; the body is checked by the type's Decode.
func Split(p []byte) (h Header, body, rest []byte, err error) {
	if len(p) < HeaderSize {
		return h, nil, nil, &DecodeError{Err: ErrTruncated}
	}
	h = Header{Type: Type(p[0]), Flags: p[1], Len: le.Uint32(p[4:])}
	if h.Type < 1 || h.Type > typeLast {
		return h, nil, nil, &DecodeError{Type: h.Type, Err: ErrUnknownType}
	}
	if p[2] != 0 || p[3] != 0 {
		return h, nil, nil, &DecodeError{Type: h.Type, Offset: 2, Err: ErrBadReserved}
	}
	if h.Flags&^allowedFlags[h.Type] != 0 {
		return h, nil, nil, &DecodeError{Type: h.Type, Offset: 1, Err: ErrBadFlags}
	}
	if uint64(h.Len) > uint64(len(p)-HeaderSize) {
		return h, nil, nil, &DecodeError{Type: h.Type, Offset: 4, Err: ErrTruncated}
	}
	end := HeaderSize + int(h.Len)
	return h, p[HeaderSize:end], p[end:], nil
}

var allowedFlags = [typeLast + 1]uint8{
	TypeRequestService:      FlagInUse,
	TypeOfferService:        FlagOffered,
	TypeConnectService:      FlagInUse | FlagPool,
	TypeConnectServiceReply: FlagEventPool | FlagReplyPool,
	TypePayloadConsumed:     FlagInReplyPool,
	TypeCallMethod:          FlagFireAndForget,
	TypeSubscribeEvent:      FlagSubscribe,
	TypeEventUpdate:         FlagRequested,
	TypeFindService:         FlagAdd,
}

// encoder appends one message to a buffer; the header's length field is
// patched when the body is complete.
type encoder struct {
	b     []byte
	start int
	err   error
}

func begin(b []byte, t Type, flags uint8) encoder {
	start := len(b)
	b = append(b, byte(t), flags, 0, 0, 0, 0, 0, 0)
	return encoder{b: b, start: start}
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = le.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = le.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = le.AppendUint64(e.b, v) }

func (e *encoder) str(s string, max int) {
	if len(s) > max {
		e.err = ErrBadString
		return
	}
	e.b = append(e.b, byte(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) service(s *Service) {
	e.str(s.ID, MaxIDLen)
	e.u16(s.Major)
	e.u16(s.Minor)
	e.str(s.Instance, MaxIDLen)
}

func (e *encoder) geometry(g Geometry) {
	e.u32(g.SlotSize)
	e.u32(g.SlotCount)
}

func (e *encoder) payload(p Payload) {
	e.u32(p.Slot)
	e.u32(p.Len)
}

// finish patches the length. On error the buffer is returned unchanged.
func (e *encoder) finish() ([]byte, error) {
	body := len(e.b) - e.start - HeaderSize
	if e.err == nil && body > MaxPacket-HeaderSize {
		e.err = ErrTooLarge
	}
	if e.err != nil {
		return e.b[:e.start], e.err
	}
	le.PutUint32(e.b[e.start+4:], uint32(body))
	return e.b, nil
}

// mustFinish is finish for messages without strings or lists, which cannot fail.
func (e *encoder) mustFinish() []byte {
	le.PutUint32(e.b[e.start+4:], uint32(len(e.b)-e.start-HeaderSize))
	return e.b
}

func flag(cond bool, f uint8) uint8 {
	if cond {
		return f
	}
	return 0
}

// decoder reads fields from one body with a sticky error.
type decoder struct {
	t     Type
	b     []byte
	off   int
	field string
	err   error
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.field, d.err = field, err
	}
}

func (d *decoder) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.fail(field, ErrTruncated)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(field string) uint8 {
	if p := d.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if p := d.take(2, field); p != nil {
		return le.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if p := d.take(4, field); p != nil {
		return le.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if p := d.take(8, field); p != nil {
		return le.Uint64(p)
	}
	return 0
}

// strBytes returns a string field aliasing the body (no allocation).
func (d *decoder) strBytes(field string, max int) []byte {
	n := int(d.u8(field))
	if d.err != nil {
		return nil
	}
	if n > max {
		d.fail(field, ErrBadString)
		return nil
	}
	return d.take(n, field)
}

// str copies a string field; messages carrying strings are not on hot paths.
func (d *decoder) str(field string, max int) string {
	return string(d.strBytes(field, max))
}

func (d *decoder) service(s *Service) {
	s.ID = d.str("service.id", MaxIDLen)
	s.Major = d.u16("service.major")
	s.Minor = d.u16("service.minor")
	s.Instance = d.str("service.instance", MaxIDLen)
}

func (d *decoder) geometry(g *Geometry) {
	g.SlotSize = d.u32("pool.slot_size")
	g.SlotCount = d.u32("pool.slot_count")
}

func (d *decoder) payload(p *Payload) {
	p.Slot = d.u32("payload.slot")
	p.Len = d.u32("payload.len")
}

// status reads a Status. Values this version does not know are accepted:
// new failure codes may be added, and any non-zero status is a failure.
func (d *decoder) status(field string) Status { return Status(d.u8(field)) }

func (d *decoder) count(field string) int {
	n := int(d.u16(field))
	if d.err == nil && n > MaxListLen {
		d.fail(field, ErrTooMany)
	}
	return n
}

// done reports the sticky error, or ErrTrailing if bytes are left over.
func (d *decoder) done() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("", ErrTrailing)
	}
	if d.err != nil {
		return &DecodeError{Type: d.t, Offset: d.off, Field: d.field, Err: d.err}
	}
	return nil
}

func newDecoder(t Type, body []byte) decoder { return decoder{t: t, b: body} }
