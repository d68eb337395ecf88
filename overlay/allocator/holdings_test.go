package allocator

import (
	"net/netip"
	"testing"
)

func TestHoldings(t *testing.T) {
	a, b := netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("10.0.1.2/24")
	var h holdings
	h = h.set("n1", a).set("n2", b).set("n1", b)
	if p, ok := h.get("n1"); !ok || p != b || len(h) != 2 {
		t.Fatalf("after set n1, n2, n1 again: %v", h)
	}
	kept := h
	h = h.without("n1")
	if _, ok := h.get("n1"); ok || len(h) != 1 {
		t.Fatalf("without n1: %v", h)
	}
	if p, ok := kept.get("n1"); !ok || p != b {
		t.Fatalf("without changed the holdings it was given: %v", kept)
	}
	if h = h.without("n9"); len(h) != 1 {
		t.Fatalf("without a network not held: %v", h)
	}
}
