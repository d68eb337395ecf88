package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// server holds the state behind the HTTP handlers.
type server struct {
	version    string
	resolvConf string
	unhealthy  atomic.Bool
}

func newServer(version, resolvConf string) *server {
	return &server{version: version, resolvConf: resolvConf}
}

// info is the JSON answer to GET /.
type info struct {
	Hostname   string  `json:"hostname"`
	Version    string  `json:"version"`
	RemoteAddr string  `json:"remote_addr"`
	DNS        dnsView `json:"dns"`
}

// dnsView is how this process sees DNS: what resolv.conf says and, when
// asked, what one name resolves to.
type dnsView struct {
	Nameservers []string `json:"nameservers"`
	Search      []string `json:"search,omitempty"`
	Lookup      string   `json:"lookup,omitempty"`
	Addresses   []string `json:"addresses,omitempty"`
	Error       string   `json:"error,omitempty"`
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.root)
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("POST /health/fail", func(w http.ResponseWriter, _ *http.Request) {
		s.unhealthy.Store(true)
		writeText(w, http.StatusOK, "unhealthy now\n")
	})
	mux.HandleFunc("POST /health/ok", func(w http.ResponseWriter, _ *http.Request) {
		s.unhealthy.Store(false)
		writeText(w, http.StatusOK, "healthy now\n")
	})
	return mux
}

func (s *server) root(w http.ResponseWriter, r *http.Request) {
	host, _ := os.Hostname()
	view := readResolvConf(s.resolvConf)
	if name := r.URL.Query().Get("lookup"); name != "" {
		view.Lookup = name
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		addrs, err := (&net.Resolver{PreferGo: true}).LookupHost(ctx, name)
		view.Addresses = addrs
		if err != nil {
			view.Error = strings.TrimPrefix(view.Error+"; "+err.Error(), "; ")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(info{
		Hostname:   host,
		Version:    s.version,
		RemoteAddr: r.RemoteAddr,
		DNS:        view,
	})
}

func (s *server) health(w http.ResponseWriter, _ *http.Request) {
	if s.unhealthy.Load() {
		writeText(w, http.StatusServiceUnavailable, "unhealthy\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// readResolvConf returns the nameserver and search lines of path; a file
// that cannot be read gives an empty view with the error.
func readResolvConf(path string) dnsView {
	view := dnsView{Nameservers: []string{}}
	f, err := os.Open(path)
	if err != nil {
		view.Error = "read resolv.conf: " + err.Error()
		return view
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			view.Nameservers = append(view.Nameservers, fields[1])
		case "search", "domain":
			view.Search = append(view.Search, fields[1:]...)
		}
	}
	return view
}
