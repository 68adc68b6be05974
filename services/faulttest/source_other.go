//go:build !linux

package faulttest

import "net"

// sourceOf cannot find a connection's process outside Linux: every
// connection counts as unknown, so a partition blocks only what goes to
// the partitioned node.
func (n *Network) sourceOf(net.Conn) string {
	n.mu.Lock()
	n.unknown++
	n.mu.Unlock()
	return ""
}
