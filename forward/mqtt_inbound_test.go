package forward

import (
	"context"
	"strings"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
)

// The inbound dispatch never panics, and whatever it publishes locally is a
// valid downlink for a well-formed DevEUI.
func FuzzMQTTDispatch(f *testing.F) {
	for _, s := range []struct {
		topic, payload string
		retained       bool
	}{
		{"lorawan/" + tAppEUI + "/" + tDevEUI + "/down", `{"data":"QA=="}`, false},
		{"lorawan/" + tAppEUI + "/" + tDevEUI + "/clear", ``, true},
		{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/down", `{"deveui":"0011223344556677","data":"QA==","port":1}`, false},
		{"lorawan/" + tAppEUI + "/" + tUUIDRaw + "/clear", `{"deveui":5}`, false},
		{"acme/" + tDevEUI + "/cmd/x", `{"data":"QA==","ack":true}`, false},
		{"acme/x/cmd/y", `[1,2]`, false},
		{"#", "\x00", true},
		{"$iothub/methods/POST/downlink/?$rid=1", `{"deveui":"` + tDevEUI + `","data":"QA=="}`, false},
		{"$iothub/methods/POST/api_req/?$rid=x&y=%", `{}`, false},
		{"devices/gw-1/messages/devicebound/a", `{"deveui":"` + tDevEUI + `","data":"QA=="}`, false},
	} {
		f.Add(s.topic, []byte(s.payload), s.retained)
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte, retained bool) {
		sink := &fakeSink{}
		a, err := NewApplication(AppSettings{EUI: tAppEUI, APIVersion: config.API10, URL: "mqtt://127.0.0.1:1",
			Options: config.AppOptions{DownlinkTopic: "acme/%(deveui)s/cmd/+"}}, tIdentity, nil, sink, nil, nil, testLogger(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		mqttOf(a).subscribeDevice(tDevEUI, tAppEUI, false)
		mqttOf(a).dispatch(context.Background(), inbound{topic: topic, payload: payload, retained: retained})
		az, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtts://127.0.0.1:1",
			Options: config.AppOptions{CloudService: "AZURE", ClientID: "gw-1"}}, tIdentity, nil, sink, nil, nil, testLogger(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		mqttOf(az).dispatch(context.Background(), inbound{topic: topic, payload: payload, retained: retained})
		for _, g := range sink.got {
			parts := strings.SplitN(g, " ", 3)
			if _, err := config.NormalizeEUI(parts[1]); err != nil || parts[1] != strings.ToLower(parts[1]) {
				t.Fatalf("local publish for DevEUI %q", parts[1])
			}
			if parts[0] == "down" {
				if _, err := ValidateDownlink([]byte(parts[2]), parts[1], false, MaxDownlinkPayload); err != nil {
					t.Fatalf("invalid downlink published: %s: %v", parts[2], err)
				}
			}
		}
	})
}
