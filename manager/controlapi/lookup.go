package controlapi

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/store"
)

// named is any stored object that has an ID.
type named interface{ GetId() string }

// resolve finds one object by ID, exact name, or unique ID prefix, as the
// docker CLI does.
func resolve[T named](kind, ref string, get func(string) T, find func(store.By) ([]T, error)) (T, error) {
	var zero T
	if ref == "" {
		return zero, invalid("%s: give an ID or a name", kind)
	}
	if o := get(ref); !isNil(o) {
		return o, nil
	}
	if byName, err := find(store.ByName(ref)); err == nil && len(byName) == 1 {
		return byName[0], nil
	} else if len(byName) > 1 {
		// Node hostnames need not be unique.
		ids := make([]string, len(byName))
		for i, o := range byName {
			ids[i] = o.GetId()
		}
		slices.Sort(ids)
		return zero, status.Error(codes.FailedPrecondition, fmt.Sprintf("%s %q is ambiguous: %d have that name (%s); give an ID", kind, ref, len(byName), strings.Join(ids, ", ")))
	}
	matches, err := find(store.ByIDPrefix(ref))
	if err != nil {
		return zero, err
	}
	switch len(matches) {
	case 0:
		return zero, notFound(kind, ref)
	case 1:
		return matches[0], nil
	}
	return zero, status.Error(codes.FailedPrecondition, fmt.Sprintf("%s %q is ambiguous: %d IDs start with it; give more characters", kind, ref, len(matches)))
}

func isNil[T named](o T) bool {
	var zero T
	return any(o) == any(zero)
}
