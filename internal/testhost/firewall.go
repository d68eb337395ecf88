package testhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// With br_netfilter loaded and bridge-nf-call-iptables set, frames a bridge
// forwards also pass the IPv4 FORWARD hook, with the bridge as both input and
// output interface. A forward chain there with policy drop (dockerd sets one)
// then drops traffic between our hosts.
//
// In nftables an accept ends only the base chain it is in: every other base
// chain on the hook still sees the packet and a drop anywhere is final. So an
// accept chain of our own cannot help; the accept rule must go into each
// dropping chain itself, ahead of its other rules. Chains that iptables-nft
// manages get the rule through iptables, so iptables keeps understanding its
// tables; other nftables chains get a native rule. Each rule carries the run's
// tag as its comment, which is how Close and Sweep find it again.

const brnfSysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// bridgedFiltered reports whether bridged IPv4 traffic passes the IP
// forward hook on this machine.
func bridgedFiltered() bool {
	b, err := os.ReadFile(brnfSysctl)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// allowBridged inserts, for bridge br, an accept rule tagged tag into every
// IPv4 forward chain whose policy is drop. It is a no-op when bridged traffic
// does not reach those chains.
func allowBridged(ctx context.Context, tag, br string) error {
	if !bridgedFiltered() {
		return nil
	}
	ipt, err := iptablesFlavour(ctx)
	if err != nil {
		return err
	}
	if ipt != "" {
		if err := iptablesAllow(ctx, tag, br); err != nil {
			return err
		}
	}
	objs, err := nftList(ctx, "chains")
	if err != nil {
		return err
	}
	for _, o := range objs {
		c := o.Chain
		if c == nil || c.Hook != "forward" || c.Policy != "drop" || (c.Family != "ip" && c.Family != "inet") {
			continue
		}
		if ipt == "nf_tables" && c.Family == "ip" && c.Table == "filter" {
			continue // iptables-nft's own chain, handled above
		}
		rule := fmt.Sprintf("insert rule %s %s %s iifname %q oifname %q accept comment %q\n",
			c.Family, c.Table, c.Name, br, br, tag)
		if _, err := nft(ctx, rule, "-f", "-"); err != nil {
			if strings.Contains(err.Error(), "No such file or directory") {
				continue // the chain went away since we listed it: nothing to open
			}
			return fmt.Errorf("allow bridge %s in %s %s %s: %w", br, c.Family, c.Table, c.Name, err)
		}
	}
	return nil
}

// removeAllowed deletes the accept rules whose comment tags accepts, from
// nftables and (if present) iptables.
func removeAllowed(ctx context.Context, tags func(comment string) bool) error {
	errs := []error{removeNftAllowed(ctx, tags)}
	if ipt, err := iptablesFlavour(ctx); err != nil {
		errs = append(errs, err)
	} else if ipt != "" {
		errs = append(errs, iptablesRemove(ctx, tags))
	}
	return errors.Join(errs...)
}

// removeNftAllowed deletes the tagged nftables rules. Other runs add such
// rules to chains that may vanish meanwhile (a test's fake firewall, a
// restarted dockerd), so a failed delete counts only if the rule is still
// there afterwards.
func removeNftAllowed(ctx context.Context, tags func(comment string) bool) error {
	tagged := func() ([]*nftRule, error) {
		objs, err := nftList(ctx, "ruleset")
		if err != nil {
			return nil, err
		}
		var rules []*nftRule
		for _, o := range objs {
			if r := o.Rule; r != nil && r.Comment != "" && tags(r.Comment) {
				rules = append(rules, r)
			}
		}
		return rules, nil
	}
	rules, err := tagged()
	if err != nil {
		return err
	}
	failed := false
	for _, r := range rules {
		_, err := nft(ctx, "", "delete", "rule", r.Family, r.Table, r.Chain, "handle", strconv.Itoa(r.Handle))
		failed = failed || err != nil
	}
	if !failed {
		return nil
	}
	left, err := tagged()
	if err != nil {
		return err
	}
	if len(left) > 0 {
		r := left[0]
		return fmt.Errorf("%d accept rules left, e.g. %s %s %s handle %d", len(left), r.Family, r.Table, r.Chain, r.Handle)
	}
	return nil
}

// iptablesFlavour returns "legacy" or "nf_tables" for the installed
// iptables, or "" if there is none.
func iptablesFlavour(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return "", nil
	}
	out, err := iptables(ctx, "-V")
	if err != nil {
		return "", err
	}
	if strings.Contains(out, "nf_tables") {
		return "nf_tables", nil
	}
	return "legacy", nil
}

func iptables(ctx context.Context, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// iptablesAllow inserts the accept rule into filter FORWARD if its policy
// is DROP.
func iptablesAllow(ctx context.Context, tag, br string) error {
	rules, err := iptables(ctx, "-S", "FORWARD")
	if err != nil {
		return err
	}
	if !strings.Contains(rules, "-P FORWARD DROP") {
		return nil
	}
	_, err = iptables(ctx, "-I", "FORWARD", "-i", br, "-o", br,
		"-m", "comment", "--comment", tag, "-j", "ACCEPT")
	return err
}

// iptablesRemove deletes the FORWARD rules whose comment matches tags.
func iptablesRemove(ctx context.Context, tags func(string) bool) error {
	rules, err := iptables(ctx, "-S", "FORWARD")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(rules, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || !taggedRule(f, tags) {
			continue
		}
		f[0] = "-D"
		if _, err := iptables(ctx, f...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// taggedRule reports whether an `iptables -S` rule has a --comment that
// tags accepts. Our comments hold no spaces or quotes, so fields suffice.
func taggedRule(fields []string, tags func(string) bool) bool {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "--comment" && tags(strings.Trim(fields[i+1], `"`)) {
			return true
		}
	}
	return false
}
