package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/jstest"
	"github.com/lorawan-gateway/app-connect/joinclient"
)

// startAppConnectProxy serves app-connect's join proxy (package joinclient, built from a
// config.Join as app-connect builds it) routing every JoinEUI to jsURL.
func startAppConnectProxy(t *testing.T, jsURL string) string {
	t.Helper()
	u, err := url.Parse(jsURL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config.yml", "join-servers:\n  - file: './sim-js.yml'\n    components: ['ns']\n    join-euis: ['0000000000000000/0']\n")
	write("sim-js.yml", fmt.Sprintf("scheme: 'http'\nfqdn: '%s'\nport: %s\nprotocol: 'BI1.0'\n", u.Hostname(), u.Port()))
	jc := config.DefaultJoin()
	jc.Enabled, jc.NetID, jc.InteropDir = true, DefaultNetID, dir
	svc, err := joinclient.FromConfig(jc, joinclient.Options{UserAgent: "sim-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := joinclient.Listen(ctx, "127.0.0.1:0")
	jstest.RequirePeer(t, "loopback listener", err)
	srv := joinclient.NewServer(svc.Proxy)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
		svc.Router.Close()
	})
	return "http://" + ln.Addr().String() + "/"
}

func TestJoinDevicesDeterministic(t *testing.T) {
	f := NewFleet(3, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 7)
	a, b := JoinDevices(f, 7, true), JoinDevices(NewFleet(3, "16ea76f6ab663d80", "008000 00d00001ff", 7), 7, true)
	other := JoinDevices(f, 8, true)
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("device %d: keys differ between two fleets of one seed", i)
		}
		if a[i].NwkKey == other[i].NwkKey || a[i].NwkKey == a[i].AppKey {
			t.Errorf("device %d: keys not distinct", i)
		}
		if i > 0 && a[i].NwkKey == a[i-1].NwkKey {
			t.Errorf("devices %d and %d share a key", i-1, i)
		}
		if got := formatEUI(a[i].DevEUI[:]); got != f.Devices()[i].DevEUI {
			t.Errorf("DevEUI %s, fleet has %s", got, f.Devices()[i].DevEUI)
		}
	}
	if ten := JoinDevices(f, 7, false); ten[0].MAC11 || ten[0].AppKey != ten[0].NwkKey || ten[0].NwkKey != a[0].NwkKey {
		t.Error("LoRaWAN 1.0 device keys")
	}
}

// Both roles against each other and through app-connect's proxy, for LoRaWAN 1.0.3 devices
// behind a BI 1.0 network server and 1.1 devices behind a BI 1.1 one.
func TestJoinRoles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mac11 bool
		nsid  string
		proxy bool
	}{
		{"direct to the Join Server, LoRaWAN 1.0.3", false, "", false},
		{"through the proxy, BI1.0, LoRaWAN 1.0.3", false, "", true},
		{"through the proxy, BI1.1, LoRaWAN 1.1", true, "70B3D5FFFE000001", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			fleet := NewFleet(5, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 3)
			devs := JoinDevices(fleet, 3, tc.mac11)
			js, err := NewJoinServer(devs, JoinServerOptions{FirstJoinNonce: 10})
			if err != nil {
				t.Fatal(err)
			}
			peer := jstest.Serve(t, js)
			target := peer.URL
			if tc.proxy {
				target = startAppConnectProxy(t, peer.URL)
			}
			ns, err := NewNetworkServer(fleet, devs, NetworkServerOptions{NSID: tc.nsid})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := ns.Uplink(0); err == nil {
				t.Fatal("uplink before the join accepted")
			}
			if _, _, err := ns.Joined(0); err == nil {
				t.Fatal("joined before the join accepted")
			}
			n, err := ns.JoinAll(ctx, target, 3)
			if err != nil || n != fleet.Len() {
				t.Fatalf("JoinAll: %d joined: %v", n, err)
			}
			s0, _ := ns.Session(0)
			if s0.DevNonce != 1 || s0.Keys.JoinNonce != 10 {
				t.Fatalf("first join: DevNonce %d JoinNonce %d", s0.DevNonce, s0.Keys.JoinNonce)
			}
			s1, err := ns.Join(ctx, target, 0) // a re-join: next DevNonce, new session
			if err != nil {
				t.Fatal(err)
			}
			if s1.DevNonce != 2 || s1.Keys.JoinNonce != 11 || s1.Keys.AppSKey == s0.Keys.AppSKey {
				t.Fatalf("re-join: DevNonce %d JoinNonce %d, AppSKey changed %v", s1.DevNonce, s1.Keys.JoinNonce, s1.Keys.AppSKey != s0.Keys.AppSKey)
			}
			if got := int(js.Requests()); got != fleet.Len()+1 {
				t.Fatalf("Join Server got %d requests, want %d", got, fleet.Len()+1)
			}
			for i, d := range fleet.Devices() {
				topic, payload, err := ns.Joined(i)
				if err != nil || topic != "lora/"+d.DevEUI+"/joined" || !json.Valid(payload) {
					t.Fatalf("joined %d: %s %s %v", i, topic, payload, err)
				}
				for want := range uint32(3) {
					topic, payload, fcnt, err := ns.Uplink(i)
					if err != nil || fcnt != want || topic != "lora/"+d.AppEUI+"/"+d.DevEUI+"/up" {
						t.Fatalf("uplink %d/%d: %s fcnt %d: %v", i, want, topic, fcnt, err)
					}
					var ev struct{ DevAddr string }
					if err := json.Unmarshal(payload, &ev); err != nil || ev.DevAddr != d.DevAddr {
						t.Fatalf("uplink DevAddr %q, fleet %s: %v", ev.DevAddr, d.DevAddr, err)
					}
				}
			}
		})
	}
}

// Refusals come back as *JoinError with the Join Server's result code.
func TestJoinRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fleet := NewFleet(2, "16-ea-76-f6-ab-66-3d-80", "00-80-00-00-d0-00-01-ff", 4)
	devs := JoinDevices(fleet, 4, false)
	js, err := NewJoinServer(devs[:1], JoinServerOptions{}) // the Join Server knows device 0 only
	if err != nil {
		t.Fatal(err)
	}
	target := startAppConnectProxy(t, jstest.Serve(t, js).URL)

	wrong := append([]jstest.Device(nil), devs...)
	wrong[0].NwkKey[0] ^= 0xff // the device and the network server disagree with the Join Server
	ns, err := NewNetworkServer(fleet, wrong, NetworkServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range []string{"MICFailed", "UnknownDevEUI"} {
		_, err := ns.Join(ctx, target, i)
		var je *JoinError
		if !errors.As(err, &je) || je.ResultCode != code || je.DevEUI != fleet.Devices()[i].DevEUI {
			t.Fatalf("device %d: %v, want %s", i, err, code)
		}
		if _, ok := ns.Session(i); ok {
			t.Fatalf("device %d has a session after a refusal", i)
		}
	}
	if _, err := NewNetworkServer(fleet, devs[:1], NetworkServerOptions{}); err == nil {
		t.Fatal("fewer keys than devices accepted")
	}
	if _, err := NewNetworkServer(fleet, devs, NetworkServerOptions{NetID: "xyz"}); err == nil {
		t.Fatal("bad NetID accepted")
	}
}
