package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NetIO returns the bytes received and sent on the container's network
// interfaces (loopback left out), from /proc/PID/net/dev of its init,
// which lists the interfaces of the init's network namespace. A container
// on the host network has none of its own: zero.
func (c *Container) NetIO() (rx, tx uint64, err error) {
	if c.rec.Spec.HostNetwork {
		return 0, 0, nil
	}
	if !c.Running() {
		return 0, 0, fmt.Errorf("network stats of %s: %w", c.id, ErrNotRunning)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", c.rec.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("network stats of %s: %w", c.id, err)
	}
	if !c.Running() { // the PID may have been reused meanwhile
		return 0, 0, fmt.Errorf("network stats of %s: %w", c.id, ErrNotRunning)
	}
	rx, tx = parseNetDev(data)
	return rx, tx, nil
}

// parseNetDev sums the receive and transmit bytes of /proc/net/dev's
// interface lines ("  eth0: 1234 5 0 0 0 0 0 0 5678 ..."), except lo's.
func parseNetDev(data []byte) (rx, tx uint64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, counters, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(counters)
		if len(f) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}
