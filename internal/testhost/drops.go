package testhost

import (
	"context"
	"fmt"
	"net/netip"
)

// LossPercent is the share of packets a lossy direction (Lossy) drops.
const LossPercent = 20

// DropBetween makes the bridge drop all IPv4 traffic between hosts a and b,
// both ways, until AllowBetween.
func (c *Cluster) DropBetween(ctx context.Context, a, b *Host) error {
	if err := c.DropFrom(ctx, a, b); err != nil {
		return err
	}
	return c.DropFrom(ctx, b, a)
}

// AllowBetween undoes DropBetween(a, b), and a DropFrom either way. It is a
// no-op for directions not dropped.
func (c *Cluster) AllowBetween(ctx context.Context, a, b *Host) error {
	if err := c.AllowFrom(ctx, a, b); err != nil {
		return err
	}
	return c.AllowFrom(ctx, b, a)
}

// DropFrom makes the bridge drop the IPv4 traffic from host from to host
// to, one way only (to's replies and its own traffic to from still pass),
// until AllowFrom.
func (c *Cluster) DropFrom(ctx context.Context, from, to *Host) error {
	return c.setElement(ctx, "drops", c.drops, from, to, true)
}

// AllowFrom undoes DropFrom(from, to); it is a no-op if that direction is
// not dropped.
func (c *Cluster) AllowFrom(ctx context.Context, from, to *Host) error {
	return c.setElement(ctx, "drops", c.drops, from, to, false)
}

// Lossy makes the bridge drop LossPercent of the IPv4 packets between a and
// b, both ways, each packet drawn at random, until Lossless.
func (c *Cluster) Lossy(ctx context.Context, a, b *Host) error {
	if err := c.setElement(ctx, "lossy", c.lossy, a, b, true); err != nil {
		return err
	}
	return c.setElement(ctx, "lossy", c.lossy, b, a, true)
}

// Lossless undoes Lossy(a, b).
func (c *Cluster) Lossless(ctx context.Context, a, b *Host) error {
	if err := c.setElement(ctx, "lossy", c.lossy, a, b, false); err != nil {
		return err
	}
	return c.setElement(ctx, "lossy", c.lossy, b, a, false)
}

// setElement adds (on) or deletes the direction from . to in the nft set
// named set, which the map in tracks.
func (c *Cluster) setElement(ctx context.Context, set string, in map[[2]netip.Addr]bool, from, to *Host, on bool) error {
	if err := c.owns(from, to); err != nil {
		return fmt.Errorf("%s %s to %s: %w", set, from.Name, to.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]netip.Addr{from.Addr, to.Addr}
	if in[k] == on {
		return nil
	}
	verb := "add"
	if !on {
		verb = "delete"
	}
	if _, err := nft(ctx, "", verb, "element", "bridge", c.table, set, element(from, to)); err != nil {
		return fmt.Errorf("%s %s %s to %s: %w", verb, set, from.Name, to.Name, err)
	}
	if on {
		in[k] = true
	} else {
		delete(in, k)
	}
	return nil
}
