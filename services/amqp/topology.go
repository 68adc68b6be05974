package amqp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/opendms/dms/services/amqp/wire"
)

// The AMQP names of a project that DMS queues do not have are kept in etcd
// beside the catalog, under topologyPrefix: exchanges, bindings and each
// queue's AMQP arguments. Every node keeps them in a watch-fed cache, as
// the catalog's is, so that routing a publish reads memory only. Messages
// never go through etcd.
//
//	/dms/amqp/{project}/exchanges/{exchange}            → exchangeRec
//	/dms/amqp/{project}/bindings/{queue}/{exchange}/{key} → bindingRec (key path-escaped)
//	/dms/amqp/{project}/queues/{queue}                  → queueRec
const topologyPrefix = "/dms/amqp/"

// Exchange types.
const (
	typeDirect  = "direct"
	typeFanout  = "fanout"
	typeTopic   = "topic"
	typeHeaders = "headers"
)

type exchangeRec struct {
	Type       string     `json:"type"`
	Durable    bool       `json:"durable"`
	AutoDelete bool       `json:"auto_delete,omitempty"`
	Internal   bool       `json:"internal,omitempty"`
	Args       wire.Table `json:"-"`
}

type bindingRec struct {
	Exchange string         `json:"exchange"`
	Queue    string         `json:"queue"`
	Key      string         `json:"key"`
	Args     map[string]any `json:"args,omitempty"`
	// ToExchange: Queue names the destination exchange of an
	// exchange-to-exchange binding (exchange.bind).
	ToExchange bool `json:"to_exchange,omitempty"`
}

// exchangeDest is the destination segment of an exchange-to-exchange
// binding's key: queue names have no ':', so it cannot clash with a queue's.
func exchangeDest(name string) string { return "x:" + name }

// queueRec is what AMQP says of a queue that its DMS record does not keep.
type queueRec struct {
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete,omitempty"`
	Args       map[string]any `json:"args,omitempty"`
	// MessageTTLMs is x-message-ttl, honoured when a message is delivered.
	MessageTTLMs int64 `json:"message_ttl_ms,omitempty"`
	// DeadLetterExchange and DeadLetterRoutingKey are x-dead-letter-*.
	DeadLetterExchange    string `json:"dlx,omitempty"`
	HasDeadLetterExchange bool   `json:"has_dlx,omitempty"` // "" is the default exchange
	DeadLetterRoutingKey  string `json:"dlrk,omitempty"`
	// MaxLength is x-max-length (0: none); Overflow is x-overflow
	// (drop-head, the default, or reject-publish).
	MaxLength int64  `json:"max_length,omitempty"`
	Overflow  string `json:"overflow,omitempty"`
	// ExpiresMs is x-expires (0: none); LastUsedMs when the queue was
	// last used (expiry.go).
	ExpiresMs  int64 `json:"expires_ms,omitempty"`
	LastUsedMs int64 `json:"last_used_ms,omitempty"`
}

// builtinExchanges exist in every vhost without being declared, as in
// RabbitMQ; they cannot be deleted or redeclared with another type.
var builtinExchanges = map[string]string{
	"":            typeDirect,
	"amq.direct":  typeDirect,
	"amq.fanout":  typeFanout,
	"amq.topic":   typeTopic,
	"amq.headers": typeHeaders,
	"amq.match":   typeHeaders,
}

type topology struct {
	cli    *clientv3.Client
	logger *slog.Logger

	mu        sync.RWMutex
	rev       int64
	revCond   *sync.Cond
	exchanges map[string]*exchangeRec           // project/exchange
	bindings  map[string]map[string]*bindingRec // project/exchange → etcd key → binding
	queues    map[string]*queueRec              // project/queue
	cancel    context.CancelFunc
	done      chan struct{}
}

func newTopology(cli *clientv3.Client, logger *slog.Logger) *topology {
	t := &topology{cli: cli, logger: logger, exchanges: map[string]*exchangeRec{}, bindings: map[string]map[string]*bindingRec{}, queues: map[string]*queueRec{}}
	t.revCond = sync.NewCond(t.mu.RLocker())
	return t
}

func (t *topology) start(ctx context.Context) error {
	rev, err := t.load(ctx)
	if err != nil {
		return err
	}
	ctx, t.cancel = context.WithCancel(ctx)
	t.done = make(chan struct{})
	go t.watch(ctx, rev+1)
	return nil
}

