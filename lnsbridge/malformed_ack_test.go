package lnsbridge

import (
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// A malformed local message is acknowledged when it is refused: the broker
// forgets it, and the next session does not get it again.
func TestLocalMalformedAcknowledgedNotRedelivered(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	p := publisher(t, b.URL())
	l := startLocal(t, b.URL())
	topic := topicOf(t, "uplink-as923.topic")
	pub(t, p, topic, []byte("not json"))
	pub(t, p, topic, fixture(t, "uplink-as923.json"))
	in := next(t, l) // after the malformed one: the broker delivers in order
	in.Ack()
	if s := l.Stats(); s.Malformed != 1 || s.Received != 1 {
		t.Fatalf("stats %+v", s)
	}
	l.Stop()

	// The same session again: nothing of the first one is left for it.
	l2 := startLocal(t, b.URL())
	defer l2.Stop()
	pub(t, p, topicOf(t, "joined.topic"), fixture(t, "joined.json"))
	again := next(t, l2)
	if again.Event.Kind != KindJoined {
		t.Fatalf("first event of the new session: %s %s", again.Event.Kind, again.Event.Topic)
	}
	again.Ack()
	if s := l2.Stats(); s.Malformed != 0 {
		t.Fatalf("the malformed message came back to the next session: %+v", s)
	}
	select {
	case in := <-l2.events:
		t.Fatalf("unexpected event %s %s", in.Event.Kind, in.Event.Topic)
	case <-time.After(200 * time.Millisecond):
	}
}
