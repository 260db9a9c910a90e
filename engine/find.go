package engine

import (
	"fmt"
	"slices"

	"github.com/gwipc/gwipc/engine/internal/wire"
)

// FindEvent reports a service instance appearing at, or disappearing from,
// a peer.
type FindEvent struct {
	Service   ServiceID // the instance as the peer offers it (its own minor)
	Peer      *Peer
	Available bool // true: offered now; false: withdrawn, or the peer is gone
}

// Finder watches peers for instances of an interface.
type Finder struct {
	n       *Node
	pattern wire.Service // empty Instance: any instance
	fn      func(FindEvent)
	closed  bool
}

// Find watches every peer, now and later, for offers of iface (same id and
// major, minor at least iface.Minor) with the given instance, or any
// instance if instance is "" or "*". fn runs inside Dispatch for each instance
// that appears or disappears; instances already known are reported at once.
func (n *Node) Find(iface Interface, instance string, fn func(FindEvent)) (*Finder, error) {
	if fn == nil {
		return nil, fmt.Errorf("%w: nil callback", ErrInvalidConfig)
	}
	if instance == "*" {
		instance = ""
	}
	if err := validName("service id", iface.ID); err != nil {
		return nil, err
	}
	if instance != "" {
		if err := validName("instance id", instance); err != nil {
			return nil, err
		}
	}
	if err := n.lockChecked(); err != nil {
		return nil, err
	}
	defer n.unlock()
	f := &Finder{n: n, pattern: wire.Service{ID: iface.ID, Major: iface.Major, Minor: iface.Minor, Instance: instance}, fn: fn}
	n.finders = append(n.finders, f)
	for _, p := range n.peers {
		if p.state != peerReady {
			continue
		}
		f.announce(p, true)
		for _, seen := range p.offers {
			if f.matches(seen.svc) && n.allowed(p, seen.svc, ActionOffer) {
				f.notify(seen.svc, p, true)
			}
		}
	}
	return f, nil
}

// Close stops watching. Idempotent.
func (f *Finder) Close() error {
	n := f.n
	n.mu.Lock()
	defer n.unlock()
	if f.closed || n.closed {
		return nil
	}
	f.closed = true
	n.finders = slices.DeleteFunc(n.finders, func(g *Finder) bool { return g == f })
	for _, p := range n.peers {
		if p.announced[f] {
			f.announce(p, false)
		}
		n.forgetUnwatchedOffers(p)
	}
	return nil
}

// forgetUnwatchedOffers drops p's recorded offers that no proxy or finder
// of ours watches any more: p stops telling us about them.
func (n *Node) forgetUnwatchedOffers(p *peer) {
	for key, seen := range p.offers {
		if !n.watching(seen.svc) {
			delete(p.offers, key)
		}
	}
}

func (f *Finder) announce(p *peer, add bool) {
	if p.caps&wire.CapFind == 0 {
		return
	}
	if add {
		p.announced[f] = true
	} else {
		delete(p.announced, f)
	}
	p.queue(&wire.FindService{Service: f.pattern, Add: add})
}

func (f *Finder) matches(svc ServiceID) bool { return findMatches(f.pattern, svc) }

func (f *Finder) notify(svc ServiceID, p *peer, up bool) {
	fn, pub := f.fn, p.pub
	f.n.enqueue(callback{fn: func() { fn(FindEvent{Service: svc, Peer: pub, Available: up}) }})
}

// findMatches applies a find element to an offered service.
func findMatches(pattern wire.Service, svc ServiceID) bool {
	return pattern.ID == svc.ID && pattern.Major == svc.Major && pattern.Minor <= svc.Minor &&
		(pattern.Instance == "" || pattern.Instance == svc.Instance)
}

// offerSeenChanged tells the finders that p started or stopped offering svc.
func (n *Node) offerSeenChanged(p *peer, svc ServiceID, up bool) {
	if !n.allowed(p, svc, ActionOffer) {
		return
	}
	for _, f := range n.finders {
		if f.matches(svc) {
			f.notify(svc, p, up)
		}
	}
}

// watching reports whether this node still wants to hear about svc's
// offers: a proxy requires it or a finder matches it.
func (n *Node) watching(svc ServiceID) bool {
	if n.proxies[svc.key()] != nil {
		return true
	}
	return slices.ContainsFunc(n.finders, func(f *Finder) bool { return f.matches(svc) })
}

// Provider side: peers' find elements.

func (n *Node) onFindService(p *peer, m *wire.FindService) error {
	if m.Service.ID == "" {
		return protoErr("Find_service with an empty service id", nil)
	}
	n.addFind(p, m.Service, m.Add)
	return nil
}

// addFind records (or removes) one of p's find elements and answers it
// with the matching offers.
func (n *Node) addFind(p *peer, el wire.Service, add bool) {
	if !add {
		if i := slices.Index(p.finds, el); i >= 0 {
			p.finds = slices.Delete(p.finds, i, i+1)
		}
		return
	}
	if len(p.finds) >= n.cfg.Limits.FindElements {
		n.quotaHit(p, "find elements")
		return
	}
	p.finds = append(p.finds, el)
	for _, o := range n.offers {
		if findMatches(el, o.svc) && n.allowed(p, o.svc, ActionRequire) {
			o.sendOffer(p, true)
		}
	}
}

// finds reports whether one of p's find elements matches svc.
func (p *peer) finding(svc ServiceID) bool {
	return slices.ContainsFunc(p.finds, func(el wire.Service) bool { return findMatches(el, svc) })
}
