package lnsbridge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

func readOne(b []byte) (packet, error) {
	pr := packetReader{r: bufio.NewReader(bytes.NewReader(b)), max: maxLocalPacket}
	return pr.read()
}

// pahoBytes encodes a packet with paho's codec, an independent writer.
func pahoBytes(t testing.TB, p packets.ControlPacket) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The reader takes what a broker sends (as paho's codec writes it).
func TestPacketReaderReadsBrokerPackets(t *testing.T) {
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.MessageID, pub.Dup, pub.TopicName, pub.Payload = 1, 513, true, "lora/a/b/up", []byte(`{"x":1}`)
	got, err := readOne(pahoBytes(t, pub))
	if err != nil || got.kind != pktPublish || got.id != 513 || !got.dup || got.qos != 1 || got.topic != "lora/a/b/up" || string(got.payload) != `{"x":1}` {
		t.Fatalf("publish: %+v %v", got, err)
	}
	pub0 := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub0.TopicName, pub0.Payload = "lora/a/joined", nil
	if got, err := readOne(pahoBytes(t, pub0)); err != nil || got.qos != 0 || got.id != 0 || len(got.payload) != 0 {
		t.Fatalf("QoS 0 publish: %+v %v", got, err)
	}
	ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
	ack.MessageID = 7
	if got, err := readOne(pahoBytes(t, ack)); err != nil || got.kind != pktPuback || got.id != 7 {
		t.Fatalf("puback: %+v %v", got, err)
	}
	sa := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
	sa.MessageID, sa.ReturnCodes = 9, []byte{1, 0, 0x80}
	if got, err := readOne(pahoBytes(t, sa)); err != nil || got.kind != pktSuback || got.id != 9 || !bytes.Equal(got.granted, []byte{1, 0, 0x80}) {
		t.Fatalf("suback: %+v %v", got, err)
	}
	ca := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
	ca.ReturnCode, ca.SessionPresent = 5, true
	if got, err := readOne(pahoBytes(t, ca)); err != nil || got.kind != pktConnack || got.code != 5 || !got.present {
		t.Fatalf("connack: %+v %v", got, err)
	}
	if got, err := readOne(pahoBytes(t, packets.NewControlPacket(packets.Pingresp))); err != nil || got.kind != pktPingresp {
		t.Fatalf("pingresp: %+v %v", got, err)
	}
}

// What the client writes, paho's codec reads back as meant.
func TestPacketWritersAgreeWithPaho(t *testing.T) {
	b, err := appendConnect(nil, connectOptions{ClientID: "app-connect-X", Username: "u", Password: "p", Credentials: true, KeepAlive: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := packets.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := cp.(*packets.ConnectPacket)
	if c.ProtocolName != "MQTT" || c.ProtocolVersion != 4 || c.CleanSession || c.ClientIdentifier != "app-connect-X" ||
		!c.UsernameFlag || c.Username != "u" || !c.PasswordFlag || string(c.Password) != "p" || c.Keepalive != 30 || c.Validate() != packets.Accepted {
		t.Fatalf("connect %+v", c)
	}
	cp, err = packets.ReadPacket(bytes.NewReader(appendSubscribe(nil, 3, Subscriptions)))
	if err != nil {
		t.Fatal(err)
	}
	if s := cp.(*packets.SubscribePacket); s.MessageID != 3 || strings.Join(s.Topics, " ") != strings.Join(Subscriptions, " ") || !bytes.Equal(s.Qoss, []byte{1, 1, 1}) || s.Qos != 1 {
		t.Fatalf("subscribe %+v", s)
	}
	big := bytes.Repeat([]byte{'z'}, 300)
	cp, err = packets.ReadPacket(bytes.NewReader(appendPublish(nil, 65535, true, "lora/x/down", big)))
	if err != nil {
		t.Fatal(err)
	}
	if p := cp.(*packets.PublishPacket); p.MessageID != 65535 || !p.Dup || p.Qos != 1 || p.Retain || p.TopicName != "lora/x/down" || !bytes.Equal(p.Payload, big) {
		t.Fatalf("publish %+v", p)
	}
	cp, err = packets.ReadPacket(bytes.NewReader(appendPuback(nil, 258)))
	if err != nil || cp.(*packets.PubackPacket).MessageID != 258 {
		t.Fatalf("puback %v %v", cp, err)
	}
}

// Every broken packet is refused with an error naming what is wrong; a
// stream cut mid-packet is io.ErrUnexpectedEOF.
func TestPacketReaderRefusesBrokenPackets(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"length over four bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, "longer than four bytes"},
		{"QoS 2 publish", []byte{0x34, 5, 0, 1, 'a', 0, 1}, "QoS 2"},
		{"QoS 3 publish", []byte{0x36, 5, 0, 1, 'a', 0, 1}, "QoS 3"},
		{"topic longer than the packet", []byte{0x30, 3, 0, 9, 'a'}, "topic of 9"},
		{"empty topic", []byte{0x30, 2, 0, 0}, "topic of 0"},
		{"packet id 0", []byte{0x32, 5, 0, 1, 'a', 0, 0}, "identifier 0"},
		{"wildcard in topic", []byte{0x30, 3, 0, 1, '#'}, "contains"},
		{"topic not UTF-8", []byte{0x30, 3, 0, 1, 0xff}, "not UTF-8"},
		{"puback too long", []byte{0x40, 3, 0, 1, 0}, "type 4 of 3 bytes"},
		{"puback with flags", []byte{0x42, 2, 0, 1}, "flags"},
		{"connack flags", []byte{0x20, 2, 2, 0}, "acknowledge flags"},
		{"pingresp with a body", []byte{0xd0, 1, 0}, "type 13 of 1 bytes"},
		{"suback without codes", []byte{0x90, 2, 0, 1}, "type 9 of 2 bytes"},
		{"huge suback", []byte{0x90, 0xff, 0xff, 0xff, 0x7f}, "exceeds"},
		{"pubrel", []byte{0x62, 2, 0, 1}, "unexpected packet type 6"},
		{"connect from the broker", []byte{0x10, 0}, "unexpected packet type 1"},
		{"type 0", []byte{0x00, 0}, "unexpected packet type 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readOne(tc.in)
			if !errors.Is(err, errBrokenPacket) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a broken packet naming %q", err, tc.want)
			}
		})
	}
	for _, in := range [][]byte{{0x30}, {0x30, 0x80}, {0x32, 10, 0, 3, 'a'}, {0x40, 2, 0}, {0x32, 0xff, 0xff, 0xff, 0x7f, 0, 1, 'a', 0, 1}} {
		if _, err := readOne(in); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("% x: got %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
	if _, err := readOne(nil); err != io.EOF {
		t.Errorf("empty stream: %v", err)
	}
}

// A PUBLISH over the cap comes back with its topic, id and size but no
// payload, and the next packet is read after it.
func TestPacketReaderSkipsOversizedPublish(t *testing.T) {
	var stream bytes.Buffer
	stream.Write(appendPublish(nil, 12, false, "lora/a/b/up", bytes.Repeat([]byte{'x'}, 3*maxLocalPacket)))
	stream.Write(appendPuback(nil, 13))
	pr := packetReader{r: bufio.NewReaderSize(&stream, localConnBuffer), max: maxLocalPacket}
	got, err := pr.read()
	if err != nil || !got.oversized || got.payload != nil || got.id != 12 || got.topic != "lora/a/b/up" || got.size != 2+11+2+3*maxLocalPacket {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err := pr.read(); err != nil || got.kind != pktPuback || got.id != 13 {
		t.Fatalf("after it: %+v %v", got, err)
	}
}

// FuzzLocalPacketReader feeds arbitrary bytes to the packet reader: it never
// panics, never allocates a packet beyond the cap (however big the length a
// packet announces), and what it returns is consistent.
func FuzzLocalPacketReader(f *testing.F) {
	f.Add(appendPublish(nil, 1, false, "lora/a/b/up", []byte(`{"a":1}`)))
	f.Add(appendPuback(nil, 1))
	f.Add([]byte{0x20, 2, 0, 0, 0x90, 5, 0, 1, 1, 1, 0x80, 0xd0, 0})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1, 'a'})           // 256 MiB announced
	f.Add([]byte{0x90, 0xff, 0xff, 0xff, 0x7f, 0, 1, 1})             // a huge SUBACK
	f.Add([]byte{0x32, 0x81, 0x80, 0x10, 0, 3, 'a', '/', 'b', 0, 9}) // just over the cap
	f.Fuzz(func(t *testing.T, in []byte) {
		pr := packetReader{r: bufio.NewReaderSize(bytes.NewReader(in), localConnBuffer), max: maxLocalPacket}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 8 {
			pk, err := pr.read()
			if err != nil {
				break
			}
			if pk.size > maxLocalPacket && (!pk.oversized || pk.payload != nil) {
				t.Fatalf("packet of %d bytes read whole", pk.size)
			}
			if pk.kind == pktPublish && (pk.topic == "" || pk.qos > 1 || (pk.qos == 1) == (pk.id == 0)) {
				t.Fatalf("inconsistent publish %+v", pk)
			}
		}
		runtime.ReadMemStats(&after)
		// The input itself and the bufio buffer aside, a packet allocates
		// at most its body (below the cap) or a topic (64 KiB).
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 8*(maxLocalPacket+64<<10) {
			t.Fatalf("allocated %d bytes for %d bytes of input", grew, len(in))
		}
	})
}
