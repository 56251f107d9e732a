package vclock

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distkit/distkit/clock"
)

// MaxCounter is the largest counter of a [Dot], a [VClock] entry or a
// [DVVSet] entry: 2^63-1, the bound of [clock.MaxCounter], shared by every
// package of distkit that counts events.
//
// Decoders refuse a larger counter (see [CheckCounter]), and local ticks
// stop at MaxCounter: the error-returning ones ([VClock.TryTick],
// [DVVSet.TryUpdate], and in package crdt the Try mutators) return an
// error wrapping [ErrExhausted] and change nothing. So no counter that
// crosses the wire or the disk is ever above MaxCounter, and what one
// replica encodes every other replica decodes.
const MaxCounter = clock.MaxCounter

// ErrExhausted is wrapped by the errors of local ticks that would take a
// counter past [MaxCounter]; the state is left unchanged. Honest replicas
// never get there: it takes 2^63 events of one ID, or a forged counter
// near MaxCounter that a peer or client sent.
var ErrExhausted = errors.New("vclock: counter exhausted")

// CheckCounter returns an error if n is above [MaxCounter]: what every
// decoder of a counter calls before it accepts one. The error does not
// wrap ErrMalformed; decoders wrap it in their own package's.
func CheckCounter(n uint64) error {
	if n > MaxCounter {
		return fmt.Errorf("counter %d above the maximum %d", n, uint64(MaxCounter))
	}
	return nil
}

// AddCounter returns cur + n, or an error wrapping [ErrExhausted] if that
// would exceed [MaxCounter]: how a local tick or increment advances a
// counter. cur must be at most MaxCounter.
func AddCounter(cur, n uint64) (uint64, error) {
	if n > MaxCounter-cur {
		return 0, fmt.Errorf("%w: %d + %d above the maximum %d", ErrExhausted, cur, n, uint64(MaxCounter))
	}
	return cur + n, nil
}

// Dot names one event: the Counter-th event of the actor ID. Dots start at
// 1; the zero Counter names no event. A Dot is a plain value, safe to copy
// and to share.
type Dot struct {
	ID      string
	Counter uint64
}

// String formats d as "id":counter, with the ID quoted.
func (d Dot) String() string {
	return strconv.Quote(d.ID) + ":" + strconv.FormatUint(d.Counter, 10)
}

// Ordering is the causal relation between two clocks, as returned by
// [VClock.Compare].
type Ordering int

// The four outcomes of a comparison of vector clocks. They partition every
// pair of clocks: exactly one holds.
const (
	Equal      Ordering = iota // same counter for every ID
	Before                     // strictly older: every counter <=, one <
	After                      // strictly newer: every counter >=, one >
	Concurrent                 // neither descends from the other
)

// String returns "Equal", "Before", "After" or "Concurrent", and
// "Ordering(n)" for any other value.
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "Equal"
	case Before:
		return "Before"
	case After:
		return "After"
	case Concurrent:
		return "Concurrent"
	}
	return "Ordering(" + strconv.Itoa(int(o)) + ")"
}

// entry is one actor's counter, with the Unix time in nanoseconds of the
// event that set it (0: not recorded).
type entry struct {
	id      string
	counter uint64
	time    int64
}

// VClock is a vector clock: for each actor ID, the number of that actor's
// events it has seen. IDs absent from the clock have counter 0. Each entry
// may also carry the wall time of the event that produced its counter,
// recorded by [VClock.TickAt] and used only by [VClock.Prune]; comparisons
// ignore it.
//
// The zero VClock is empty and ready to use. A VClock is not safe for
// concurrent use. Like a slice, a VClock value refers to shared storage:
// assigning it copies the reference, and mutating either copy (Tick,
// Merge, Prune, decoding) may show through the other. Use [VClock.Clone]
// for an independent copy.
type VClock struct {
	entries []entry // sorted by id, ids unique, counters >= 1
}

// search returns the position of id in v, or where it would be inserted,
// and whether it is present.
func (v VClock) search(id string) (int, bool) {
	return slices.BinarySearchFunc(v.entries, id, func(e entry, id string) int {
		return strings.Compare(e.id, id)
	})
}

