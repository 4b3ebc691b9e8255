package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

// dispatchLoop handles received messages in arrival order until ctx ends.
func (t *mqttTransport) dispatchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-t.inbox:
			t.dispatch(ctx, in)
			if in.ack != nil && ctx.Err() == nil {
				in.ack()
			}
		}
	}
}

// dispatch handles one received message (conduit.md §7.5): a retained one is
// cleared first; down → downlink validation → local publish; clear → local
// clear. It returns what was done, for tests and logs.
func (t *mqttTransport) dispatch(ctx context.Context, in inbound) string {
	d := t.down
	now := time.Now()
	t.mu.Lock()
	for topic, at := range t.cleared {
		if now.Sub(at) > mqttClearIgnore {
			delete(t.cleared, topic)
		}
	}
	if len(in.payload) == 0 && !in.retained {
		if _, ok := t.cleared[in.topic]; ok {
			// The broker hands our clearing publish back: ignore it once.
			delete(t.cleared, in.topic)
			t.mu.Unlock()
			return "ignored: own clear"
		}
	}
	e, ok := t.lookupLocked(in.topic)
	c := t.client
	if t.azure {
		c = nil // IoT Hub has no retained messages, and publishing to its topics is not allowed
	}
	if in.retained && len(in.payload) > 0 && c != nil {
		t.cleared[in.topic] = now
	}
	t.mu.Unlock()
	if in.retained && len(in.payload) > 0 && c != nil {
		c.Publish(in.topic, 1, true, []byte{})
	}
	if !ok {
		t.log.Debug("message on a topic no subscription explains; ignored", "topic", in.topic)
		return "ignored: unknown topic"
	}
	switch e.event {
	case "method":
		return t.azureMethod(ctx, in)
	case RequestAPI, RequestLora, RequestLog:
		return t.enqueueRequest(ctx, requestJob{kind: e.event, from: in.topic, payload: in.payload})
	case "clear":
		dev, err := clearDevEUI(in.payload, e.devEUI)
		if err != nil {
			d.count("refused")
			t.log.Warn("clear refused", "topic", in.topic, "reason", err.Error())
			return "refused: " + err.Error()
		}
		if reason := d.refuseForeign(dev, in.topic); reason != "" {
			return "refused: " + reason
		}
		if d.sink == nil {
			d.count("failed")
			return "refused: no local broker"
		}
		if err := d.sink.Clear(ctx, dev); err != nil {
			d.count("failed")
			t.log.Warn("clear not published", "deveui", dev, "err", err)
			return "refused: " + err.Error()
		}
		t.log.Debug("downlink queue cleared", "deveui", dev, "topic", in.topic)
		return "clear " + dev
	default:
		dl, err := d.validate(in.payload, e.devEUI)
		if err != nil {
			d.count("refused")
			t.log.Warn("downlink refused", "topic", in.topic, "reason", err.Error())
			return "refused: " + err.Error()
		}
		if reason := d.refuseForeign(dl.DevEUI, in.topic); reason != "" {
			return "refused: " + reason
		}
		if d.sink == nil {
			d.count("failed")
			return "refused: no local broker"
		}
		if err := d.sink.Publish(ctx, dl.DevEUI, dl.Payload); err != nil {
			d.count("failed")
			t.log.Warn("downlink not published", "deveui", dl.DevEUI, "err", err)
			return "refused: " + err.Error()
		}
		d.count("sent")
		t.log.Debug("downlink published", "deveui", dl.DevEUI, "topic", in.topic)
		return "down " + dl.DevEUI
	}
}

// lookupLocked finds the subscription a topic arrived through: the exact
// filter first, else the first matching filter in sorted order (MQTT filter
// semantics), so overlapping subscriptions act once.
func (t *mqttTransport) lookupLocked(topic string) (subEntry, bool) {
	if e, ok := t.subs[topic]; ok {
		return *e, true
	}
	var best string
	for f := range t.subs {
		if matchFilter(f, topic) && (best == "" || f < best) {
			best = f
		}
	}
	if best == "" {
		return subEntry{}, false
	}
	return *t.subs[best], true
}

// clearDevEUI reads a clear: any or an empty payload when the topic names the
// device; a JSON object's deveui wins (conduit.md §7.5, §8.4).
func clearDevEUI(payload []byte, topicDev string) (string, error) {
	dev := topicDev
	p := bytes.TrimSpace(payload)
	if len(p) > 0 {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(p, &m); err == nil {
			if raw, ok := m["deveui"]; ok {
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return "", errors.New("deveui is not a string")
				}
				dev = s
			}
		} else if topicDev == "" {
			return "", errors.New("payload is not a JSON object")
		}
	}
	if dev == "" {
		return "", errors.New("no deveui")
	}
	eui, err := config.NormalizeEUI(dev)
	if err != nil {
		return "", err
	}
	return eui, nil
}
