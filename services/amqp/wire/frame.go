package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolHeader opens every AMQP 0-9-1 connection.
var ProtocolHeader = []byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// frameOverhead is a frame's header (type, channel, size) and end octet.
const frameOverhead = 8

// Errors of framing: each closes the connection with FrameError (501).
var (
	ErrFrameTooLarge = errors.New("wire: frame larger than frame_max")
	ErrFrameEnd      = errors.New("wire: frame does not end with 0xCE")
)

// UnknownMethodError is a method frame whose class and method ids the
// specification does not have (reply code 540, not-implemented... the spec
// says command-invalid 503 for an unknown method; the caller decides).
type UnknownMethodError struct{ Class, Method uint16 }

func (e *UnknownMethodError) Error() string {
	return fmt.Sprintf("wire: unknown method %d.%d", e.Class, e.Method)
}

// Frame is one frame as read: its payload is valid until the next read.
type Frame struct {
	Type    byte
	Channel uint16
	Payload []byte
}

// FrameReader reads frames of at most a frame_max.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
	// pending is the rest of a frame refused as too large.
	pending int64
	// Max is the frame_max in force, the whole frame counted as the
	// specification counts it (header, payload and end octet); 0 is no limit.
	Max uint32
}

// NewFrameReader reads frames from r.
func NewFrameReader(r *bufio.Reader, max uint32) *FrameReader {
	return &FrameReader{r: r, Max: max}
}

// ReadFrame reads the next frame. io.EOF is a clean end between frames;
// io.ErrUnexpectedEOF is a truncated frame.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	var hdr [7]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Type: hdr[0], Channel: binary.BigEndian.Uint16(hdr[1:])}
	size := binary.BigEndian.Uint32(hdr[3:])
	if fr.Max > 0 && uint64(size)+frameOverhead > uint64(fr.Max) {
		fr.pending = int64(size) + 1
		return f, fmt.Errorf("%w: %d bytes, frame_max is %d", ErrFrameTooLarge, uint64(size)+frameOverhead, fr.Max)
	}
	if cap(fr.buf) < int(size)+1 {
		fr.buf = make([]byte, int(size)+1)
	}
	b := fr.buf[:int(size)+1]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return f, err
	}
	if b[size] != FrameEnd {
		return f, ErrFrameEnd
	}
	f.Payload = b[:size]
	return f, nil
}

// SkipRefused discards the rest of a frame ReadFrame refused as larger than
// frame_max, so that the frames after it can be read (a client's
// connection.close-ok, after the server closed the connection for it).
func (fr *FrameReader) SkipRefused() error {
	n := fr.pending
	fr.pending = 0
	_, err := io.CopyN(io.Discard, fr.r, n)
	return err
}

// ParseMethod decodes a method frame's payload.
func ParseMethod(payload []byte) (Method, error) {
	r := NewReader(payload)
	class, id := r.Short(), r.Short()
	if r.Err() != nil {
		return nil, r.Err()
	}
	m := NewMethod(class, id)
	if m == nil {
		return nil, &UnknownMethodError{Class: class, Method: id}
	}
	if err := m.Read(r); err != nil {
		return m, err
	}
	if r.Len() != 0 {
		return m, errTrailing
	}
	return m, nil
}

// Header is a content header frame's payload.
type Header struct {
	Class      uint16
	BodySize   uint64
	Properties BasicProperties
}

// ParseHeader decodes a content header frame's payload.
func ParseHeader(payload []byte) (Header, error) {
	r := NewReader(payload)
	h := Header{Class: r.Short()}
	_ = r.Short() // weight, unused
	h.BodySize = r.LongLong()
	if err := r.Err(); err != nil {
		return h, err
	}
	if err := h.Properties.read(r); err != nil {
		return h, err
	}
	if r.Len() != 0 {
		return h, errTrailing
	}
	return h, nil
}

// AppendMethod appends a method frame.
func AppendMethod(buf []byte, channel uint16, m Method) []byte {
	at := len(buf)
	w := Writer{Buf: append(buf, FrameMethod, byte(channel>>8), byte(channel), 0, 0, 0, 0)}
	class, id := m.ID()
	w.Short(class)
	w.Short(id)
	m.Write(&w)
	binary.BigEndian.PutUint32(w.Buf[at+3:], uint32(len(w.Buf)-at-7))
	return append(w.Buf, FrameEnd)
}

// AppendContent appends a content header frame and the body frames of a
// body, each frame at most frameMax bytes.
func AppendContent(buf []byte, channel uint16, class uint16, props *BasicProperties, body []byte, frameMax uint32) []byte {
	at := len(buf)
	w := Writer{Buf: append(buf, FrameHeader, byte(channel>>8), byte(channel), 0, 0, 0, 0)}
	w.Short(class)
	w.Short(0)
	w.LongLong(uint64(len(body)))
	props.write(&w)
	binary.BigEndian.PutUint32(w.Buf[at+3:], uint32(len(w.Buf)-at-7))
	buf = append(w.Buf, FrameEnd)
	chunk := len(body)
	if frameMax > frameOverhead {
		chunk = int(frameMax - frameOverhead)
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		buf = append(buf, FrameBody, byte(channel>>8), byte(channel))
		buf = binary.BigEndian.AppendUint32(buf, uint32(n))
		buf = append(buf, body[:n]...)
		buf = append(buf, FrameEnd)
		body = body[n:]
	}
	return buf
}

// AppendHeartbeat appends a heartbeat frame.
func AppendHeartbeat(buf []byte) []byte {
	return append(buf, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
}
