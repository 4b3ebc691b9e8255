package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Status reports (README "Status report"): the hooks statusreport.Sender
// drives. A report goes out of band on the application's own connection,
// never through the outbox: not queued behind uplinks, not stored, not
// retried (the next one replaces it).

// errStatusNotConnected: the MQTT connection is down; the report is dropped
// rather than buffered by the client.
var errStatusNotConnected = errors.New("status report: the remote broker is not connected")

// PublishStatus sends one status report body: HTTP POST
// {prefix}/api/v1/lorawan/<APP>/<GW-UUID>/status; MQTT lorawan/<GW-UUID>/status
// (API 1.1, 1.1.1) or lorawan/<APP>/<GW-UUID>/status (1.0), QoS 1, retained;
// Azure IoT Hub a telemetry message with the property type=status.
func (a *Application) PublishStatus(ctx context.Context, body []byte) error {
	if sp, ok := a.tr.(statusPublisher); ok {
		return sp.publishStatus(ctx, body)
	}
	return fmt.Errorf("status report: application %s has no usable transport (%s)", a.Settings.EUI, cmp.Or(a.lastErr(), "none"))
}

// statusPublisher is a transport that sends status reports on its own connection.
type statusPublisher interface {
	publishStatus(ctx context.Context, body []byte) error
}

func (p httpPaths) status() string { return "/api/v1/lorawan/" + p.app + "/" + p.gw + "/status" }

// statusTopic is the status topic template of an API version.
func (tt topicTable) statusTopic() string {
	if tt.rawUUID {
		return "lorawan/{app}/{gw}/status"
	}
	return "lorawan/{gw}/status"
}

// azureStatusTopic is the device's telemetry topic with the message
// properties type=status and the JSON content type, so IoT Hub routing
// (`type = 'status'`) and consumers tell reports from uplinks.
func azureStatusTopic(deviceID string) string {
	return "devices/" + deviceID + "/messages/events/type=status&$.ct=" + url.QueryEscape("application/json") + "&$.ce=utf-8"
}

func (t *mqttTransport) publishStatus(ctx context.Context, body []byte) error {
	t.mu.Lock()
	c, initDone := t.client, t.initDone || t.azure
	t.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() || !initDone { // init goes first on a new application's connection
		return errStatusNotConnected
	}
	topic, retain := t.vars.fill(t.table.statusTopic()), true
	if t.azure {
		topic, retain = azureStatusTopic(t.clientID), false // IoT Hub keeps no retained messages
	}
	tok := c.Publish(topic, 1, retain, body)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("status report: publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("status report: publish %s: %w", topic, ctx.Err())
	}
}
