package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"berth/ca"
	"berth/internal/e2ecluster"
	"berth/internal/faults"
	pb "berth/proto/berth/v1"
)

// valueLabel is the service label holding the value of the last write.
const valueLabel = "faults.value"

// opTimeout bounds one Control API call: past it the outcome is unknown.
const opTimeout = 4 * time.Second

// workload is the clients of one run: each talks to one manager (client i
// to manager i mod 3), so a partition cuts some clients off and not others.
type workload struct {
	hist  *faults.History
	conns []*grpc.ClientConn
	names []string
	image string
	next  atomic.Int64 // the last value written
	// notSent counts calls refused before they left the client (no
	// connection): they had no effect and stay out of the history.
	notSent atomic.Int64
}

// newWorkload dials every manager of c with the first manager's client
// bundle.
func newWorkload(c *e2ecluster.Cluster, names []string) (*workload, error) {
	dir := filepath.Join(c.Managers[0].DataDir, "client")
	read := func(f string) []byte { b, _ := os.ReadFile(filepath.Join(dir, f)); return b }
	creds, err := ca.NewCredentials(read("ca.pem"), read("cert.pem"), read("key.pem"))
	if err != nil {
		return nil, fmt.Errorf("client bundle in %s: %w", dir, err)
	}
	w := &workload{hist: faults.NewHistory(), names: names, image: c.Images.Busybox.Tag}
	for _, m := range c.Managers {
		conn, err := grpc.NewClient(m.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, conn)
	}
	return w, nil
}

func (w *workload) close() {
	for _, c := range w.conns {
		c.Close()
	}
}

// control is the Control client of client i's manager.
func (w *workload) control(i int) pb.ControlClient {
	return pb.NewControlClient(w.conns[i%len(w.conns)])
}

// run starts n clients, each with its own stream of choices from seed, and
// returns a function that stops them and waits.
func (w *workload) run(ctx context.Context, n int, seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range n {
		rng := rand.New(rand.NewPCG(seed, uint64(i)+1))
		wg.Go(func() { w.client(ctx, i, rng) })
	}
	return func() { cancel(); wg.Wait() }
}

