package swim

// EventResync heads the event queue after events were dropped from it:
// the consumer did not pop them in time, and the queue, which never
// blocks the protocol, dropped the oldest (Config.MaxEvents; the number
// is counted in [Stats].DroppedEvents). The consumer's view of the
// membership may have missed changes: it must replace it with
// [Core.Members] (or [Node.Members]) and then apply the events that follow
// the marker as usual. Those are already reflected in Members, and each
// carries the member's state right after its change, so applying them in
// order ends in the current view. Event.At is the time of the latest
// drop; Event.Member is empty.
//
// Why this policy: membership is state, not a log. Blocking the protocol
// until a slow consumer catches up (memberlist's ChannelEventDelegate on a
// full channel, serf's event channel) stalls probes and acks, so the
// local node's slowness becomes false suspicions of it and of others.
// Dropping the newest events would leave the consumer with a view that is
// stale until the next change of each member; dropping the oldest and
// telling the consumer keeps the latest changes and gives it everything
// it needs to repair its view from one snapshot.
const EventResync EventKind = EventConflict + 1

// pushEvent appends e to q, which holds at most max events (max >= 1). On
// overflow the oldest events are dropped and one EventResync, at e.At,
// heads q instead: q is then the marker and the newest max-1 events. It
// returns q and the number of events dropped (the marker is not counted).
func pushEvent(q []Event, e Event, max int) ([]Event, uint64) {
	q = append(q, e)
	if len(q) <= max {
		return q, 0
	}
	events := q
	if events[0].Kind == EventResync {
		events = events[1:]
	}
	drop := len(events) - (max - 1)
	n := copy(q[1:], events[drop:])
	q[0] = Event{Kind: EventResync, At: e.At}
	clear(q[1+n:])
	return q[:1+n], uint64(drop)
}