// Get returns the counter of id: the number of id's events v has seen, 0
// if none. It does not allocate.
func (v VClock) Get(id string) uint64 {
	if i, ok := v.search(id); ok {
		return v.entries[i].counter
	}
	return 0
}

// Time returns the wall time recorded with id's entry by [VClock.TickAt]
// or carried over by [VClock.Merge], and false if id has no entry or its
// entry has no recorded time.
func (v VClock) Time(id string) (time.Time, bool) {
	i, ok := v.search(id)
	if !ok || v.entries[i].time == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, v.entries[i].time), true
}

// Contains reports whether the event d is in v's history, that is
// d.Counter <= v.Get(d.ID). Every clock contains the dots with Counter 0.
// It does not allocate.
func (v VClock) Contains(d Dot) bool { return d.Counter <= v.Get(d.ID) }

// Tick records a new event of id and returns its dot: id's counter plus
// one. The entry records no time (see [VClock.TickAt]).
//
// Tick panics, changing nothing, if id's counter is already [MaxCounter];
// use [VClock.TryTick] on a clock that merged counters from other
// processes.
func (v *VClock) Tick(id string) Dot { return must(v.TryTick(id)) }

// TryTick is [VClock.Tick] that returns an error wrapping [ErrExhausted],
// changing nothing, instead of panicking when id's counter is already
// [MaxCounter].
func (v *VClock) TryTick(id string) (Dot, error) { return v.tick(id, 0) }

// TickAt is [VClock.Tick] that also records now as the entry's time, for
// [VClock.Prune]. The Unix epoch itself cannot be recorded: it reads as
// "no time". Times are kept with nanosecond precision and saturate outside
// the years 1678 to 2262. Like Tick, it panics at [MaxCounter].
func (v *VClock) TickAt(id string, now time.Time) Dot { return must(v.TryTickAt(id, now)) }

// TryTickAt is [VClock.TickAt] that returns an error wrapping
// [ErrExhausted], changing nothing, when id's counter is already
// [MaxCounter].
func (v *VClock) TryTickAt(id string, now time.Time) (Dot, error) {
	return v.tick(id, unixNano(now))
}

func (v *VClock) tick(id string, t int64) (Dot, error) {
	i, err := v.tickIndex(id)
	if err != nil {
		return Dot{}, err
	}
	v.entries[i].time = t
	return Dot{ID: id, Counter: v.entries[i].counter}, nil
}

// must returns d, or panics with err's message.
func must(d Dot, err error) Dot {
	if err != nil {
		panic(err.Error())
	}
	return d
}

// tickIndex increments id's counter, inserting the entry if needed, and
// returns its index, or an error wrapping ErrExhausted, changing nothing,
// if the counter is already MaxCounter.
func (v *VClock) tickIndex(id string) (int, error) {
	i, ok := v.search(id)
	if !ok {
		v.entries = slices.Insert(v.entries, i, entry{id: id, counter: 1})
		return i, nil
	}
	n, err := AddCounter(v.entries[i].counter, 1)
	if err != nil {
		return 0, fmt.Errorf("vclock: counter of %s: %w", strconv.Quote(id), err)
	}
	v.entries[i].counter = n
	return i, nil
}

// Add extends v to cover the event d and everything before it on d.ID:
// id's counter becomes max(v.Get(d.ID), d.Counter). It is Merge with the
// one-entry clock {d} (which has no time). A dot with Counter 0 changes
// nothing. Add panics if d.Counter is above [MaxCounter], which no decoded
// or ticked dot is: such a dot can only be made by hand.
func (v *VClock) Add(d Dot) {
	if d.Counter == 0 {
		return
	}
	if err := CheckCounter(d.Counter); err != nil {
		panic("vclock: Add: " + err.Error())
	}
	i, ok := v.search(d.ID)
	switch {
	case !ok:
		v.entries = slices.Insert(v.entries, i, entry{id: d.ID, counter: d.Counter})
	case d.Counter > v.entries[i].counter:
		v.entries[i] = entry{id: d.ID, counter: d.Counter}
	}
}

