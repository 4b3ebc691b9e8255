package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	sinkPrefix = "/tenant-a"
	testApp    = CatchAllEUI
	testUUID   = "029998E06156CDD44523264B523115C1"
)

// sinkClient posts like app-connect's HTTP forwarder does.
type sinkClient struct {
	t    *testing.T
	base string
	http *http.Client
}

func newSinkServer(t *testing.T) (*Sink, *sinkClient) {
	t.Helper()
	s := NewSink(sinkPrefix)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, &sinkClient{t: t, base: srv.URL + sinkPrefix + "/api/v1/lorawan/", http: srv.Client()}
}

func (c *sinkClient) do(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/plain")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// up posts device i's uplinks with the given fcnts singly; batch posts them as one array.
func (c *sinkClient) up(f *Fleet, i int, fcnts ...uint32) []int {
	c.t.Helper()
	var codes []int
	for _, fc := range fcnts {
		code, _ := c.do("POST", f.Devices()[i].AppEUI+"/"+f.Devices()[i].DevEUI+"/up", uplinkWith(c.t, f, i, fc))
		codes = append(codes, code)
	}
	return codes
}

func (c *sinkClient) batch(f *Fleet, items ...[2]int) int {
	c.t.Helper()
	var arr []json.RawMessage
	for _, it := range items {
		arr = append(arr, uplinkWith(c.t, f, it[0], uint32(it[1])))
	}
	body, _ := json.Marshal(arr)
	code, _ := c.do("POST", testApp+"/up", body)
	return code
}

// uplinkWith is a generated uplink of device i with its fcnt forced.
func uplinkWith(t *testing.T, f *Fleet, i int, fcnt uint32) []byte {
	t.Helper()
	_, payload, _ := f.Uplink(i)
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	m["fcnt"], m["seqn"] = fcnt, fcnt
	b, _ := json.Marshal(m)
	return b
}

func TestSinkCounts(t *testing.T) {
	f := NewFleet(3, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 5)
	d0, d1 := f.Devices()[0].DevEUI, f.Devices()[1].DevEUI
	tests := []struct {
		name     string
		run      func(c *sinkClient)
		want     SinkStats
		expected map[string]uint32
		missing  int
		order    map[string][]uint32
	}{
		{
			name: "in order, nothing missing",
			run: func(c *sinkClient) {
				c.up(f, 0, 0, 1, 2)
				c.up(f, 1, 0, 1)
			},
			want:     SinkStats{Requests: 5, Uplinks: 5, Unique: 5},
			expected: map[string]uint32{d0: 3, d1: 2},
			order:    map[string][]uint32{d0: {0, 1, 2}, d1: {0, 1}},
		},
		{
			name:     "duplicates after a restart",
			run:      func(c *sinkClient) { c.up(f, 0, 0, 1, 2, 1, 2, 3) },
			want:     SinkStats{Requests: 6, Uplinks: 6, Unique: 4, Duplicates: 2},
			expected: map[string]uint32{d0: 4},
			order:    map[string][]uint32{d0: {0, 1, 2, 1, 2, 3}},
		},
		{
			name:     "out of order and missing",
			run:      func(c *sinkClient) { c.up(f, 0, 0, 3, 1) },
			want:     SinkStats{Requests: 3, Uplinks: 3, Unique: 3, OutOfOrder: 1},
			expected: map[string]uint32{d0: 5, d1: 2},
			missing:  2 + 2,
		},
		{
			name: "batch, joined, init, close, poll",
			run: func(c *sinkClient) {
				if code, b := c.do("POST", testApp+"/"+testUUID+"/init", []byte(`{"gateways_euis":["00-80-00-00-d0-00-01-ff"]}`)); code != 200 || string(b) != DefaultInitReply {
					c.t.Errorf("init: %d %s", code, b)
				}
				if code, _ := c.do("POST", f.Devices()[0].AppEUI+"/"+d0+"/joined", []byte(`{"appeui":"x"}`)); code != 200 {
					c.t.Errorf("joined: %d", code)
				}
				if code := c.batch(f, [2]int{0, 0}, [2]int{1, 0}, [2]int{0, 1}); code != 200 {
					c.t.Errorf("batch: %d", code)
				}
				if code, b := c.do("GET", testApp+"/down", []byte(`["`+d0+`"]`)); code != 200 || string(b) != "[]" {
					c.t.Errorf("down: %d %s", code, b)
				}
				if code, _ := c.do("POST", testApp+"/"+testUUID+"/close", nil); code != 200 {
					c.t.Errorf("close: %d", code)
				}
			},
			want:     SinkStats{Requests: 5, Uplinks: 3, Unique: 3, Joined: 1, Inits: 1, Closes: 1, BatchRequests: 1, Polls: 1},
			expected: map[string]uint32{d0: 2, d1: 1},
		},
		{
			name: "unknown paths and malformed uplinks are refused and not counted",
			run: func(c *sinkClient) {
				for _, r := range []struct {
					method, path, body string
					status             int
				}{
					{"POST", "x/y/z/w", "{}", 404},
					{"GET", testApp + "/" + testUUID + "/init", "", 405},
					{"POST", testApp + "/" + d0 + "/up", "not json", 400},
					{"POST", testApp + "/" + d0 + "/up", `{"deveui":"` + d0 + `"}`, 400},
					{"POST", testApp + "/up", `{"deveui":"` + d0 + `","fcnt":1}`, 400},
				} {
					if code, _ := c.do(r.method, r.path, []byte(r.body)); code != r.status {
						c.t.Errorf("%s %s %s: %d, want %d", r.method, r.path, r.body, code, r.status)
					}
				}
			},
			want:     SinkStats{Requests: 5, Failed: 5, Refused: 5},
			expected: map[string]uint32{d0: 2},
			missing:  2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newSinkServer(t)
			tc.run(c)
			got := s.Stats()
			got.FirstUplink, got.LastUplink = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("Stats\n got %+v\nwant %+v", got, tc.want)
			}
			if m := s.Missing(tc.expected); m != tc.missing {
				t.Errorf("Missing = %d, want %d", m, tc.missing)
			}
			for eui, want := range tc.order {
				if got := s.Received(eui); !slices.Equal(got, want) {
					t.Errorf("Received(%s) = %v, want %v", eui, got, want)
				}
			}
			if len(s.Recorded()) != tc.want.Requests {
				t.Errorf("Recorded %d requests", len(s.Recorded()))
			}
		})
	}
}

