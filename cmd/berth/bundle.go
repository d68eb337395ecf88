package main

import (
	"fmt"

	"berth/ca"
)

// bundleNote says, for an error about reaching a manager, which client
// bundle the CLI used and of which cluster, so that a bundle left by an
// earlier cluster is plain to see.
func (o *globalOpts) bundleNote() string {
	dir := o.tlsDirOrDefault()
	what := "address and certificate"
	if o.host != "" {
		what = "certificate"
	}
	creds, err := ca.Dir(dir).Load()
	if err != nil {
		return fmt.Sprintf(" (%s from the bundle in %s)", what, dir)
	}
	return fmt.Sprintf(" (%s from the bundle in %s, of cluster %s)", what, dir, creds.Identity().ClusterID)
}
