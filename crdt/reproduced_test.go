package crdt

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/vclock"
)

// secret has an unexported field and one msgpack skips: values that differ
// only there encode alike.
type secret struct {
	Name string
	note string
	Memo string `msgpack:"-"`
}

// TestReproducedAttacks replays, one row each, the ways remote input used
// to panic, poison or fork state in clock, hlc, vclock and crdt.
func TestReproducedAttacks(t *testing.T) {
	rows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a decoded clock with a counter of 2^64-1 is refused", func(t *testing.T) {
			var v vclock.VClock
			err := msgpack.Unmarshal(mustMarshal([]any{[]any{"n1", uint64(math.MaxUint64)}}), &v)
			require.ErrorIs(t, err, vclock.ErrMalformed)
			require.Equal(t, vclock.Dot{ID: "n1", Counter: 1}, v.Tick("n1"))
			var g GCounter
			require.ErrorIs(t, msgpack.Unmarshal(mustMarshal([]any{[]any{"n1", uint64(math.MaxUint64)}}), &g), ErrMalformed)
		}},
		{"a client context at the bound neither panics nor changes the set", func(t *testing.T) {
			var s vclock.DVVSet[string]
			s.Update(vclock.VClock{}, "n1", "v1")
			var ctx vclock.VClock
			ctx.Add(vclock.Dot{ID: "n1", Counter: vclock.MaxCounter})
			before := mustMarshal(s)
			require.ErrorIs(t, s.TryUpdate(ctx, "n1", "v2"), vclock.ErrExhausted)
			require.Equal(t, before, mustMarshal(s))
			require.NoError(t, s.TryUpdate(s.Context(), "n1", "v3")) // honest updates go on
			require.Equal(t, []string{"v3"}, s.Values())
		}},
		{"Lamport receive of 2^64-1 is an error", func(t *testing.T) {
			var l clock.Lamport
			_, err := l.Receive(math.MaxUint64)
			require.ErrorIs(t, err, clock.ErrRange)
			require.Equal(t, uint64(1), l.Tick())
		}},
		{"hlc Restore refuses MaxTimestamp and a bound 50 years ahead", func(t *testing.T) {
			c := hlc.New(hlc.Config{})
			require.ErrorIs(t, c.Restore(hlc.MaxTimestamp), hlc.ErrRange)
			require.ErrorIs(t, c.Restore(hlc.Make(time.Now().AddDate(50, 0, 0), 0)), hlc.ErrRestoreAhead)
			require.Less(t, c.Now().WallTime(), time.Now().Add(time.Minute))
		}},
		{"DVVSet.Sync is commutative for values differing in hidden fields", func(t *testing.T) {
			a := vclock.NewDVVSet(secret{Name: "x", note: "a", Memo: "a"})
			b := vclock.NewDVVSet(secret{Name: "x", note: "b", Memo: "b"})
			ab, ba := a.Clone(), b.Clone()
			ab.Sync(b)
			ba.Sync(a)
			require.Equal(t, ab.Values(), ba.Values())
		}},
		{"LWWRegister ties agree in both orders for map values", func(t *testing.T) {
			for i := range 200 {
				var a, b LWWRegister[map[string]int]
				a.Set(map[string]int{"x": i, "y": 1, "z": 2}, 7, "n")
				b.Set(map[string]int{"x": i, "y": 2, "z": 1}, 7, "n")
				ab, ba := a.Clone(), b.Clone()
				ab.Merge(b)
				ba.Merge(a)
				va, _ := ab.Get()
				vb, _ := ba.Get()
				require.Equal(t, va, vb, "run %d", i)
			}
		}},
		{"LWWRegister ties agree in both orders for unencodable values", func(t *testing.T) {
			x, y := make(chan int), make(chan int)
			var a, b LWWRegister[chan int]
			a.Set(x, 7, "n")
			b.Set(y, 7, "n")
			ab, ba := a.Clone(), b.Clone()
			ab.Merge(b)
			ba.Merge(a)
			va, _ := ab.Get()
			vb, _ := ba.Get()
			require.Equal(t, va, vb)
		}},
		{"a GCounter decodes only from its canonical bytes", func(t *testing.T) {
			for name, in := range map[string][]byte{
				"explicit zero time":   {0x91, 0x93, 0xa1, 'a', 0x01, 0x00},
				"non-minimal integer":  {0x91, 0x92, 0xa1, 'a', 0xcc, 0x01},
				"bin ID":               {0x91, 0x92, 0xc4, 0x01, 'a', 0x01},
				"signed counter":       {0x91, 0x92, 0xa1, 'a', 0xd0, 0x01},
				"long array header":    {0xdc, 0x00, 0x01, 0x92, 0xa1, 'a', 0x01},
				"nil increments":       {0x92, 0xc0, 0x90},
				"long string header":   {0x91, 0x92, 0xd9, 0x01, 'a', 0x01},
				"non-minimal LWW time": {0x93, 0x01, 0xcd, 0x00, 0x05, 0xa1, 'a'},
			} {
				var into any = new(GCounter)
				switch name {
				case "nil increments":
					into = new(PNCounter)
				case "non-minimal LWW time":
					into = new(LWWRegister[int])
				}
				require.ErrorIs(t, msgpack.Unmarshal(in, into), ErrMalformed, name)
			}
		}},
		{"PNCounter.Prune changes nothing when it cannot finish", func(t *testing.T) {
			var c PNCounter
			c.Inc("a", 1)
			c.Inc("b", 1)
			c.Dec("b", 1)
			c.Merge(PNCounter{n: GCounter{counts: clockOf("a", vclock.MaxCounter)}})
			before := mustMarshal(c)
			require.ErrorIs(t, c.TryPrune("b", "a"), vclock.ErrExhausted)
			require.Equal(t, before, mustMarshal(c))
			require.Panics(t, func() { c.Prune("b", "a") })
			require.Equal(t, before, mustMarshal(c), "increments pruned, decrements not")
		}},
	}
	for _, r := range rows {
		t.Run(r.name, r.run)
	}
}

