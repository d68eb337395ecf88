package testhost

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// echoesIn returns how many ICMP echo requests host h has received, from
// its namespace's /proc/net/snmp.
func echoesIn(t *testing.T, h *Host) int {
	t.Helper()
	out, err := h.Command(t.Context(), "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InEchos" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatalf("no Icmp InEchos in %s's /proc/net/snmp", h.Name)
	return 0
}

// pingN sends n echoes from h to to, without waiting for a verdict.
func pingN(t *testing.T, h, to *Host, n int) {
	_ = h.Command(t.Context(), "busybox", "ping", "-q", "-c", strconv.Itoa(n), "-i", "0.05", "-W", "1", to.Addr.String()).Run()
}

func TestDropFromCutsOneDirectionOnly(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 2)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	reachable(t, h1, h2.Addr)
	if err := c.DropFrom(t.Context(), h1, h2); err != nil {
		t.Fatal(err)
	}
	unreachable(t, h1, h2.Addr) // the echo is dropped
	unreachable(t, h2, h1.Addr) // the reply is dropped
	before := echoesIn(t, h1)
	pingN(t, h2, h1, 5)
	if got := echoesIn(t, h1) - before; got < 5 {
		t.Fatalf("h1 got %d of h2's 5 echoes; DropFrom(h1, h2) must not cut h2 to h1", got)
	}
	before = echoesIn(t, h2)
	pingN(t, h1, h2, 5)
	if got := echoesIn(t, h2) - before; got != 0 {
		t.Fatalf("h2 got %d of h1's echoes through DropFrom(h1, h2)", got)
	}
	if err := c.AllowFrom(t.Context(), h1, h2); err != nil {
		t.Fatal(err)
	}
	reachable(t, h1, h2.Addr)
}

var lossRE = regexp.MustCompile(`(\d+)% packet loss`)

func TestLossyDropsAShareOfPackets(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 2)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	reachable(t, h1, h2.Addr)
	if err := c.Lossy(t.Context(), h1, h2); err != nil {
		t.Fatal(err)
	}
	// 200 echoes: a round trip survives two 20 % draws, so ~36 % are lost
	// (σ ≈ 3.4 %); the bounds are six σ away.
	out, _ := h1.Command(t.Context(), "busybox", "ping", "-q", "-c", "200", "-i", "0.01", "-W", "2", h2.Addr.String()).CombinedOutput()
	m := lossRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping output without a loss figure: %s", out)
	}
	loss, _ := strconv.Atoi(string(m[1]))
	if loss < 15 || loss > 60 {
		t.Fatalf("loss %d %% through a %d %% lossy link both ways, want ~36 %%", loss, LossPercent)
	}
	if err := c.Lossless(t.Context(), h1, h2); err != nil {
		t.Fatal(err)
	}
	out, err := h1.Command(t.Context(), "busybox", "ping", "-q", "-c", "50", "-i", "0.01", "-W", "2", h2.Addr.String()).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(" 0% packet loss")) {
		t.Fatalf("after Lossless: %v: %s", err, out)
	}
}
