package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// scriptedAppender is an outbox write side whose first commit blocks until
// released and then fails, whose second commit fails at once, and whose later
// commits succeed. It records which message bodies a successful commit holds,
// and every acknowledgement that came before the commit of its message.
type scriptedAppender struct {
	entered chan struct{} // closed when the first commit starts
	release chan struct{} // closing it lets the first commit fail

	mu        sync.Mutex
	calls     int
	committed map[string]bool // bodies of rows whose commit returned nil
	acked     map[string]int  // body → acknowledgements
	early     []string        // acknowledged before committed
	ackedAt1  int             // acknowledgements seen when the first commit started
}

func newScriptedAppender() *scriptedAppender {
	return &scriptedAppender{entered: make(chan struct{}), release: make(chan struct{}),
		committed: map[string]bool{}, acked: map[string]int{}, ackedAt1: -1}
}

func (s *scriptedAppender) Commit(ctx context.Context, rows []cache.Row, _ int) (map[string]int, cache.Synced, error) {
	s.mu.Lock()
	s.calls++
	call := s.calls
	if call == 1 {
		n := 0
		for _, c := range s.acked {
			n += c
		}
		s.ackedAt1 = n
	}
	s.mu.Unlock()
	switch call {
	case 1:
		close(s.entered)
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, cache.Synced{}, ctx.Err()
		}
		return nil, cache.Synced{}, errors.New("disk I/O error (injected, after blocking)")
	case 2:
		return nil, cache.Synced{}, errors.New("database is locked (injected)")
	}
	s.mu.Lock()
	for _, r := range rows {
		s.committed[string(r.Body)] = true
	}
	s.mu.Unlock()
	return nil, cache.Synced{}, nil
}

// intakeRouter runs a Manager with one default application (appEUI at url,
// retries an hour apart) on a real, empty outbox: the rows go to the test's
// own outbox write side, the Manager only routes. It is stopped at cleanup.
func intakeRouter(ctx context.Context, t *testing.T, appEUI, url string, log *slog.Logger) *Manager {
	t.Helper()
	m := runManager(ctx, t, newOutbox(t), nil, log)
	m.Apply(ctx, Desired{Default: &AppSettings{EUI: appEUI, Name: "default", Source: "default", APIVersion: config.API10,
		URL: url, Delivery: config.Delivery{RetryMin: time.Hour, RetryMax: time.Hour}}})
	t.Cleanup(func() { m.Stop(context.Background()) })
	return m
}

// ack is a message's acknowledgement to the local broker.
func (s *scriptedAppender) ack(body string) func() {
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.committed[body] {
			s.early = append(s.early, body)
		}
		s.acked[body]++
	}
}

func (s *scriptedAppender) ackCount(body string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[body]
}

