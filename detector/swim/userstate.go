package swim

// StateDelegate exchanges an application's state along with the member
// list, as memberlist's Delegate LocalState and MergeRemoteState: every
// push-pull exchange (the periodic anti-entropy, and a joining node's
// exchange with its seeds) carries the sender's LocalState, and the
// receiver passes it to MergeRemoteState. join is true for the exchanges
// of a node that is joining.
//
// A state travels in one packet, so it is at most Config.MaxStateLen
// bytes: a longer local state is not sent, and a longer remote one is not
// merged; both are counted in [Stats].OversizedStates. A remote state is
// as trustworthy as the packet that carried it (authenticated only with a
// Keyring). The core calls the methods synchronously, from Tick and
// Receive (under a [Node]'s lock: they must not call the Node); they
// should be quick. The slice passed to MergeRemoteState is the
// delegate's to keep; the core keeps the one LocalState returns only
// until the call that sends it returns.
type StateDelegate interface {
	// LocalState returns the state to send; nil or empty sends none.
	LocalState(join bool) []byte
	// MergeRemoteState merges a state a member sent.
	MergeRemoteState(state []byte, join bool)
}

// pushPullOverhead bounds the bytes of a push-pull packet other than the
// user state and the member records: the packet header, the message's
// fields with the longest ID and the cookie, and sealing.
const pushPullOverhead = 256

// localState returns the delegate's local state, or nil when there is
// none or it is too long (counted).
func (c *Core) localState(join bool) []byte {
	d := c.cfg.UserState
	if d == nil {
		return nil
	}
	s := d.LocalState(join)
	if len(s) > c.cfg.MaxStateLen {
		c.stats.OversizedStates++
		return nil
	}
	return s
}

// mergeState passes the user state of a push-pull message to the
// delegate, unless it is too long (counted).
func (c *Core) mergeState(m *message) {
	d := c.cfg.UserState
	switch {
	case d == nil || len(m.state) == 0:
	case len(m.state) > c.cfg.MaxStateLen:
		c.stats.OversizedStates++
	default:
		d.MergeRemoteState(m.state, m.flags&ppJoin != 0)
	}
}