// Delete removes the entry of id, its counter and any recorded time, and
// reports whether v had one. Afterwards v has seen none of id's events
// (Get(id) is 0). It is meant for forgetting an actor retired for good, as
// removed-replica pruning in package crdt does: a clock that forgets
// events another clock has seen may stop descending from it. Delete
// reuses v's storage.
func (v *VClock) Delete(id string) bool {
	i, ok := v.search(id)
	if ok {
		v.entries = slices.Delete(v.entries, i, i+1)
	}
	return ok
}

// Merge sets v to the least upper bound of v and o: for every ID the larger
// of the two counters. The time kept for an entry is the one that came with
// the larger counter; when the counters are equal it is the later of the
// two (Riak's vclock:merge). Merge is a single linear pass over both
// sorted clocks and reuses v's storage when its capacity suffices.
func (v *VClock) Merge(o VClock) {
	n := unionLen(v.entries, o.entries)
	dst := v.entries
	if cap(dst) < n {
		dst = make([]entry, n)
	}
	v.entries = mergeInto(dst[:n], v.entries, o.entries)
}

// unionLen returns the number of distinct IDs in a and b.
func unionLen(a, b []entry) int {
	n := len(a) + len(b)
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i].id == b[j].id:
			n--
			i++
			j++
		case a[i].id < b[j].id:
			i++
		default:
			j++
		}
	}
	return n
}

// mergeInto writes the merge of a and b into dst, whose length is
// unionLen(a, b), back to front, so that a may be a prefix of dst's
// storage. It returns dst.
func mergeInto(dst, a, b []entry) []entry {
	i, j := len(a)-1, len(b)-1
	for k := len(dst) - 1; k >= 0; k-- {
		switch {
		case i >= 0 && j >= 0 && a[i].id == b[j].id:
			dst[k] = maxEntry(a[i], b[j])
			i--
			j--
		case j < 0 || (i >= 0 && a[i].id > b[j].id):
			dst[k] = a[i]
			i--
		default:
			dst[k] = b[j]
			j--
		}
	}
	return dst
}

// maxEntry combines two entries of the same ID: the larger counter with its
// time, or on equal counters the later time.
func maxEntry(x, y entry) entry {
	switch {
	case x.counter > y.counter:
		return x
	case x.counter < y.counter:
		return y
	}
	x.time = max(x.time, y.time)
	return x
}

// Compare returns the causal relation of v to o: Equal, Before (v happened
// before o), After (o happened before v) or Concurrent. Times are ignored.
// It does not allocate.
func (v VClock) Compare(o VClock) Ordering {
	a, b := v.entries, o.entries
	less, greater := false, false // some counter of v is below / above o's
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].id == b[j].id:
			if a[i].counter < b[j].counter {
				less = true
			} else if a[i].counter > b[j].counter {
				greater = true
			}
			i++
			j++
		case a[i].id < b[j].id:
			greater = true
			i++
		default:
			less = true
			j++
		}
		if less && greater {
			return Concurrent
		}
	}
	greater = greater || i < len(a)
	less = less || j < len(b)
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}

// Descends reports whether v has seen every event o has: v.Get(id) >=
// o.Get(id) for every id. Every clock descends from itself and from the
// empty clock. It does not allocate.
func (v VClock) Descends(o VClock) bool {
	a, b := v.entries, o.entries
	if len(a) < len(b) {
		return false // some ID of o is missing from v
	}
	// Invariant: v has at least as many entries left as o, so a[i] exists.
	i := 0
	for j, e := range b {
		for a[i].id != e.id {
			if a[i].id > e.id || len(a)-i == len(b)-j {
				return false // e.id is missing from v
			}
			i++
		}
		if a[i].counter < e.counter {
			return false
		}
		i++
	}
	return true
}

// Clone returns an independent copy of v.
func (v VClock) Clone() VClock { return VClock{entries: slices.Clone(v.entries)} }

