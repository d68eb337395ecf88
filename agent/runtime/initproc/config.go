package initproc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// awaitGo waits for the agent's initconf.Go: the init is in the
// container's cgroup and the agent's PreStart has run.
func awaitGo() error {
	b := make([]byte, 1)
	for {
		n, err := unix.Read(initconf.FdSync, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("wait for the agent: %w", err)
		case n == 0:
			return errors.New("wait for the agent: it went away")
		case b[0] != initconf.Go:
			return fmt.Errorf("wait for the agent: got %q", b[0])
		}
		return nil
	}
}

// sentFiles are the descriptors that came with the config; -1 when not sent.
type sentFiles struct {
	exec, payload, stdin int
	rootfs               int   // the rootfs's mount tree
	binds                []int // the bind sources' trees, in Config.Mounts order
}

// readConfig receives the agent's config frame on FdSync and the
// descriptors sent with it, close-on-exec. It reads with raw system
// calls: FdSync is blocking, and the init has nothing else to do until
// its config arrives.
func readConfig() (*initconf.Config, sentFiles, error) {
	none := sentFiles{exec: -1, payload: -1, stdin: -1, rootfs: -1}
	buf := make([]byte, 32<<10)
	oob := make([]byte, unix.CmsgSpace(scmMaxFD*4))
	n, oobn, err := recvmsg(initconf.FdSync, buf, oob)
	if err != nil {
		return nil, none, fmt.Errorf("read config: %w", err)
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, none, err
	}
	cfg, err := readFrame(buf, n)
	if err == nil && len(fds) != wantSent(cfg) {
		err = fmt.Errorf("read config: %d descriptors with the config, want %d", len(fds), wantSent(cfg))
	}
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, none, err
	}
	if err := placeFiles(fds[0], fds[1], fds[2]); err != nil {
		for _, fd := range fds[3:] {
			unix.Close(fd)
		}
		return nil, none, err
	}
	sent := sentFiles{exec: fds[3], payload: -1, stdin: -1, rootfs: fds[4]}
	fds = fds[5:]
	sent.binds, fds = fds[:bindMounts(cfg)], fds[bindMounts(cfg):]
	if cfg.Payload {
		sent.payload, fds = fds[0], fds[1:]
	}
	if cfg.Stdin {
		sent.stdin = fds[0]
	}
	return cfg, sent, nil
}

// readFrame completes a frame of which buf[:n] has arrived.
func readFrame(buf []byte, n int) (*initconf.Config, error) {
	n, err := readAtLeast(buf, n, initconf.FrameHeader)
	if err != nil {
		return nil, err
	}
	size, err := initconf.FrameSize(buf[:n])
	if err != nil {
		return nil, err
	}
	if n > size {
		return nil, fmt.Errorf("read config: %d bytes after the frame", n-size)
	}
	if size > len(buf) {
		buf = append(buf[:n], make([]byte, size-n)...)
	}
	if _, err := readAtLeast(buf[:size], n, size); err != nil {
		return nil, err
	}
	return initconf.DecodeConfig(buf[:size])
}

// readAtLeast reads from FdSync into buf[n:] until need bytes are there.
func readAtLeast(buf []byte, n, need int) (int, error) {
	for n < need {
		m, err := unix.Read(initconf.FdSync, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || m == 0 {
			return n, fmt.Errorf("read config: %d of %d bytes: %v", n, need, err)
		}
		n += m
	}
	return n, nil
}

// scmMaxFD is the most descriptors one message carries (SCM_MAX_FD).
const scmMaxFD = 253

// bindMounts counts the mounts of cfg that come with a mount tree.
func bindMounts(cfg *initconf.Config) int {
	n := 0
	for _, m := range cfg.Mounts {
		if !m.Tmpfs {
			n++
		}
	}
	return n
}

// wantSent is how many descriptors come with cfg: the state and log
// directories, the init's log, the exec socket, the mount trees, and the
// payload file and stdin when cfg says so.
func wantSent(cfg *initconf.Config) int {
	n := 5 + bindMounts(cfg)
	if cfg.Payload {
		n++
	}
	if cfg.Stdin {
		n++
	}
	return n
}

// placeFiles puts the container's state and log directories on
// initconf.FdStateDir and FdLogDir (close-on-exec) and its init log on
// stdout and stderr, which were /dev/null until the config came: the init
// may have started before its container was known. Descriptors received
// take the lowest free numbers in order, so neither directory is on the
// other's place.
func placeFiles(state, logs, initLog int) error {
	for _, m := range []struct{ from, to int }{{state, initconf.FdStateDir}, {logs, initconf.FdLogDir}} {
		if m.from == m.to {
			continue // received close-on-exec, where it belongs
		}
		if err := unix.Dup3(m.from, m.to, unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("place descriptor %d: %w", m.to, err)
		}
		unix.Close(m.from)
	}
	for _, to := range []int{1, 2} {
		if err := unix.Dup3(initLog, to, 0); err != nil {
			return fmt.Errorf("place init log: %w", err)
		}
	}
	return unix.Close(initLog)
}

func recvmsg(fd int, buf, oob []byte) (n, oobn int, err error) {
	for {
		n, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			return n, oobn, err
		}
	}
}

// parseRights returns the descriptors in a control message.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("config descriptors: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, fmt.Errorf("config descriptors: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}
