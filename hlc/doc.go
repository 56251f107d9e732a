// Package hlc implements the hybrid logical clock of Kulkarni, Demirbas et
// al. (2014): timestamps that follow physical time closely, yet respect
// causality like a Lamport clock, in one uint64.
//
// A [Timestamp] packs microseconds since the Unix epoch in its high 52 bits
// and a logical counter in its low 12 bits; integer order is HLC order, and
// a logical overflow carries into the next microsecond. It covers 1970 to
// 2112 (see [Timestamp] for the reasoning). A [Clock] issues timestamps for
// local and send events ([Clock.Now]) and receive events ([Clock.Update]),
// with one atomic word and no locks or allocations; while the physical
// clock has not passed the last timestamp, Now and Update are wait-free
// (one atomic add), so goroutines that stamp events at once do not retry.
//
// # Usage
//
//	var c hlc.Clock                      // or hlc.New(hlc.Config{MaxOffset: 500 * time.Millisecond})
//	ts := c.Now()                        // stamp an outgoing message or a local write
//	ts, err := c.Update(msg.Timestamp)   // on receipt; err matches hlc.ErrClockOffset
//	                                     // when the sender's clock is too far ahead
//	b, _ := ts.MarshalBinary()           // 8 bytes, big-endian: byte order is HLC order
//
// Timestamps encode as text (RFC 3339 with microseconds, a comma and the
// logical counter: "2026-11-27T14:06:57.123456Z,3"), as 8 big-endian bytes,
// and in msgpack as an unsigned integer.
//
// # Guarantees
//
// With pt the physical time as a Timestamp with logical counter 0, Now
// returns max(last+1, pt) and Update(remote) returns max(last+1, remote+1,
// pt), where last is the clock's previous timestamp. While logical counters
// stay below 4096 this is exactly the (l, c) algorithm of the paper's
// figure 5; a counter only grows while the physical clock has not passed
// the clock's wall part, so reaching 4096 takes 4096 events within one microsecond, or
// within the time the clock runs ahead (after a backward jump or a remote
// timestamp from the future). Then the counter carries into the wall part
// instead of growing without bound. Therefore:
//
//   - Every timestamp a Clock issues is greater than every timestamp it
//     issued before, also across goroutines (no two calls return the same
//     timestamp) and when the physical clock goes backwards.
//   - Update(remote) is greater than remote: if event e happened before
//     event f, ts(e) < ts(f).
//   - The wall part never exceeds the largest physical time the clock has
//     read or accepted from a peer (plus one microsecond per 4096 events
//     issued while ahead, see above). With a monotonic physical clock it is
//     ahead of the physical clock by at most the largest offset Update
//     accepted, hence by at most MaxOffset when one is set.
//   - A rejected Update leaves the clock unchanged.
//   - [Clock.Stats] counts backward jumps of the physical clock, the largest
//     offset a remote timestamp had, and rejections, so operators can alert
//     on skew.
//   - No timestamp from another process can exhaust the clock: every
//     decoder, Update and Restore refuse a timestamp in the last
//     representable microsecond with an error wrapping [ErrRange]. Only a
//     physical clock past 2112 brings a clock to [MaxTimestamp]; then
//     TryNow and Update return errors and Now panics.
//   - Restore refuses a floor further ahead of the physical clock than
//     Config.MaxRestoreAhead with a [*RestoreError], leaving the clock
//     unchanged.
//   - With Config.EnforceUpperBound, no timestamp past the bound given to
//     SetUpperBound is issued: TryNow and Update return an error wrapping
//     [ErrUpperBound] and Now panics, leaving the clock unchanged.
//
// # Restart safety
//
// A clock keeps no state across a process restart. If the physical clock
// after the restart is behind the last timestamp issued before it — the
// clock was ahead because of a peer, or the physical clock was stepped back
// — new timestamps could sort before old ones. Persisting every timestamp
// would be too slow; instead, as CockroachDB does with its wall time upper
// bound, persist an upper bound of the timestamps the clock will issue
// before the next persist, and restore it at start:
//
//	// Every interval, before the bound runs out, persist a new one:
//	bound := hlc.Make(c.Now().WallTime().Add(2*interval+maxOffset), 0)
//	store(bound)
//	c.SetUpperBound(bound)
//	// At start, before issuing any timestamp:
//	c := hlc.New(cfg)
//	if err := c.Restore(load()); err != nil { // implausible: see below
//		return err
//	}
//
// The bound holds as long as the persisting loop runs at least every
// interval: timestamps run ahead of the physical clock by at most
// maxOffset. After Restore the clock issues timestamps above the bound,
// which may be ahead of physical time by up to 2*interval+maxOffset; keep
// the interval small relative to the peers' MaxOffset, or, like
// CockroachDB, wait until the physical clock has passed the bound before
// serving (time.Sleep(time.Until(bound.WallTime()))).
//
// Restore refuses a floor further ahead of the physical clock than
// Config.MaxRestoreAhead (default 2*MaxOffset + 1 minute; set it to
// 2*interval + 2*MaxOffset), so that a corrupt or forged bound cannot move
// the clock years ahead. If the persisting loop stalls, timestamps may
// pass the last persisted bound and so could repeat after a crash. With
// Config.EnforceUpperBound the clock refuses instead, as CockroachDB's
// does: past the bound given to SetUpperBound, TryNow and Update return
// an error wrapping [ErrUpperBound] and Now panics. Set the first bound
// before serving.
package hlc
