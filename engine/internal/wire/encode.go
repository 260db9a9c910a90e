package wire

// Message is implemented by every control message struct.
type Message interface {
	// Type returns the message type.
	Type() Type
	// Append encodes the message (header and body) onto b. On error b is
	// returned unchanged.
	Append(b []byte) ([]byte, error)
	// Decode fills the message from a header and body produced by Split.
	Decode(h Header, body []byte) error
}

// Type implementations.
func (*Connect) Type() Type             { return TypeConnect }
func (*ConnectReply) Type() Type        { return TypeConnectReply }
func (*RequestService) Type() Type      { return TypeRequestService }
func (*OfferService) Type() Type        { return TypeOfferService }
func (*ConnectService) Type() Type      { return TypeConnectService }
func (*ConnectServiceReply) Type() Type { return TypeConnectServiceReply }
func (*CallMethod) Type() Type          { return TypeCallMethod }
func (*CallMethodHandle) Type() Type    { return TypeCallMethodHandle }
func (*CallMethodReply) Type() Type     { return TypeCallMethodReply }
func (*CancelMethodCall) Type() Type    { return TypeCancelMethodCall }
func (*SubscribeEvent) Type() Type      { return TypeSubscribeEvent }
func (*SubscribeEventReply) Type() Type { return TypeSubscribeEventReply }
func (*EventUpdate) Type() Type         { return TypeEventUpdate }
func (*EventUpdateRequest) Type() Type  { return TypeEventUpdateRequest }
func (*PayloadConsumed) Type() Type     { return TypePayloadConsumed }
func (*FindService) Type() Type         { return TypeFindService }
func (*Goodbye) Type() Type             { return TypeGoodbye }
func (*Ring) Type() Type                { return TypeRing }

// New returns an empty message of type t, or nil for an unknown type.
func New(t Type) Message {
	switch t {
	case TypeConnect:
		return new(Connect)
	case TypeConnectReply:
		return new(ConnectReply)
	case TypeRequestService:
		return new(RequestService)
	case TypeOfferService:
		return new(OfferService)
	case TypeConnectService:
		return new(ConnectService)
	case TypeConnectServiceReply:
		return new(ConnectServiceReply)
	case TypeCallMethod:
		return new(CallMethod)
	case TypeCallMethodHandle:
		return new(CallMethodHandle)
	case TypeCallMethodReply:
		return new(CallMethodReply)
	case TypeCancelMethodCall:
		return new(CancelMethodCall)
	case TypeSubscribeEvent:
		return new(SubscribeEvent)
	case TypeSubscribeEventReply:
		return new(SubscribeEventReply)
	case TypeEventUpdate:
		return new(EventUpdate)
	case TypeEventUpdateRequest:
		return new(EventUpdateRequest)
	case TypePayloadConsumed:
		return new(PayloadConsumed)
	case TypeFindService:
		return new(FindService)
	case TypeGoodbye:
		return new(Goodbye)
	case TypeRing:
		return new(Ring)
	}
	return nil
}

// Decode decodes the first message of p into a newly allocated message and
// returns it with the rest of the packet. It is meant for tools and tests;
// the engine decodes hot messages into reused structs instead.
func Decode(p []byte) (Message, []byte, error) {
	h, body, rest, err := Split(p)
	if err != nil {
		return nil, nil, err
	}
	m := New(h.Type)
	if err := m.Decode(h, body); err != nil {
		return nil, nil, err
	}
	return m, rest, nil
}

// Append encodes m onto b.
func (m *Connect) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeConnect, 0)
	e.u16(m.Version)
	e.u32(m.Caps)
	e.u32(m.MaxPacket)
	e.str(m.Name, MaxIDLen)
	if len(m.Find) > MaxListLen || len(m.Pools) > MaxListLen {
		e.err = ErrTooMany
		return e.finish()
	}
	e.u16(uint16(len(m.Find)))
	for i := range m.Find {
		e.service(&m.Find[i])
	}
	e.u16(uint16(len(m.Pools)))
	for i := range m.Pools {
		p := &m.Pools[i]
		e.str(p.ID, MaxIDLen)
		e.str(p.Instance, MaxIDLen)
		e.u8(uint8(p.Dir))
		e.geometry(p.Geometry)
	}
	return e.finish()
}

