package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// runRaw is the floor without the libraries' per-message machinery (with
// APPCONNECT_FLOOR=raw): one goroutine reads the local broker's packets
// (paho's packet codec only), writes each uplink's POST itself on one
// keep-alive connection, reads the answer with net/http's parser and writes
// the PUBACK. No client goroutines, channels, tokens or timers: the least a
// Go program relaying uplinks can spend per uplink on the machine measured.
func runRaw(ctx context.Context, broker, base string) error {
	bu, err := url.Parse(broker)
	if err != nil {
		return err
	}
	mc, err := net.Dial("tcp", bu.Host)
	if err != nil {
		return err
	}
	defer mc.Close()
	go func() { <-ctx.Done(); mc.Close() }()
	mr := bufio.NewReaderSize(mc, 16<<10)
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.ClientIdentifier = "app-connect-bench-floor-raw"
	if err := cp.Write(mc); err != nil {
		return err
	}
	if p, err := packets.ReadPacket(mr); err != nil {
		return err
	} else if ack, ok := p.(*packets.ConnackPacket); !ok || ack.ReturnCode != 0 {
		return fmt.Errorf("broker %s refused the connection: %v", broker, p)
	}
	sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sp.MessageID, sp.Topics, sp.Qoss = 1, []string{"lora/+/+/up"}, []byte{1}
	if err := sp.Write(mc); err != nil {
		return err
	}
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	hc, err := net.Dial("tcp", u.Host)
	if err != nil {
		return err
	}
	defer hc.Close()
	hr := bufio.NewReader(hc)
	var req bytes.Buffer
	puback := make([]byte, 4)
	for {
		p, err := packets.ReadPacket(mr)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		pub, ok := p.(*packets.PublishPacket)
		if !ok {
			continue
		}
		parts := strings.Split(pub.TopicName, "/") // lora/<AppEUI>/<DevEUI>/up
		if len(parts) != 4 {
			continue
		}
		req.Reset()
		fmt.Fprintf(&req, "POST %s/api/v1/lorawan/%s/%s/up HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			u.Path, parts[1], parts[2], u.Host, len(pub.Payload))
		req.Write(pub.Payload)
		if _, err := hc.Write(req.Bytes()); err != nil {
			return err
		}
		resp, err := http.ReadResponse(hr, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if pub.Qos == 1 {
			puback[0], puback[1], puback[2], puback[3] = 0x40, 2, byte(pub.MessageID>>8), byte(pub.MessageID)
			if _, err := mc.Write(puback); err != nil {
				return err
			}
		}
	}
}