func TestSinkFaults(t *testing.T) {
	f := NewFleet(2, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 5)
	d0 := f.Devices()[0].DevEUI
	tests := []struct {
		name   string
		setup  func(s *Sink)
		run    func(c *sinkClient) []int
		codes  []int
		unique int
	}{
		{
			name:  "FailNext",
			setup: func(s *Sink) { s.FailNext(2, 503) },
			run:   func(c *sinkClient) []int { return c.up(f, 0, 0, 0, 0, 1) },
			codes: []int{503, 503, 200, 200}, unique: 2,
		},
		{
			name:  "FailFor",
			setup: func(s *Sink) { s.FailFor(100*time.Millisecond, 500) },
			run: func(c *sinkClient) []int {
				codes := c.up(f, 0, 0)
				time.Sleep(150 * time.Millisecond)
				return append(codes, c.up(f, 0, 0)...)
			},
			codes: []int{500, 200}, unique: 1,
		},
		{
			name:  "FailUplink single and in a batch",
			setup: func(s *Sink) { s.FailUplink(d0, 1, 400) },
			run: func(c *sinkClient) []int {
				codes := c.up(f, 0, 0, 1, 2)
				codes = append(codes, c.batch(f, [2]int{1, 0}, [2]int{0, 1}))
				return append(codes, c.batch(f, [2]int{1, 1}, [2]int{0, 3}))
			},
			codes: []int{200, 400, 200, 400, 200}, unique: 4, // d0 {0, 2, 3}, d1 {1}
		},
		{
			name:  "batch route off answers 404 like app.js",
			setup: func(s *Sink) { s.SetBatchRoute(false) },
			run: func(c *sinkClient) []int {
				return append([]int{c.batch(f, [2]int{0, 0}, [2]int{0, 1})}, c.up(f, 0, 0)...)
			},
			codes: []int{404, 200}, unique: 1,
		},
		{
			name: "custom init reply",
			setup: func(s *Sink) {
				s.SetInitReply(json.RawMessage(`{"queue_size":3}`))
			},
			run: func(c *sinkClient) []int {
				code, b := c.do("POST", testApp+"/"+testUUID+"/init", []byte(`{}`))
				if string(b) != `{"queue_size":3}` {
					c.t.Errorf("init reply %s", b)
				}
				return []int{code}
			},
			codes: []int{200},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newSinkServer(t)
			tc.setup(s)
			if got := tc.run(c); !slices.Equal(got, tc.codes) {
				t.Errorf("statuses %v, want %v", got, tc.codes)
			}
			if st := s.Stats(); st.Unique != tc.unique {
				t.Errorf("Unique = %d, want %d (%+v)", st.Unique, tc.unique, st)
			}
		})
	}
}

