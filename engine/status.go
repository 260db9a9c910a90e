package engine

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/gwipc/gwipc/engine/internal/wire"
	"github.com/gwipc/gwipc/shm"
)

// Status is a point-in-time snapshot of a node, for operators and tests. It
// marshals to JSON as served by the Simple-IPC status endpoint.
type Status struct {
	Name     string        `json:"name"`
	Role     string        `json:"role"` // "listener" or "dialler"
	Path     string        `json:"path"`
	PID      int           `json:"pid"`
	Dialler  *DiallerState `json:"dialler,omitempty"`
	Peers    []PeerStatus  `json:"peers"`
	Offers   []OfferStatus `json:"offers"`
	Proxies  []ProxyStatus `json:"proxies"`
	Finders  []string      `json:"finders"` // what this node watches for ("id@major.minor/instance", "*" for any)
	Counters NodeCounters  `json:"counters"`
}

// DiallerState is a dialler's connection state.
type DiallerState struct {
	Connected bool   `json:"connected"`
	Attempts  uint64 `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	// NextAttempt is when the next connect is due (zero while connected).
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// NodeCounters are a node's running totals.
type NodeCounters struct {
	PeersAccepted    uint64 `json:"peers_accepted"`
	PeersRejected    uint64 `json:"peers_rejected"`
	PeersLost        uint64 `json:"peers_lost"`
	AcceptErrors     uint64 `json:"accept_errors"` // accepts that failed (out of file descriptors, ...)
	ProtocolErrors   uint64 `json:"protocol_errors"`
	PolicyRejections uint64 `json:"policy_rejections"`
	QuotaHits        uint64 `json:"quota_hits"`
}

// PeerStatus describes one connected peer.
type PeerStatus struct {
	ID               uint64    `json:"id"`
	Name             string    `json:"name"`
	PID              int       `json:"pid"`
	UID              uint32    `json:"uid"`
	GID              uint32    `json:"gid"`
	State            string    `json:"state"`
	Ring             bool      `json:"ring"`       // hot messages go through shared-memory rings
	RingWakes        uint64    `json:"ring_wakes"` // times this node woke the peer, parked on its ring
	Since            time.Time `json:"since"`
	QueuedBytes      int       `json:"queued_bytes"`
	PacketsIn        uint64    `json:"packets_in"`
	PacketsOut       uint64    `json:"packets_out"`
	MessagesIn       uint64    `json:"messages_in"`
	MessagesOut      uint64    `json:"messages_out"`
	BytesIn          uint64    `json:"bytes_in"`
	BytesOut         uint64    `json:"bytes_out"`
	UpdatesDropped   uint64    `json:"updates_dropped"`
	StaleHandles     uint64    `json:"stale_handles"`
	PolicyRejections uint64    `json:"policy_rejections"`
	QuotaHits        uint64    `json:"quota_hits"`
	PendingCalls     int       `json:"pending_calls"` // its calls we have not finished
	MappedBytes      int64     `json:"mapped_bytes"`  // bytes of its pools we map
	Subscriptions    int       `json:"subscriptions"`
	Requests         []string  `json:"requests"` // services this peer asked us for
	Offers           []string  `json:"offers"`   // services this peer offers
	Finds            []string  `json:"finds"`    // what this peer watches for
}

// PoolStatus describes a shared-memory pool.
type PoolStatus struct {
	SlotSize  uint32 `json:"slot_size"`
	SlotCount uint32 `json:"slot_count"`
	InUse     int    `json:"in_use"`
}

// OfferStatus describes one offered service.
type OfferStatus struct {
	Service  string          `json:"service"`
	Events   uint16          `json:"events"`
	Methods  uint16          `json:"methods"`
	Pool     *PoolStatus     `json:"pool,omitempty"`  // the event pool, once created
	Share    int             `json:"share,omitempty"` // slots of it one subscriber may hold
	Bindings []BindingStatus `json:"bindings"`
	Fields   []FieldStatus   `json:"fields"`
	Counters OfferCounters   `json:"counters"`
}

// FieldStatus is a field's cached value and waiting requests.
type FieldStatus struct {
	Event      uint16 `json:"event"`
	Cached     bool   `json:"cached"`
	Seq        uint64 `json:"seq,omitempty"`
	Len        uint32 `json:"len,omitempty"`
	Requesters int    `json:"requesters"` // peers waiting for the next value
}

// BindingStatus is one consumer bound to an offer.
type BindingStatus struct {
	Peer         uint64            `json:"peer"`
	ProvidedID   uint64            `json:"provided_id"`
	RequiredID   uint64            `json:"required_id"`
	Subscriber   bool              `json:"subscriber"`           // it may subscribe (it maps the event pool)
	ReplyPool    *PoolStatus       `json:"reply_pool,omitempty"` // its own reply pool, if it may call
	Events       []uint16          `json:"events"`               // subscribed
	Holds        int               `json:"holds"`                // event-pool slots it holds now
	PendingCalls int               `json:"pending_calls"`        // its calls not yet answered
	Drops        map[uint16]uint64 `json:"drops,omitempty"`      // updates dropped for it, by event
}

// ProxyStatus describes one required service.
type ProxyStatus struct {
	Service       string               `json:"service"`
	Available     bool                 `json:"available"`
	Provider      uint64               `json:"provider,omitempty"` // bound peer id
	Candidates    []uint64             `json:"candidates"`
	Subscriptions []SubscriptionStatus `json:"subscriptions"`
	PendingCalls  int                  `json:"pending_calls"`
	CallPool      *PoolStatus          `json:"call_pool,omitempty"` // the current binding's

	Counters ProxyCounters `json:"counters"`
}

// SubscriptionStatus describes one subscription of a proxy.
type SubscriptionStatus struct {
	Event    uint16 `json:"event"`
	State    string `json:"state"`
	LastSeq  uint64 `json:"last_seq"`
	Received uint64 `json:"received"`
	Gaps     uint64 `json:"gaps"`
}

// Status returns a snapshot of the node. It first takes what waits in the
// rings (consumes are taken lazily), so slot counts are current.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.unlock()
	n.readRings()
	st := Status{Name: n.cfg.Name, Role: "dialler", Path: n.dialPath, PID: pid, Counters: NodeCounters(n.counters),
		Peers: []PeerStatus{}, Offers: []OfferStatus{}, Proxies: []ProxyStatus{}, Finders: []string{}}
	for _, f := range n.finders {
		st.Finders = append(st.Finders, findString(f.pattern))
	}
	if n.isListener {
		st.Role = "listener"
		if n.listener != nil {
			st.Path = n.listener.Path()
		}
	} else {
		d := &DiallerState{Connected: n.dialPeer != nil && n.dialPeer.state == peerReady, Attempts: n.dialAttempts, NextAttempt: n.dialAt}
		if n.lastDialErr != nil {
			d.LastError = n.lastDialErr.Error()
		}
		st.Dialler = d
	}
	for _, p := range n.peers {
		ps := PeerStatus{ID: p.pub.id, Name: p.pub.name, PID: int(p.pub.cred.PID), UID: p.pub.cred.UID, GID: p.pub.cred.GID,
			State: p.state.String(), Ring: p.ring.ready(), RingWakes: p.stats.RingWakes, Since: p.since, QueuedBytes: p.queued,
			PacketsIn: p.stats.PacketsIn, PacketsOut: p.stats.PacketsOut, MessagesIn: p.stats.MessagesIn, MessagesOut: p.stats.MessagesOut,
			BytesIn: p.stats.BytesIn, BytesOut: p.stats.BytesOut, UpdatesDropped: p.stats.UpdatesDropped, StaleHandles: p.stats.StaleHandles,
			PolicyRejections: p.stats.PolicyRejections, QuotaHits: p.stats.QuotaHits,
			PendingCalls: p.pendingCalls, MappedBytes: p.mapped, Subscriptions: p.subscriptions,
			Requests: []string{}, Offers: []string{}, Finds: []string{}}
		for _, el := range p.finds {
			ps.Finds = append(ps.Finds, findString(el))
		}
		for _, w := range p.interest {
			ps.Requests = append(ps.Requests, serviceFromWire(w).String())
		}
		for _, o := range p.offers {
			ps.Offers = append(ps.Offers, o.svc.String())
		}
		slices.Sort(ps.Requests)
		slices.Sort(ps.Offers)
		st.Peers = append(st.Peers, ps)
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return cmp.Compare(a.ID, b.ID) })
	for _, o := range n.offers {
		os := OfferStatus{Service: o.svc.String(), Events: o.cfg.Events, Methods: o.cfg.Methods, Counters: o.stats,
			Bindings: []BindingStatus{}, Fields: []FieldStatus{}}
		for ev, es := range o.events {
			if es != nil && (es.field || len(es.requesters) > 0) {
				os.Fields = append(os.Fields, FieldStatus{Event: uint16(ev), Cached: es.cached, Seq: es.cacheSeq,
					Len: es.cacheLen, Requesters: len(es.requesters)})
			}
		}
		if o.pool != nil {
			os.Pool, os.Share = poolStatus(o.pool), o.share
		}
		for _, b := range o.bindings {
			evs := slices.Clone(b.events)
			slices.Sort(evs)
			bs := BindingStatus{Peer: b.peer.pub.id, ProvidedID: b.providedID, RequiredID: b.requiredID, Subscriber: b.subscriber,
				Events: evs, PendingCalls: len(b.calls), Drops: maps.Clone(b.drops)}
			if b.subscriber {
				bs.Holds = o.pool.Holds(b.reader)
			}
			if b.replies != nil {
				bs.ReplyPool = poolStatus(b.replies)
			}
			os.Bindings = append(os.Bindings, bs)
		}
		slices.SortFunc(os.Bindings, func(a, b BindingStatus) int { return cmp.Compare(a.Peer, b.Peer) })
		st.Offers = append(st.Offers, os)
	}
	slices.SortFunc(st.Offers, func(a, b OfferStatus) int { return cmp.Compare(a.Service, b.Service) })
	for _, px := range n.proxies {
		ps := ProxyStatus{Service: px.svc.String(), Counters: px.stats, Candidates: []uint64{}, Subscriptions: []SubscriptionStatus{}}
		if b := px.bind; b != nil {
			ps.Available = b.connected
			ps.Provider = b.peer.pub.id
			ps.PendingCalls = len(b.calls)
			if b.callPool != nil {
				ps.CallPool = poolStatus(b.callPool)
			}
		}
		for _, c := range px.candidates {
			ps.Candidates = append(ps.Candidates, c.pub.id)
		}
		for _, s := range px.subs {
			if s == nil {
				continue
			}
			ps.Subscriptions = append(ps.Subscriptions, SubscriptionStatus{Event: s.event, State: s.state.String(),
				LastSeq: s.lastSeq, Received: s.received, Gaps: s.gaps})
		}
		slices.SortFunc(ps.Subscriptions, func(a, b SubscriptionStatus) int { return cmp.Compare(a.Event, b.Event) })
		st.Proxies = append(st.Proxies, ps)
	}
	slices.SortFunc(st.Proxies, func(a, b ProxyStatus) int { return cmp.Compare(a.Service, b.Service) })
	return st
}

var pid = os.Getpid()

func poolStatus(p *shm.Pool) *PoolStatus {
	st := p.Stats()
	return &PoolStatus{SlotSize: st.SlotSize, SlotCount: st.SlotCount, InUse: st.InUse}
}

// findString shows a find element: id/instance@major.minor ("*": any instance).
func findString(el wire.Service) string {
	inst := el.Instance
	if inst == "" {
		inst = "*"
	}
	return fmt.Sprintf("%s/%s@%d.%d", el.ID, inst, el.Major, el.Minor)
}
