package agent

import (
	"bufio"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"berth/internal/version"
	pb "berth/proto/berth/v1"
)

// describe is what the node tells the managers about itself when a session
// opens. Without --advertise-addr the address is the local one the kernel
// routes to the manager through.
func (a *Agent) describe(manager string) *pb.NodeDescription {
	host := a.cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	addr := a.cfg.AdvertiseAddr
	if addr == "" {
		addr = localAddrTowards(manager)
	}
	return &pb.NodeDescription{
		Hostname: host,
		Platform: &pb.Platform{Os: goruntime.GOOS, Architecture: goruntime.GOARCH},
		Resources: &pb.ResourceSet{
			NanoCpus:    int64(goruntime.NumCPU()) * 1e9,
			MemoryBytes: memTotal(),
		},
		Addr:         addr,
		EngineLabels: a.cfg.Labels,
		Version:      version.Version,
	}
}

// localAddrTowards returns the local IP used to reach addr; connecting a
// UDP socket sends nothing.
func localAddrTowards(addr string) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
		return ua.IP.String()
	}
	return ""
}

// memTotal reads MemTotal from /proc/meminfo in bytes (0 if unknown).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
