package engine

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/gwipc/gwipc/shm"
)

// Action is what a peer does with a service, for access rules.
type Action uint8

// Actions, combinable as a mask.
const (
	ActionOffer     Action = 1 << iota // offer the service to this node (checked by a consumer: imposter protection)
	ActionRequire                      // bind to this node's offer
	ActionSubscribe                    // subscribe to this node's events
	ActionCall                         // call this node's methods
	ActionAll       = ActionOffer | ActionRequire | ActionSubscribe | ActionCall
)

// Rule allows or denies actions on services to peers. Rules are checked in
// order and the first that matches decides; when none matches the action
// is allowed.
type Rule struct {
	// Service is the interface id the rule applies to; "" or "*" means any.
	Service string
	// Instance is the instance id; "" or "*" means any.
	Instance string
	// Actions the rule covers (a mask; zero means ActionAll).
	Actions Action
	// UIDs and GIDs name the peers the rule applies to: a peer matches if
	// its uid is in UIDs or its gid is in GIDs. Both empty: every peer.
	UIDs, GIDs []uint32
	// Deny makes a matching rule refuse the action (else it allows it).
	Deny bool
}

func (r *Rule) matches(c PeerCred, svc ServiceID, act Action) bool {
	acts := r.Actions
	if acts == 0 {
		acts = ActionAll
	}
	return acts&act != 0 &&
		(r.Service == "" || r.Service == "*" || r.Service == svc.ID) &&
		(r.Instance == "" || r.Instance == "*" || r.Instance == svc.Instance) &&
		credIn(c, r.UIDs, r.GIDs)
}

// credIn reports whether c's uid or gid is listed; empty lists match all.
func credIn(c PeerCred, uids, gids []uint32) bool {
	if len(uids) == 0 && len(gids) == 0 {
		return true
	}
	return slices.Contains(uids, c.UID) || slices.Contains(gids, c.GID)
}

// PeerCred identifies a peer for access decisions: its kernel-verified
// credentials and the name it gave.
type PeerCred struct {
	PID      int
	UID, GID uint32
	Name     string
}

func (p *peer) cred() PeerCred {
	c := p.pub.cred
	return PeerCred{PID: int(c.PID), UID: c.UID, GID: c.GID, Name: p.pub.name}
}

// Limits bound what one peer may make this node hold. Zero fields take the
// defaults; exceeding a limit is refused (a nack, a rejection, or an
// ignored request) and counted, never queued.
type Limits struct {
	Services      int // services one peer may request or bind (default 1024)
	Subscriptions int // event subscriptions of one peer (default 4096)
	// PendingCalls bounds one peer's method calls this node has received and
	// not finished: unanswered calls, and fire-and-forget calls whose
	// handler has not run yet (default 1024).
	PendingCalls int
	FindElements int // find-service watches of one peer (default 256)
	// PoolBytes bounds one pool a peer may make this node create (a size in
	// its Connect) or map (a pool it sends): default 64 MiB.
	PoolBytes int64
	// PoolSlots bounds the slot count of such a pool (default 4096).
	PoolSlots int
	// MappedBytes bounds the sum of one peer's pools (and its ring) this
	// node maps at once (default 256 MiB). Below 2 MiB + 4 KiB, what the
	// largest ring needs, the node goes without rings.
	MappedBytes int64
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.Services, 1024)
	def(&l.Subscriptions, 4096)
	def(&l.PendingCalls, 1024)
	def(&l.FindElements, 256)
	def(&l.PoolSlots, 4096)
	if l.PoolBytes == 0 {
		l.PoolBytes = 64 << 20
	}
	if l.MappedBytes == 0 {
		l.MappedBytes = 256 << 20
	}
	return l
}

func (l Limits) validate() error {
	if l.Services < 0 || l.Subscriptions < 0 || l.PendingCalls < 0 || l.FindElements < 0 ||
		l.PoolSlots < 0 || l.PoolBytes < 0 || l.MappedBytes < 0 {
		return fmt.Errorf("%w: negative limit in %+v", ErrInvalidConfig, l)
	}
	return nil
}

// checkPool reports whether a pool of geometry g that a peer sizes or sends
// is within the limits.
func (l *Limits) checkPool(g shm.Geometry) error {
	if err := g.Validate(); err != nil {
		return err
	}
	if int64(g.SlotCount) > int64(l.PoolSlots) || g.Size() > l.PoolBytes {
		return fmt.Errorf("%w: pool of %d slots of %d bytes (%d bytes) exceeds the limit of %d slots, %d bytes",
			ErrQuotaExceeded, g.SlotCount, g.SlotSize, g.Size(), l.PoolSlots, l.PoolBytes)
	}
	return nil
}

// allowed applies the node's rules to a peer's action on svc.
func (n *Node) allowed(p *peer, svc ServiceID, act Action) bool {
	c := p.cred()
	for i := range n.cfg.Policy {
		if r := &n.cfg.Policy[i]; r.matches(c, svc, act) {
			return !r.Deny
		}
	}
	return true
}

var actionNames = map[Action]string{ActionOffer: "offer", ActionRequire: "require", ActionSubscribe: "subscribe", ActionCall: "call"}

// reject records and logs a refusal by policy.
func (n *Node) reject(p *peer, svc ServiceID, act Action) {
	n.counters.PolicyRejections++
	p.stats.PolicyRejections++
	n.peerLogf(p, slog.LevelWarn, "refused by policy", "action", actionNames[act], "service", svc)
}

// quotaHit records and logs a refusal by a limit.
func (n *Node) quotaHit(p *peer, what string) {
	n.counters.QuotaHits++
	p.stats.QuotaHits++
	n.peerLogf(p, slog.LevelWarn, "peer limit reached", "limit", what)
}
