package store

import (
	"runtime"
	"sync"
	"unsafe"
	"weak"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "berth/proto/berth/v1"
)

// interner makes the objects the store keeps share the parts that many of
// them hold equal. Every task carries the spec, the endpoint and the
// networks of the service version it was made for, so 1,000 replicas
// decoded from the Raft log held 1,000 equal copies of each; with the
// interner they hold one. Stored objects are immutable (readers clone
// before they change one), which is what makes sharing safe.
//
// Messages are keyed by their deterministic encoding and held weakly: a
// spec no stored task holds any more is collected, and its entry with it.
// Strings that repeat across tasks (service, node and network IDs, status
// messages) are shared through a bounded table.
type interner struct {
	specs     pool[berthv1.TaskSpec, *berthv1.TaskSpec]
	endpoints pool[berthv1.Endpoint, *berthv1.Endpoint]
	networks  pool[berthv1.SpecNetworks, *berthv1.SpecNetworks]
	notes     pool[berthv1.Annotations, *berthv1.Annotations]
	strings   stringTable
}

func newInterner() *interner {
	return &interner{
		specs:     newPool[berthv1.TaskSpec](),
		endpoints: newPool[berthv1.Endpoint](),
		networks:  newPool[berthv1.SpecNetworks](),
		notes:     newPool[berthv1.Annotations](),
		strings:   stringTable{m: map[string]string{}},
	}
}

// batch interns the objects b creates or updates. A removal names the
// stored object itself, which readers may be reading: it is left alone.
func (in *interner) batch(b *berthv1.StoreBatch) {
	for _, a := range b.GetActions() {
		if a.GetKind() == berthv1.StoreAction_KIND_REMOVE {
			continue
		}
		if _, o, err := unwrap(a); err == nil {
			in.object(o)
		}
	}
}

// object replaces the parts of o that equal those of objects already seen
// by the shared ones. Only tasks are many enough to be worth it. It writes
// a field only to change it, so an object interned before is not written.
func (in *interner) object(o object) {
	t, ok := o.(*berthv1.Task)
	if !ok {
		return
	}
	setMsg(&t.Spec, in.specs.share(t.Spec))
	setMsg(&t.Endpoint, in.endpoints.share(t.Endpoint))
	setMsg(&t.SpecNetworks, in.networks.share(t.SpecNetworks))
	setMsg(&t.Annotations, in.notes.share(t.Annotations))
	s := &in.strings
	s.intern(&t.ServiceId)
	s.intern(&t.NodeId)
	if st := t.Status; st != nil {
		s.intern(&st.Message)
		s.intern(&st.Err)
	}
	for _, n := range t.Networks {
		s.intern(&n.NetworkId)
	}
	if m := t.Meta; m != nil && m.UpdatedAt != m.CreatedAt && sameTime(m.CreatedAt, m.UpdatedAt) {
		m.UpdatedAt = m.CreatedAt // a task written once
	}
}

func setMsg[P comparable](field *P, shared P) {
	if *field != shared {
		*field = shared
	}
}

func sameTime(a, b *timestamppb.Timestamp) bool {
	return a != nil && b != nil && a.Seconds == b.Seconds && a.Nanos == b.Nanos
}

// pool shares equal messages of one type, held weakly.
type pool[M any, P interface {
	*M
	proto.Message
}] struct {
	mu  *sync.Mutex
	m   map[string]weak.Pointer[M]
	buf []byte
}

func newPool[M any, P interface {
	*M
	proto.Message
}]() pool[M, P] {
	return pool[M, P]{mu: &sync.Mutex{}, m: map[string]weak.Pointer[M]{}}
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// share returns the pooled message equal to m, or pools m and returns it.
func (p *pool[M, P]) share(m P) P {
	if m == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	buf, err := deterministic.MarshalAppend(p.buf[:0], m)
	if err != nil {
		return m // not shared; still stored
	}
	p.buf = buf
	if w, ok := p.m[string(buf)]; ok {
		if v := w.Value(); v != nil {
			return P(v)
		}
	}
	key := string(buf)
	p.m[key] = weak.Make((*M)(m))
	runtime.AddCleanup((*M)(m), p.forget, key)
	return m
}

// forget drops key's entry once its message is collected (unless the key
// was pooled again since).
func (p *pool[M, P]) forget(key string) {
	p.mu.Lock()
	if w, ok := p.m[key]; ok && w.Value() == nil {
		delete(p.m, key)
	}
	p.mu.Unlock()
}

// maxStrings bounds the string table: beyond it the table starts afresh
// (strings already shared stay shared), so strings that do not repeat,
// such as error messages with a process's exit code, cannot grow it.
const maxStrings = 1 << 14

// stringTable shares equal strings.
type stringTable struct {
	mu sync.Mutex
	m  map[string]string
}

// intern points *p at the shared copy of its string, when that is another.
func (t *stringTable) intern(p *string) {
	if c := t.share(*p); unsafe.StringData(c) != unsafe.StringData(*p) {
		*p = c
	}
}

func (t *stringTable) share(s string) string {
	if s == "" {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.m[s]; ok {
		return c
	}
	if len(t.m) >= maxStrings {
		clear(t.m)
	}
	t.m[s] = s
	return s
}

// len counts the pooled messages (for tests).
func (p *pool[M, P]) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}
