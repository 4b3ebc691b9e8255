package joinclient_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

// The most specific prefix wins whatever the order of the entries, and alone:
// a wider entry is never raced against a narrower one.
func TestRouteMostSpecificWhateverTheOrder(t *testing.T) {
	wide := jsSpec{name: "wide", url: "http://127.0.0.1:1", protocol: "BI1.0", prefixes: []string{"0011000000000000/16"}}
	narrow := jsSpec{name: "narrow", url: "http://127.0.0.1:2", protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}}
	for name, specs := range map[string][]jsSpec{"wide first": {wide, narrow}, "narrow first": {narrow, wide}} {
		t.Run(name, func(t *testing.T) {
			repo := testRepo(t, jc.RepositoryOptions{}, specs...)
			prefix, js := repo.Route(jc.ComponentNS, jc.EUI64(katJoinEUI))
			var names []string
			for _, s := range js {
				names = append(names, s.Name)
			}
			if len(js) != 1 || js[0].Name != "narrow" || prefix.Length != 32 {
				t.Fatalf("route %v (prefix /%d), want narrow alone", names, prefix.Length)
			}
		})
	}
}

// When no /64 server succeeds, the Backend Interfaces answer is reported even
// when a transport error came first (here: a refused connection, while the
// answering server takes its time).
func TestRaceReportsTheBIAnswerOverAnEarlierTransportError(t *testing.T) {
	unknown := jstest.NewStrict(jstest.NewBrocaar(t, jstest.BrocaarConfig{Devices: []jstest.Device{katDevice}}), jstest.StrictConfig{Result: "UnknownDevEUI"})
	late := jstest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // the refused connection fails long before
		unknown.ServeHTTP(w, r)
	}))
	down := jstest.Serve(t, nil)
	downURL := down.URL
	down.Close()
	repo := testRepo(t, jc.RepositoryOptions{},
		jsSpec{name: "down", url: downURL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}},
		jsSpec{name: "late", url: late.URL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}},
	)
	_, js, err := jc.NewRouter(repo, clientOpts()).JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
	if !errors.Is(err, jc.ErrNotFound) || js == nil || js.Name != "late" {
		t.Fatalf("js %v err %v, want the late server's UnknownDevEUI", js, err)
	}
}