// Decode decodes a Connect body.
func (m *Connect) Decode(h Header, body []byte) error {
	d := newDecoder(TypeConnect, body)
	m.Version = d.u16("version")
	m.Caps = d.u32("caps")
	m.MaxPacket = d.u32("max_packet")
	m.Name = d.str("name", MaxIDLen)
	m.Find = nil
	if n := d.count("find_count"); d.err == nil && n > 0 {
		m.Find = make([]Service, 0, min(n, len(body)/6))
		for i := 0; i < n && d.err == nil; i++ {
			var s Service
			d.service(&s)
			m.Find = append(m.Find, s)
		}
	}
	m.Pools = nil
	if n := d.count("pool_count"); d.err == nil && n > 0 {
		m.Pools = make([]PoolConfig, 0, min(n, len(body)/11))
		for i := 0; i < n && d.err == nil; i++ {
			var p PoolConfig
			p.ID = d.str("pool.id", MaxIDLen)
			p.Instance = d.str("pool.instance", MaxIDLen)
			p.Dir = Direction(d.u8("pool.dir"))
			if d.err == nil && p.Dir > dirLast {
				d.fail("pool.dir", ErrBadValue)
			}
			d.geometry(&p.Geometry)
			m.Pools = append(m.Pools, p)
		}
	}
	return d.done()
}

// Append encodes m onto b.
func (m *ConnectReply) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeConnectReply, 0)
	e.u8(uint8(m.Status))
	e.u16(m.Version)
	e.u32(m.Caps)
	e.u32(m.MaxPacket)
	e.str(m.Name, MaxIDLen)
	e.str(m.Reason, MaxReasonLen)
	return e.finish()
}

// Decode decodes a Connect_reply body.
func (m *ConnectReply) Decode(h Header, body []byte) error {
	d := newDecoder(TypeConnectReply, body)
	m.Status = d.status("status")
	m.Version = d.u16("version")
	m.Caps = d.u32("caps")
	m.MaxPacket = d.u32("max_packet")
	m.Name = d.str("name", MaxIDLen)
	m.Reason = d.str("reason", MaxReasonLen)
	return d.done()
}

// Append encodes m onto b.
func (m *RequestService) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeRequestService, flag(m.InUse, FlagInUse))
	e.service(&m.Service)
	return e.finish()
}

// Decode decodes a Request_service body.
func (m *RequestService) Decode(h Header, body []byte) error {
	d := newDecoder(TypeRequestService, body)
	d.service(&m.Service)
	m.InUse = h.Flags&FlagInUse != 0
	return d.done()
}

// Append encodes m onto b.
func (m *OfferService) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeOfferService, flag(m.Offered, FlagOffered))
	e.service(&m.Service)
	e.u16(m.Methods)
	e.u16(m.Events)
	return e.finish()
}

// Decode decodes an Offer_service body.
func (m *OfferService) Decode(h Header, body []byte) error {
	d := newDecoder(TypeOfferService, body)
	d.service(&m.Service)
	m.Methods = d.u16("methods")
	m.Events = d.u16("events")
	m.Offered = h.Flags&FlagOffered != 0
	return d.done()
}

// Append encodes m onto b.
func (m *ConnectService) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeConnectService, flag(m.InUse, FlagInUse)|flag(m.HasPool, FlagPool))
	e.service(&m.Service)
	e.u64(m.RequiredID)
	if m.HasPool {
		e.geometry(m.Pool)
	}
	return e.finish()
}

// Decode decodes a Connect_service body.
func (m *ConnectService) Decode(h Header, body []byte) error {
	d := newDecoder(TypeConnectService, body)
	d.service(&m.Service)
	m.RequiredID = d.u64("required_id")
	m.InUse = h.Flags&FlagInUse != 0
	m.HasPool = h.Flags&FlagPool != 0
	m.Pool = Geometry{}
	if m.HasPool {
		d.geometry(&m.Pool)
	}
	return d.done()
}

