package amqp_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/testserver"
)

// rawConn speaks AMQP by hand, for what no client library sends.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	fr *wire.FrameReader
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	// A server that hangs instead of answering fails the test, not the suite.
	require.NoError(t, nc.SetDeadline(time.Now().Add(30*time.Second)))
	return &rawConn{t: t, nc: nc, fr: wire.NewFrameReader(bufio.NewReader(nc), 0)}
}

// open runs the handshake with frame_max 4096.
func (r *rawConn) open() {
	r.t.Helper()
	r.write(wire.ProtocolHeader)
	_ = r.expect((*wire.ConnectionStart)(nil))
	r.send(0, &wire.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	_ = r.expect((*wire.ConnectionTune)(nil))
	r.send(0, &wire.ConnectionTuneOk{ChannelMax: 16, FrameMax: 4096})
	r.send(0, &wire.ConnectionOpen{VirtualHost: "/"})
	_ = r.expect((*wire.ConnectionOpenOk)(nil))
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_, err := r.nc.Write(b)
	require.NoError(r.t, err)
}

func (r *rawConn) send(ch uint16, m wire.Method) { r.write(wire.AppendMethod(nil, ch, m)) }

// next reads the next method, skipping heartbeats.
func (r *rawConn) next() (uint16, wire.Method) {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		require.NoError(r.t, err)
		if f.Type == wire.FrameHeartbeat {
			continue
		}
		require.EqualValues(r.t, wire.FrameMethod, f.Type)
		m, err := wire.ParseMethod(f.Payload)
		require.NoError(r.t, err)
		return f.Channel, m
	}
}

func (r *rawConn) expect(want wire.Method) wire.Method {
	r.t.Helper()
	_, m := r.next()
	require.IsType(r.t, want, m)
	return m
}

// closedWith expects connection.close with a reply code, answers it, and
// expects the server to end the connection.
func (r *rawConn) closedWith(code uint16) *wire.ConnectionClose {
	r.t.Helper()
	cl := r.expect((*wire.ConnectionClose)(nil)).(*wire.ConnectionClose)
	require.Equal(r.t, code, cl.ReplyCode, cl.ReplyText)
	r.send(0, &wire.ConnectionCloseOk{})
	_, err := io.ReadAll(r.nc)
	require.NoError(r.t, err, "the server must close the socket, not leave it hanging")
	return cl
}

func TestBadInput(t *testing.T) {
	srv := testserver.Start(t)
	addr := srv.AMQPAddr

	t.Run("wrong protocol header", func(t *testing.T) {
		for _, hdr := range [][]byte{[]byte("AMQP\x00\x00\x09\x00"), []byte("AMQP\x03\x01\x00\x00"), []byte("GET / HTTP/1.1\r\n\r\n")} {
			r := rawDial(t, addr)
			r.write(hdr)
			got, err := io.ReadAll(r.nc)
			require.NoError(t, err)
			require.Equal(t, wire.ProtocolHeader, got, "answered with the protocol header the server speaks, then closed")
		}
	})
	t.Run("frame larger than frame_max", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		r.send(1, &wire.ChannelOpen{})
		r.expect((*wire.ChannelOpenOk)(nil))
		r.send(1, &wire.QueueDeclare{Queue: "q", Arguments: wire.Table{"pad": string(bytes.Repeat([]byte("x"), 5000))}})
		r.closedWith(wire.FrameError)
	})
	t.Run("bad frame end", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		f := wire.AppendMethod(nil, 1, &wire.ChannelOpen{})
		f[len(f)-1] = 0
		r.write(f)
		r.closedWith(wire.FrameError)
	})
	t.Run("method on a channel not open", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		r.send(5, &wire.QueueDeclare{Queue: "q"})
		cl := r.closedWith(wire.ChannelError)
		require.EqualValues(t, 50, cl.ClassId)
		require.EqualValues(t, 10, cl.MethodId)
	})
	t.Run("method on a closed channel", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		r.send(1, &wire.ChannelOpen{})
		r.expect((*wire.ChannelOpenOk)(nil))
		r.send(1, &wire.ChannelClose{ReplyCode: 200})
		r.expect((*wire.ChannelCloseOk)(nil))
		r.send(1, &wire.BasicQos{PrefetchCount: 1})
		r.closedWith(wire.ChannelError)
	})
	t.Run("unknown class and method", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		r.send(1, &wire.ChannelOpen{})
		r.expect((*wire.ChannelOpenOk)(nil))
		r.write([]byte{wire.FrameMethod, 0, 1, 0, 0, 0, 4, 0, 99, 0, 7, wire.FrameEnd})
		cl := r.closedWith(wire.CommandInvalid)
		require.EqualValues(t, 99, cl.ClassId)
		require.EqualValues(t, 7, cl.MethodId)
	})
	t.Run("malformed arguments", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		// queue.declare whose arguments table claims more bytes than sent.
		r.write([]byte{wire.FrameMethod, 0, 0, 0, 0, 0, 12, 0, 50, 0, 10, 0, 0, 1, 'q', 0, 0xff, 0xff, 0xff, wire.FrameEnd})
		r.closedWith(wire.SyntaxError)
	})
	t.Run("content without publish", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		r.send(1, &wire.ChannelOpen{})
		r.expect((*wire.ChannelOpenOk)(nil))
		r.write(wire.AppendContent(nil, 1, wire.ClassBasic, &wire.BasicProperties{}, []byte("x"), 4096))
		r.closedWith(wire.UnexpectedFrame)
	})
	t.Run("unknown vhost", func(t *testing.T) {
		r := rawDial(t, addr)
		r.write(wire.ProtocolHeader)
		r.expect((*wire.ConnectionStart)(nil))
		r.send(0, &wire.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
		r.expect((*wire.ConnectionTune)(nil))
		r.send(0, &wire.ConnectionTuneOk{FrameMax: 4096})
		r.send(0, &wire.ConnectionOpen{VirtualHost: "/other"})
		r.closedWith(wire.NotAllowed)
	})
	t.Run("truncated frames", func(t *testing.T) {
		for _, cut := range []int{3, 7, 11} {
			r := rawDial(t, addr)
			r.open()
			f := wire.AppendMethod(nil, 1, &wire.ChannelOpen{})
			r.write(f[:cut])
			require.NoError(t, r.nc.(*net.TCPConn).CloseWrite())
			_, err := io.ReadAll(r.nc)
			require.NoError(t, err)
		}
	})
	t.Run("unknown delivery tag closes the channel only", func(t *testing.T) {
		r := rawDial(t, addr)
		r.open()
		r.send(1, &wire.ChannelOpen{})
		r.expect((*wire.ChannelOpenOk)(nil))
		r.send(1, &wire.BasicAck{DeliveryTag: 99})
		ch, m := r.next()
		require.EqualValues(t, 1, ch)
		cl := m.(*wire.ChannelClose)
		require.EqualValues(t, wire.PreconditionFailed, cl.ReplyCode, cl.ReplyText)
		r.send(1, &wire.ChannelCloseOk{})
		// The connection still serves.
		r.send(2, &wire.ChannelOpen{})
		r.expect((*wire.ChannelOpenOk)(nil))
	})

	// After all that, the server still serves a real client.
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("after", true, false, false, false, nil)
	require.NoError(t, err)
}
