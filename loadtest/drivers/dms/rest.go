package dms

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/opendms/dms/loadtest/bench"
)

// The DMS v1.0 API's limit: 10 messages per send and per consume.
const (
	restMaxBatch     = 10
	restStampHexSize = 2 * bench.StampSize
)

// REST is the dms-rest driver: the DMS v1.0 REST API that existing Huawei
// Cloud DMS clients speak (POST …/messages, GET …/groups/{gid}/messages,
// POST …/groups/{gid}/ack). The queue and group are created through gRPC so
// that they get the workload's partitions (v1.0 has no partition count).
//
// A v1.0 message body is a JSON value, so the driver sends each body as a
// JSON string of exactly the message size: a quote, the 8-byte send stamp
// in hex, filler, a quote.
type REST struct {
	target
	client  *http.Client
	baseURL string
}

// NewREST returns the dms-rest driver.
func NewREST(cfg Config) *REST { return &REST{target: target{cfg: cfg}} }

var _ bench.Driver = (*REST)(nil)

// Setup implements bench.Driver.
func (d *REST) Setup(ctx context.Context, w bench.Workload) (bench.SetupInfo, error) {
	info, err := d.setup(ctx, w)
	info.System = "DMS (v1.0 REST, HTTP/1.1 keep-alive)"
	info.MaxSendBatch, info.MaxReceiveBatch = restMaxBatch, restMaxBatch
	if err != nil {
		return info, err
	}
	if d.httpAddr == "" {
		return info, errors.New("dms-rest needs -dms-http along with -dms-grpc")
	}
	if w.MessageSize < restStampHexSize+2 {
		return info, fmt.Errorf("dms-rest needs messages of at least %d bytes", restStampHexSize+2)
	}
	conns := w.Producers + w.Consumers + 4
	d.client = &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
	}}
	d.baseURL = fmt.Sprintf("http://%s/v1.0/%s/queues/%s", d.httpAddr, d.cfg.Project, d.queue.GetId())
	return info, nil
}

// Teardown implements bench.Driver.
func (d *REST) Teardown(ctx context.Context) error {
	if d.client != nil {
		d.client.CloseIdleConnections()
	}
	return d.teardown(ctx)
}

// NewProducer implements bench.Driver.
func (d *REST) NewProducer(context.Context) (bench.Producer, error) {
	return &restProducer{d: d, url: d.baseURL + "/messages"}, nil
}

// NewConsumer implements bench.Driver.
func (d *REST) NewConsumer(context.Context) (bench.Consumer, error) {
	groupURL := d.baseURL + "/groups/" + d.group.GetId()
	// time_wait is whole seconds from 1 to 60.
	wait := min(max(int((d.wait+time.Second-1)/time.Second), 1), 60)
	return &restConsumer{d: d, receiveURL: groupURL + "/messages", ackURL: groupURL + "/ack", wait: wait}, nil
}

// do sends one request and decodes a JSON answer of the wanted status.
func (d *REST) do(ctx context.Context, method, url string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("dms-rest: %s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(msg))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

type restProducer struct {
	d   *REST
	url string
	buf bytes.Buffer
}

func (p *restProducer) Send(ctx context.Context, bodies [][]byte) error {
	b := &p.buf
	b.Reset()
	b.WriteString(`{"messages":[`)
	var stamp [restStampHexSize]byte
	for i, body := range bodies {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"body":"`)
		hex.Encode(stamp[:], body[:bench.StampSize])
		b.Write(stamp[:])
		// The filler is printable and needs no escaping; 2 bytes are quotes.
		b.Write(body[bench.StampSize : len(body)-(restStampHexSize-bench.StampSize)-2])
		b.WriteString(`"}`)
	}
	b.WriteString(`]}`)
	var resp struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := p.d.do(ctx, http.MethodPost, p.url, b.Bytes(), http.StatusCreated, &resp); err != nil {
		return err
	}
	if len(resp.Messages) != len(bodies) {
		return fmt.Errorf("dms-rest: %d results for %d messages", len(resp.Messages), len(bodies))
	}
	return nil
}

func (p *restProducer) Close() error { return nil }

type restConsumer struct {
	d                  *REST
	receiveURL, ackURL string
	wait               int
	buf                bytes.Buffer
}

type restConsumed struct {
	Message struct {
		Body json.RawMessage `json:"body"`
	} `json:"message"`
	Handler string `json:"handler"`
}

func (c *restConsumer) Receive(ctx context.Context, max int) ([]bench.Delivery, error) {
	url := c.receiveURL + "?max_msgs=" + strconv.Itoa(max) + "&time_wait=" + strconv.Itoa(c.wait)
	var consumed []restConsumed
	if err := c.d.do(ctx, http.MethodGet, url, nil, http.StatusOK, &consumed); err != nil {
		return nil, err
	}
	ds := make([]bench.Delivery, len(consumed))
	for i, m := range consumed {
		// The body is the JSON string the producer wrote: a quote, then the
		// stamp in hex.
		stamp := make([]byte, bench.StampSize)
		if len(m.Message.Body) < restStampHexSize+1 {
			return nil, fmt.Errorf("dms-rest: body %q is too short for a stamp", m.Message.Body)
		}
		if _, err := hex.Decode(stamp, m.Message.Body[1:1+restStampHexSize]); err != nil {
			return nil, fmt.Errorf("dms-rest: body without a stamp: %w", err)
		}
		ds[i] = bench.Delivery{Body: stamp, Token: m.Handler}
	}
	return ds, nil
}

func (c *restConsumer) Ack(ctx context.Context, ds []bench.Delivery) error {
	b := &c.buf
	b.Reset()
	b.WriteString(`{"message":[`)
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(',')
		}
		handler, _ := json.Marshal(d.Token.(string))
		b.WriteString(`{"handler":`)
		b.Write(handler)
		b.WriteString(`,"status":"success"}`)
	}
	b.WriteString(`]}`)
	var resp struct {
		Success int `json:"success"`
		Fail    int `json:"fail"`
	}
	if err := c.d.do(ctx, http.MethodPost, c.ackURL, b.Bytes(), http.StatusOK, &resp); err != nil {
		return err
	}
	if resp.Fail > 0 || resp.Success != len(ds) {
		return fmt.Errorf("dms-rest: ack: %d succeeded, %d failed of %d", resp.Success, resp.Fail, len(ds))
	}
	return nil
}

func (c *restConsumer) Close() error { return nil }
