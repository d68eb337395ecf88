package scheduler

// minHeap keeps the best item (by less) at index 0. Placement only ever
// changes or removes the top (the node or branch it just chose), so the heap
// needs no index bookkeeping: fix the top after its key grew, or drop it.
type minHeap[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h *minHeap[T]) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *minHeap[T]) empty() bool { return len(h.items) == 0 }

func (h *minHeap[T]) top() T { return h.items[0] }

// fixTop restores order after the top's key changed.
func (h *minHeap[T]) fixTop() { h.down(0) }

// dropTop removes the top.
func (h *minHeap[T]) dropTop() {
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	var zero T
	h.items[last] = zero
	h.items = h.items[:last]
	if last > 0 {
		h.down(0)
	}
}

func (h *minHeap[T]) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			j = r
		}
		if !h.less(h.items[j], h.items[i]) {
			return
		}
		h.items[i], h.items[j] = h.items[j], h.items[i]
		i = j
	}
}
