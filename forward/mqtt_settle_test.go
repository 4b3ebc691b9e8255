package forward

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
)

// doneToken is a completed publish token: acknowledged, or failed with err.
type doneToken struct {
	ch  chan struct{}
	err error
}

func newDoneToken(err error) *doneToken {
	t := &doneToken{ch: make(chan struct{}), err: err}
	close(t.ch)
	return t
}

func (t *doneToken) Wait() bool                     { return true }
func (t *doneToken) WaitTimeout(time.Duration) bool { return true }
func (t *doneToken) Done() <-chan struct{}          { return t.ch }
func (t *doneToken) Error() error                   { return t.err }

// scriptedClient is one connection to a remote broker whose publish tokens
// are already complete: each publish fails when fail says so, else it is
// acknowledged. Only Publish and Disconnect are used by the delivery loop
// under test.
type scriptedClient struct {
	paho.Client
	fail func(body string, nth int) bool // nth publish of this body on this connection

	mu        sync.Mutex
	published []string // bodies in publish order
	seen      map[string]int
}

// Disconnect is what the transport does with a connection whose publish failed.
func (c *scriptedClient) Disconnect(uint) {}

func (c *scriptedClient) Publish(_ string, _ byte, _ bool, payload any) paho.Token {
	body := string(payload.([]byte))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	c.seen[body]++
	c.published = append(c.published, body)
	if c.fail != nil && c.fail(body, c.seen[body]) {
		return newDoneToken(errors.New("publish not acknowledged (injected)"))
	}
	return newDoneToken(nil)
}

// rowsQueue is a real outbox of one application that also tells when a
// given row is deleted and when none is left.
type rowsQueue struct {
	*cache.Outbox
	mu      sync.Mutex
	rows    []int64 // IDs not deleted, oldest first
	deleted []int64
	watch   int64         // row whose deletion is signalled on watchCh
	watchCh chan struct{} // closed when watch is deleted
	emptyCh chan struct{} // closed when no row is left
}

func (q *rowsQueue) Delete(rows []cache.Row) {
	q.Outbox.Delete(rows)
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range rows {
		q.deleted = append(q.deleted, r.ID)
		q.rows = slices.DeleteFunc(q.rows, func(id int64) bool { return id == r.ID })
		if r.ID == q.watch && q.watchCh != nil {
			close(q.watchCh)
			q.watchCh = nil
		}
	}
	if len(q.rows) == 0 && q.emptyCh != nil {
		close(q.emptyCh)
		q.emptyCh = nil
	}
}

func (q *rowsQueue) DeadLetter(rows []cache.Row)           { q.Delete(rows) }
func (q *rowsQueue) remaining() (ids []int64, del []int64) { return q.ids(), q.del() }

func (q *rowsQueue) ids() []int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.rows)
}

func (q *rowsQueue) del() []int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.deleted)
}

// Settling the rows in flight: a row whose publish failed is never deleted,
// even when rows around it were acknowledged; it and every row behind it stay
// queued, and the next connection resends them in outbox order.
func TestMQTTSettlingKeepsFailedPublishQueued(t *testing.T) {
	const appEUI = "16-16-16-16-16-16-16-16"
	kinds := []string{"up", "up", "joined", "up", "up"} // joined: two publishes under API 1.0
	tests := []struct {
		name   string
		failID int64 // the row one of whose publishes fails on the first connection
		nth    int   // which of the row's publishes fails (joined has two)
	}{
		{"head fails", 1, 1},
		{"failed publish behind an acknowledged head", 2, 1},
		{"second publish of a joined row fails", 3, 2},
		{"last row fails", 5, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			failDeleted, empty := make(chan struct{}), make(chan struct{})
			q := &rowsQueue{Outbox: newOutbox(t), watch: tc.failID, watchCh: failDeleted, emptyCh: empty}
			var rows []cache.Row
			for i, k := range kinds {
				id := int64(i + 1) // a fresh outbox numbers its rows from 1
				rows = append(rows, testRow(appEUI, k, appEUI, fmt.Sprintf("00-00-00-00-00-00-00-%02x", id), fmt.Sprintf(`{"row":%d}`, id)))
				q.rows = append(q.rows, id)
			}
			if _, err := q.Append(context.Background(), rows); err != nil {
				t.Fatal(err)
			}
			body := func(id int64) string { return fmt.Sprintf(`{"row":%d}`, id) }
			a, err := NewApplication(AppSettings{EUI: appEUI, Name: "default", Source: "default", APIVersion: config.API10,
				URL: "mqtt://127.0.0.1:1"}, tIdentity, q, nil, nil, nil, testLogger(t, nil))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			// The application's loop (Run) drives the transport; its two
			// connections are scripted. First connection: one publish of row
			// failID fails, every other is acknowledged. The second is handed
			// out once the test looked at the queue.
			c1 := &scriptedClient{fail: func(b string, nth int) bool { return b == body(tc.failID) && nth == tc.nth }}
			conn1 := &mqttConn{client: c1, lost: make(chan struct{})}
			c2 := &scriptedClient{}
			conn2 := &mqttConn{client: c2, lost: make(chan struct{})}
			second := make(chan struct{})
			dials := 0
			mqttOf(a).dial = func(ctx context.Context) (*mqttConn, error) {
				if dials++; dials == 1 {
					return conn1, nil
				}
				select {
				case <-second:
					return conn2, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			ended := make(chan struct{})
			go func() { defer close(ended); a.Run(ctx) }()
			select {
			case <-conn1.lost:
			case <-failDeleted:
				t.Fatalf("row %d deleted although its publish failed (deleted %v)", tc.failID, q.del())
			case <-time.After(30 * time.Second):
				t.Fatal("the failed publish did not end the first connection")
			}
			left, del := q.remaining()
			wantLeft := []int64{}
			for id := tc.failID; id <= int64(len(kinds)); id++ {
				wantLeft = append(wantLeft, id)
			}
			if !slices.Equal(left, wantLeft) {
				t.Fatalf("after the failed publish: queued %v (deleted %v), want %v queued", left, del, wantLeft)
			}

			// Second connection: everything is acknowledged.
			close(second)
			select {
			case <-empty:
			case <-time.After(30 * time.Second):
				t.Fatalf("second connection: rows %v still queued", q.ids())
			}
			cancel()
			<-ended
			if dials != 2 {
				t.Fatalf("%d connections, want 2", dials)
			}
			c2.mu.Lock()
			var resent []string
			for _, b := range c2.published {
				if len(resent) == 0 || resent[len(resent)-1] != b { // a joined row publishes twice
					resent = append(resent, b)
				}
			}
			c2.mu.Unlock()
			var want []string
			for _, id := range wantLeft {
				want = append(want, body(id))
			}
			if !slices.Equal(resent, want) {
				t.Fatalf("resent %s, want %s", strings.Join(resent, " "), strings.Join(want, " "))
			}
			if d := q.del(); !slices.IsSorted(d) || len(d) != len(kinds) {
				t.Fatalf("rows deleted in order %v, want 1…%d once each in order", d, len(kinds))
			}
			if got := a.Counters.Forwarded.Load(); got != uint64(len(kinds)) {
				t.Fatalf("forwarded counter %d, want %d", got, len(kinds))
			}
		})
	}
}