// Len returns the number of IDs with a counter above 0.
func (v VClock) Len() int { return len(v.entries) }

// All yields every ID with its counter, in increasing order of ID.
func (v VClock) All() iter.Seq2[string, uint64] {
	return func(yield func(string, uint64) bool) {
		for _, e := range v.entries {
			if !yield(e.id, e.counter) {
				return
			}
		}
	}
}

// String formats v as {"a":2, "b":1}, IDs quoted and in increasing order.
func (v VClock) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range v.entries {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(Dot{ID: e.id, Counter: e.counter}.String())
	}
	b.WriteByte('}')
	return b.String()
}

// PrunePolicy bounds the size of a clock the way Riak's bucket properties
// small_vclock, big_vclock, young_vclock and old_vclock do. See
// [VClock.Prune] for how the four limits interact. The zero PrunePolicy
// removes every entry not dated in the future; [RiakPrunePolicy] returns
// Riak's defaults.
type PrunePolicy struct {
	Small int           // a clock with at most Small entries is never pruned
	Big   int           // entries beyond Big are pruned, oldest first (unless Young protects them)
	Young time.Duration // an oldest entry younger than Young stops pruning
	Old   time.Duration // entries older than Old are pruned (unless Small or Young protects them)
}

// RiakPrunePolicy returns Riak's default policy: small_vclock 50,
// big_vclock 50, young_vclock 20 s, old_vclock 86400 s.
func RiakPrunePolicy() PrunePolicy {
	return PrunePolicy{Small: 50, Big: 50, Young: 20 * time.Second, Old: 24 * time.Hour}
}

// Prune shrinks v following Riak's vclock:prune and returns the number of
// entries removed. Entries are considered oldest first, by time and then
// by ID, so the result does not depend on how v was built; an entry with
// no recorded time is older than any dated entry. Repeatedly, while v has
// more than p.Small entries and its oldest entry's age (now minus its
// time) is at least p.Young, that entry is removed if v has more than
// p.Big entries or the age exceeds p.Old; otherwise pruning stops.
//
// Pruning forgets history: afterwards a clock may compare Concurrent or
// Before with clocks it used to descend from, and a clock may appear to
// descend from it without having seen the forgotten events. In a store the
// first shows up as false siblings and the second, rarely, as a lost
// update, which is why Riak's default thresholds are generous.
func (v *VClock) Prune(now time.Time, p PrunePolicy) int {
	n, small := len(v.entries), max(p.Small, 0)
	if n <= small {
		return 0
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int {
		a, b := v.entries[x], v.entries[y]
		switch {
		case a.time == b.time:
			return strings.Compare(a.id, b.id)
		case a.time == 0: // undated: older than any date, even one before 1970
			return -1
		case b.time == 0:
			return 1
		}
		return cmp.Compare(a.time, b.time)
	})
	nowNano := unixNano(now)
	removed := 0
	for n-removed > small {
		age := ageOf(nowNano, v.entries[order[removed]].time)
		if age < p.Young || (n-removed <= p.Big && age <= p.Old) {
			break
		}
		v.entries[order[removed]].counter = 0 // marks the entry for deletion
		removed++
	}
	if removed > 0 {
		v.entries = slices.DeleteFunc(v.entries, func(e entry) bool { return e.counter == 0 })
	}
	return removed
}

// ageOf returns now minus t, saturated; an entry without time (t == 0) is
// infinitely old.
func ageOf(now, t int64) time.Duration {
	if t == 0 {
		return math.MaxInt64
	}
	d := now - t
	switch {
	case t > 0 && d > now: // now - t underflowed
		return math.MinInt64
	case t < 0 && d < now: // overflowed
		return math.MaxInt64
	}
	return time.Duration(d)
}

// unixNano converts t to Unix nanoseconds, saturating outside the range
// of int64; the zero time is 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	const maxSec = math.MaxInt64 / int64(time.Second)
	switch s := t.Unix(); {
	case s >= maxSec:
		return math.MaxInt64
	case s <= -maxSec:
		return math.MinInt64
	}
	return t.UnixNano()
}
