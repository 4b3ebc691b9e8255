package lnsbridge

import (
	"context"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

func publisher(t *testing.T, broker string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("test-pub-" + t.Name()))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func pub(t *testing.T, c mqtt.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// testLocal is a Local whose handler queues events for the test.
type testLocal struct {
	*Local
	events chan Incoming
}

func startLocal(t *testing.T, broker string) testLocal {
	t.Helper()
	events := make(chan Incoming, 16)
	l := NewLocal(LocalOptions{Broker: broker, ClientID: "app-connect-TEST", Logger: slog.New(slog.DiscardHandler)})
	l.SetHandler(func(in Incoming) { events <- in })
	if err := l.Start(t.Context()); err != nil { // the client lives until Stop or the test's end
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return testLocal{l, events}
}

func next(t *testing.T, l testLocal) Incoming {
	t.Helper()
	select {
	case in := <-l.events:
		return in
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return Incoming{}
	}
}

// An event is forgotten by the broker only once acknowledged: an unacknowledged
// one comes back to the next session with the same client id.
func TestLocalManualAckRedelivers(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	p := publisher(t, b.URL())
	l := startLocal(t, b.URL())
	up := fixture(t, "uplink-as923.json")
	topic := topicOf(t, "uplink-as923.topic")

	pub(t, p, topic, []byte("not json")) // malformed: acknowledged and dropped
	pub(t, p, topic, up)
	pub(t, p, topicOf(t, "joined.topic"), fixture(t, "joined.json"))
	first := next(t, l)
	second := next(t, l)
	if first.Event.Kind != KindUp || second.Event.Kind != KindJoined {
		t.Fatalf("got %s then %s", first.Event.Kind, second.Event.Kind)
	}
	first.Ack() // the uplink is stored; the joined is not
	time.Sleep(200 * time.Millisecond)
	if s := l.Stats(); s.Malformed != 1 || s.Received != 2 {
		t.Fatalf("stats %+v", s)
	}
	l.Stop()

	l2 := startLocal(t, b.URL())
	defer l2.Stop()
	again := next(t, l2)
	if again.Event.Kind != KindJoined || again.Event.DevEUI != "00-11-00-11-00-11-00-11" {
		t.Fatalf("redelivered %+v", again.Event)
	}
	again.Ack()
	select {
	case in := <-l2.events:
		t.Fatalf("unexpected redelivery of %s %s", in.Event.Kind, in.Event.Topic)
	case <-time.After(500 * time.Millisecond):
	}
}

func TestLocalPublishesDownlinksAndClears(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	sub := publisher(t, b.URL())
	got := make(chan mqtt.Message, 4)
	if tok := sub.Subscribe("lora/+/+", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	l := startLocal(t, b.URL())
	defer l.Stop()
	ctx := context.Background()
	dl := fixture(t, "downlink.json")
	if err := l.Publish(ctx, "00-11-00-11-00-11-00-11", dl); err != nil {
		t.Fatal(err)
	}
	if err := l.Clear(ctx, "00-11-00-11-00-11-00-11"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ topic, payload string }{
		{"lora/00-11-00-11-00-11-00-11/down", string(dl)},
		{"lora/00-11-00-11-00-11-00-11/clear", ""},
	} {
		select {
		case m := <-got:
			if m.Topic() != want.topic || string(m.Payload()) != want.payload || m.Qos() != 1 || m.Retained() {
				t.Fatalf("got %s %q qos %d retained %v", m.Topic(), m.Payload(), m.Qos(), m.Retained())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", want.topic)
		}
	}
}
