// Command registry serves berth's test images (busybox, app:v1, app:v2)
// from an in-process OCI registry until interrupted, for the demo, for
// benchmarks and for trying `berth-agent run` by hand.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"berth/internal/testimage"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to serve on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	f, err := testimage.StartAt(ctx, *addr, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
	defer f.Close()
	fmt.Printf("busybox %s\napp:v1 %s\napp:v2 %s\nready\n", f.Busybox.Tag, f.AppV1.Tag, f.AppV2.Tag)
	<-ctx.Done()
}
