package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Keys of the SX1302 fixture that older gateways and the generator leave out.
var optionalUplinkKeys = []string{"jver", "tmms", "mid", "rssis", "foff", "name"}

// lnsFixtures holds the one copy of the LNS event fixtures (lnsbridge's).
var lnsFixtures = filepath.Join("..", "..", "lnsbridge", "testdata")

func fixtureKeys(t *testing.T, name string, drop ...string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lnsFixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, k := range drop {
		delete(m, k)
	}
	return slices.Sorted(maps.Keys(m))
}

// checkUplink verifies the LoRaWAN consistency rules of conduit.md §1.2 on one uplink.
func checkUplink(t *testing.T, payload []byte, mhdrTypes ...byte) map[string]any {
	t.Helper()
	var up struct {
		Opts    string `json:"opts"`
		Size    int    `json:"size"`
		FCnt    uint32 `json:"fcnt"`
		Mhdr    string `json:"mhdr"`
		Data    string `json:"data"`
		DevAddr string `json:"devaddr"`
		Adr     bool   `json:"adr"`
		Time    string `json:"time"`
	}
	if err := json.Unmarshal(payload, &up); err != nil {
		t.Fatalf("uplink %s: %v", payload, err)
	}
	mhdr, err := hex.DecodeString(up.Mhdr)
	if err != nil || len(mhdr) != 8 {
		t.Fatalf("mhdr %q: not 8 hex bytes", up.Mhdr)
	}
	if !slices.Contains(mhdrTypes, mhdr[0]) {
		t.Errorf("MHDR %#x, want one of %x", mhdr[0], mhdrTypes)
	}
	addr := fmt.Sprintf("%02x%02x%02x%02x", mhdr[4], mhdr[3], mhdr[2], mhdr[1])
	if addr != up.DevAddr {
		t.Errorf("mhdr DevAddr %s, devaddr %s", addr, up.DevAddr)
	}
	if got, want := int(mhdr[5]&0x0f), len(up.Opts)/2; got != want {
		t.Errorf("FOptsLen %d, opts %q", got, up.Opts)
	}
	if got := mhdr[5]&0x80 != 0; got != up.Adr {
		t.Errorf("FCtrl ADR %v, adr %v", got, up.Adr)
	}
	if got := binary.LittleEndian.Uint16(mhdr[6:]); got != uint16(up.FCnt) {
		t.Errorf("mhdr FCnt %d, fcnt %d", got, up.FCnt)
	}
	data, err := base64.StdEncoding.DecodeString(up.Data)
	if err != nil {
		t.Fatalf("data %q: %v", up.Data, err)
	}
	if len(data) != up.Size {
		t.Errorf("size %d, data is %d bytes", up.Size, len(data))
	}
	if up.Time != "" {
		ts, err := time.Parse(time.RFC3339Nano, up.Time)
		if err != nil || ts.Location() != time.UTC || len(up.Time) != len("2006-01-02T15:04:05.000000Z") {
			t.Errorf("time %q: not UTC RFC 3339 with microseconds (%v)", up.Time, err)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	return m
}

func TestFixturesPassTheConsistencyCheck(t *testing.T) {
	for _, name := range []string{"uplink-as923.json", "uplink-us915-sx1302.json"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(lnsFixtures, name))
			if err != nil {
				t.Fatal(err)
			}
			checkUplink(t, b, 0x40, 0x80)
		})
	}
}

