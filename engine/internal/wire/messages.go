package wire

import "fmt"

// Version is the protocol version this package speaks.
const Version uint16 = 2

// Limits of the wire format.
const (
	HeaderSize   = 8     // bytes in a message header
	MaxIDLen     = 64    // longest service id, instance id or peer name
	MaxReasonLen = 255   // longest reason text in Connect_reply
	MaxListLen   = 256   // most find elements or pool configs in one Connect
	MaxPacket    = 65536 // default largest packet a peer accepts
	MinPacket    = 4096  // smallest max-packet value a peer may announce
	NoSlot       = ^uint32(0)
)

// Type identifies a control message.
type Type uint8

// Message types; the ids of the reference binding are kept (DESIGN.md §5).
const (
	TypeConnect             Type = 1
	TypeConnectReply        Type = 2
	TypeRequestService      Type = 3
	TypeOfferService        Type = 4
	TypeConnectService      Type = 5
	TypeConnectServiceReply Type = 6
	TypeCallMethod          Type = 7
	TypeCallMethodHandle    Type = 8
	TypeCallMethodReply     Type = 9
	TypeCancelMethodCall    Type = 10
	TypeSubscribeEvent      Type = 11
	TypeSubscribeEventReply Type = 12
	TypeEventUpdate         Type = 13
	TypeEventUpdateRequest  Type = 14
	TypePayloadConsumed     Type = 15
	TypeFindService         Type = 16
	TypeGoodbye             Type = 17
	TypeRing                Type = 18
	typeLast                     = TypeRing
)

var typeNames = [...]string{
	TypeConnect:             "Connect",
	TypeConnectReply:        "Connect_reply",
	TypeRequestService:      "Request_service",
	TypeOfferService:        "Offer_service",
	TypeConnectService:      "Connect_service",
	TypeConnectServiceReply: "Connect_service_reply",
	TypeCallMethod:          "Call_method",
	TypeCallMethodHandle:    "Call_method_handle",
	TypeCallMethodReply:     "Call_method_reply",
	TypeCancelMethodCall:    "Cancel_method_call",
	TypeSubscribeEvent:      "Subscribe_event",
	TypeSubscribeEventReply: "Subscribe_event_reply",
	TypeEventUpdate:         "Event_update",
	TypeEventUpdateRequest:  "Event_update_request",
	TypePayloadConsumed:     "Payload_consumed",
	TypeFindService:         "Find_service",
	TypeGoodbye:             "Goodbye",
	TypeRing:                "Ring",
}

