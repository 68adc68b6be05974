package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

//go:generate go run ./amqpgen spec/amqp0-9-1.stripped.extended.xml methods_gen.go

// Errors of decoding. A decoding error is a syntax error (reply code 502)
// unless said otherwise.
var (
	ErrTruncated      = errors.New("wire: truncated")
	errBadFlags       = errors.New("wire: property flags name properties the class does not have")
	errTooDeep        = errors.New("wire: field tables nested too deep")
	errBadFieldType   = errors.New("wire: unknown field value type")
	errTrailing       = errors.New("wire: bytes after the method's arguments")
	errStringTooLong  = errors.New("wire: short string longer than 255 bytes")
	errNegativeLength = errors.New("wire: length out of range")
)

// maxTableDepth bounds the nesting of field tables and arrays a peer can
// send, so that a small frame cannot exhaust the stack; RabbitMQ's clients
// never nest more than a few levels.
const maxTableDepth = 32

// Method is one AMQP method: generated from the specification.
type Method interface {
	ID() (class, method uint16)
	Name() string
	HasContent() bool
	Write(w *Writer)
	Read(r *Reader) error
}

// Table is an AMQP field table with RabbitMQ's value types: bool, int8,
// uint8, int16, uint16, int32, uint32, int64, float32, float64, Decimal,
// string (long string), []byte, []any (array), time.Time, Table and nil.
type Table map[string]any

// Decimal is a field value of type D.
type Decimal struct {
	Scale uint8
	Value int32
}

// Writer appends AMQP types to a buffer.
type Writer struct{ Buf []byte }

func (w *Writer) Octet(v byte)      { w.Buf = append(w.Buf, v) }
func (w *Writer) Short(v uint16)    { w.Buf = binary.BigEndian.AppendUint16(w.Buf, v) }
func (w *Writer) Long(v uint32)     { w.Buf = binary.BigEndian.AppendUint32(w.Buf, v) }
func (w *Writer) LongLong(v uint64) { w.Buf = binary.BigEndian.AppendUint64(w.Buf, v) }

// ShortStr writes a short string; a longer one is cut at 255 bytes (the
// server only writes names it took from a short string, and texts it wrote).
func (w *Writer) ShortStr(s string) {
	if len(s) > 255 {
		s = s[:255]
	}
	w.Buf = append(w.Buf, byte(len(s)))
	w.Buf = append(w.Buf, s...)
}

func (w *Writer) LongStr(s string) {
	w.Long(uint32(len(s)))
	w.Buf = append(w.Buf, s...)
}

func (w *Writer) Timestamp(t time.Time) {
	if t.IsZero() {
		w.LongLong(0)
		return
	}
	w.LongLong(uint64(t.Unix()))
}

func (w *Writer) Table(t Table) {
	at := len(w.Buf)
	w.Long(0)
	for k, v := range t {
		w.ShortStr(k)
		w.value(v)
	}
	binary.BigEndian.PutUint32(w.Buf[at:], uint32(len(w.Buf)-at-4))
}

func (w *Writer) value(v any) {
	switch v := v.(type) {
	case bool:
		w.Octet('t')
		if v {
			w.Octet(1)
		} else {
			w.Octet(0)
		}
	case int8:
		w.Octet('b')
		w.Octet(byte(v))
	case uint8:
		w.Octet('B')
		w.Octet(v)
	case int16:
		w.Octet('s')
		w.Short(uint16(v))
	case uint16:
		w.Octet('u')
		w.Short(v)
	case int32:
		w.Octet('I')
		w.Long(uint32(v))
	case uint32:
		w.Octet('i')
		w.Long(v)
	case int64:
		w.Octet('l')
		w.LongLong(uint64(v))
	case int:
		w.Octet('l')
		w.LongLong(uint64(v))
	case float32:
		w.Octet('f')
		w.Long(math.Float32bits(v))
	case float64:
		w.Octet('d')
		w.LongLong(math.Float64bits(v))
	case Decimal:
		w.Octet('D')
		w.Octet(v.Scale)
		w.Long(uint32(v.Value))
	case string:
		w.Octet('S')
		w.LongStr(v)
	case []byte:
		w.Octet('x')
		w.LongStr(string(v))
	case time.Time:
		w.Octet('T')
		w.Timestamp(v)
	case Table:
		w.Octet('F')
		w.Table(v)
	case map[string]any:
		w.Octet('F')
		w.Table(v)
	case []any:
		w.Octet('A')
		at := len(w.Buf)
		w.Long(0)
		for _, e := range v {
			w.value(e)
		}
		binary.BigEndian.PutUint32(w.Buf[at:], uint32(len(w.Buf)-at-4))
	default:
		w.Octet('V')
	}
}