func TestFleetUplinksAreShapedLikeTheLNS(t *testing.T) {
	want := fixtureKeys(t, "uplink-us915-sx1302.json", optionalUplinkKeys...)
	if as923 := fixtureKeys(t, "uplink-as923.json"); !slices.Equal(want, as923) {
		t.Fatalf("fixtures disagree: %v vs %v", want, as923)
	}
	const appEUI, gwEUI = "16EA76F6AB663D80", "00:80:00:00:D0:00:01:FF"
	f := NewFleet(5, appEUI, gwEUI, 42)
	for i, d := range f.Devices() {
		for n := range 40 {
			topic, payload, fcnt := f.Uplink(i)
			if fcnt != uint32(n) {
				t.Fatalf("device %d: fcnt %d, want %d", i, fcnt, n)
			}
			if want := "lora/16-ea-76-f6-ab-66-3d-80/" + d.DevEUI + "/up"; topic != want {
				t.Fatalf("topic %q, want %q", topic, want)
			}
			m := checkUplink(t, payload, 0x40)
			if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, want) {
				t.Fatalf("keys %v, want %v", got, want)
			}
			for k, v := range map[string]any{
				"deveui": d.DevEUI, "appeui": "16-ea-76-f6-ab-66-3d-80", "joineui": d.JoinEUI,
				"gweui": "00-80-00-00-d0-00-01-ff", "devaddr": d.DevAddr, "fcnt": float64(n), "seqn": float64(n),
				"modu": "LORA", "stat": float64(1),
			} {
				if m[k] != v {
					t.Errorf("device %d fcnt %d: %s = %v, want %v", i, n, k, m[k], v)
				}
			}
		}
	}
	if got := f.Expected(); len(got) != 5 || got[f.Devices()[4].DevEUI] != 40 {
		t.Errorf("Expected() = %v", got)
	}
}

func TestFleetIsDeterministicAndDistinct(t *testing.T) {
	tests := []struct {
		name string
		n    int
		seed int64
	}{
		{"one", 1, 1},
		{"small", 20, 7},
		{"bench size", 200, 7},
		{"large", 5000, -3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := NewFleet(tc.n, CatchAllEUI, "00-80-00-00-d0-00-01-ff", tc.seed), NewFleet(tc.n, CatchAllEUI, "00-80-00-00-d0-00-01-ff", tc.seed)
			if !slices.Equal(a.Devices(), b.Devices()) {
				t.Fatal("same seed, different fleets")
			}
			euis, addrs := map[string]bool{}, map[string]bool{}
			for _, d := range a.Devices() {
				if NormalizeEUI(d.DevEUI) != d.DevEUI || strings.Count(d.DevEUI, "-") != 7 {
					t.Fatalf("DevEUI %q not dashed lowercase", d.DevEUI)
				}
				if euis[d.DevEUI] || addrs[d.DevAddr] {
					t.Fatalf("duplicate DevEUI %s or DevAddr %s", d.DevEUI, d.DevAddr)
				}
				euis[d.DevEUI], addrs[d.DevAddr] = true, true
			}
		})
	}
}

func TestFleetJoinedAndMoved(t *testing.T) {
	f := NewFleet(2, "6c-4e-ef-66-f4-79-86-a6", "00-80-00-00-00-01-b5-fc", 1)
	d := f.Devices()[1]
	topic, payload := f.Joined(1)
	if topic != "lora/"+d.DevEUI+"/joined" {
		t.Errorf("joined topic %q", topic)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(m)), fixtureKeys(t, "joined.json"); !slices.Equal(got, want) {
		t.Errorf("joined keys %v, want %v", got, want)
	}
	if m["remote"] != false || m["gweui"] != "00-80-00-00-00-01-b5-fc" || m["appeui"] != d.AppEUI {
		t.Errorf("joined %s", payload)
	}
	topic, payload = f.Moved(1)
	if topic != "lora/6c-4e-ef-66-f4-79-86-a6/"+d.DevEUI+"/moved" {
		t.Errorf("moved topic %q", topic)
	}
	var gws []string
	if err := json.Unmarshal(payload, &gws); err != nil || len(gws) != 1 || gws[0] == f.GatewayEUI() {
		t.Errorf("moved payload %s (%v)", payload, err)
	}
}

func TestNormalizeEUI(t *testing.T) {
	for in, want := range map[string]string{
		"00:80:00:00:D0:00:42:6E": "00-80-00-00-d0-00-42-6e",
		"16EA76F6AB663D80":        "16-ea-76-f6-ab-66-3d-80",
		"ff-ff-ff-ff-ff-ff-ff-ff": CatchAllEUI,
		"not-an-EUI":              "not-an-eui",
	} {
		if got := NormalizeEUI(in); got != want {
			t.Errorf("NormalizeEUI(%q) = %q, want %q", in, got, want)
		}
	}
}
