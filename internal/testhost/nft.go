package testhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// nft runs the nft CLI with args, feeding it stdin when not empty, and
// returns its standard output.
func nft(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nft", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// faultRules is the bridge-family table of one cluster: forwarded frames
// from . to an address pair in the drops set are dropped, and LossPercent of
// those of a pair in the lossy set (numgen draws per packet, so a lossy link
// flaps rather than stays cut). The bridge family
// sees bridged traffic whether br_netfilter is loaded or not. Matching the
// input port by the cluster's veth prefix keeps the rule to this cluster's
// bridge (meta ibrname would say it directly but needs nft_meta_bridge,
// which not every kernel has).
func faultRules(table, ports string) string {
	return fmt.Sprintf(`table bridge %[1]s {
	set drops { type ipv4_addr . ipv4_addr; }
	set lossy { type ipv4_addr . ipv4_addr; }
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "%[2]s*" ip saddr . ip daddr @drops drop
		iifname "%[2]s*" ip saddr . ip daddr @lossy numgen random mod 100 < %[3]d drop
	}
}
`, table, ports, LossPercent)
}

// element is the nft element for the direction from . to.
func element(from, to *Host) string {
	return fmt.Sprintf("{ %s . %s }", from.Addr, to.Addr)
}

// nftObject is one entry of `nft -j list ...` output; only the kinds the
// package reads are decoded.
type nftObject struct {
	Table *nftTable `json:"table"`
	Chain *nftChain `json:"chain"`
	Rule  *nftRule  `json:"rule"`
}

type nftTable struct {
	Family string `json:"family"`
	Name   string `json:"name"`
}

type nftChain struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"name"`
	Hook   string `json:"hook"`
	Policy string `json:"policy"`
}

type nftRule struct {
	Family  string `json:"family"`
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Handle  int    `json:"handle"`
	Comment string `json:"comment"`
}

// nftList runs `nft -j -a list <what...>` and decodes its objects.
func nftList(ctx context.Context, what ...string) ([]nftObject, error) {
	out, err := nft(ctx, "", append([]string{"-j", "-a", "list"}, what...)...)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Objects []nftObject `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("decode nft list %s: %w", strings.Join(what, " "), err)
	}
	return doc.Objects, nil
}
