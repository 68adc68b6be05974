package faulttest

import (
	"net"
	"sync"
)

// Network is the network between the nodes as the harness sees it: a
// Proxy in front of each node's internal gRPC listener and of each node's
// etcd connection, and the set of partitioned nodes. Network namespaces
// would do the same with packets, but need privileges a test must not
// require.
type Network struct {
	mu          sync.Mutex
	partitioned map[string]bool
	changed     chan struct{} // closed and replaced at every change
	pids        func() map[int]string
	unknown     int // connections whose source node was not found
}

// NewNetwork returns a network without faults. pids names the node of each
// running dmsd process, to find where a connection comes from.
func NewNetwork(pids func() map[int]string) *Network {
	return &Network{partitioned: map[string]bool{}, changed: make(chan struct{}), pids: pids}
}

// Partition cuts node off from the others and from etcd: every link to or
// from it drops what it carries until Heal.
func (n *Network) Partition(node string) { n.set(node, true) }

// Heal ends the partition of node; the stalled connections go on.
func (n *Network) Heal(node string) { n.set(node, false) }

func (n *Network) set(node string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.partitioned[node] = cut
	close(n.changed)
	n.changed = make(chan struct{})
}

// blocked says whether the link from one node to another drops packets.
// An unknown source (a connection whose process was not found) is blocked
// only to a partitioned node.
func (n *Network) blocked(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return from != to && (n.partitioned[from] || n.partitioned[to])
}

// waitOpen waits until the link from one node to the other carries
// packets; false if done closed first.
func (n *Network) waitOpen(from, to string, done <-chan struct{}) bool {
	for {
		n.mu.Lock()
		open := from == to || !(n.partitioned[from] || n.partitioned[to])
		changed := n.changed
		n.mu.Unlock()
		if open {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

// Unknown is the number of proxied connections whose source node was not
// found (they are blocked only towards a partitioned node).
func (n *Network) Unknown() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.unknown
}

// Proxy is a TCP proxy in front of one port of one node through which the
// harness injects faults:
//
//   - Down closes the listener, so that dialers are refused, as they are by
//     the host of a process that is not running, and resets every
//     connection;
//   - a blocked link (Network.Partition) forwards nothing either way and
//     answers nothing, the way a partition that drops packets behaves:
//     connections stall, bytes sent meanwhile wait in the buffers, and they
//     flow again when the link heals (as TCP retransmits them), unless an
//     end gave up first.
type Proxy struct {
	net     *Network
	backend string // the address it forwards to
	dest    string // the node (or "etcd") behind it
	fixed   string // the only source node, for a node's etcd proxy
	addr    string

	mu    sync.Mutex
	ln    net.Listener
	down  chan struct{} // closed by Down
	conns map[*proxyConn]struct{}
}

type proxyConn struct {
	client net.Conn
	closed chan struct{}

	mu     sync.Mutex
	server net.Conn
	done   bool
}

func (c *proxyConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	close(c.closed)
	_ = c.client.Close()
	if c.server != nil {
		_ = c.server.Close()
	}
}

// attach sets the connection to the backend; false if it was reset
// meanwhile.
func (c *proxyConn) attach(server net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		_ = server.Close()
		return false
	}
	c.server = server
	return true
}

// NewProxy listens on a free port of 127.0.0.1 and forwards to backend.
// dest names the node behind it ("etcd" for etcd); fixedSource, when not
// empty, is the only node that dials it; otherwise each connection's
// source node is found from the dialing process.
func (n *Network) NewProxy(backend, dest, fixedSource string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{net: n, backend: backend, dest: dest, fixed: fixedSource, addr: ln.Addr().String(),
		ln: ln, down: make(chan struct{}), conns: map[*proxyConn]struct{}{}}
	go p.serve(ln, p.down)
	return p, nil
}

// Addr is where the proxy listens; it stays the same across Down and Up.
func (p *Proxy) Addr() string { return p.addr }

// Down stops accepting (dialers are refused) and resets every connection.
func (p *Proxy) Down() {
	p.mu.Lock()
	ln, conns := p.ln, p.conns
	if ln != nil {
		close(p.down)
	}
	p.ln, p.conns = nil, map[*proxyConn]struct{}{}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for c := range conns {
		c.close()
	}
}

// Up listens again on the same address.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.ln, p.down = ln, make(chan struct{})
	go p.serve(ln, p.down)
	return nil
}

func (p *Proxy) serve(ln net.Listener, down chan struct{}) {
	for {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(client, down)
	}
}

func (p *Proxy) handle(client net.Conn, down chan struct{}) {
	source := p.fixed
	if source == "" {
		source = p.net.sourceOf(client)
	}
	c := &proxyConn{client: client, closed: make(chan struct{})}
	p.mu.Lock()
	if p.down != down {
		p.mu.Unlock()
		_ = client.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	// A blocked link answers nothing, not even with the backend's refusal:
	// the dial waits for it to heal.
	if !p.net.waitOpen(source, p.dest, c.closed) {
		return
	}
	server, err := net.Dial("tcp", p.backend)
	if err != nil {
		return // the node is not listening (yet): the dialer sees its connection end
	}
	if !c.attach(server) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(c, server, client, source, p.dest) })
	wg.Go(func() { p.pipe(c, client, server, p.dest, source) })
	wg.Wait()
}

// pipe copies from src to dst, holding every chunk while the link is
// blocked; when either side ends, the connection ends.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn, from, to string) {
	defer c.close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.net.waitOpen(from, to, c.closed) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
