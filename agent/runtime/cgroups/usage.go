package cgroups

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// v2StatsControllers are the v2 controllers a group gets, when the host
// offers them, so that its usage can be read (memory.stat, io.stat,
// pids.current) even when no limit needs them.
var v2StatsControllers = []string{"memory", "io", "pids"}

// enableForStats turns on the offered controllers of v2StatsControllers
// above dir; one the host lacks only leaves its figures at zero.
func enableForStats(dir string) {
	for _, c := range v2StatsControllers {
		_ = enableControllers(dir, []string{c})
	}
}

// readInactiveFile reads the reclaimable page cache of a group from its
// memory.stat: Docker leaves it out of the usage it shows (v1
// total_inactive_file, which counts descendants; v2 inactive_file).
func readInactiveFile(dir string, v Version) uint64 {
	st, err := readKeyed(dir, "memory.stat")
	if err != nil {
		return 0
	}
	if v == V1 {
		return st["total_inactive_file"]
	}
	return st["inactive_file"]
}

// blkioV1 sums the bytes read and written on every device from v1's
// blkio.throttle.io_service_bytes_recursive ("8:0 Read 4096" lines), which
// the kernel keeps whatever the I/O scheduler, as Docker reads it.
func blkioV1(dir string) (read, write uint64) {
	data, err := os.ReadFile(filepath.Join(dir, "blkio.throttle.io_service_bytes_recursive"))
	if err != nil {
		return 0, 0
	}
	return parseBlkioV1(data)
}

func parseBlkioV1(data []byte) (read, write uint64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue // the "Total N" line
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write
}

// ioV2 sums rbytes and wbytes over the devices of v2's io.stat
// ("8:0 rbytes=4096 wbytes=0 rios=1 ...").
func ioV2(dir string) (read, write uint64) {
	data, err := os.ReadFile(filepath.Join(dir, "io.stat"))
	if err != nil {
		return 0, 0
	}
	return parseIOV2(data)
}

func parseIOV2(data []byte) (read, write uint64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	}
	return read, write
}