// TestCommutativeForEveryValueType: MVRegister and LWWRegister merges, and
// DVVSet syncs, agree in both argument orders for values differing only
// in hidden fields, in maps, or unencodable.
func TestCommutativeForEveryValueType(t *testing.T) {
	same := func(t *testing.T, x, y any) {
		t.Helper()
		require.Equal(t, fmt.Sprintf("%#v", x), fmt.Sprintf("%#v", y))
	}
	hidden := []secret{{Name: "x", note: "1"}, {Name: "x", note: "2"}, {Name: "x", Memo: "3"}}
	for i := range hidden {
		for j := range hidden {
			// The same dot with different values (a forged state) in a
			// register: the join picks one, whichever order.
			var a, b MVRegister[secret]
			a.Set("n", hidden[i])
			b.Set("n", hidden[j])
			ab, ba := a.Clone(), b.Clone()
			ab.Merge(b)
			ba.Merge(a)
			same(t, ab.Values(), ba.Values())

			var l, m LWWRegister[secret]
			l.Set(hidden[i], 3, "n")
			m.Set(hidden[j], 3, "n")
			lm, ml := l.Clone(), m.Clone()
			lm.Merge(m)
			ml.Merge(l)
			same(t, lm, ml)

			s := vclock.NewDVVSet(hidden[i])
			s.Sync(vclock.NewDVVSet(hidden[(i+1)%3]))
			u := vclock.NewDVVSet(hidden[j])
			su, us := s.Clone(), u.Clone()
			su.Sync(u)
			us.Sync(s)
			same(t, su.Values(), us.Values())
		}
	}
	f, g := func() {}, func() {}
	var a, b vclock.DVVSet[func()]
	a.Update(vclock.VClock{}, "n", f)
	b.Update(vclock.VClock{}, "n", g) // the same dot, another value
	ab, ba := a.Clone(), b.Clone()
	ab.Sync(b)
	ba.Sync(a)
	same(t, ab.Values(), ba.Values())
}