// client runs random operations until ctx ends: reads 40 %, updates 30 %,
// creates and removes 15 % each, with a short random pause between them
// and a longer one after a failure, so that a cut-off client does not pile
// up operations of unknown outcome.
func (w *workload) client(ctx context.Context, i int, rng *rand.Rand) {
	for ctx.Err() == nil {
		name := w.names[rng.IntN(len(w.names))]
		var out faults.Output
		switch p := rng.IntN(100); {
		case p < 40:
			out = w.read(ctx, i, name)
		case p < 70:
			out = w.update(ctx, i, name)
		case p < 85:
			out = w.create(ctx, i, name)
		default:
			out = w.remove(ctx, i, name)
		}
		pause := time.Duration(20+rng.IntN(80)) * time.Millisecond
		if out.Outcome == faults.Unknown {
			pause = time.Duration(300+rng.IntN(300)) * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// call runs one operation and records it; it returns the outcome, and the
// service when the call returned one.
func (w *workload) call(ctx context.Context, i int, in faults.Input, fn func(context.Context) (*pb.Service, error)) (faults.Output, *pb.Service) {
	if ctx.Err() != nil {
		return faults.Output{Outcome: faults.Unknown}, nil
	}
	// The call gets its own deadline, detached from the workload's end:
	// a call cut short by the run stopping would be of unknown outcome
	// for no reason.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	start := w.hist.Now()
	svc, err := fn(cctx)
	out, sent := outcome(err)
	if out.Outcome == faults.OK && in.Kind == faults.Read {
		out.Value = valueOf(svc)
	}
	if !sent {
		w.notSent.Add(1)
		return faults.Output{Outcome: faults.Unknown}, nil
	}
	w.hist.Add(i, in, start, out)
	return out, svc
}

func (w *workload) read(ctx context.Context, i int, name string) faults.Output {
	out, _ := w.get(ctx, i, name)
	return out
}

func (w *workload) get(ctx context.Context, i int, name string) (faults.Output, *pb.Service) {
	return w.call(ctx, i, faults.Input{Kind: faults.Read, Name: name}, func(ctx context.Context) (*pb.Service, error) {
		r, err := w.control(i).GetService(ctx, &pb.GetServiceRequest{ServiceId: name})
		return r.GetService(), err
	})
}

func (w *workload) create(ctx context.Context, i int, name string) faults.Output {
	v := int(w.next.Add(1))
	out, _ := w.call(ctx, i, faults.Input{Kind: faults.Create, Name: name, Value: v}, func(ctx context.Context) (*pb.Service, error) {
		r, err := w.control(i).CreateService(ctx, &pb.CreateServiceRequest{Spec: w.spec(name, v)})
		return r.GetService(), err
	})
	return out
}

// update reads the service and writes a new value with the version read,
// as `berth service update` does.
func (w *workload) update(ctx context.Context, i int, name string) faults.Output {
	out, svc := w.get(ctx, i, name)
	if out.Outcome != faults.OK {
		return out
	}
	v := int(w.next.Add(1))
	out, _ = w.call(ctx, i, faults.Input{Kind: faults.Update, Name: name, Value: v}, func(ctx context.Context) (*pb.Service, error) {
		r, err := w.control(i).UpdateService(ctx, &pb.UpdateServiceRequest{
			ServiceId: name, ServiceVersion: svc.GetMeta().GetVersion(), Spec: w.spec(name, v)})
		return r.GetService(), err
	})
	return out
}

func (w *workload) remove(ctx context.Context, i int, name string) faults.Output {
	out, _ := w.call(ctx, i, faults.Input{Kind: faults.Remove, Name: name}, func(ctx context.Context) (*pb.Service, error) {
		_, err := w.control(i).RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: name})
		return nil, err
	})
	return out
}

// spec is the service a write of value v makes: v mod 3 replicas of a
// sleeping busybox, the value in a label (changing it rolls no task).
func (w *workload) spec(name string, v int) *pb.ServiceSpec {
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: name, Labels: map[string]string{valueLabel: strconv.Itoa(v)}},
		Task: &pb.TaskSpec{Container: &pb.ContainerSpec{
			Image: w.image, Command: []string{"sleep", "86400"},
			StopGracePeriod: durationpb.New(2 * time.Second),
		}},
		Replicas: proto.Int64(replicasOf(v)),
	}
}

// replicasOf is the replica count a write of value v asks for.
func replicasOf(v int) int64 { return int64(v % 3) }

// valueOf is the value a service holds, -1 if it has none.
func valueOf(svc *pb.Service) int {
	v, err := strconv.Atoi(svc.GetSpec().GetAnnotations().GetLabels()[valueLabel])
	if err != nil {
		return -1
	}
	return v
}

// outcome classifies a call's error. sent is false for calls that never
// left the client (no connection to the manager): they had no effect.
func outcome(err error) (out faults.Output, sent bool) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.OK:
		return faults.Output{Outcome: faults.OK}, true
	case codes.NotFound:
		return faults.Output{Outcome: faults.NotFound}, true
	case codes.AlreadyExists:
		return faults.Output{Outcome: faults.Exists}, true
	case codes.Aborted:
		return faults.Output{Outcome: faults.Conflict}, true
	case codes.Unavailable, codes.DeadlineExceeded:
		msg := st.Message()
		if strings.Contains(msg, "Error while dialing") || strings.Contains(msg, "while waiting for connections to become ready") {
			return faults.Output{}, false
		}
	}
	return faults.Output{Outcome: faults.Unknown}, true
}

// errNotSettled is returned while a final read keeps failing.
var errNotSettled = errors.New("no definite answer yet")