// The intake acknowledges a local message only after the outbox commit that
// holds its row returned nil: not while the commit blocks, not when it fails,
// for every transport kind and batch size.
func TestIntakeAcknowledgesOnlyAfterCommit(t *testing.T) {
	const appEUI = "16-16-16-16-16-16-16-16"
	urls := map[string]string{
		"http":  "http://127.0.0.1:1/app",
		"https": "https://127.0.0.1:1/app",
		"mqtt":  "mqtt://127.0.0.1:1",
		"mqtts": "mqtts://127.0.0.1:1",
		"wss":   "wss://127.0.0.1:1/mqtt",
	}
	for _, scheme := range []string{"http", "https", "mqtt", "mqtts", "wss"} {
		for _, batch := range []int{1, 3, 1000} {
			t.Run(fmt.Sprintf("%s/batch=%d", scheme, batch), func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				log := slog.New(slog.DiscardHandler)
				m := intakeRouter(ctx, t, appEUI, urls[scheme], log)
				if len(m.Router().Applications()) != 1 {
					t.Fatalf("application for %s not set up", urls[scheme])
				}
				ap := newScriptedAppender()
				in := NewIntake(ap, nil, m.Router(), nil, log)
				in.MaxBatch = batch

				// Every message is queued before the intake starts, so the
				// first commit holds min(batch, n) of them.
				const n = 7
				msgs := make(chan Message, n)
				var bodies []string
				for i := range n {
					kind := lnsbridge.KindUp
					if i%3 == 1 {
						kind = lnsbridge.KindJoined
					}
					body := fmt.Sprintf(`{"i":%d,"kind":%q}`, i, kind)
					bodies = append(bodies, body)
					msgs <- Message{Kind: kind, DevEUI: fmt.Sprintf("00-00-00-00-00-00-00-%02x", i), AppEUI: appEUI, FCnt: uint32(i), Body: []byte(body), Ack: ap.ack(body)}
				}
				close(msgs)
				done := make(chan struct{})
				go func() { defer close(done); in.Run(ctx, msgs) }()

				select {
				case <-ap.entered:
				case <-done:
					t.Fatal("the intake ended without committing")
				}
				ap.mu.Lock()
				before := ap.ackedAt1
				ap.mu.Unlock()
				if before != 0 {
					t.Fatalf("%d messages acknowledged before their first commit started", before)
				}
				for _, b := range bodies {
					if c := ap.ackCount(b); c != 0 {
						t.Fatalf("message %s acknowledged while its commit blocks", b)
					}
				}
				close(ap.release)
				<-done // msgs is closed: Run ends once everything is committed

				ap.mu.Lock()
				defer ap.mu.Unlock()
				if len(ap.early) > 0 {
					t.Fatalf("acknowledged before their commit returned nil: %v", ap.early)
				}
				if ap.calls < 3 {
					t.Fatalf("%d commits, want the two failures retried", ap.calls)
				}
				for _, b := range bodies {
					if ap.acked[b] != 1 || !ap.committed[b] {
						t.Fatalf("message %s: committed %v, acknowledged %d times (want once)", b, ap.committed[b], ap.acked[b])
					}
				}
				if st := in.Stats(); st.Stored != n || st.Received < n {
					t.Fatalf("stats %+v, want %d stored", st, n)
				}
			})
		}
	}
}

// A commit that never succeeds acknowledges nothing: stopping the intake
// leaves every message with the local broker.
func TestIntakeStoppedDuringFailingCommitAcknowledgesNothing(t *testing.T) {
	const appEUI = "16-16-16-16-16-16-16-17"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	m := intakeRouter(ctx, t, appEUI, "http://127.0.0.1:1/app", log)
	ap := newScriptedAppender()
	in := NewIntake(ap, nil, m.Router(), nil, log)
	msgs := make(chan Message, 3)
	for i := range 3 {
		body := fmt.Sprintf(`{"i":%d}`, i)
		msgs <- Message{Kind: "up", DevEUI: "00-00-00-00-00-00-00-01", AppEUI: appEUI, Body: []byte(body), Ack: ap.ack(body)}
	}
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx, msgs) }()
	<-ap.entered
	cancel() // the blocked commit returns ctx's error; nothing is stored
	<-done
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if len(ap.acked) != 0 {
		t.Fatalf("acknowledged without a commit: %v", ap.acked)
	}
}

// syncFailingAppender commits every batch, but the sync of its first commit
// fails: those rows may not have reached the flash.
type syncFailingAppender struct {
	mu      sync.Mutex
	calls   int
	durable map[string]int // body → commits whose sync succeeded
	acked   map[string]int
	early   []string // acknowledged before a durable commit held them
}

func (s *syncFailingAppender) Commit(_ context.Context, rows []cache.Row, _ int) (map[string]int, cache.Synced, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == 1 {
		return nil, cache.SyncResult(errors.New("fdatasync: input/output error (injected)")), nil
	}
	for _, r := range rows {
		s.durable[string(r.Body)]++
	}
	return nil, cache.SyncResult(nil), nil
}

