package lnsbridge

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// The MQTT 3.1.1 packets the local client exchanges with the gateway's broker,
// read and written by hand: the client needs nine packet types, reads each
// packet with at most one allocation for its body (none for the small ones),
// and bounds what a broker can make it allocate (maxLocalPacket).

// MQTT 3.1.1 control packet types (the high nibble of the first byte).
const (
	pktConnect    = 1
	pktConnack    = 2
	pktPublish    = 3
	pktPuback     = 4
	pktSubscribe  = 8
	pktSuback     = 9
	pktPingreq    = 12
	pktPingresp   = 13
	pktDisconnect = 14
)

// maxLocalPacket bounds the remaining length of a packet the local client
// reads into memory: 256 KiB, four times MaxPayload (64 KiB, already far
// beyond the few hundred bytes to few KiB of an LNS event) plus room for the
// longest topic. A bigger PUBLISH cannot be a valid event; its bytes are
// skipped without being allocated (a broker can announce up to 256 MiB), it
// is counted as malformed and acknowledged. A bigger packet of another type
// is a broken broker: the connection is closed.
const maxLocalPacket = 256 << 10

// errBrokenPacket marks a packet that does not follow MQTT 3.1.1: the
// connection carrying it cannot be trusted any further.
var errBrokenPacket = errors.New("broken MQTT packet from the local broker")

func brokenf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBrokenPacket, fmt.Sprintf(format, args...))
}

// packet is one packet read from the broker.
type packet struct {
	kind      byte // pktPublish, pktPuback, ...
	id        uint16
	qos       byte
	dup       bool
	topic     string
	payload   []byte // PUBLISH only; nil when oversized
	size      int    // remaining length
	oversized bool   // a PUBLISH over the cap: payload skipped, not read
	code      byte   // CONNACK return code
	present   bool   // CONNACK session present
	granted   []byte // SUBACK return codes
}

// packetReader reads broker packets from a buffered stream.
type packetReader struct {
	r   *bufio.Reader
	max int // maxLocalPacket; smaller in tests
}

// read reads the next packet. A PUBLISH over the cap comes back with
// oversized set (its topic and id read, the rest skipped); any packet that
// breaks MQTT 3.1.1 is an error wrapping errBrokenPacket; a stream that ends
// is the reader's error (io.EOF, io.ErrUnexpectedEOF, a closed connection).
func (p *packetReader) read() (packet, error) {
	first, err := p.r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	size, err := p.remainingLength()
	if err != nil {
		return packet{}, err
	}
	pk := packet{kind: first >> 4, size: size}
	flags := first & 0x0f
	if pk.kind != pktPublish && size > p.max {
		return packet{}, brokenf("packet type %d of %d bytes exceeds %d", pk.kind, size, p.max)
	}
	switch pk.kind {
	case pktPublish:
		return p.publish(pk, flags)
	case pktConnack:
		b, err := p.fixed(pk, flags, 2, 2)
		if err != nil {
			return packet{}, err
		}
		if b[0]&^1 != 0 {
			return packet{}, brokenf("CONNACK acknowledge flags %#x", b[0])
		}
		pk.present, pk.code = b[0] == 1, b[1]
		return pk, nil
	case pktPuback:
		b, err := p.fixed(pk, flags, 2, 2)
		if err != nil {
			return packet{}, err
		}
		pk.id = binary.BigEndian.Uint16(b)
		return pk, nil
	case pktSuback:
		b, err := p.fixed(pk, flags, 3, p.max)
		if err != nil {
			return packet{}, err
		}
		pk.id, pk.granted = binary.BigEndian.Uint16(b), b[2:]
		return pk, nil
	case pktPingresp:
		_, err := p.fixed(pk, flags, 0, 0)
		return pk, err
	}
	return packet{}, brokenf("unexpected packet type %d (first byte %#02x)", pk.kind, first)
}

// remainingLength decodes the variable-length size of MQTT 3.1.1 §2.2.3.
func (p *packetReader) remainingLength() (int, error) {
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := p.r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return n, nil
		}
		if i == 3 {
			return 0, brokenf("remaining length longer than four bytes")
		}
		shift += 7
	}
}

// fixed reads the body of a small packet whose flags must be zero (SUBACK's
// too) and whose size is within [lo, hi].
func (p *packetReader) fixed(pk packet, flags byte, lo, hi int) ([]byte, error) {
	if flags != 0 {
		return nil, brokenf("packet type %d with flags %#x", pk.kind, flags)
	}
	if pk.size < lo || pk.size > hi {
		return nil, brokenf("packet type %d of %d bytes", pk.kind, pk.size)
	}
	b := make([]byte, pk.size)
	if _, err := io.ReadFull(p.r, b); err != nil {
		return nil, unexpected(err)
	}
	return b, nil
}

