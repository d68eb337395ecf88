package validate

import (
	"fmt"

	pb "berth/proto/berth/v1"
)

// AttachNetwork checks a standalone container's request to join networks
// (berth-agent run --network): a valid container name and at least one
// network, each named once, with DNS-name aliases.
func AttachNetwork(req *pb.AttachNetworkRequest) error {
	if err := Name("container_id", req.GetContainerId()); err != nil {
		return err
	}
	nets := req.GetNetworks()
	if len(nets) == 0 {
		return fieldErr("networks", "no network given", "name at least one network created with `berth network create --attachable`")
	}
	if err := tooMany("networks", len(nets), maxNetworks, "attach fewer networks"); err != nil {
		return err
	}
	for i, n := range nets {
		f := fmt.Sprintf("networks[%d]", i)
		if err := firstErr(shortLen(f, n.GetTarget()), tooMany(f+".aliases", len(n.GetAliases()), maxAliases, "give fewer aliases"),
			each(f+".aliases", n.GetAliases(), shortLen)); err != nil {
			return err
		}
	}
	return networkAttachments(nets)
}
