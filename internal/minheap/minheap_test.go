package minheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct{ key, seq int }

func (a item) Before(b item) bool { return a.key < b.key }

// Against a sorted model, over seeded random pushes, pops and in-place
// changes followed by Init: every Pop returns a least element.
func TestHeapAgainstModel(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 0))
		var h Heap[item]
		var model []int
		for step := range 300 {
			switch op := r.IntN(10); {
			case op < 5:
				x := item{r.IntN(50), step}
				h.Push(x)
				model = append(model, x.key)
			case op < 9 && len(h) > 0:
				got := h.Pop()
				least := slices.Min(model)
				if got.key != least {
					t.Fatalf("seed %d step %d: Pop = %d, want %d", seed, step, got.key, least)
				}
				model = slices.Delete(model, slices.Index(model, least), slices.Index(model, least)+1)
			case len(h) > 0:
				i := r.IntN(len(h))
				model[slices.Index(model, h[i].key)] = -1 // the same multiset, changed
				h[i].key = -1
				h.Init()
			}
			if len(h) != len(model) {
				t.Fatalf("seed %d step %d: %d elements, model %d", seed, step, len(h), len(model))
			}
		}
	}
}

func TestPopZeroesTheSlot(t *testing.T) {
	var h Heap[ptrItem]
	a, b := 1, 2
	h.Push(ptrItem{&a})
	h.Push(ptrItem{&b})
	h.Pop()
	if full := h[:2]; full[1].p != nil {
		t.Fatal("Pop left a reference in the vacated slot")
	}
}

type ptrItem struct{ p *int }

func (a ptrItem) Before(b ptrItem) bool { return *a.p < *b.p }

func TestPushPopAllocateNothing(t *testing.T) {
	h := make(Heap[item], 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range 32 {
			h.Push(item{key: (i * 7) % 32})
		}
		for len(h) > 0 {
			h.Pop()
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}
