package joinclient_test

import (
	"context"
	"errors"
	"testing"

	"github.com/lorawan-gateway/app-connect/internal/jstest"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

func TestRouteFixtures(t *testing.T) {
	repo, err := jc.LoadRepository("testdata/interop", jc.RepositoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		comp    jc.Component
		joinEUI string
		want    string
		prefix  string
	}{
		{"components split: ns", jc.ComponentNS, "EC656E0000000001", "tti/ns-js", "EC656E0000000000/24"},
		{"components split: as", jc.ComponentAS, "EC656E0000000001", "tti/as-js", "EC656E0000000000/24"},
		{"most specific wins over catch-all", jc.ComponentNS, "0016C0FFFFFFFFFF", "semtech/js", "0016C00000000000/24"},
		{"both components when omitted", jc.ComponentAS, "0016C00000000001", "semtech/js", "0016C00000000000/24"},
		{"catch-all", jc.ComponentNS, "1234567812345678", "fallback/js", "0000000000000000/0"},
		{"catch-all for as", jc.ComponentAS, "EC656F0000000000", "fallback/js", "0000000000000000/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eui, _ := jc.ParseEUI64(tc.joinEUI)
			p, js := repo.Route(tc.comp, eui)
			if len(js) != 1 || js[0].Name != tc.want || p.String() != tc.prefix {
				t.Fatalf("route %s → %v", p, js)
			}
		})
	}
}

func TestRouteMostSpecificAndNoRoute(t *testing.T) {
	_, a := startStrict(t, jstest.StrictConfig{})
	_, b := startStrict(t, jstest.StrictConfig{})
	repo := testRepo(t, jc.RepositoryOptions{},
		jsSpec{name: "wide", url: a.URL, protocol: "BI1.0", prefixes: []string{"0011000000000000/16"}},
		jsSpec{name: "narrow", url: b.URL, protocol: "BI1.0", prefixes: []string{"0011223300000000/32"}, components: []string{"ns"}},
	)
	r := jc.NewRouter(repo, clientOpts())
	ctx := context.Background()
	_, js, err := r.JoinReq(ctx, jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
	if err != nil || js.Name != "narrow" {
		t.Fatalf("js %v err %v", js, err)
	}
	// The narrow entry is ns only: AppSKeyReq goes to the wide one.
	if _, js := repo.Route(jc.ComponentAS, jc.EUI64(katJoinEUI)); len(js) != 1 || js[0].Name != "wide" {
		t.Fatalf("as route %v", js)
	}
	other, _ := jc.ParseEUI64("0012000000000000")
	_, js, err = r.JoinReq(ctx, other, joinReq(t, katDevice, 2))
	if js != nil || !errors.Is(err, jc.ErrNoRoute) || !errors.Is(err, jc.ErrUnknownReceiver) || jc.ResultOf(err) != "no_route" {
		t.Fatalf("no route: js %v err %v", js, err)
	}
}

func TestRace64(t *testing.T) {
	slowFailing, slow := startStrict(t, jstest.StrictConfig{Block: true})
	_, fast := startStrict(t, jstest.StrictConfig{})
	unknown, unknownPeer := startStrict(t, jstest.StrictConfig{Result: "UnknownDevEUI"})
	down := jstest.Serve(t, nil)
	downURL := down.URL
	down.Close()

	t.Run("slow failing and fast succeeding: first success wins", func(t *testing.T) {
		repo := testRepo(t, jc.RepositoryOptions{},
			jsSpec{name: "slow", url: slow.URL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}},
			jsSpec{name: "fast", url: fast.URL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}},
		)
		r := jc.NewRouter(repo, clientOpts())
		ans, js, err := r.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
		if err != nil || js.Name != "fast" {
			t.Fatalf("js %v err %v", js, err)
		}
		if _, err := katDevice.VerifyJoinAccept(ans.PHYPayload, 1); err != nil {
			t.Fatal(err)
		}
		_ = slowFailing
	})
	t.Run("none succeeds: the BI answer beats the transport error", func(t *testing.T) {
		repo := testRepo(t, jc.RepositoryOptions{},
			jsSpec{name: "down", url: downURL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}},
			jsSpec{name: "unknown", url: unknownPeer.URL, protocol: "BI1.0", prefixes: []string{"0011223300000001/64"}},
		)
		r := jc.NewRouter(repo, clientOpts())
		_, js, err := r.JoinReq(context.Background(), jc.EUI64(katJoinEUI), joinReq(t, katDevice, 1))
		if !errors.Is(err, jc.ErrNotFound) || js.Name != "unknown" {
			t.Fatalf("js %v err %v", js, err)
		}
		if len(unknown.Requests()) != 1 {
			t.Fatal("unknown server not asked")
		}
	})
}
