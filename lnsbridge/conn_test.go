package lnsbridge

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// MQTT packets read through the local connection's buffer arrive whole and
// in order however the stream is cut (one byte at a time, mid-header,
// several packets at once).
func TestLocalConnCarriesPacketsWhole(t *testing.T) {
	var want [][]byte
	var stream bytes.Buffer
	for i := range 50 {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.Qos, p.MessageID = 1, uint16(i+1)
		p.TopicName = fmt.Sprintf("lora/00-00-00-00-00-00-00-%02x/up", i)
		p.Payload = bytes.Repeat([]byte{'x'}, i*37) // lengths from 0 to past 127 (two-byte lengths)
		var b bytes.Buffer
		if err := p.Write(&b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b.Bytes())
		stream.Write(b.Bytes())
	}
	for _, cut := range []int{1, 2, 3, 7, 100, 1 << 20} {
		t.Run(fmt.Sprint("cut=", cut), func(t *testing.T) {
			broker, client := net.Pipe()
			defer broker.Close()
			go func() {
				b := stream.Bytes()
				for len(b) > 0 {
					n := min(cut, len(b))
					if _, err := broker.Write(b[:n]); err != nil {
						return
					}
					b = b[n:]
				}
			}()
			c := newLocalConn(client)
			defer c.Close()
			for i, w := range want {
				cp, err := packets.ReadPacket(c)
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				var got bytes.Buffer
				if err := cp.Write(&got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), w) {
					t.Fatalf("packet %d differs after the buffer", i)
				}
			}
		})
	}
}
