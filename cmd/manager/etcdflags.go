package main

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/pflag"

	"berth/manager"
	"berth/store/etcdstore"
)

// etcdFlags are berth-manager's --etcd-* flags, for --store etcd.
type etcdFlags struct {
	endpoints         []string
	prefix            string
	caCert, cert, key string
	leaseTTL          time.Duration
	flags             *pflag.FlagSet
}

func (e *etcdFlags) register(f *pflag.FlagSet) {
	e.flags = f
	f.StringSliceVar(&e.endpoints, "etcd-endpoints", nil, "with --store etcd: etcd's client `URL`s, comma-separated (http://HOST:2379 or https://…)")
	f.StringVar(&e.prefix, "etcd-prefix", etcdstore.DefaultPrefix, "with --store etcd: the key `PREFIX` this cluster's state lives under")
	f.StringVar(&e.caCert, "etcd-cacert", "", "with --store etcd: CA certificate `FILE` that verifies etcd's server certificate")
	f.StringVar(&e.cert, "etcd-cert", "", "with --store etcd: client certificate `FILE` for etcd (with --etcd-key)")
	f.StringVar(&e.key, "etcd-key", "", "with --store etcd: client key `FILE` for etcd (with --etcd-cert)")
	f.DurationVar(&e.leaseTTL, "etcd-lease-ttl", etcdstore.DefaultLeaseTTL, "with --store etcd: the leader's lease in whole seconds (at least 2s); a dead leader is replaced within it")
}

// names are the --etcd-* flags given on the command line.
func (e *etcdFlags) given() []string {
	var out []string
	for _, n := range []string{"etcd-endpoints", "etcd-prefix", "etcd-cacert", "etcd-cert", "etcd-key", "etcd-lease-ttl"} {
		if e.flags != nil && e.flags.Changed(n) {
			out = append(out, "--"+n)
		}
	}
	return out
}

// validate refuses combinations that make no sense, naming the flag.
func (e *etcdFlags) validate(store string, forceNewCluster bool) error {
	switch store {
	case "raft":
		if g := e.given(); len(g) > 0 {
			return fmt.Errorf("%s needs --store etcd (the state is in the embedded Raft unless --store etcd is given)", g[0])
		}
		return nil
	case "etcd":
	default:
		return fmt.Errorf("--store %q: want raft or etcd", store)
	}
	if len(e.endpoints) == 0 {
		return errors.New("--store etcd needs --etcd-endpoints: etcd's client URLs, such as http://10.0.0.1:2379")
	}
	for _, ep := range e.endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--etcd-endpoints %q: want a URL such as http://10.0.0.1:2379 or https://10.0.0.1:2379", ep)
		}
	}
	if (e.cert == "") != (e.key == "") {
		return errors.New("--etcd-cert and --etcd-key go together: give both or neither")
	}
	if forceNewCluster {
		return errors.New("--force-new-cluster and --store etcd exclude each other: --force-new-cluster recovers the embedded Raft, and with etcd the state is etcd's")
	}
	if e.leaseTTL < 2*time.Second || e.leaseTTL%time.Second != 0 {
		return fmt.Errorf("--etcd-lease-ttl %s: want whole seconds, at least 2s", e.leaseTTL)
	}
	return nil
}

// config is the manager's etcd configuration, nil for Raft.
func (e *etcdFlags) config(store string) *manager.EtcdConfig {
	if store != "etcd" {
		return nil
	}
	return &manager.EtcdConfig{
		Dial:   etcdstore.DialConfig{Endpoints: e.endpoints, CACert: e.caCert, Cert: e.cert, Key: e.key},
		Prefix: e.prefix, LeaseTTL: e.leaseTTL,
	}
}
