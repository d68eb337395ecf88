package initproc

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// dupFile returns a close-on-exec copy of f, which the caller owns.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// copyInput types what arrives on stdin into the terminal whose master is
// m, until stdin ends or the terminal goes; the process sees it as typed.
func (in *initState) copyInput(m, stdin *os.File) {
	src, err := dupFile(stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: stdin: %v\n", err)
		return
	}
	go func() {
		defer src.Close()
		_, _ = io.Copy(m, src)
	}()
}
