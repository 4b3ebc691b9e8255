package sim

import (
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// DownlinkWatch records the downlinks the program publishes to the local
// network server (lora/+/down on the local broker).
type DownlinkWatch struct {
	client paho.Client
	mu     sync.Mutex
	got    []string
}

// WatchDownlinks subscribes to lora/+/down on the broker at brokerURL.
func WatchDownlinks(brokerURL string) (*DownlinkWatch, error) {
	w := &DownlinkWatch{}
	w.client = paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID("local-downlink-watch"))
	if tok := w.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("sim: downlink watch: connect %s: %v", brokerURL, tok.Error())
	}
	tok := w.client.Subscribe("lora/+/down", 1, func(_ paho.Client, m paho.Message) {
		w.mu.Lock()
		w.got = append(w.got, m.Topic()+" "+string(m.Payload()))
		w.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		w.client.Disconnect(0)
		return nil, fmt.Errorf("sim: downlink watch: subscribe: %v", tok.Error())
	}
	return w, nil
}

// Got returns what arrived so far ("topic payload"), in order.
func (w *DownlinkWatch) Got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

// Close disconnects.
func (w *DownlinkWatch) Close() { w.client.Disconnect(100) }