func (s *syncFailingAppender) ack(body string) func() {
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.durable[body] == 0 {
			s.early = append(s.early, body)
		}
		s.acked[body]++
	}
}

// A batch whose sync failed is neither acknowledged nor forgotten: it is
// committed again, and acknowledged once a commit holding it is durable.
func TestIntakeRecommitsWhatASyncFailed(t *testing.T) {
	const appEUI = "16-16-16-16-16-16-16-18"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	m := intakeRouter(ctx, t, appEUI, "http://127.0.0.1:1/app", log)
	ap := &syncFailingAppender{durable: map[string]int{}, acked: map[string]int{}}
	in := NewIntake(ap, nil, m.Router(), nil, log)
	in.MaxBatch = 2
	bodies := runUplinks(ctx, t, in, appEUI, 5, ap.ack, 30*time.Second, "the intake did not end")
	// Run returned after msgs closed: the re-commit may still be due.
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if len(ap.early) > 0 {
		t.Fatalf("acknowledged before a durable commit held them: %v", ap.early)
	}
	for _, b := range bodies {
		if ap.acked[b] > 1 {
			t.Fatalf("message %s acknowledged %d times", b, ap.acked[b])
		}
	}
	if ap.acked[bodies[0]] != 1 || ap.durable[bodies[0]] != 1 {
		t.Fatalf("message of the failed sync: durable in %d commits, acknowledged %d times; want committed again and acknowledged once",
			ap.durable[bodies[0]], ap.acked[bodies[0]])
	}
}

// slowSyncAppender commits at once; each commit's sync ends when the test
// says so.
type slowSyncAppender struct {
	mu      sync.Mutex
	ends    []func(error)
	bodies  [][]string
	commits chan struct{}
}

func (s *slowSyncAppender) Commit(_ context.Context, rows []cache.Row, _ int) (map[string]int, cache.Synced, error) {
	synced, end := cache.NewSynced()
	var b []string
	for _, r := range rows {
		b = append(b, string(r.Body))
	}
	s.mu.Lock()
	s.ends = append(s.ends, end)
	s.bodies = append(s.bodies, b)
	s.mu.Unlock()
	s.commits <- struct{}{}
	return nil, synced, nil
}

// A message is acknowledged only once the commit holding it is durable: the
// committer goes on with later messages while the sync runs, and none of
// them is acknowledged before its own commit's sync ended either.
func TestIntakeAcknowledgesOnlyOnceSynced(t *testing.T) {
	const appEUI = "16-16-16-16-16-16-16-19"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	m := intakeRouter(ctx, t, appEUI, "http://127.0.0.1:1/app", log)
	ap := &slowSyncAppender{commits: make(chan struct{}, 16)}
	in := NewIntake(ap, nil, m.Router(), nil, log)
	var mu sync.Mutex
	acked := map[string]bool{}
	msg := func(i int) Message {
		body := fmt.Sprintf(`{"i":%d}`, i)
		return Message{Kind: lnsbridge.KindUp, DevEUI: "00-00-00-00-00-00-00-01", AppEUI: appEUI, FCnt: uint32(i), Body: []byte(body),
			Ack: func() { mu.Lock(); acked[body] = true; mu.Unlock() }}
	}
	isAcked := func(i int) bool { mu.Lock(); defer mu.Unlock(); return acked[fmt.Sprintf(`{"i":%d}`, i)] }
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx, nil) }()
	in.Handle(msg(0))
	<-ap.commits
	in.Handle(msg(1)) // committed while the first commit's sync runs
	<-ap.commits
	time.Sleep(50 * time.Millisecond) // room for a wrong early acknowledgement
	if isAcked(0) || isAcked(1) {
		t.Fatalf("acknowledged before the sync ended: 0 %v, 1 %v", isAcked(0), isAcked(1))
	}
	ap.mu.Lock()
	end0, end1 := ap.ends[0], ap.ends[1]
	ap.mu.Unlock()
	end0(nil)
	deadline := time.Now().Add(10 * time.Second)
	for !isAcked(0) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !isAcked(0) {
		t.Fatal("message 0 not acknowledged after its sync ended")
	}
	time.Sleep(50 * time.Millisecond)
	if isAcked(1) {
		t.Fatal("message 1 acknowledged before its own commit's sync ended")
	}
	end1(nil)
	for !isAcked(1) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !isAcked(1) {
		t.Fatal("message 1 not acknowledged after its sync ended")
	}
	if st := in.Stats(); st.Acked != 2 {
		t.Errorf("stats: %d acknowledged, want 2", st.Acked)
	}
	cancel()
	<-done
}

