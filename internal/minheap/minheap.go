// Package minheap is a binary min-heap over a plain slice, for the hot
// paths that keep deadlines or ages in order. Unlike container/heap it
// boxes nothing: Push and Pop allocate nothing beyond the slice's growth.
package minheap

// Ordered is an element that knows its order: a.Before(b) reports whether
// a comes strictly before b. Before must be a strict weak order.
type Ordered[T any] interface {
	Before(T) bool
}

// Heap is a binary min-heap: h[0], when h is not empty, is an element no
// other comes before. Any slice is a Heap once [Heap.Init] has run on it;
// the empty slice is one already.
type Heap[T Ordered[T]] []T

// Push adds x, in O(log n).
func (h *Heap[T]) Push(x T) {
	*h = append(*h, x)
	q := *h
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q[i].Before(q[parent]) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
}

// Pop removes and returns h[0], in O(log n); h must not be empty. The
// vacated slot is zeroed, so the heap keeps no reference to what it gave
// up.
func (h *Heap[T]) Pop() T {
	q := *h
	top, last := q[0], len(q)-1
	q[0] = q[last]
	var zero T
	q[last] = zero
	*h = q[:last]
	h.down(0)
	return top
}

// Init orders the heap after its elements were changed in place, in
// O(n).
func (h Heap[T]) Init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h Heap[T]) down(i int) {
	for {
		child := 2*i + 1
		if child >= len(h) {
			return
		}
		if r := child + 1; r < len(h) && h[r].Before(h[child]) {
			child = r
		}
		if !h[child].Before(h[i]) {
			return
		}
		h[i], h[child] = h[child], h[i]
		i = child
	}
}