func (p *packetReader) publish(pk packet, flags byte) (packet, error) {
	pk.dup, pk.qos = flags&8 != 0, flags>>1&3
	if pk.qos > 1 {
		// The client subscribes at QoS 1: the broker never sends more.
		return packet{}, brokenf("PUBLISH with QoS %d", pk.qos)
	}
	head := 2
	if pk.qos > 0 {
		head += 2
	}
	if pk.size < head {
		return packet{}, brokenf("PUBLISH of %d bytes", pk.size)
	}
	var l [2]byte
	if _, err := io.ReadFull(p.r, l[:]); err != nil {
		return packet{}, unexpected(err)
	}
	tl := int(binary.BigEndian.Uint16(l[:]))
	head += tl
	if tl == 0 || pk.size < head {
		return packet{}, brokenf("PUBLISH of %d bytes with a topic of %d", pk.size, tl)
	}
	if pk.size > p.max {
		// Oversized: the topic (at most 64 KiB) and id are read for the
		// log line and the PUBACK; the payload is skipped in place.
		topic := make([]byte, tl)
		if _, err := io.ReadFull(p.r, topic); err != nil {
			return packet{}, unexpected(err)
		}
		pk.topic, pk.oversized = string(topic), true
		if err := p.id(&pk); err != nil {
			return packet{}, err
		}
		if _, err := p.r.Discard(pk.size - head); err != nil {
			return packet{}, unexpected(err)
		}
		return pk, p.checkTopic(pk.topic)
	}
	// One allocation: the topic is copied out as a string, the payload
	// stays in it (the event keeps it, so it is never reused).
	b := make([]byte, pk.size-2)
	if _, err := io.ReadFull(p.r, b); err != nil {
		return packet{}, unexpected(err)
	}
	pk.topic = string(b[:tl])
	b = b[tl:]
	if pk.qos > 0 {
		pk.id, b = binary.BigEndian.Uint16(b), b[2:]
		if pk.id == 0 {
			return packet{}, brokenf("PUBLISH on %q with packet identifier 0", pk.topic)
		}
	}
	pk.payload = b
	return pk, p.checkTopic(pk.topic)
}

func (p *packetReader) id(pk *packet) error {
	if pk.qos == 0 {
		return nil
	}
	var b [2]byte
	if _, err := io.ReadFull(p.r, b[:]); err != nil {
		return unexpected(err)
	}
	if pk.id = binary.BigEndian.Uint16(b[:]); pk.id == 0 {
		return brokenf("PUBLISH on %q with packet identifier 0", pk.topic)
	}
	return nil
}

// checkTopic refuses what MQTT 3.1.1 §4.7 forbids in a topic name.
func (p *packetReader) checkTopic(t string) error {
	if !utf8.ValidString(t) {
		return brokenf("PUBLISH topic %q is not UTF-8", t)
	}
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case 0, '+', '#':
			return brokenf("PUBLISH topic %q contains %q", t, t[i])
		}
	}
	return nil
}

// unexpected turns the end of the stream inside a packet into
// io.ErrUnexpectedEOF: the broker went away mid-packet.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// --- writing ---

// appendLength appends the variable-length remaining length of §2.2.3.
func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// connectOptions are the fields of a CONNECT packet.
type connectOptions struct {
	ClientID     string
	Username     string
	Password     string
	Credentials  bool // send Username (and Password when not empty)
	CleanSession bool
	KeepAlive    time.Duration
}

func appendConnect(b []byte, o connectOptions) ([]byte, error) {
	for what, s := range map[string]string{"client id": o.ClientID, "username": o.Username, "password": o.Password} {
		if len(s) > 0xffff {
			return nil, fmt.Errorf("lnsbridge: local broker %s of %d bytes exceeds 65535", what, len(s))
		}
	}
	flags := byte(0)
	if o.CleanSession {
		flags |= 0x02
	}
	size := 10 + 2 + len(o.ClientID)
	if o.Credentials {
		flags |= 0x80
		size += 2 + len(o.Username)
		if o.Password != "" {
			flags |= 0x40
			size += 2 + len(o.Password)
		}
	}
	b = append(b, pktConnect<<4)
	b = appendLength(b, size)
	b = appendString(b, "MQTT")
	b = append(b, 4, flags) // protocol level 4: MQTT 3.1.1
	b = binary.BigEndian.AppendUint16(b, uint16(o.KeepAlive/time.Second))
	b = appendString(b, o.ClientID)
	if o.Credentials {
		b = appendString(b, o.Username)
		if o.Password != "" {
			b = appendString(b, o.Password)
		}
	}
	return b, nil
}