func (t Type) String() string {
	if t >= 1 && t <= typeLast {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Flag bits. Each message type defines its own; undefined bits must be zero.
const (
	FlagInUse         uint8 = 1 << 0 // Request_service, Connect_service: the service is (still) wanted
	FlagOffered       uint8 = 1 << 0 // Offer_service: the service is offered (clear: withdrawn)
	FlagPool          uint8 = 1 << 1 // Connect_service: a pool descriptor follows and one fd travels with the packet
	FlagEventPool     uint8 = 1 << 0 // Connect_service_reply: the event pool's descriptor follows and its fd travels with the packet
	FlagReplyPool     uint8 = 1 << 1 // Connect_service_reply: the reply pool's descriptor follows (after the event pool's) and its fd travels with the packet
	FlagInReplyPool   uint8 = 1 << 0 // Payload_consumed: the payload is in the provider's reply pool (clear: the event pool, or the consumer's call pool)
	FlagFireAndForget uint8 = 1 << 0 // Call_method: no handle and no reply are wanted
	FlagSubscribe     uint8 = 1 << 0 // Subscribe_event: subscribe (clear: unsubscribe)
	FlagRequested     uint8 = 1 << 0 // Event_update: answers an Event_update_request or an initial-value subscription
	FlagInline        uint8 = 1 << 1 // Event_update ring entry: the payload follows in the ring (ring entries only)
	FlagAdd           uint8 = 1 << 0 // Find_service: start watching (clear: stop)
)

// Capability bits announced in Connect and Connect_reply.
const (
	CapMethods uint32 = 1 << 0
	CapFields  uint32 = 1 << 1
	CapFind    uint32 = 1 << 2
	CapRing    uint32 = 1 << 3 // hot messages through shared-memory rings (message 18)
	CapInline  uint32 = 1 << 4 // small event payloads inline in ring entries (needs CapRing)
	CapAll            = CapMethods | CapFields | CapFind | CapRing | CapInline
)

// Status is the outcome code in Connect_reply, Connect_service_reply and
// Subscribe_event_reply, and the middleware error code of a call.
type Status uint8

// Status values. Never renumbered; new ones are appended.
const (
	StatusOK                  Status = 0
	StatusVersionUnsupported  Status = 1
	StatusPermissionDenied    Status = 2
	StatusMalformed           Status = 3
	StatusQuotaExceeded       Status = 4
	StatusShuttingDown        Status = 5
	StatusUnknownService      Status = 6
	StatusUnknownEvent        Status = 7
	StatusIncompatibleVersion Status = 8
	StatusUnknownMethod       Status = 9
	StatusNoSlot              Status = 10
	StatusNotAvailable        Status = 11
	StatusDuplicate           Status = 12
	StatusHandlerFailed       Status = 13
	StatusCancelled           Status = 14
	statusLast                       = StatusCancelled
)

var statusNames = [...]string{
	StatusOK:                  "ok",
	StatusVersionUnsupported:  "protocol version unsupported",
	StatusPermissionDenied:    "permission denied",
	StatusMalformed:           "malformed request",
	StatusQuotaExceeded:       "quota exceeded",
	StatusShuttingDown:        "shutting down",
	StatusUnknownService:      "unknown service",
	StatusUnknownEvent:        "unknown event",
	StatusIncompatibleVersion: "incompatible interface version",
	StatusUnknownMethod:       "unknown method",
	StatusNoSlot:              "no free slot",
	StatusNotAvailable:        "service not available",
	StatusDuplicate:           "duplicate",
	StatusHandlerFailed:       "the provider's handler failed",
	StatusCancelled:           "call cancelled",
}

func (s Status) String() string {
	if s <= statusLast {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Result is the kind of a Call_method_reply.
type Result uint8

// Result kinds.
const (
	ResultReturn     Result = 0 // the method returned normally; payload is its value
	ResultAppError   Result = 1 // the application reported an error; Code is its int32 code
	ResultMiddleware Result = 2 // the middleware failed the call; Code is a Status
	resultLast              = ResultMiddleware
)

// Mode is how a subscriber wants an event.
type Mode uint8

// Subscription modes.
const (
	ModeUpdates      Mode = 0 // updates only
	ModeInitialValue Mode = 1 // updates, plus the current value of a field at once
	modeLast              = ModeInitialValue
)

// Direction names which side writes a pool.
type Direction uint8

// Pool directions.
const (
	DirProvider Direction = 0 // provider -> consumer: a binding's reply pool
	DirConsumer Direction = 1 // consumer -> provider: a binding's call pool
	dirLast               = DirConsumer
)

// Header precedes every message.
type Header struct {
	Type  Type
	Flags uint8
	Len   uint32 // body length in bytes
}

// Service names one service instance: interface id, version and instance id.
type Service struct {
	ID       string
	Major    uint16
	Minor    uint16
	Instance string
}

// Geometry describes a pool: slot size and slot count. The fd itself travels
// out of band (SCM_RIGHTS).
type Geometry struct {
	SlotSize  uint32
	SlotCount uint32
}

// Payload references bytes in the sender's pool: a slot and the bytes used.
// Slot == NoSlot means "no payload".
type Payload struct {
	Slot uint32
	Len  uint32
}

// PoolConfig asks the listener to size a pool it creates for a service.
type PoolConfig struct {
	ID       string
	Instance string // empty: every instance of ID
	Dir      Direction
	Geometry Geometry
}

// Connect opens a session (dialler -> listener).
type Connect struct {
	Version   uint16
	Caps      uint32
	MaxPacket uint32
	Name      string
	Find      []Service // find elements; empty Instance means any instance
	Pools     []PoolConfig
}

// ConnectReply accepts or rejects a session (listener -> dialler).
type ConnectReply struct {
	Status    Status
	Version   uint16
	Caps      uint32
	MaxPacket uint32
	Name      string
	Reason    string
}

// RequestService says a service instance is (no longer) needed by the sender.
type RequestService struct {
	Service Service
	InUse   bool
}

// OfferService says a service instance is (no longer) offered by the sender.
type OfferService struct {
	Service Service
	Offered bool
	Methods uint16 // number of methods (ids 0..Methods-1)
	Events  uint16 // number of events (ids 0..Events-1)
}

// ConnectService opens (InUse) or closes a binding to an offered service.
type ConnectService struct {
	Service    Service
	RequiredID uint64
	InUse      bool
	HasPool    bool // the consumer's pool for method-call payloads travels with it
	Pool       Geometry
}

// ConnectServiceReply answers ConnectService.
type ConnectServiceReply struct {
	RequiredID uint64
	ProvidedID uint64
	Status     Status
	Methods    uint16
	Events     uint16
	// The provider's event pool (events and field values), sent when the
	// service has events and the consumer may subscribe; its fd comes first.
	HasEventPool bool
	EventPool    Geometry
	// The binding's own reply pool (method replies), sent when the service
	// has methods and the consumer may call; its fd comes second.
	HasReplyPool bool
	ReplyPool    Geometry
}

// CallMethod invokes a method (consumer -> provider).
type CallMethod struct {
	ProvidedID    uint64
	InvocationID  uint64
	Method        uint16
	FireAndForget bool
	Payload       Payload // in the consumer's pool
}

// CallMethodHandle acknowledges an accepted invocation (provider -> consumer).
type CallMethodHandle struct {
	RequiredID   uint64
	InvocationID uint64
}

// CallMethodReply completes an invocation (provider -> consumer).
type CallMethodReply struct {
	RequiredID   uint64
	InvocationID uint64
	Result       Result
	Code         int32
	Payload      Payload // in the provider's pool
}

// CancelMethodCall withdraws interest in a reply (consumer -> provider).
type CancelMethodCall struct {
	ProvidedID   uint64
	InvocationID uint64
	Method       uint16
}

// SubscribeEvent subscribes to or unsubscribes from one event.
type SubscribeEvent struct {
	ProvidedID uint64
	Event      uint16
	Mode       Mode
	Subscribe  bool
}

// SubscribeEventReply acknowledges (StatusOK) or refuses a subscription.
type SubscribeEventReply struct {
	RequiredID uint64
	Event      uint16
	Status     Status
}

// EventUpdate delivers one event value (provider -> consumer).
type EventUpdate struct {
	RequiredID uint64
	Event      uint16
	Seq        uint64 // per-event sequence number, starting at 1
	Requested  bool
	Payload    Payload // in the provider's pool
	// Inline (ring entries only, with CapInline): the Payload.Len bytes
	// follow in the ring's next entries (InlineEntries) instead of lying
	// in a slot the reader holds; Payload.Slot is NoSlot.
	Inline bool
}

// EventUpdateRequest asks for the current value of a field.
type EventUpdateRequest struct {
	ProvidedID uint64
	Event      uint16
}

// PayloadConsumed releases one reference to a payload in the receiver's pool.
type PayloadConsumed struct {
	Handle  uint64 // the receiver's handle of the binding (its provided or required id)
	Payload Payload
	Reply   bool // the payload is in the binding's reply pool
}

// FindService starts or stops watching for instances of an interface.
type FindService struct {
	Service Service // empty Instance: any instance
	Add     bool
}

// Ring hands the receiver the sender's half of the connection's rings:
// two fds travel with the packet, a sealed memfd (the sender's control
// words and its ring of Entries entries) and the read end of a pipe the
// sender writes to wake the receiver.
type Ring struct {
	Entries uint32 // a power of two
}

// Goodbye announces an orderly close: the sender closes the connection
// after it, so the receiver can tell an orderly departure from a crash.
type Goodbye struct {
	Status Status // why (StatusShuttingDown for a normal close)
}
