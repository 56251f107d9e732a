package swim

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config configures a [Core]. Zero fields mean the documented defaults,
// which are hashicorp/memberlist's LAN defaults; ID and Addr have none, so
// the zero Config is invalid. It is a plain value, safe to copy (copies
// share the Keyring, whose changes apply to every core that uses it).
type Config struct {
	// ID names the local node; required, unique in the cluster, at most
	// MaxIDLen bytes.
	ID string
	// Addr is the transport address other nodes send to; required, at most
	// MaxAddrLen bytes.
	Addr string
	// Meta is user metadata disseminated with the node, at most MaxMetaLen
	// bytes. The core keeps the slice: do not modify it afterwards.
	Meta []byte
	// Seeds are addresses of nodes to join through. While the local node
	// knows no other live member, every tick sends them a join request
	// (at most once per ProbeInterval).
	Seeds []string
	// Incarnation is the local node's starting incarnation. A node that
	// restarts under the same ID need not set it: it learns its old
	// incarnation from the cluster and refutes it with a higher one. At
	// most math.MaxUint64/2, so that raising it never wraps.
	Incarnation uint64
	// RandSeed seeds the core's random choices (probe order, ping-req
	// helpers, push-pull partners): the same seed and the same inputs give
	// the same outputs.
	RandSeed uint64

	// ProbeInterval is the protocol period: one member is probed per
	// interval. 0: 1s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a direct ack before asking
	// IndirectChecks other members to probe. 0: 500ms. Must be below
	// ProbeInterval.
	ProbeTimeout time.Duration
	// IndirectChecks is k, the number of members asked to probe a target
	// that missed its direct ack. 0: 3; negative: none.
	IndirectChecks int
	// SuspicionMult scales the minimum suspicion timeout:
	// SuspicionMult * max(1, log10(n)) * ProbeInterval for n live members.
	// 0: 4.
	SuspicionMult int
	// SuspicionMaxTimeoutMult is the maximum suspicion timeout as a
	// multiple of the minimum (Lifeguard). 0: 6.
	SuspicionMaxTimeoutMult int
	// AwarenessMaxMultiplier bounds Lifeguard's local health multiplier,
	// which scales the probe interval and timeout. 0: 8.
	AwarenessMaxMultiplier int
	// RetransmitMult sets how many times each update is piggybacked:
	// RetransmitMult * ceil(log10(n+1)). 0: 4.
	RetransmitMult int
	// GossipInterval is the period of memberlist-style gossip: while
	// updates wait in the dissemination queue, every GossipInterval they
	// are also sent, without a probe, to GossipNodes random live members.
	// Piggybacking alone (pure SWIM) reaches a node only as fast as it is
	// probed; gossip bounds dissemination time under loss. Nothing is sent
	// while the queue is empty. 0: 200ms; negative: piggybacking only.
	GossipInterval time.Duration
	// GossipNodes is the fan-out of each gossip round. 0: 3.
	GossipNodes int
	// PushPullInterval is the period of full-state anti-entropy with one
	// random live member (stretched above 32 members, see pushPullScale),
	// which also contacts one random dead member so that partitions heal.
	// 0: 30s; negative: never.
	PushPullInterval time.Duration
	// DeadRetention is how long a dead or left member is remembered (and
	// kept from being resurrected by stale gossip at its old incarnation).
	// 0: 1h.
	DeadRetention time.Duration
	// DeadNodeReclaimTime is how long after a member was declared dead,
	// or left, an alive message may move it to a new address (a node
	// restarted elsewhere under the same ID, as memberlist's option of the
	// same name). Before that, and at any time while the member is alive
	// or suspect, such a message is refused as a conflict (see
	// EventConflict). 0: 30s; negative: never.
	DeadNodeReclaimTime time.Duration
	// Keyring, when set, seals every packet the core sends with
	// AES-256-GCM under its primary key, and the core accepts only
	// packets that one of its keys opens: anything else is dropped,
	// counted in [Stats].Unopened, and changes nothing (see [Keyring]).
	// nil: packets are neither sealed nor authenticated.
	Keyring *Keyring
	// ReplayWindow, with a Keyring, is how far from the receiver's clock,
	// either way, the time a packet was sealed may lie: a packet outside
	// it, or one accepted before, is dropped (see [ErrReplay]). Set it
	// above the largest clock skew between two members plus the longest
	// delivery delay: a node whose clock is further off is cut off from
	// the cluster (its packets are counted in [Stats].Stale by the
	// others). A captured packet can be delivered once to each node, and
	// only within the window. 0: 30s; at most 24h.
	ReplayWindow time.Duration
	// Label names the cluster; with a Keyring it is authenticated with
	// every packet, so two clusters on one network never exchange a
	// packet, even under the same key. At most MaxLabelLen bytes.
	Label string
	// UserState, when set, exchanges an application state on every
	// push-pull (see [StateDelegate]). nil: none.
	UserState StateDelegate
	// MaxStateLen bounds a user state, sent or merged, in bytes. 0: the
	// most that fits in one packet, MTU - 256; at most that.
	MaxStateLen int
	// MTU bounds every packet the core builds, in bytes. 0: 1400; from
	// MinMTU to MaxMTU.
	MTU int
	// MaxEvents bounds the event queue; when it is full the oldest events
	// are dropped, counted in [Stats], and an EventResync tells the
	// consumer. 0: 1024.
	MaxEvents int
	// MaxBroadcasts bounds the queue of user broadcasts to disseminate,
	// the local node's and those it relays; one origin's take at most an
	// eighth of it (see [Core.Broadcast]). 0: 256.
	MaxBroadcasts int
	// MaxMessages bounds the queue of received user broadcasts and
	// messages for the application, an eighth of it per sender (see
	// [Core.PopMessages]). 0: 1024.
	MaxMessages int
	// DisableLifeguard turns off Lifeguard: no local health multiplier, no
	// nacks, a fixed suspicion timeout (the minimum), no buddy system. For
	// comparison with plain SWIM.
	DisableLifeguard bool
}

