package store

import (
	"context"
	"testing"
	"time"
)

// TestPanicInCallbackFreesTheStore: a panic inside an Update or Batch
// callback (a bug in a gRPC handler, which the server's recovery turns
// into an error) must not leave the store's writer held, or every later
// write would block forever.
func TestPanicInCallbackFreesTheStore(t *testing.T) {
	s := New(nil)
	ctx := context.Background()
	recovered := func(f func()) (r any) {
		defer func() { r = recover() }()
		f()
		return nil
	}
	for name, panicky := range map[string]func(){
		"Update": func() { _ = s.Update(ctx, func(Tx) error { panic("handler bug") }) },
		"Batch": func() {
			_ = s.Batch(ctx, func(b *Batch) error { return b.Update(func(Tx) error { panic("handler bug") }) })
		},
	} {
		done := make(chan error, 1)
		go func() {
			if recovered(panicky) == nil {
				t.Errorf("%s did not panic", name)
			}
			done <- s.Update(ctx, func(tx Tx) error { return tx.DeleteService("none") })
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a write after a panic in a %s callback is still blocked after 10s: the writer lock was left held", name)
		}
	}
}
