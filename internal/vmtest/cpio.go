package vmtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes an archive in the "newc" format, the one the kernel
// unpacks as an initramfs. Parent directories are added on demand, since
// the kernel's unpacker does not create them.
type cpioWriter struct {
	w    *bufio.Writer
	dirs map[string]bool
	ino  int
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), dirs: map[string]bool{"": true}}
}

// clean makes name relative to the archive's root: "/a/b/" is "a/b", the
// root itself "".
func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

// parent is the directory holding name, "" for the root.
func parent(name string) string { return clean(path.Dir(clean(name))) }

// Dir adds directory name (a path relative to the archive's root).
func (c *cpioWriter) Dir(name string, perm os.FileMode) {
	name = clean(name)
	if c.dirs[name] {
		return
	}
	c.Dir(parent(name), 0o755)
	c.dirs[name] = true
	c.header(name, 0o040000|uint32(perm.Perm()), 0)
}

// Symlink adds name pointing to target.
func (c *cpioWriter) Symlink(name, target string) {
	c.Dir(parent(name), 0o755)
	c.header(name, 0o120000|0o777, int64(len(target)))
	c.write([]byte(target))
	c.pad(int64(len(target)))
}

// Bytes adds a regular file holding data.
func (c *cpioWriter) Bytes(name string, perm os.FileMode, data []byte) {
	c.Dir(parent(name), 0o755)
	c.header(name, 0o100000|uint32(perm.Perm()), int64(len(data)))
	c.write(data)
	c.pad(int64(len(data)))
}

// File adds a regular file with the contents and permissions of the host
// file src.
func (c *cpioWriter) File(name, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = fmt.Errorf("initramfs: %w", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = fmt.Errorf("initramfs: %w", err)
		return
	}
	c.Dir(parent(name), 0o755)
	c.header(name, 0o100000|uint32(st.Mode().Perm()), st.Size())
	if c.err == nil {
		n, err := io.Copy(c.w, f)
		if err == nil && n != st.Size() {
			err = fmt.Errorf("%s changed size while being archived", src)
		}
		if err != nil {
			c.err = fmt.Errorf("initramfs: add %s: %w", src, err)
		}
	}
	c.pad(st.Size())
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm os.FileMode, major, minor int) {
	c.Dir(parent(name), 0o755)
	c.headerDev(name, 0o020000|uint32(perm.Perm()), 0, major, minor)
}

// Close writes the trailer and flushes; it reports the first error of any
// earlier call.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

func (c *cpioWriter) header(name string, mode uint32, size int64) {
	c.headerDev(name, mode, size, 0, 0)
}

func (c *cpioWriter) headerDev(name string, mode uint32, size int64, major, minor int) {
	name = clean(name)
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad(int64(len(hdr) + len(name) + 1))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad aligns the stream to 4 bytes after n bytes of a header or data.
func (c *cpioWriter) pad(n int64) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