// Reader reads AMQP types from a buffer; the first error sticks and later
// reads return zero values.
type Reader struct {
	buf   []byte
	err   error
	depth int
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Err returns the first error.
func (r *Reader) Err() error { return r.err }

// Len returns the bytes left.
func (r *Reader) Len() int { return len(r.buf) }

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.buf = nil
}

func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf) {
		r.fail(ErrTruncated)
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

func (r *Reader) Octet() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *Reader) Short() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *Reader) Long() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *Reader) LongLong() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *Reader) ShortStr() string { return string(r.take(int(r.Octet()))) }

func (r *Reader) LongStr() string {
	n := r.Long()
	if uint64(n) > uint64(len(r.buf)) {
		r.fail(ErrTruncated)
		return ""
	}
	return string(r.take(int(n)))
}

func (r *Reader) Timestamp() time.Time {
	v := r.LongLong()
	if v == 0 || v > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(int64(v), 0)
}

func (r *Reader) Table() Table {
	n := r.Long()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.buf)) {
		r.fail(ErrTruncated)
		return nil
	}
	if r.depth >= maxTableDepth {
		r.fail(errTooDeep)
		return nil
	}
	sub := &Reader{buf: r.take(int(n)), depth: r.depth + 1}
	t := Table{}
	for sub.Len() > 0 && sub.err == nil {
		k := sub.ShortStr()
		v := sub.value()
		t[k] = v
	}
	if sub.err != nil {
		r.fail(sub.err)
		return nil
	}
	return t
}

func (r *Reader) value() any {
	switch kind := r.Octet(); kind {
	case 't':
		return r.Octet() != 0
	case 'b':
		return int8(r.Octet())
	case 'B':
		return r.Octet()
	case 's':
		return int16(r.Short())
	case 'u':
		return r.Short()
	case 'I':
		return int32(r.Long())
	case 'i':
		return r.Long()
	case 'l':
		return int64(r.LongLong())
	case 'L':
		return r.LongLong()
	case 'f':
		return math.Float32frombits(r.Long())
	case 'd':
		return math.Float64frombits(r.LongLong())
	case 'D':
		return Decimal{Scale: r.Octet(), Value: int32(r.Long())}
	case 'S':
		return r.LongStr()
	case 'x':
		return []byte(r.LongStr())
	case 'T':
		return r.Timestamp()
	case 'F':
		return r.Table()
	case 'A':
		n := r.Long()
		if r.err != nil {
			return nil
		}
		if uint64(n) > uint64(len(r.buf)) {
			r.fail(ErrTruncated)
			return nil
		}
		if r.depth >= maxTableDepth {
			r.fail(errTooDeep)
			return nil
		}
		sub := &Reader{buf: r.take(int(n)), depth: r.depth + 1}
		var a []any
		for sub.Len() > 0 && sub.err == nil {
			a = append(a, sub.value())
		}
		if sub.err != nil {
			r.fail(sub.err)
			return nil
		}
		return a
	case 'V':
		return nil
	default:
		if r.err == nil {
			r.fail(fmt.Errorf("%w %q", errBadFieldType, kind))
		}
		return nil
	}
}
