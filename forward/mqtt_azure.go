package forward

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// Azure IoT Hub defaults (conduit.md §7.6).
const (
	azureUplinkDefault   = "devices/%(client_id)s/messages/events/"
	azureDownlinkDefault = "devices/%(client_id)s/messages/devicebound/#"
	azureMethods         = "$iothub/methods/POST/#"
	azureMethodPrefix    = "$iothub/methods/POST/"
	azureMaxMethod       = 128 << 10
)

// setupAzure configures the IoT Hub mode: the device id is the client id,
// uplinks go to the events topic, C2D messages and direct methods are
// subscribed, and nothing else is published (no init, joined, moved, close,
// connected or will).
func (t *mqttTransport) setupAzure(s AppSettings) error {
	if s.Options.ClientID == "" {
		return errors.New("forward: Azure IoT Hub: client_id (the device id) is empty")
	}
	t.azure = true
	t.clientID = s.Options.ClientID
	// The default app's templates win (conduit.md §7.4 rule 1); for the
	// default app itself DefaultOptions are its own options.
	t.customUp = cmp.Or(s.DefaultOptions.UplinkTopic, s.Options.UplinkTopic, azureUplinkDefault)
	down := cmp.Or(s.DefaultOptions.DownlinkTopic, s.Options.DownlinkTopic, azureDownlinkDefault)
	keys := map[string]json.RawMessage{}
	t.addGatewayKeys(keys)
	f, err := fillTemplate(down, keys)
	if err != nil {
		return fmt.Errorf("forward: Azure IoT Hub: downlinkTopic: %w", err)
	}
	if _, err := fillTemplate(t.customUp, keys); err != nil && !errors.Is(err, errTemplateKey) {
		return fmt.Errorf("forward: Azure IoT Hub: uplinkTopic: %w", err)
	}
	t.subs[f] = &subEntry{event: "down", custom: true}
	t.subs[azureMethods] = &subEntry{event: "method"}
	return nil
}

// azureMessages maps a row in IoT Hub mode: uplinks to the events topic;
// joined and moved are not published (IoT Hub would drop the client).
func (t *mqttTransport) azureMessages(r cache.Row) ([]pubMsg, error) {
	if rowKind(r) != lnsbridge.KindUp {
		return nil, nil
	}
	body := rowBody(r, t.encodeHex)
	topic, ok := t.customUplink(body)
	if !ok {
		return nil, errors.New("uplinkTopic template not applicable to this uplink (no standard topic under Azure)")
	}
	return []pubMsg{{topic, body}}, nil
}

// azureMethod answers a direct method on $iothub/methods/res/0/?$rid=<rid>
// (status 0 as the original; errors in the body; every reply carries the rid).
func (t *mqttTransport) azureMethod(ctx context.Context, in inbound) string {
	method, rid, ok := parseAzureMethod(in.topic)
	if !ok {
		t.log.Warn("direct method topic not understood; ignored", "topic", in.topic)
		return "ignored: method topic"
	}
	var reply map[string]any
	switch {
	case len(in.payload) > azureMaxMethod:
		reply = methodError("payload larger than 128 KB")
	case method == "downlink":
		reply = t.azureDownlink(ctx, in.payload)
	case isRequestKind(method):
		// Served by the request worker, through the same code path as the
		// request topics (conduit.md §7.6, §9).
		return t.enqueueRequest(ctx, requestJob{kind: method, from: in.topic, payload: in.payload, azure: true, rid: rid})
	default:
		reply = methodError("unknown method " + method)
	}
	reply["rid"] = rid
	body, _ := json.Marshal(reply)
	t.mu.Lock()
	c := t.client
	t.mu.Unlock()
	if c != nil {
		c.Publish("$iothub/methods/res/0/?$rid="+url.QueryEscape(rid), 1, false, body)
	}
	return "method " + method + " " + string(body)
}

func methodError(reason string) map[string]any {
	return map[string]any{"result": "command rejected: " + reason, "error": reason}
}

// azureDownlink schedules the downlink of the direct method downlink.
func (t *mqttTransport) azureDownlink(ctx context.Context, payload []byte) map[string]any {
	d := t.down
	dl, err := d.validate(payload, "")
	if err != nil {
		d.count("refused")
		t.log.Warn("downlink refused", "from", "direct method", "reason", err.Error())
		return methodError(err.Error())
	}
	if reason := d.refuseForeign(dl.DevEUI, "direct method"); reason != "" {
		return methodError(reason)
	}
	if d.sink == nil {
		d.count("failed")
		return methodError("no local broker")
	}
	if err := d.sink.Publish(ctx, dl.DevEUI, dl.Payload); err != nil {
		d.count("failed")
		return methodError(err.Error())
	}
	d.count("sent")
	return map[string]any{"result": "queued", "deveui": dl.DevEUI}
}

// parseAzureMethod reads $iothub/methods/POST/<method>/?$rid=<rid>.
func parseAzureMethod(topic string) (method, rid string, ok bool) {
	rest, found := strings.CutPrefix(topic, azureMethodPrefix)
	if !found {
		return "", "", false
	}
	method, query, found := strings.Cut(rest, "/?")
	if !found || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", false
	}
	rid = q.Get("$rid")
	return method, rid, rid != ""
}
