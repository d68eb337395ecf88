package testhost

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBridgedTrafficPassesADroppingForwardChain stands in for dockerd's
// firewall: a forward chain with policy drop. So as not to disturb anything
// else on the machine, the fake chain accepts all traffic that did not come
// in on the cluster's bridge.
func TestBridgedTrafficPassesADroppingForwardChain(t *testing.T) {
	needRoot(t)
	if !bridgedFiltered() {
		t.Skipf("%s is not 1: bridged traffic never meets the IP forward hook here", brnfSysctl)
	}
	for _, family := range []string{"ip", "inet"} {
		t.Run(family, func(t *testing.T) {
			t.Parallel()
			c, err := Create(t.Context(), Options{N: 2})
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			t.Cleanup(func() {
				if !closed {
					c.Close()
				}
			})
			h1, h2 := c.Hosts[0], c.Hosts[1]
			reachable(t, h1, h2.Addr)

			fw := fakeFirewall(t, family, c)
			unreachable(t, h1, h2.Addr)

			if err := allowBridged(t.Context(), c.tag(), c.Bridge); err != nil {
				t.Fatal(err)
			}
			reachable(t, h1, h2.Addr)
			reachable(t, h2, h1.Addr)

			closed = true
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			out, err := nft(t.Context(), "", "list", "table", family, fw)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), fmt.Sprintf("comment %q", c.tag())) {
				t.Fatalf("after Close the firewall still holds our rule:\n%s", out)
			}
		})
	}
}

// fakeFirewall adds a table with a dropping forward chain for c's bridge and
// returns its name. The name carries c's run id, so a sweep removes it if
// the test dies.
func fakeFirewall(t *testing.T, family string, c *Cluster) string {
	t.Helper()
	name := c.tag() + "fw"
	rules := fmt.Sprintf(`table %s %s {
	chain FORWARD {
		type filter hook forward priority 0; policy drop;
		iifname != %q accept
	}
}
`, family, name, c.Bridge)
	if _, err := nft(t.Context(), rules, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := nft(ctx, "", "delete", "table", family, name); err != nil {
			t.Errorf("remove fake firewall: %v", err)
		}
	})
	return name
}
