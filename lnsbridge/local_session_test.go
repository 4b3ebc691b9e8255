package lnsbridge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// localSetup tunes a test client.
type localSetup struct {
	clientID string
	timing   func(*localTiming)
	log      io.Writer
	username string
	password string
}

// startLocalWith starts a client with the given setup; wait says whether to
// wait for its first connection.
func startLocalWith(t *testing.T, broker string, s localSetup, wait bool) testLocal {
	t.Helper()
	if s.clientID == "" {
		s.clientID = "app-connect-TEST"
	}
	var h slog.Handler = slog.DiscardHandler
	if s.log != nil {
		h = slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	events := make(chan Incoming, 16)
	l := NewLocal(LocalOptions{Broker: broker, ClientID: s.clientID, Username: s.username, Password: s.password, Logger: slog.New(h)})
	if s.timing != nil {
		s.timing(&l.timing)
	}
	l.SetHandler(func(in Incoming) { events <- in })
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	if wait {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := l.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return testLocal{l, events}
}

// publisherAs connects a paho client with its own id (no reconnection: a
// broker restart needs a new one).
func publisherAs(t *testing.T, broker, id string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// eventually polls cond every 20 ms for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nothingMore fails if an event arrives within d.
func nothingMore(t *testing.T, l testLocal, d time.Duration) {
	t.Helper()
	select {
	case in := <-l.events:
		t.Fatalf("unexpected event %s %s", in.Event.Kind, in.Event.Topic)
	case <-time.After(d):
	}
}

// upEvent is a valid uplink of the fixture's device with its
// own frame counter, to tell messages apart.
func upEvent(t *testing.T, fcnt int) (string, []byte) {
	t.Helper()
	up := fixture(t, "uplink-as923.json")
	i := bytes.Index(up, []byte(`"fcnt"`))
	if i < 0 {
		t.Fatal("fixture without fcnt")
	}
	j := i + bytes.IndexAny(up[i:], ",}")
	out := append(append(append([]byte{}, up[:i]...), []byte(`"fcnt":`+strconv.Itoa(fcnt))...), up[j:]...)
	return topicOf(t, "uplink-as923.topic"), out
}

func nextFCnt(t *testing.T, l testLocal) (Incoming, uint32) {
	t.Helper()
	in := next(t, l)
	if in.Event.Kind != KindUp {
		t.Fatalf("got %s %s, want an uplink", in.Event.Kind, in.Event.Topic)
	}
	return in, in.Event.FCnt
}

// nextUplink is the next message, which must be the uplink with FCnt want.
func nextUplink(t *testing.T, l testLocal, want uint32) Incoming {
	t.Helper()
	in, fc := nextFCnt(t, l)
	if fc != want {
		t.Fatalf("fcnt %d, want %d", fc, want)
	}
	return in
}

// The broker restarts (its persistence on): the client reconnects with its
// session, gets again the message it had not acknowledged and the one
// published while it was away.
func TestLocalBrokerRestartKeepsSession(t *testing.T) {
	dir := t.TempDir()
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{Extra: []string{"persistence true", "persistence_location " + dir + "/"}})
	l := startLocalWith(t, b.URL(), localSetup{}, true)
	topic, m1 := upEvent(t, 1)
	pub(t, publisherAs(t, b.URL(), "pub-1"), topic, m1)
	if _, fc := nextFCnt(t, l); fc != 1 {
		t.Fatalf("fcnt %d", fc)
	}
	// Not acknowledged. The broker goes away and comes back.
	b.Stop()
	eventually(t, "the client sees the broker gone", func() bool { return !l.Stats().Connected })
	b.Restart()
	_, m2 := upEvent(t, 2)
	pub(t, publisherAs(t, b.URL(), "pub-2"), topic, m2)
	eventually(t, "reconnected", func() bool { return l.Stats().Connected })
	got := map[uint32]bool{}
	for range 2 {
		in, fc := nextFCnt(t, l)
		got[fc] = true
		in.Ack()
	}
	if !got[1] || !got[2] {
		t.Fatalf("after the restart got %v, want the unacknowledged 1 and the queued 2", got)
	}
	nothingMore(t, l, 300*time.Millisecond)
}

// A broker that lost the session (no persistence) gets the subscriptions
// again on the next connection.
func TestLocalResubscribesOnReconnect(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	l := startLocalWith(t, b.URL(), localSetup{}, true)
	b.Restart()
	eventually(t, "a second session", func() bool { return l.sessions.Load() >= 2 && l.Stats().Connected })
	topic, m := upEvent(t, 7)
	pub(t, publisherAs(t, b.URL(), "pub-after"), topic, m)
	in := nextUplink(t, l, 7)
	in.Ack()
}

// An Ack whose connection is gone is dropped, not written on the next
// connection: there the broker redelivers the message, and only the
// redelivered copy's Ack may acknowledge it. Here the copy is never
// acknowledged, so the message must come back to the next session.
func TestLocalAckOfLostConnectionNotWrittenOnTheNext(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	px := startProxy(t, b.Addr())
	l := startLocalWith(t, px.url(), localSetup{}, true)
	topic, m := upEvent(t, 3)
	pub(t, publisherAs(t, b.URL(), "pub"), topic, m)
	first, _ := nextFCnt(t, l)
	px.cut()
	again := nextUplink(t, l, 3) // redelivered on the new connection
	eventually(t, "the second session up", func() bool { return l.sessions.Load() >= 2 })
	first.Ack() // late: its connection is gone
	time.Sleep(300 * time.Millisecond)
	l.Stop()

	l2 := startLocalWith(t, b.URL(), localSetup{}, true)
	in := nextUplink(t, l2, 3)
	in.Ack()
	again.Ack() // stopped: dropped
	nothingMore(t, l2, 300*time.Millisecond)
}

// A downlink whose connection drops before its PUBACK is sent again on the
// next connection, and Publish returns once it is acknowledged.
func TestLocalPublishResentAfterConnectionLoss(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	px := startProxy(t, b.Addr())
	sub := publisherAs(t, b.URL(), "sub")
	got := make(chan mqtt.Message, 4)
	if tok := sub.Subscribe("lora/+/down", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	l := startLocalWith(t, px.url(), localSetup{}, true)
	px.swallowNext() // the PUBLISH is lost with its connection
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.Publish(ctx, "00-11-00-11-00-11-00-11", []byte(`{"data":"AQ=="}`)); err != nil {
		t.Fatal(err)
	}
	if n := l.sessions.Load(); n < 2 {
		t.Fatalf("published over %d sessions: the proxy did not cut", n)
	}
	select {
	case m := <-got:
		if m.Topic() != "lora/00-11-00-11-00-11-00-11/down" || string(m.Payload()) != `{"data":"AQ=="}` {
			t.Fatalf("got %s %q", m.Topic(), m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("downlink not delivered")
	}
	if n := px.swallowed(); n == 0 {
		t.Fatal("the proxy swallowed nothing")
	}
}

// With a short keepalive, an idle connection stays up over several periods:
// the client pings (Mosquitto drops a client silent for 1.5 keepalives; it
// checks every 5 s, so 7 s of silence are always caught).
func TestLocalKeepaliveHoldsAnIdleConnection(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	l := startLocalWith(t, b.URL(), localSetup{timing: func(tm *localTiming) { tm.keepAlive = time.Second }}, true)
	time.Sleep(7 * time.Second)
	if n := l.sessions.Load(); n != 1 || !l.Stats().Connected {
		t.Fatalf("%d sessions, connected %v: the idle connection was dropped", n, l.Stats().Connected)
	}
}

// A broker that stops answering is given up after the ping timeout; the
// client connects again once it answers.
func TestLocalPingTimeoutDetectsASilentBroker(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	px := startProxy(t, b.Addr())
	var log testpeer.LogBuffer
	l := startLocalWith(t, px.url(), localSetup{log: &log, timing: func(tm *localTiming) {
		tm.keepAlive, tm.pingTimeout, tm.connectTimeout, tm.retryFirst, tm.retryMax = time.Second, time.Second, 2*time.Second, 100*time.Millisecond, time.Second
	}}, true)
	px.freeze(true)
	eventually(t, "the silent broker given up", func() bool { return !l.Stats().Connected })
	if !strings.Contains(log.String(), "no PINGRESP within 1s") {
		t.Fatalf("no ping timeout in the log:\n%s", log.Tail(10))
	}
	px.freeze(false)
	eventually(t, "reconnected", func() bool { return l.Stats().Connected })
	topic, m := upEvent(t, 9)
	pub(t, publisherAs(t, b.URL(), "pub"), topic, m)
	in := nextUplink(t, l, 9)
	in.Ack()
}

// A PUBLISH over the cap is skipped unread, counted as malformed, logged with
// its topic and size, and acknowledged; the next message arrives.
func TestLocalOversizedPublishDiscardedAndAcknowledged(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	var log testpeer.LogBuffer
	l := startLocalWith(t, b.URL(), localSetup{log: &log}, true)
	p := publisherAs(t, b.URL(), "pub")
	topic, m := upEvent(t, 5)
	pub(t, p, topic, bytes.Repeat([]byte{'x'}, 2<<20))
	pub(t, p, topic, m)
	in := nextUplink(t, l, 5)
	in.Ack()
	if s := l.Stats(); s.Malformed != 1 || s.Received != 1 {
		t.Fatalf("stats %+v", s)
	}
	if s := log.String(); !strings.Contains(s, "discarded unread") || !strings.Contains(s, "topic="+topic) || !strings.Contains(s, "bytes=2097") {
		t.Fatalf("log:\n%s", log.Tail(10))
	}
	if l.sessions.Load() != 1 {
		t.Fatalf("%d sessions: the big message cost the connection", l.sessions.Load())
	}
	l.Stop()
	l2 := startLocalWith(t, b.URL(), localSetup{}, true)
	nothingMore(t, l2, 300*time.Millisecond)
	if s := l2.Stats(); s.Malformed != 0 {
		t.Fatalf("the big message came back: %+v", s)
	}
}

// A refused connection names the refusal, and the client keeps trying.
func TestLocalConnectRefusalNamed(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{Extra: testpeer.PasswordLines(t, map[string]string{"lns": "right"})})
	var log testpeer.LogBuffer
	startLocalWith(t, b.URL(), localSetup{log: &log, username: "lns", password: "wrong",
		timing: func(tm *localTiming) { tm.retryFirst = 50 * time.Millisecond }}, false)
	eventually(t, "two refusals logged", func() bool {
		return strings.Count(log.String(), "connection refused: not authorised")+
			strings.Count(log.String(), "connection refused: bad user name or password") >= 2
	})
	if strings.Contains(log.String(), "wrong") {
		t.Fatal("the password reached the log")
	}
	startLocalWith(t, b.URL(), localSetup{clientID: "right", username: "lns", password: "right"}, true)
}

// Stop ends the loop and the reader: no goroutine is left, and nothing is
// handed on afterwards.
func TestLocalStopLeavesNoGoroutine(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	p := publisherAs(t, b.URL(), "pub")
	before := runtime.NumGoroutine()
	l := startLocalWith(t, b.URL(), localSetup{}, true)
	topic, m := upEvent(t, 1)
	pub(t, p, topic, m)
	next(t, l).Ack()
	stopped := make(chan struct{})
	go func() { l.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return")
	}
	eventually(t, "goroutines back", func() bool { return runtime.NumGoroutine() <= before })
	pub(t, p, topic, m)
	nothingMore(t, l, 300*time.Millisecond)
	err := l.Publish(context.Background(), "00-11-00-11-00-11-00-11", nil)
	if !errors.Is(err, errLocalStopped) {
		t.Fatalf("publish after Stop: %v", err)
	}
}

// --- a TCP proxy in front of the test broker, to lose a connection at a
// chosen moment or make the broker fall silent ---

type proxy struct {
	t       *testing.T
	ln      net.Listener
	target  string
	mu      sync.Mutex
	pairs   []net.Conn
	swallow bool // the next client bytes are dropped and the connection cut
	dropped int
	frozen  bool
	thaw    *sync.Cond
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	p.thaw = sync.NewCond(&p.mu)
	t.Cleanup(func() {
		ln.Close()
		p.freeze(false)
		p.cut()
	})
	go p.accept()
	return p
}

func (p *proxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.pairs = append(p.pairs, c, s)
		p.mu.Unlock()
		go p.copy(s, c, true)
		go p.copy(c, s, false)
	}
}

func (p *proxy) copy(dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen {
				p.thaw.Wait()
			}
			if fromClient && p.swallow {
				p.swallow = false
				p.dropped += n
				p.mu.Unlock()
				return // both ends closed: the bytes are lost with the connection
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.pairs {
		c.Close()
	}
	p.pairs = nil
}

func (p *proxy) swallowNext() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.swallow = true
}

func (p *proxy) swallowed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// freeze holds every byte in both directions (the connections stay open)
// until freeze(false).
func (p *proxy) freeze(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = on
	if !on {
		p.thaw.Broadcast()
	}
}

// Stop returns while the reader is blocked inside the handler (the intake
// stops after the local client, see cmd/app-connect); once the handler
// returns, the reader ends without handing on the next message, and an Ack
// after Stop is not sent: the next session gets both messages again.
func TestLocalStopWithTheHandlerBlocked(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	p := publisherAs(t, b.URL(), "pub")
	before := runtime.NumGoroutine()
	release := make(chan struct{})
	var mu sync.Mutex
	var got []Incoming
	l := NewLocal(LocalOptions{Broker: b.URL(), ClientID: "app-connect-TEST", Logger: slog.New(slog.DiscardHandler)})
	l.SetHandler(func(in Incoming) {
		mu.Lock()
		got = append(got, in)
		mu.Unlock()
		<-release
	})
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	topic, m1 := upEvent(t, 1)
	_, m2 := upEvent(t, 2)
	pub(t, p, topic, m1)
	pub(t, p, topic, m2)
	eventually(t, "the handler holds the first message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})
	stopped := make(chan struct{})
	go func() { l.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop waits for a handler that waits for Stop")
	}
	close(release)
	eventually(t, "goroutines back", func() bool { return runtime.NumGoroutine() <= before })
	mu.Lock()
	n := len(got)
	first := got[0]
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d messages handed on, the second one after Stop", n)
	}
	first.Ack() // after Stop: not sent

	l2 := startLocalWith(t, b.URL(), localSetup{}, true)
	for want := uint32(1); want <= 2; want++ {
		in := nextUplink(t, l2, want)
		in.Ack()
	}
}

// A downlink asked for while there is no connection waits for one and goes
// out on it; one whose context ends first fails with the context's error.
func TestLocalPublishWaitsForTheConnection(t *testing.T) {
	b := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	sub := publisherAs(t, b.URL(), "sub")
	got := make(chan mqtt.Message, 4)
	if tok := sub.Subscribe("lora/+/clear", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	l := NewLocal(LocalOptions{Broker: b.URL(), ClientID: "app-connect-TEST", Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(l.Stop)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Clear(short, "00-11-00-11-00-11-00-22"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("clear without a connection: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- l.Clear(ctx, "00-11-00-11-00-11-00-11")
	}()
	time.Sleep(100 * time.Millisecond) // the Clear waits, not yet connected
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic() != "lora/00-11-00-11-00-11-00-11/clear" {
			t.Fatalf("got %s: the abandoned clear went out", m.Topic())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("clear not delivered")
	}
}
