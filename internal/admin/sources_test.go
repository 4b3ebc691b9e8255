package admin

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/forward"
	"github.com/lorawan-gateway/app-connect/joinclient"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
	"github.com/lorawan-gateway/app-connect/statusreport"
)

// The daemon's parts, each with distinct figures so a field read from the
// wrong place shows.
type (
	fakeLocal   struct{}
	fakeIntake  struct{}
	fakeStorage struct{}
	fakeQueues  map[string]cache.AppStats
	fakeApps    []*forward.Application
	fakeProxy   struct{}
	fakeOldest  map[string]time.Time
)

func (fakeLocal) Stats() lnsbridge.LocalStats {
	return lnsbridge.LocalStats{Received: 11, Malformed: 2, Connected: true}
}
func (fakeIntake) Stats() forward.IntakeStats {
	return forward.IntakeStats{Received: 99, Stored: 10, Acked: 9, Unrouted: 3, Ignored: 4, Commits: 5}
}
func (fakeStorage) Storage() cache.StorageStatus {
	return cache.StorageStatus{State: "low", DBBytes: 7}
}
func (q fakeQueues) Stats(app string) cache.AppStats    { return q[app] }
func (a fakeApps) Applications() []*forward.Application { return a }
func (fakeProxy) Stats() *joinclient.ProxyStats         { return &joinclient.ProxyStats{InFlight: 6} }
func (o fakeOldest) OldestQueued(_ context.Context, app string) (time.Time, bool, error) {
	at, ok := o[app]
	if !ok {
		return time.Time{}, false, errors.New("no such application")
	}
	return at, true, nil
}

func testApp(t *testing.T, eui, name string) *forward.Application {
	t.Helper()
	c := &forward.Counters{}
	c.Queued.Store(20)
	c.Forwarded.Store(17)
	c.Failures.Store(8)
	a, err := forward.NewApplication(forward.AppSettings{EUI: eui, Name: name, APIVersion: config.API10, URL: "http://127.0.0.1:1/"},
		forward.Identity{}, nil, nil, nil, c, discard)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// NewSources maps every part's figures to the status's names.
func TestNewSources(t *testing.T) {
	const eui = "01-02-03-04-05-06-07-08"
	st := NewState("v1", nil)
	st.Attach(NewSources(Parts{
		Local: fakeLocal{}, Intake: fakeIntake{}, Storage: fakeStorage{}, JoinProxy: fakeProxy{},
		Queues:       fakeQueues{eui: {Rows: 3, Bytes: 300, Dropped: 1, DeadLettered: 2}},
		Applications: fakeApps{testApp(t, eui, "lens-1")},
	}))
	d := st.Status()
	if d.Local != (LocalStatus{Connected: true, EventsReceived: 11, Malformed: 2}) {
		t.Errorf("local %+v", d.Local)
	}
	if d.Intake != (IntakeStatus{Stored: 10, Acknowledged: 9, Unrouted: 3, Ignored: 4, Commits: 5}) {
		t.Errorf("intake %+v", d.Intake)
	}
	if d.Storage.State != "low" || d.Storage.DBBytes != 7 || d.JoinProxy == nil || d.JoinProxy.InFlight != 6 {
		t.Errorf("storage %+v join proxy %+v", d.Storage, d.JoinProxy)
	}
	want := AppStatus{EUI: eui, Name: "lens-1", State: forward.StateStarting, EventsQueued: 20, EventsForwarded: 17,
		EventsDropped: 1, EventsDeadLettered: 2, DeliveryFailures: 8, QueueRows: 3, QueueBytes: 300}
	if len(d.Applications) != 1 || d.Applications[0] != want {
		t.Errorf("applications %+v, want %+v", d.Applications, want)
	}

	// No parts: every section reads as zero.
	st.Attach(NewSources(Parts{}))
	if d := st.Status(); d.Local != (LocalStatus{}) || len(d.Applications) != 0 || d.JoinProxy != nil {
		t.Errorf("no parts: %+v", d)
	}
}

// The status report carries /status's figures: joins and downlinks by
// result, each application's counters and the age of its oldest queued row.
func TestReportSnapshot(t *testing.T) {
	d := Status{
		Local:  LocalStatus{Connected: true, EventsReceived: 11, Malformed: 2},
		Intake: IntakeStatus{Unrouted: 3},
		Joins:  []JoinCount{{"a/js", "Success", 2}, {"b/js", "Success", 1}, {"b/js", "timeout", 4}},
		Applications: []AppStatus{
			{EUI: "queued", Name: "q", State: "retrying", LastError: "503", EventsQueued: 9, EventsForwarded: 5, DeliveryFailures: 7,
				EventsDropped: 1, EventsDeadLettered: 2, QueueRows: 4, QueueBytes: 400},
			{EUI: "empty", State: "up"},
		},
	}
	oldest := fakeOldest{"queued": time.Now().Add(-time.Minute), "empty": time.Now().Add(-time.Hour)}
	s := reportSnapshot(context.Background(), d, oldest, true)
	if s.LocalBroker != (statusreport.LocalBroker{Connected: true, Received: 11, Malformed: 2}) || !s.LNS.Available || s.Unrouted != 3 {
		t.Errorf("snapshot %+v", s)
	}
	if s.Joins["Success"] != 3 || s.Joins["timeout"] != 4 || len(s.Joins) != 2 {
		t.Errorf("joins %v", s.Joins)
	}
	if len(s.Applications) != 2 {
		t.Fatalf("applications %+v", s.Applications)
	}
	q := s.Applications[0]
	if q.EUI != "queued" || q.State != "retrying" || q.LastError != "503" || q.Received != 9 || q.Forwarded != 5 || q.Failures != 7 ||
		q.Dropped != 1 || q.DeadLettered != 2 || q.QueueRows != 4 || q.QueueBytes != 400 {
		t.Errorf("queued application %+v", q)
	}
	if q.OldestQueuedSeconds < 59 || q.OldestQueuedSeconds > 600 {
		t.Errorf("oldest queued %v s, want about 60", q.OldestQueuedSeconds)
	}
	if e := s.Applications[1]; e.OldestQueuedSeconds != 0 {
		t.Errorf("an empty queue has an age: %+v", e)
	}
}