// Append encodes m onto b.
func (m *ConnectServiceReply) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeConnectServiceReply, flag(m.HasEventPool, FlagEventPool)|flag(m.HasReplyPool, FlagReplyPool))
	e.u64(m.RequiredID)
	e.u64(m.ProvidedID)
	e.u8(uint8(m.Status))
	e.u16(m.Methods)
	e.u16(m.Events)
	if m.HasEventPool {
		e.geometry(m.EventPool)
	}
	if m.HasReplyPool {
		e.geometry(m.ReplyPool)
	}
	return e.mustFinish(), nil
}

// Decode decodes a Connect_service_reply body.
func (m *ConnectServiceReply) Decode(h Header, body []byte) error {
	d := newDecoder(TypeConnectServiceReply, body)
	m.RequiredID = d.u64("required_id")
	m.ProvidedID = d.u64("provided_id")
	m.Status = d.status("status")
	m.Methods = d.u16("methods")
	m.Events = d.u16("events")
	m.HasEventPool = h.Flags&FlagEventPool != 0
	m.HasReplyPool = h.Flags&FlagReplyPool != 0
	m.EventPool, m.ReplyPool = Geometry{}, Geometry{}
	if m.HasEventPool {
		d.geometry(&m.EventPool)
	}
	if m.HasReplyPool {
		d.geometry(&m.ReplyPool)
	}
	return d.done()
}

// Append encodes m onto b.
func (m *CallMethod) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeCallMethod, flag(m.FireAndForget, FlagFireAndForget))
	e.u64(m.ProvidedID)
	e.u64(m.InvocationID)
	e.u16(m.Method)
	e.payload(m.Payload)
	return e.mustFinish(), nil
}

// Decode decodes a Call_method body.
func (m *CallMethod) Decode(h Header, body []byte) error {
	d := newDecoder(TypeCallMethod, body)
	m.ProvidedID = d.u64("provided_id")
	m.InvocationID = d.u64("invocation_id")
	m.Method = d.u16("method")
	d.payload(&m.Payload)
	m.FireAndForget = h.Flags&FlagFireAndForget != 0
	return d.done()
}

// Append encodes m onto b.
func (m *CallMethodHandle) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeCallMethodHandle, 0)
	e.u64(m.RequiredID)
	e.u64(m.InvocationID)
	return e.mustFinish(), nil
}

// Decode decodes a Call_method_handle body.
func (m *CallMethodHandle) Decode(h Header, body []byte) error {
	d := newDecoder(TypeCallMethodHandle, body)
	m.RequiredID = d.u64("required_id")
	m.InvocationID = d.u64("invocation_id")
	return d.done()
}

// Append encodes m onto b.
func (m *CallMethodReply) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeCallMethodReply, 0)
	e.u64(m.RequiredID)
	e.u64(m.InvocationID)
	e.u8(uint8(m.Result))
	e.u32(uint32(m.Code))
	e.payload(m.Payload)
	return e.mustFinish(), nil
}

// Decode decodes a Call_method_reply body.
func (m *CallMethodReply) Decode(h Header, body []byte) error {
	d := newDecoder(TypeCallMethodReply, body)
	m.RequiredID = d.u64("required_id")
	m.InvocationID = d.u64("invocation_id")
	m.Result = Result(d.u8("result"))
	if d.err == nil && m.Result > resultLast {
		d.fail("result", ErrBadValue)
	}
	m.Code = int32(d.u32("code"))
	d.payload(&m.Payload)
	return d.done()
}

// Append encodes m onto b.
func (m *CancelMethodCall) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeCancelMethodCall, 0)
	e.u64(m.ProvidedID)
	e.u64(m.InvocationID)
	e.u16(m.Method)
	return e.mustFinish(), nil
}

// Decode decodes a Cancel_method_call body.
func (m *CancelMethodCall) Decode(h Header, body []byte) error {
	d := newDecoder(TypeCancelMethodCall, body)
	m.ProvidedID = d.u64("provided_id")
	m.InvocationID = d.u64("invocation_id")
	m.Method = d.u16("method")
	return d.done()
}

// Append encodes m onto b.
func (m *SubscribeEvent) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeSubscribeEvent, flag(m.Subscribe, FlagSubscribe))
	e.u64(m.ProvidedID)
	e.u16(m.Event)
	e.u8(uint8(m.Mode))
	return e.mustFinish(), nil
}

