package wire

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
	"time"
)

// FuzzFrames feeds arbitrary bytes to the frame reader and the method and
// content-header decoders, as a client's socket would: nothing may panic,
// and what decodes must encode to bytes that decode to the same thing.
// Seeds: testdata/fuzz/FuzzFrames (frames of real clients' methods).
func FuzzFrames(f *testing.F) {
	f.Add(AppendMethod(nil, 1, &BasicPublish{Exchange: "x", RoutingKey: "k", Mandatory: true}))
	f.Add(AppendContent(nil, 1, ClassBasic, &BasicProperties{Flags: FlagHeaders | FlagDeliveryMode, Headers: Table{"a": int32(1)}, DeliveryMode: 2}, []byte("body"), 4096))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := NewFrameReader(bufio.NewReader(bytes.NewReader(data)), 1<<16)
		for range 16 {
			fr1, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch fr1.Type {
			case FrameMethod:
				m, err := ParseMethod(fr1.Payload)
				if err != nil {
					continue
				}
				enc := AppendMethod(nil, 0, m)
				again, err := ParseMethod(enc[7 : len(enc)-1])
				if err == nil {
					// Encoding what was decoded must decode to it again, NaNs aside.
					if !reflect.DeepEqual(m, again) && !hasNaN(m) {
						t.Fatalf("round trip of %s: %#v became %#v", m.Name(), m, again)
					}
				} else {
					t.Fatalf("%s decoded but its encoding does not: %v", m.Name(), err)
				}
			case FrameHeader:
				h, err := ParseHeader(fr1.Payload)
				if err != nil {
					continue
				}
				b := AppendContent(nil, 0, h.Class, &h.Properties, nil, 0)
				if _, err := ParseHeader(b[7 : len(b)-1]); err != nil {
					t.Fatalf("a content header decoded but its encoding does not: %v", err)
				}
			}
		}
	})
}

// hasNaN reports whether a method's tables hold a float NaN, which is not
// equal to itself.
func hasNaN(m Method) bool {
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case float32:
			return v != v
		case float64:
			return v != v
		case Table:
			for _, e := range v {
				if walk(e) {
					return true
				}
			}
		case []any:
			for _, e := range v {
				if walk(e) {
					return true
				}
			}
		}
		return false
	}
	rv := reflect.ValueOf(m).Elem()
	for i := range rv.NumField() {
		if walk(rv.Field(i).Interface()) {
			return true
		}
	}
	return false
}

// TestMethodsRoundTrip encodes every method of the specification with its
// fields set and decodes it back.
func TestMethodsRoundTrip(t *testing.T) {
	for class := uint16(0); class < 100; class++ {
		for id := uint16(0); id < 200; id++ {
			m := NewMethod(class, id)
			if m == nil {
				continue
			}
			fill(reflect.ValueOf(m).Elem())
			enc := AppendMethod(nil, 3, m)
			back, err := ParseMethod(enc[7 : len(enc)-1])
			if err != nil {
				t.Fatalf("%s: %v", m.Name(), err)
			}
			if !reflect.DeepEqual(m, back) {
				t.Fatalf("%s: %#v became %#v", m.Name(), m, back)
			}
		}
	}
}

func fill(v reflect.Value) {
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(i%2 == 0)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(i + 7))
		case reflect.String:
			f.SetString("s" + string(rune('a'+i)))
		case reflect.Map:
			f.Set(reflect.ValueOf(Table{"str": "v", "i32": int32(-5), "u8": uint8(3), "nested": Table{"b": true}, "arr": []any{int64(1), "x"}, "bytes": []byte("raw"), "ts": time.Unix(1700000000, 0), "dec": Decimal{Scale: 2, Value: 314}, "void": nil}))
		case reflect.Struct:
			f.Set(reflect.ValueOf(time.Unix(1700000000, 0)))
		}
	}
}

func TestFrameLimits(t *testing.T) {
	big := AppendMethod(nil, 1, &BasicPublish{Exchange: string(bytes.Repeat([]byte("e"), 200))})
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(big)), 64)
	if _, err := fr.ReadFrame(); err == nil {
		t.Fatal("a frame above frame_max was read")
	}
	bad := AppendHeartbeat(nil)
	bad[len(bad)-1] = 0
	fr = NewFrameReader(bufio.NewReader(bytes.NewReader(bad)), 4096)
	if _, err := fr.ReadFrame(); err != ErrFrameEnd {
		t.Fatalf("bad frame end: got %v", err)
	}
	fr = NewFrameReader(bufio.NewReader(bytes.NewReader(big[:20])), 4096)
	if _, err := fr.ReadFrame(); err == nil {
		t.Fatal("a truncated frame was read")
	}
	// A table nested deeper than maxTableDepth is refused, not recursed into.
	w := Writer{}
	var deep any = Table{}
	for range maxTableDepth + 2 {
		deep = Table{"t": deep}
	}
	w.Table(deep.(Table))
	r := NewReader(w.Buf)
	r.Table()
	if r.Err() == nil {
		t.Fatal("a table nested too deep was decoded")
	}
}