func appendSubscribe(b []byte, id uint16, filters []string) []byte {
	size := 2
	for _, f := range filters {
		size += 2 + len(f) + 1
	}
	b = append(b, pktSubscribe<<4|0x02) // reserved flags 0010 (§3.8.1)
	b = appendLength(b, size)
	b = binary.BigEndian.AppendUint16(b, id)
	for _, f := range filters {
		b = appendString(b, f)
		b = append(b, 1) // QoS 1
	}
	return b
}

// appendPublish appends a QoS 1 PUBLISH, not retained.
func appendPublish(b []byte, id uint16, dup bool, topic string, payload []byte) []byte {
	first := byte(pktPublish<<4 | 1<<1)
	if dup {
		first |= 0x08
	}
	b = append(b, first)
	b = appendLength(b, 2+len(topic)+2+len(payload))
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint16(b, id)
	return append(b, payload...)
}

func appendPuback(b []byte, id uint16) []byte {
	return binary.BigEndian.AppendUint16(append(b, pktPuback<<4, 2), id)
}

// connackRefusal names a CONNACK return code (§3.2.2.3).
func connackRefusal(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version (the broker does not speak MQTT 3.1.1)"
	case 2:
		return "client identifier rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorised"
	}
	return fmt.Sprintf("unknown return code %d", code)
}

// --- one connection ---

// mqttConn is one connection to the local broker. Writes (PUBACKs from the
// intake's acknowledger, downlinks from the applications, pings from the
// client's loop) share it under wmu, each with a write deadline; a failed
// write closes it. Reads belong to the connection's one reader goroutine.
type mqttConn struct {
	c            *localConn
	pr           packetReader
	writeTimeout time.Duration
	start        time.Time // the clock of lastWrite and lastRead

	wmu      sync.Mutex
	wbuf     []byte
	deadline time.Time // the write deadline set

	lastWrite atomic.Int64 // since start, when the last packet was written
	lastRead  atomic.Int64 // since start, when the last packet was read
	pingSent  atomic.Int64 // since start, when the outstanding PINGREQ left; 0 when none
	inHandler atomic.Bool  // the reader is inside the consumer's handler

	suback chan packet // the SUBACK of this connection's SUBSCRIBE

	closeOnce sync.Once
	closed    chan struct{}
	err       error // why it closed; read after closed
}

func newMQTTConn(c *localConn, writeTimeout time.Duration) *mqttConn {
	return &mqttConn{
		c: c, pr: packetReader{r: c.r, max: maxLocalPacket}, writeTimeout: writeTimeout, start: time.Now(),
		suback: make(chan packet, 1), closed: make(chan struct{}),
	}
}

func (m *mqttConn) since() int64 { return int64(time.Since(m.start)) }

// close closes the connection once, keeping the first reason.
func (m *mqttConn) close(err error) {
	m.closeOnce.Do(func() {
		m.err = err
		close(m.closed)
		m.c.Close()
	})
}

// isClosed says whether the connection is gone.
func (m *mqttConn) isClosed() bool {
	select {
	case <-m.closed:
		return true
	default:
		return false
	}
}

// write writes one packet built by build; a failure closes the connection.
func (m *mqttConn) write(build func([]byte) []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if m.isClosed() {
		return fmt.Errorf("lnsbridge: local broker connection closed: %w", m.err)
	}
	m.wbuf = build(m.wbuf[:0])
	// The deadline is moved only once half of it has passed: a write may
	// take between half the timeout and all of it, and the PUBACK of every
	// message does not pay for resetting the runtime's timer.
	if now := time.Now(); m.deadline.Sub(now) < m.writeTimeout/2 {
		m.deadline = now.Add(m.writeTimeout)
		if err := m.c.SetWriteDeadline(m.deadline); err != nil {
			m.close(err)
			return err
		}
	}
	if _, err := m.c.Write(m.wbuf); err != nil {
		err = fmt.Errorf("lnsbridge: writing to the local broker: %w", err)
		m.close(err)
		return err
	}
	m.lastWrite.Store(m.since())
	if cap(m.wbuf) > 64<<10 {
		m.wbuf = nil // a large downlink's buffer is not kept
	}
	return nil
}

// answerWait is how much longer to wait for an answer asked for at asked
// (m.since's clock) before giving the broker up: timeout from the later of
// the question and the last packet read. It does not run while the reader
// is inside the consumer's handler: then the answer may be waiting unread,
// behind messages the consumer is slow to take.
func (m *mqttConn) answerWait(asked int64, timeout time.Duration) time.Duration {
	if m.inHandler.Load() {
		return timeout
	}
	from := max(asked, m.lastRead.Load())
	return time.Duration(from + int64(timeout) - m.since())
}

func (m *mqttConn) puback(id uint16) error {
	return m.write(func(b []byte) []byte { return appendPuback(b, id) })
}