// Decode decodes a Subscribe_event body.
func (m *SubscribeEvent) Decode(h Header, body []byte) error {
	d := newDecoder(TypeSubscribeEvent, body)
	m.ProvidedID = d.u64("provided_id")
	m.Event = d.u16("event")
	m.Mode = Mode(d.u8("mode"))
	if d.err == nil && m.Mode > modeLast {
		d.fail("mode", ErrBadValue)
	}
	m.Subscribe = h.Flags&FlagSubscribe != 0
	return d.done()
}

// Append encodes m onto b.
func (m *SubscribeEventReply) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeSubscribeEventReply, 0)
	e.u64(m.RequiredID)
	e.u16(m.Event)
	e.u8(uint8(m.Status))
	return e.mustFinish(), nil
}

// Decode decodes a Subscribe_event_reply body.
func (m *SubscribeEventReply) Decode(h Header, body []byte) error {
	d := newDecoder(TypeSubscribeEventReply, body)
	m.RequiredID = d.u64("required_id")
	m.Event = d.u16("event")
	m.Status = d.status("status")
	return d.done()
}

// Append encodes m onto b.
func (m *EventUpdate) Append(b []byte) ([]byte, error) {
	if m.Inline {
		return b, ErrInlineOnSocket
	}
	e := begin(b, TypeEventUpdate, flag(m.Requested, FlagRequested))
	e.u64(m.RequiredID)
	e.u16(m.Event)
	e.u64(m.Seq)
	e.payload(m.Payload)
	return e.mustFinish(), nil
}

// Decode decodes an Event_update body.
func (m *EventUpdate) Decode(h Header, body []byte) error {
	d := newDecoder(TypeEventUpdate, body)
	m.RequiredID = d.u64("required_id")
	m.Event = d.u16("event")
	m.Seq = d.u64("seq")
	d.payload(&m.Payload)
	m.Requested = h.Flags&FlagRequested != 0
	m.Inline = false // never on the socket (the decoder's message is reused for ring entries too)
	return d.done()
}

// Append encodes m onto b.
func (m *EventUpdateRequest) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeEventUpdateRequest, 0)
	e.u64(m.ProvidedID)
	e.u16(m.Event)
	return e.mustFinish(), nil
}

// Decode decodes an Event_update_request body.
func (m *EventUpdateRequest) Decode(h Header, body []byte) error {
	d := newDecoder(TypeEventUpdateRequest, body)
	m.ProvidedID = d.u64("provided_id")
	m.Event = d.u16("event")
	return d.done()
}

// Append encodes m onto b.
func (m *PayloadConsumed) Append(b []byte) ([]byte, error) {
	e := begin(b, TypePayloadConsumed, flag(m.Reply, FlagInReplyPool))
	e.u64(m.Handle)
	e.payload(m.Payload)
	return e.mustFinish(), nil
}

// Decode decodes a Payload_consumed body.
func (m *PayloadConsumed) Decode(h Header, body []byte) error {
	d := newDecoder(TypePayloadConsumed, body)
	m.Handle = d.u64("handle")
	d.payload(&m.Payload)
	m.Reply = h.Flags&FlagInReplyPool != 0
	return d.done()
}

// Append encodes m onto b.
func (m *FindService) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeFindService, flag(m.Add, FlagAdd))
	e.service(&m.Service)
	return e.finish()
}

// Decode decodes a Find_service body.
func (m *FindService) Decode(h Header, body []byte) error {
	d := newDecoder(TypeFindService, body)
	d.service(&m.Service)
	m.Add = h.Flags&FlagAdd != 0
	return d.done()
}

// Append encodes m onto b.
func (m *Goodbye) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeGoodbye, 0)
	e.u8(uint8(m.Status))
	return e.mustFinish(), nil
}

// Decode decodes a Goodbye body.
func (m *Goodbye) Decode(h Header, body []byte) error {
	d := newDecoder(TypeGoodbye, body)
	m.Status = d.status("status")
	return d.done()
}

// Append encodes m onto b.
func (m *Ring) Append(b []byte) ([]byte, error) {
	e := begin(b, TypeRing, 0)
	e.u32(m.Entries)
	return e.mustFinish(), nil
}

// Decode decodes a Ring body.
func (m *Ring) Decode(h Header, body []byte) error {
	d := newDecoder(TypeRing, body)
	m.Entries = d.u32("entries")
	return d.done()
}