// roomyCommitter takes at most room rows per commit and refuses more with
// cache.ErrStorageFull, as a full file system with room for a few rows does.
type roomyCommitter struct {
	room int

	mu      sync.Mutex
	stored  []string // bodies, in commit order
	commits int      // transactions taken
	acked   map[string]int
	early   []string // acknowledged before stored
}

func (c *roomyCommitter) Commit(_ context.Context, rows []cache.Row, _ int) (map[string]int, cache.Synced, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(rows) > c.room {
		return nil, cache.Synced{}, fmt.Errorf("%w: injected, %d rows", cache.ErrStorageFull, len(rows))
	}
	for _, r := range rows {
		c.stored = append(c.stored, string(r.Body))
	}
	c.commits++
	return nil, cache.Synced{}, nil
}

func (c *roomyCommitter) ack(body string) func() {
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !slices.Contains(c.stored, body) {
			c.early = append(c.early, body)
		}
		c.acked[body]++
	}
}

// A batch the file system has no room for is committed in parts small enough
// to fit, in order, instead of being retried whole forever (a full flash
// with room for 3 rows, a batch of 20): every message is stored once, in
// arrival order, and acknowledged once, after its row.
func TestIntakeCommitsARefusedBatchInParts(t *testing.T) {
	const appEUI = "16-16-16-16-16-16-16-16"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	m := intakeRouter(ctx, t, appEUI, "http://127.0.0.1:1/app", log)
	c := &roomyCommitter{room: 3, acked: map[string]int{}}
	in := NewIntake(c, nil, m.Router(), nil, log)
	in.MaxBatch = 100
	bodies := runUplinks(ctx, t, in, appEUI, 20, c.ack, time.Minute, "the intake is still retrying a batch the file system has no room for")
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Equal(c.stored, bodies) {
		t.Fatalf("stored %v, want every message once in arrival order %v", c.stored, bodies)
	}
	if len(c.early) > 0 {
		t.Fatalf("acknowledged before their rows were stored: %v", c.early)
	}
	for _, b := range bodies {
		if c.acked[b] != 1 {
			t.Fatalf("message %s acknowledged %d times, want once", b, c.acked[b])
		}
	}
	if st := in.Stats(); st.Commits != uint64(c.commits) {
		t.Fatalf("stats: %d commits, the outbox took %d transactions", st.Commits, c.commits)
	}
}

// runUplinks feeds n uplinks of one device to in, ack making each one's Ack,
// and waits up to limit for Run to return once it took them all (stuck
// says what it means when it does not). It returns the bodies in order.
func runUplinks(ctx context.Context, t *testing.T, in *Intake, appEUI string, n int, ack func(body string) func(), limit time.Duration, stuck string) []string {
	t.Helper()
	msgs := make(chan Message, n)
	var bodies []string
	for i := range n {
		body := fmt.Sprintf(`{"i":%d}`, i)
		bodies = append(bodies, body)
		msgs <- Message{Kind: lnsbridge.KindUp, DevEUI: "00-00-00-00-00-00-00-01", AppEUI: appEUI, FCnt: uint32(i), Body: []byte(body), Ack: ack(body)}
	}
	close(msgs)
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx, msgs) }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatal(stuck)
	}
	return bodies
}
