package sim

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// startBroker starts an embedded broker on a free loopback port for one test.
func startBroker(t *testing.T) *Broker {
	t.Helper()
	b, err := StartBroker("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("Addr() = %s, want the real port", b.Addr())
	}
	return b
}

// receiver is a QoS 1 paho subscriber to the LNS topics counting what it gets.
type receiver struct {
	mu     sync.Mutex
	joined map[string]int
	ups    map[string][]uint32
	total  int
}

func subscribe(t *testing.T, url string) *receiver {
	t.Helper()
	rc := &receiver{joined: map[string]int{}, ups: map[string][]uint32{}}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("test-sub-" + t.Name()).SetOrderMatters(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	handler := func(_ paho.Client, m paho.Message) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.total++
		parts := strings.Split(m.Topic(), "/")
		switch parts[len(parts)-1] {
		case "joined":
			rc.joined[parts[1]]++
		case "up":
			var up struct {
				DevEUI string `json:"deveui"`
				FCnt   uint32 `json:"fcnt"`
			}
			if err := json.Unmarshal(m.Payload(), &up); err != nil || up.DevEUI != parts[2] {
				t.Errorf("uplink on %s: %s (%v)", m.Topic(), m.Payload(), err)
			}
			rc.ups[up.DevEUI] = append(rc.ups[up.DevEUI], up.FCnt)
		}
	}
	tok := c.SubscribeMultiple(map[string]byte{"lora/+/+/up": 1, "lora/+/joined": 1, "lora/+/+/moved": 1}, handler)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return rc
}

func (rc *receiver) waitTotal(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rc.mu.Lock()
		n := rc.total
		rc.mu.Unlock()
		if n >= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("subscriber got %d messages, want %d", rc.total, want)
}

func TestPublisherRunDeliversEverythingThroughTheEmbeddedBroker(t *testing.T) {
	tests := []struct {
		name      string
		devices   int
		perDevice int
		rate      float64
	}{
		{"as fast as possible", 20, 100, 0},
		{"paced", 5, 4, 400},
		{"one device", 1, 30, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			b := startBroker(t)
			rc := subscribe(t, b.URL())
			p, err := NewPublisher(ctx, b.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			f := NewFleet(tc.devices, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 9)
			start := time.Now()
			st, err := p.Run(ctx, f, tc.perDevice, tc.rate)
			if err != nil {
				t.Fatal(err)
			}
			if st.Joined != tc.devices || st.Uplinks != tc.devices*tc.perDevice || st.Failed != 0 {
				t.Fatalf("RunStats %+v", st)
			}
			if tc.rate > 0 {
				minDur := time.Duration(float64(st.Joined+st.Uplinks-1) / tc.rate * float64(time.Second))
				if el := time.Since(start); el < minDur*9/10 {
					t.Errorf("paced run took %v, want about %v", el, minDur)
				}
			}
			rc.waitTotal(t, tc.devices*(tc.perDevice+1))
			rc.mu.Lock()
			defer rc.mu.Unlock()
			for _, d := range f.Devices() {
				if rc.joined[d.DevEUI] != 1 {
					t.Errorf("%s: joined %d times", d.DevEUI, rc.joined[d.DevEUI])
				}
				got := rc.ups[d.DevEUI]
				if len(got) != tc.perDevice {
					t.Fatalf("%s: %d uplinks, want %d", d.DevEUI, len(got), tc.perDevice)
				}
				for i, fc := range got {
					if fc != uint32(i) {
						t.Fatalf("%s: uplink %d has fcnt %d", d.DevEUI, i, fc)
					}
				}
			}
			if s := p.Stats(); s.Acked != int64(st.Joined+st.Uplinks) || s.FirstPublish.IsZero() || s.LastAck.Before(s.FirstPublish) {
				t.Errorf("Stats %+v", s)
			}
		})
	}
}

func TestPublisherSyncAndAsync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := startBroker(t)
	rc := subscribe(t, b.URL())
	p, err := NewPublisher(ctx, b.URL())
	if err != nil {
		t.Fatal(err)
	}
	f := NewFleet(1, CatchAllEUI, "00-80-00-00-d0-00-01-ff", 1)
	topic, payload := f.Joined(0)
	if err := p.Publish(ctx, topic, payload); err != nil {
		t.Fatal(err)
	}
	for range 3000 { // more than the window
		topic, payload, _ := f.Uplink(0)
		if err := p.PublishAsync(ctx, topic, payload); err != nil {
			t.Fatal(err)
		}
	}
	topic, payload = f.Moved(0)
	if err := p.PublishAsync(ctx, topic, payload); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Acked != 3002 || s.Failed != 0 {
		t.Errorf("Stats %+v", s)
	}
	rc.waitTotal(t, 3002)
	p.Close()
	if err := p.PublishAsync(ctx, topic, payload); err == nil {
		t.Error("PublishAsync after Close succeeded")
	}
}

func TestNewPublisherGivesUpWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := NewPublisher(ctx, "tcp://127.0.0.1:1"); err == nil {
		t.Fatal("connected to nothing")
	}
}

func TestRunStopsWithTheContext(t *testing.T) {
	b := startBroker(t)
	p, err := NewPublisher(context.Background(), b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := NewFleet(3, CatchAllEUI, "00-80-00-00-d0-00-01-ff", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := p.Run(ctx, f, 0, 500)
	if err == nil || st.Uplinks == 0 {
		t.Fatalf("forever run: %+v, %v", st, err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sum uint32
	for _, n := range f.Expected() {
		sum += n
	}
	if int(sum) != st.Uplinks {
		t.Errorf("fleet generated %d uplinks, run published %d", sum, st.Uplinks)
	}
}
