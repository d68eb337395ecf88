package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/vishvananda/netns"
)

// Probes the agent runs from outside a container, as Kubernetes' httpGet
// and tcpSocket do: the socket is made in the container's network
// namespace, so 127.0.0.1 is the container's own loopback and the image
// needs no shell or curl.

// probeHTTP asks GET http://127.0.0.1:port/path inside the container's
// network namespace; a 2xx or 3xx answer is healthy (redirects are not
// followed).
func probeHTTP(ctx context.Context, nsPath string, port uint32, path string) (bool, string) {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, nsPath, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Sprintf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("GET %s: %s: %s", url, resp.Status, body)
}

// probeTCP connects to 127.0.0.1:port inside the container's network
// namespace.
func probeTCP(ctx context.Context, nsPath string, port uint32) (bool, string) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	c, err := dialIn(ctx, nsPath, "tcp", addr)
	if err != nil {
		return false, fmt.Sprintf("connect %s: %v", addr, err)
	}
	c.Close()
	return true, ""
}

// dialIn connects to addr from a socket made in the network namespace at
// nsPath; the connection then lives there whatever thread uses it.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	var c net.Conn
	err = inNetns(ns, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
