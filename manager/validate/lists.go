package validate

import (
	"fmt"

	pb "berth/proto/berth/v1"
)

// ListModes bounds and checks the service modes a list filters on.
func ListModes(modes []pb.ServiceMode) error {
	if err := tooMany("modes", len(modes), maxFilters, "give fewer"); err != nil {
		return err
	}
	for i, m := range modes {
		if _, ok := pb.ServiceMode_name[int32(m)]; !ok {
			return fieldErr(fmt.Sprintf("modes[%d]", i), fmt.Sprintf("unknown mode %d", m), "use replicated or global")
		}
	}
	return nil
}

// ListRoles bounds and checks the node roles a list filters on.
func ListRoles(roles []pb.NodeSpec_Role) error {
	if err := tooMany("roles", len(roles), maxFilters, "give fewer"); err != nil {
		return err
	}
	for i, r := range roles {
		if _, ok := pb.NodeSpec_Role_name[int32(r)]; !ok {
			return fieldErr(fmt.Sprintf("roles[%d]", i), fmt.Sprintf("unknown role %d", r), "use worker or manager")
		}
	}
	return nil
}

// PageToken bounds the token a paged list continues from.
func PageToken(tok string) error { return tooLong("page_token", tok, maxShort) }
