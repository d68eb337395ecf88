package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/encoding/protodelim"

	berthv1 "berth/proto/berth/v1"
)

// snapshotMagic starts every snapshot stream; the version digit changes
// when the format does.
const snapshotMagic = "BERTHST1"

// maxObjectBytes bounds one object read back from a snapshot.
const maxObjectBytes = 64 << 20

// Snapshot is a point-in-time capture of the whole state. Taking one is
// cheap (memdb is immutable underneath); WriteTo does the I/O.
type Snapshot struct {
	txn   *memdb.Txn
	index uint64
}

// Snapshot captures the current state.
func (s *MemoryStore) Snapshot() *Snapshot {
	txn := s.db.Load().Txn(false)
	return &Snapshot{txn: txn, index: readIndex(txn)}
}

// Index is the store index the snapshot reflects.
func (sn *Snapshot) Index() uint64 { return sn.index }

// WriteTo streams the state: the magic, the index (8 bytes, big endian),
// then every object as a length-delimited StoreAction (kind create), one
// table after another. Memory use does not grow with the state.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: bufio.NewWriterSize(w, 256<<10)}
	var hdr [len(snapshotMagic) + 8]byte
	copy(hdr[:], snapshotMagic)
	binary.BigEndian.PutUint64(hdr[len(snapshotMagic):], sn.index)
	if _, err := cw.Write(hdr[:]); err != nil {
		return cw.n, fmt.Errorf("write snapshot header: %w", err)
	}
	for _, t := range allTables {
		it, err := sn.txn.Get(t.name, indexID)
		if err != nil {
			return cw.n, fmt.Errorf("snapshot %s: %w", t.name, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if _, err := protodelim.MarshalTo(cw, t.wrap(berthv1.StoreAction_KIND_CREATE, raw.(object))); err != nil {
				return cw.n, fmt.Errorf("write %s %s: %w", t.name, raw.(object).GetId(), err)
			}
		}
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		return cw.n, fmt.Errorf("flush snapshot: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with one written by Snapshot.WriteTo.
// The state is swapped in only when the stream is read completely. Open
// watchers stop with ErrRestored; the changelog starts afresh at the
// restored index.
func (s *MemoryStore) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	var hdr [len(snapshotMagic) + 8]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("read snapshot: bad magic %q, want %q", hdr[:len(snapshotMagic)], snapshotMagic)
	}
	index := binary.BigEndian.Uint64(hdr[len(snapshotMagic):])
	db := newDB()
	txn := db.Txn(true)
	if err := insertAll(txn, br, s.intern); err != nil {
		txn.Abort()
		return err
	}
	if err := txn.Insert(tableIndex, &indexRow{Key: indexKey, Value: index}); err != nil {
		txn.Abort()
		return fmt.Errorf("restore snapshot index: %w", err)
	}
	txn.Commit()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.db.Store(db)
	s.changes.reset(index)
	s.notifyApplied()
	s.log.Info("store restored from snapshot", "index", index)
	return nil
}

// restoreChunk is how many objects the decoder hands over at a time.
const restoreChunk = 512

// insertAll inserts every object of a snapshot stream into txn. One
// goroutine decodes while this one inserts: on two cores a restart's
// restore takes about the insert time alone.
func insertAll(txn *memdb.Txn, r io.Reader, in *interner) error {
	chunks := make(chan []*berthv1.StoreAction, 8)
	stop := make(chan struct{})
	decodeErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		decodeErr <- decodeAll(r, chunks, stop, in)
	}()
	n, err := 0, error(nil)
	for chunk := range chunks {
		for _, a := range chunk {
			if err == nil {
				err = insertAction(txn, a, n)
			}
			n++
		}
		if err != nil {
			close(stop)
			break
		}
	}
	for range chunks { // let the decoder finish
	}
	if derr := <-decodeErr; err == nil {
		err = derr
	}
	return err
}

// decodeAll reads length-delimited actions from r into chunks until EOF
// or stop; their objects share equal parts through in.
func decodeAll(r io.Reader, chunks chan<- []*berthv1.StoreAction, stop <-chan struct{}, in *interner) error {
	br := bufio.NewReaderSize(r, 256<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxObjectBytes}
	chunk := make([]*berthv1.StoreAction, 0, restoreChunk)
	send := func() bool {
		select {
		case chunks <- chunk:
			chunk = make([]*berthv1.StoreAction, 0, restoreChunk)
			return true
		case <-stop:
			return false
		}
	}
	for n := 0; ; n++ {
		a := &berthv1.StoreAction{}
		err := opts.UnmarshalFrom(br, a)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read snapshot object %d: %w", n, err)
		}
		if _, o, err := unwrap(a); err == nil {
			in.object(o)
		}
		if chunk = append(chunk, a); len(chunk) == restoreChunk && !send() {
			return nil
		}
	}
	if len(chunk) > 0 {
		send()
	}
	return nil
}

func insertAction(txn *memdb.Txn, a *berthv1.StoreAction, n int) error {
	t, o, err := unwrap(a)
	if err == nil {
		err = txn.Insert(t.name, o)
	}
	if err != nil {
		return fmt.Errorf("restore snapshot object %d: %w", n, err)
	}
	return nil
}
