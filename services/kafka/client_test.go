package kafka_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/testserver"
)

// rawClient speaks the Kafka wire protocol with kmsg alone, so that tests
// choose every version and every byte.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	corr int32
	fmt  *kmsg.RequestFormatter
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{t: t, conn: conn, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw-test"))}
}

// send writes a request at its version and returns its correlation id.
func (c *rawClient) send(req kmsg.Request) int32 {
	c.t.Helper()
	c.corr++
	_, err := c.conn.Write(c.fmt.AppendRequest(nil, req, c.corr))
	require.NoError(c.t, err)
	return c.corr
}

// receive reads the response to a request sent with correlation id corr.
func (c *rawClient) receive(req kmsg.Request, corr int32) (kmsg.Response, error) {
	c.t.Helper()
	body, err := c.readFrame()
	if err != nil {
		return nil, err
	}
	rd := kbin.Reader{Src: body}
	if got := rd.Int32(); got != corr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	resp := req.ResponseKind()
	if resp.IsFlexible() && resp.Key() != kmsg.ApiVersions.Int16() {
		kmsg.SkipTags(&rd)
	}
	if err := rd.Complete(); err != nil {
		return nil, err
	}
	if err := resp.ReadFrom(rd.Src); err != nil {
		return nil, fmt.Errorf("decoding %s v%d response: %w", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp, nil
}

func (c *rawClient) readFrame() ([]byte, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c.conn, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(c.conn, body)
	return body, err
}

// roundTrip sends a request and returns its decoded response.
func (c *rawClient) roundTrip(req kmsg.Request) kmsg.Response {
	c.t.Helper()
	resp, err := c.receive(req, c.send(req))
	require.NoError(c.t, err, "%s v%d", kmsg.NameForKey(req.Key()), req.GetVersion())
	return resp
}

// closed reports whether the server closed the connection (reading gets
// EOF or a reset) before sending anything.
func (c *rawClient) closed() bool {
	c.t.Helper()
	_, err := c.readFrame()
	// A server that neither answers nor closes (the read deadline passes)
	// has not closed the connection.
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// startServer starts a dmsd with its Kafka listener on a free port.
func startServer(t testing.TB, flags ...string) *testserver.Server {
	t.Helper()
	srv := testserver.Start(t, testserver.WithFlags(flags...))
	require.NotEmpty(t, srv.KafkaAddr)
	return srv
}

func hostPort(host string, port int32) string {
	return net.JoinHostPort(host, fmt.Sprint(port))
}
