package forward

import (
	"encoding/json"
	"testing"

	"github.com/lorawan-gateway/app-connect/config"
)

// Templates get the gateway's serial as gwserial (uplinks and subscriptions).
func TestTemplateGatewayKeys(t *testing.T) {
	app, err := NewApplication(AppSettings{EUI: config.CatchAll, APIVersion: "1.1", URL: "mqtt://127.0.0.1:1",
		Options: config.AppOptions{DownlinkTopic: "acme/%(gwserial)s/%(deveui)s/down"}, Delivery: config.Default().Delivery},
		Identity{UUIDRaw: "029998E06156CDD44523264B523115C1", UUID: "029998e0-6156-cdd4-4523-264b523115c1", Serial: "19186550"},
		nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]json.RawMessage{}
	app.mqtt.addGatewayKeys(keys)
	if string(keys["gwserial"]) != `"19186550"` || string(keys["gwuuid"]) != `"029998e0-6156-cdd4-4523-264b523115c1"` {
		t.Fatalf("keys %s %s", keys["gwserial"], keys["gwuuid"])
	}
	fs := app.mqtt.deviceFilters("00-11-00-11-00-11-00-11", "6c-4e-ef-66-f4-79-86-a6")
	if _, ok := fs["acme/19186550/00-11-00-11-00-11-00-11/down"]; !ok {
		t.Fatalf("filters %v", fs)
	}
}
