package faulttest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// sourceOf finds the node whose process holds the other end of a
// connection accepted by a proxy: the socket's inode from /proc/net/tcp,
// then the process that has it open. All nodes dial from 127.0.0.1, so the
// address alone cannot tell them apart.
func (n *Network) sourceOf(c net.Conn) string {
	remote, local := c.RemoteAddr().(*net.TCPAddr), c.LocalAddr().(*net.TCPAddr)
	// The dialer's socket: its local address is our remote one.
	want := fmt.Sprintf("%s %s", procAddr(remote), procAddr(local))
	inode := ""
	if f, err := os.Open("/proc/net/tcp"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && fields[1]+" "+fields[2] == want {
				inode = fields[9]
				break
			}
		}
		_ = f.Close()
	}
	if inode != "" {
		link := "socket:[" + inode + "]"
		for pid, node := range n.pids() {
			fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
			for _, fd := range fds {
				if target, err := os.Readlink(fd); err == nil && target == link {
					return node
				}
			}
		}
	}
	n.mu.Lock()
	n.unknown++
	n.mu.Unlock()
	return ""
}

// procAddr writes an IPv4 address as /proc/net/tcp does: the address's
// bytes as a little-endian hex word, then the port in hex.
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}