// The sink keeps every batch post's content, refused ones too: a joined event
// inside a batch is refused by the sink itself (Refused), unlike an injected
// fault (Failed only).
func TestSinkRecordsBatches(t *testing.T) {
	s, c := newSinkServer(t)
	f := NewFleet(2, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 5)
	d0 := f.Devices()[0].DevEUI
	if code := c.batch(f, [2]int{0, 0}, [2]int{1, 0}); code != 200 {
		t.Fatalf("batch: %d", code)
	}
	_, joined := f.Joined(0)
	mixed, _ := json.Marshal([]json.RawMessage{uplinkWith(t, f, 0, 1), joined})
	if code, _ := c.do("POST", testApp+"/up", mixed); code != 400 {
		t.Fatalf("batch with a joined event: %d, want 400", code)
	}
	s.FailUplink(d0, 2, 503)
	if code := c.batch(f, [2]int{0, 2}, [2]int{1, 1}); code != 503 {
		t.Fatalf("injected: %d", code)
	}
	if code, _ := c.do("POST", testApp+"/up", []byte(`not json`)); code != 400 {
		t.Fatalf("not json: %d", code)
	}
	got := s.Batches()
	if len(got) != 4 {
		t.Fatalf("%d batches recorded, want 4: %+v", len(got), got)
	}
	for i, want := range []struct {
		status, elements int
		err              string
	}{{200, 2, ""}, {400, 2, "uplink 1 lacks deveui or fcnt"}, {503, 2, ""}, {400, 0, "batch is not a JSON array"}} {
		b := got[i]
		if b.Status != want.status || len(b.Elements) != want.elements || !strings.Contains(b.Err, want.err) || (want.err == "") != (b.Err == "") {
			t.Errorf("batch %d: status %d, %d elements, err %q; want %d, %d, %q", i, b.Status, len(b.Elements), b.Err, want.status, want.elements, want.err)
		}
	}
	if !bytes.Equal(got[1].Elements[1], joined) {
		t.Errorf("element kept as %s, sent %s", got[1].Elements[1], joined)
	}
	if st := s.Stats(); st.Failed != 3 || st.Refused != 2 || st.BatchRequests != 1 {
		t.Errorf("stats %+v, want 3 failed of which 2 refused, 1 batch", st)
	}
	s.SetRecordLimit(1)
	if got := s.Batches(); len(got) != 1 || got[0].Status != 400 {
		t.Errorf("record limit 1 keeps %+v", got)
	}
}

func TestSinkDelayAndClientTimeout(t *testing.T) {
	s, c := newSinkServer(t)
	f := NewFleet(1, CatchAllEUI, "00-80-00-00-d0-00-01-ff", 1)
	s.SetDelay(300 * time.Millisecond)
	c.http.Timeout = 50 * time.Millisecond
	req, _ := http.NewRequest("POST", c.base+CatchAllEUI+"/"+f.Devices()[0].DevEUI+"/up", bytes.NewReader(uplinkWith(t, f, 0, 0)))
	if resp, err := c.http.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("no timeout")
	}
	time.Sleep(100 * time.Millisecond) // let the handler notice
	if st := s.Stats(); st.Unique != 0 {
		t.Errorf("an uplink whose answer never arrived was counted: %+v", st)
	}
	s.SetDelay(20 * time.Millisecond)
	c.http.Timeout = 0
	start := time.Now()
	if codes := c.up(f, 0, 0); codes[0] != 200 || time.Since(start) < 20*time.Millisecond {
		t.Errorf("delayed answer %v after %v", codes, time.Since(start))
	}
}

func TestSinkBodiesAndWait(t *testing.T) {
	s, c := newSinkServer(t)
	f := NewFleet(1, CatchAllEUI, "00-80-00-00-d0-00-01-ff", 1)
	eui := f.Devices()[0].DevEUI
	var sent [][]byte
	for i := range 3 {
		_, payload, _ := f.Uplink(0)
		sent = append(sent, payload)
		if code, _ := c.do("POST", CatchAllEUI+"/"+eui+"/up", payload); code != 200 {
			t.Fatalf("uplink %d: %d", i, code)
		}
	}
	got := s.Bodies(eui)
	if len(got) != 3 {
		t.Fatalf("%d bodies", len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i], sent[i]) {
			t.Errorf("body %d differs:\n%s\n%s", i, got[i], sent[i])
		}
	}
	if r := s.Recorded()[0]; r.Method != "POST" || r.Header.Get("Accept") != "text/plain" || r.Path != fmt.Sprintf("%s/api/v1/lorawan/%s/%s/up", sinkPrefix, CatchAllEUI, eui) {
		t.Errorf("recorded %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx, f.Expected()); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if err := s.Wait(ctx, map[string]uint32{eui: 4}); err == nil {
		t.Error("Wait for a missing uplink returned nil")
	}
	s.SetRecordLimit(1)
	if len(s.Recorded()) != 1 || len(s.Bodies(eui)) != 1 || !bytes.Equal(s.Bodies(eui)[0], sent[2]) {
		t.Errorf("record limit: %d requests, %d bodies", len(s.Recorded()), len(s.Bodies(eui)))
	}
}