// load replaces the cache with what etcd holds now and returns the
// revision it read at.
func (t *topology) load(ctx context.Context) (int64, error) {
	resp, err := t.cli.Get(ctx, topologyPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	t.exchanges, t.bindings, t.queues = map[string]*exchangeRec{}, map[string]map[string]*bindingRec{}, map[string]*queueRec{}
	for _, kv := range resp.Kvs {
		t.apply(string(kv.Key), kv.Value, false)
	}
	t.rev = max(t.rev, resp.Header.Revision)
	t.mu.Unlock()
	t.revCond.Broadcast()
	return resp.Header.Revision, nil
}

func (t *topology) stop() {
	if t.cancel != nil {
		t.cancel()
		<-t.done
	}
}

func (t *topology) watch(ctx context.Context, from int64) {
	defer close(t.done)
	for ctx.Err() == nil {
		wc := t.cli.Watch(clientv3.WithRequireLeader(ctx), topologyPrefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		for resp := range wc {
			if resp.Err() != nil {
				t.logger.Warn("amqp: topology watch", "err", resp.Err())
				if resp.CompactRevision > 0 {
					// The changes since from are gone from etcd's history:
					// read the whole topology again and watch from there.
					if rev, err := t.load(ctx); err == nil {
						from = rev + 1
					}
				}
				break
			}
			t.mu.Lock()
			for _, ev := range resp.Events {
				t.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
			}
			if resp.Header.Revision > t.rev {
				t.rev = resp.Header.Revision
			}
			from = t.rev + 1
			t.mu.Unlock()
			t.revCond.Broadcast()
		}
		// Not in a tight loop against an etcd that keeps refusing.
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitRev waits until the cache has seen revision rev (a write of this
// node), so that a publish after a bind routes by it.
func (t *topology) waitRev(ctx context.Context, rev int64) error {
	stop := context.AfterFunc(ctx, t.revCond.Broadcast)
	defer stop()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for t.rev < rev {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t.revCond.Wait()
	}
	return nil
}

// apply changes the cache for one key; t.mu is held.
func (t *topology) apply(key string, value []byte, deleted bool) {
	parts := strings.SplitN(strings.TrimPrefix(key, topologyPrefix), "/", 3)
	if len(parts) != 3 {
		return
	}
	project, kind, rest := parts[0], parts[1], parts[2]
	switch kind {
	case "exchanges":
		if deleted {
			delete(t.exchanges, project+"/"+rest)
			return
		}
		var rec exchangeRec
		if json.Unmarshal(value, &rec) == nil {
			t.exchanges[project+"/"+rest] = &rec
		}
	case "queues":
		if deleted {
			delete(t.queues, project+"/"+rest)
			return
		}
		var rec queueRec
		if json.Unmarshal(value, &rec) == nil {
			t.queues[project+"/"+rest] = &rec
		}
	case "bindings":
		var rec bindingRec
		if !deleted {
			if json.Unmarshal(value, &rec) != nil {
				return
			}
		} else {
			// The exchange is the second segment of the binding key.
			seg := strings.SplitN(rest, "/", 3)
			if len(seg) != 3 {
				return
			}
			rec.Exchange, _ = url.PathUnescape(seg[1])
		}
		ek := project + "/" + rec.Exchange
		if deleted {
			delete(t.bindings[ek], key)
			return
		}
		if t.bindings[ek] == nil {
			t.bindings[ek] = map[string]*bindingRec{}
		}
		t.bindings[ek][key] = &rec
	}
}

func exchangeKey(project, name string) string {
	return topologyPrefix + project + "/exchanges/" + url.PathEscape(name)
}

func queueKey(project, name string) string {
	return topologyPrefix + project + "/queues/" + url.PathEscape(name)
}

func bindingsOfQueuePrefix(project, queue string) string {
	return topologyPrefix + project + "/bindings/" + url.PathEscape(queue) + "/"
}

func bindingKey(project string, b *bindingRec) string {
	dest := b.Queue
	if b.ToExchange {
		dest = exchangeDest(b.Queue)
	}
	return bindingsOfQueuePrefix(project, dest) + url.PathEscape(b.Exchange) + "/" + url.PathEscape(b.Key) + argsSuffix(b.Args)
}

// argsSuffix tells apart bindings of one key with other arguments (headers
// exchanges), as RabbitMQ does.
func argsSuffix(args map[string]any) string {
	if len(args) == 0 {
		return ""
	}
	b, _ := json.Marshal(args)
	return "?" + url.QueryEscape(string(b))
}

// exchange returns an exchange: a built-in one or one declared.
func (t *topology) exchange(project, name string) (*exchangeRec, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.exchangeLocked(project, name)
}

func (t *topology) exchangeLocked(project, name string) (*exchangeRec, bool) {
	if typ, ok := builtinExchanges[name]; ok {
		return &exchangeRec{Type: typ, Durable: true}, true
	}
	rec, ok := t.exchanges[project+"/"+url.PathEscape(name)]
	return rec, ok
}

func (t *topology) queue(project, name string) *queueRec {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.queues[project+"/"+url.PathEscape(name)]
}

func (t *topology) put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, err := t.cli.Put(ctx, key, string(b))
	if err != nil {
		return err
	}
	return t.waitRev(ctx, resp.Header.Revision)
}

func (t *topology) deleteKey(ctx context.Context, key string, prefix bool) error {
	var opts []clientv3.OpOption
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	resp, err := t.cli.Delete(ctx, key, opts...)
	if err != nil || resp.Deleted == 0 {
		// Nothing deleted: no revision of it for the watch to bring.
		return err
	}
	return t.waitRev(ctx, resp.Header.Revision)
}

// waitDeleted waits for a transaction of deletes to reach the cache. A
// transaction that deleted nothing made no revision of its own (its
// header names the store's latest, which the watch of this prefix may
// never bring), so there is nothing to wait for.
func (t *topology) waitDeleted(ctx context.Context, resp *clientv3.TxnResponse) error {
	var n int64
	for _, r := range resp.Responses {
		n += r.GetResponseDeleteRange().GetDeleted()
	}
	if n == 0 {
		return nil
	}
	return t.waitRev(ctx, resp.Header.Revision)
}

// deleteQueue removes a queue's AMQP record and its bindings.
func (t *topology) deleteQueue(ctx context.Context, project, queue string) error {
	resp, err := t.cli.Txn(ctx).Then(
		clientv3.OpDelete(queueKey(project, queue)),
		clientv3.OpDelete(bindingsOfQueuePrefix(project, queue), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return err
	}
	return t.waitDeleted(ctx, resp)
}

// deleteExchange removes an exchange and every binding to it.
func (t *topology) deleteExchange(ctx context.Context, project, name string) error {
	t.mu.RLock()
	var keys []string
	for k := range t.bindings[project+"/"+name] {
		keys = append(keys, k)
	}
	t.mu.RUnlock()
	ops := []clientv3.Op{clientv3.OpDelete(exchangeKey(project, name)),
		clientv3.OpDelete(bindingsOfQueuePrefix(project, exchangeDest(name)), clientv3.WithPrefix())}
	for _, k := range keys {
		ops = append(ops, clientv3.OpDelete(k))
	}
	resp, err := t.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	return t.waitDeleted(ctx, resp)
}

// hasBindings reports whether an exchange is the source of a binding.
func (t *topology) hasBindings(project, exchange string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.bindings[project+"/"+exchange]) > 0
}

// route returns the queues a message published to an exchange with a
// routing key and headers goes to, each once, following exchange-to-
// exchange bindings (each exchange visited once, so cycles end). The
// default exchange routes to the queue named by the key; whether it exists
// the caller checks.
func (t *topology) route(project, exchange, key string, headers wire.Table) []string {
	if exchange == "" {
		return []string{key}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []string
	seen, visited := map[string]bool{}, map[string]bool{}
	var walk func(exchange string)
	walk = func(exchange string) {
		if visited[exchange] {
			return
		}
		visited[exchange] = true
		ex, ok := t.exchangeLocked(project, exchange)
		if !ok {
			return
		}
		for _, b := range t.bindings[project+"/"+exchange] {
			if !matches(ex.Type, b, key, headers) {
				continue
			}
			if b.ToExchange {
				walk(b.Queue)
				continue
			}
			if !seen[b.Queue] {
				seen[b.Queue] = true
				out = append(out, b.Queue)
			}
		}
	}
	walk(exchange)
	return out
}

func matches(typ string, b *bindingRec, key string, headers wire.Table) bool {
	switch typ {
	case typeDirect:
		return b.Key == key
	case typeFanout:
		return true
	case typeTopic:
		return topicMatch(strings.Split(b.Key, "."), strings.Split(key, "."))
	case typeHeaders:
		return headersMatch(b.Args, headers)
	}
	return false
}

// topicMatch matches words: '*' is one word, '#' zero or more.
func topicMatch(pattern, words []string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case "#":
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(words); i++ {
				if topicMatch(pattern[1:], words[i:]) {
					return true
				}
			}
			return false
		case "*":
			if len(words) == 0 {
				return false
			}
		default:
			if len(words) == 0 || words[0] != pattern[0] {
				return false
			}
		}
		pattern, words = pattern[1:], words[1:]
	}
	return len(words) == 0
}

// headersMatch applies x-match (all, the default, or any; the -with-x
// forms compare x- headers too) to the binding's arguments.
func headersMatch(args map[string]any, headers wire.Table) bool {
	mode, _ := args["x-match"].(string)
	any := strings.HasPrefix(mode, "any")
	withX := strings.HasSuffix(mode, "-with-x")
	n := 0
	for k, want := range args {
		if k == "x-match" || (!withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		n++
		got, ok := headers[k]
		hit := ok && (want == nil || sameValue(want, got))
		if any && hit {
			return true
		}
		if !any && !hit {
			return false
		}
	}
	return !any || n == 0
}

// sameValue compares a binding argument (as kept in etcd: JSON) with a
// header value.
func sameValue(want, got any) bool {
	if reflect.DeepEqual(want, got) {
		return true
	}
	return fmt.Sprint(want) == fmt.Sprint(got)
}
