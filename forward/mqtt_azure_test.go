package forward

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

func TestMQTTAzure(t *testing.T) {
	mq := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	obs := newObserver(t, mq.URL(), "observer")
	r := startMQTTApp(t, AppSettings{EUI: config.CatchAll, APIVersion: config.API111, URL: "mqtt://" + mq.Addr(),
		Options: config.AppOptions{CloudService: "AZURE", ClientID: "gw-1"}}, nil, nil)
	waitConnected(t, r.app, true)
	time.Sleep(200 * time.Millisecond) // subscriptions are in place once connected
	r.add(t, "joined", tAppEUI, tDevEUI, tJoined)
	r.add(t, "up", tAppEUI, tDevEUI, tUplink)
	r.add(t, "moved", tAppEUI, tDevEUI, tMoved)
	obs.wait(t, "uplink", has("devices/gw-1/messages/events/"))
	waitRows(t, r.ob, config.CatchAll, 0)
	dl := `{"appeui":"` + tAppEUI + `","deveui":"` + tDevEUI + `","data":"QA=="}`
	obs.publish(t, "devices/gw-1/messages/devicebound/%24.to=x", dl, false)
	if got := r.sink.take(t, 1); !localEqual(got[0], "down "+tDevEUI+" "+dl) {
		t.Fatalf("C2D: %v", got)
	}
	obs.publish(t, "devices/gw-1/messages/devicebound/x", `{"data":"QA=="}`, false) // deveui required
	r.sink.none(t, 150*time.Millisecond)
	obs.publish(t, "$iothub/methods/POST/downlink/?$rid=7", `{"deveui":"`+tDevEUI+`","data":"QA=="}`, false)
	r.sink.take(t, 1)
	obs.publish(t, "$iothub/methods/POST/lora_req/?$rid=8", `{"command":"x"}`, false)
	obs.publish(t, "$iothub/methods/POST/nope/?$rid=9", `{}`, false)
	obs.publish(t, "$iothub/methods/POST/downlink/?$rid=10", `{"deveui":"`+tDevEUI+`","data":"%%"}`, false)
	obs.wait(t, "replies", has("$iothub/methods/res/0/?$rid=10"))
	r.stop()
	time.Sleep(100 * time.Millisecond)
	ms := obs.all()
	replies := map[string]map[string]any{}
	var topics []string
	for _, m := range ms {
		if strings.HasPrefix(m.Topic, "$iothub/methods/res/") {
			var v map[string]any
			if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
				t.Fatalf("reply %s", m.Payload)
			}
			replies[m.Topic] = v
			continue
		}
		topics = append(topics, m.Topic)
	}
	// Only the uplink and the cloud's own messages: no init, joined, moved, connected, close, will.
	for _, tp := range topics {
		if !strings.HasPrefix(tp, "devices/gw-1/messages/") && !strings.HasPrefix(tp, "$iothub/methods/POST/") {
			t.Errorf("unexpected publish on %s", tp)
		}
	}
	for rid, want := range map[string]string{"7": "queued", "8": "not enabled", "9": "unknown method nope", "10": "data is not base64"} {
		v := replies["$iothub/methods/res/0/?$rid="+rid]
		if v == nil || v["rid"] != rid || !strings.Contains(fmt.Sprint(v["result"], v["error"]), want) {
			t.Errorf("reply to %s: %v, want %q", rid, v, want)
		}
	}
	if _, err := NewApplication(AppSettings{EUI: config.CatchAll, URL: "mqtts://hub.azure-devices.net", Options: config.AppOptions{CloudService: "AZURE"}},
		tIdentity, nil, nil, nil, nil, testLogger(t, nil)); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("empty client_id: %v", err)
	}
}
