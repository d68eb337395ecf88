package controlapi

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
)

// pageBudget is how many bytes of objects one list reply carries (plus at
// most one object more): half of gRPC's default 4 MiB receive limit, so a
// reply fits with room to spare whatever the client's settings. A spec is
// at most 512 KiB (manager/validate), so one object always fits.
const pageBudget = 2 << 20

// page cuts one reply out of a list. items must all match the request;
// page sorts them by ID, skips those up to token (the last ID of the
// previous page), and takes objects in ID order until their size reaches
// budget. show turns a stored object into what clients see (it runs only
// on the objects sent). next is the token for the following page, "" on
// the last one.
//
// Pages are cut from separate reads: an object created between two pages
// with an ID below the token is missed by that listing, as with Docker's
// and Kubernetes' paged lists; every object that exists throughout is
// listed exactly once.
func page[T proto.Message](items []T, id func(T) string, token string, budget int, show func(T) T) (out []T, next string) {
	byID := func(a, b T) int { return strings.Compare(id(a), id(b)) }
	if !slices.IsSortedFunc(items, byID) {
		slices.SortFunc(items, byID)
	}
	start := 0
	if token != "" {
		start, _ = slices.BinarySearchFunc(items, token, func(o T, tok string) int { return strings.Compare(id(o), tok) })
		for start < len(items) && id(items[start]) <= token {
			start++
		}
	}
	size := 0
	for i := start; i < len(items); i++ {
		if size >= budget {
			return out, id(out[len(out)-1])
		}
		o := show(items[i])
		size += proto.Size(o)
		out = append(out, o)
	}
	return out, ""
}

// same is show for objects sent as they are stored.
func same[T any](o T) T { return o }

// firstErr returns the first non-nil error of errs.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