// ErrConfig is returned (wrapped) by [New] for an invalid [Config].
var ErrConfig = errors.New("swim: invalid config")

// withDefaults returns c with zero fields set to their defaults, or an
// error wrapping ErrConfig.
func (c Config) withDefaults() (Config, error) {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defDur(&c.ProbeInterval, time.Second)
	defDur(&c.ProbeTimeout, 500*time.Millisecond)
	def(&c.IndirectChecks, 3)
	def(&c.SuspicionMult, 4)
	def(&c.SuspicionMaxTimeoutMult, 6)
	def(&c.AwarenessMaxMultiplier, 8)
	def(&c.RetransmitMult, 4)
	defDur(&c.GossipInterval, 200*time.Millisecond)
	def(&c.GossipNodes, 3)
	defDur(&c.PushPullInterval, 30*time.Second)
	defDur(&c.DeadRetention, time.Hour)
	defDur(&c.DeadNodeReclaimTime, 30*time.Second)
	def(&c.MTU, 1400)
	defDur(&c.ReplayWindow, 30*time.Second)
	def(&c.MaxEvents, 1024)
	def(&c.MaxBroadcasts, 256)
	def(&c.MaxMessages, 1024)
	c.IndirectChecks = max(c.IndirectChecks, 0)

	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.ID != "" && len(c.ID) <= MaxIDLen, "ID must have 1 to %d bytes", MaxIDLen)
	check(c.Addr != "" && len(c.Addr) <= MaxAddrLen, "Addr must have 1 to %d bytes", MaxAddrLen)
	check(len(c.Meta) <= MaxMetaLen, "Meta has %d bytes, limit %d", len(c.Meta), MaxMetaLen)
	for _, s := range c.Seeds {
		check(s != "" && len(s) <= MaxAddrLen, "seed address %q must have 1 to %d bytes", s, MaxAddrLen)
	}
	check(c.Incarnation <= math.MaxUint64/2, "Incarnation %d above MaxUint64/2", c.Incarnation)
	check(c.ProbeInterval > 0, "ProbeInterval %v must be positive", c.ProbeInterval)
	check(c.ProbeTimeout > 0 && c.ProbeTimeout < c.ProbeInterval,
		"ProbeTimeout %v must be positive and below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	check(c.SuspicionMult > 0, "SuspicionMult %d must be positive", c.SuspicionMult)
	check(c.SuspicionMaxTimeoutMult >= 1, "SuspicionMaxTimeoutMult %d must be at least 1", c.SuspicionMaxTimeoutMult)
	check(c.AwarenessMaxMultiplier >= 1, "AwarenessMaxMultiplier %d must be at least 1", c.AwarenessMaxMultiplier)
	check(c.RetransmitMult > 0, "RetransmitMult %d must be positive", c.RetransmitMult)
	check(c.GossipNodes > 0, "GossipNodes %d must be positive", c.GossipNodes)
	check(c.DeadRetention > 0, "DeadRetention %v must be positive", c.DeadRetention)
	check(c.MTU >= MinMTU && c.MTU <= MaxMTU, "MTU %d outside [MinMTU %d, MaxMTU %d] (MaxMTU is the largest UDP payload over IPv4)", c.MTU, MinMTU, MaxMTU)
	if c.MaxStateLen == 0 {
		c.MaxStateLen = c.MTU - pushPullOverhead
	}
	check(c.MaxStateLen > 0 && c.MaxStateLen <= c.MTU-pushPullOverhead,
		"MaxStateLen %d outside [1, MTU-%d]", c.MaxStateLen, pushPullOverhead)
	check(c.ReplayWindow > 0 && c.ReplayWindow <= 24*time.Hour, "ReplayWindow %v outside (0, 24h]", c.ReplayWindow)
	check(c.MaxEvents > 0, "MaxEvents %d must be positive", c.MaxEvents)
	check(c.MaxBroadcasts > 0, "MaxBroadcasts %d must be positive", c.MaxBroadcasts)
	check(c.MaxMessages > 0, "MaxMessages %d must be positive", c.MaxMessages)
	check(len(c.Label) <= MaxLabelLen, "Label has %d bytes, limit %d", len(c.Label), MaxLabelLen)
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, nil
}
