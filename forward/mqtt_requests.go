package forward

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"
)

// Remote requests over MQTT (conduit.md §7.2, §7.3, §7.5 step 4, §7.6, §9).
const (
	mqttRequestQueue = 4                // requests waiting behind the one being served
	mqttReplyTimeout = 10 * time.Second // PUBACK wait for a reply
)

// requestJob is one request waiting for the application's request worker.
type requestJob struct {
	kind    string // api_req, lora_req or log_req
	from    string // the request's topic
	payload []byte
	azure   bool   // a direct method: reply on $iothub/methods/res/0/?$rid=<rid>
	rid     string // the direct method's rid (from the topic)
}

// setupRequests subscribes the default application's request topics, each
// only when its requestOptions flag is on (conduit.md §7.2, §7.3). Under Azure
// requests arrive as direct methods instead. Called before the first connect.
func (t *mqttTransport) setupRequests() {
	if t.requests == nil || t.azure {
		return
	}
	on := t.requestOptions
	t.mu.Lock()
	defer t.mu.Unlock()
	for kind, enabled := range map[string]bool{RequestAPI: on.API, RequestLora: on.Lora, RequestLog: on.Log} {
		if enabled {
			t.subs[t.requestTopic(kind)] = &subEntry{event: kind}
		}
	}
}

// requestTopic is the topic of a request kind (api_req, …) or reply kind
// (api_res, …) on this connection.
func (t *mqttTransport) requestTopic(kind string) string {
	return t.vars.fill(t.table.requests) + "/" + kind
}

// replyKind maps a request kind to its reply's last topic level.
func replyKind(kind string) string { return strings.TrimSuffix(kind, "_req") + "_res" }

// isRequestKind reports whether an event names a remote request.
func isRequestKind(event string) bool {
	return event == RequestAPI || event == RequestLora || event == RequestLog
}

// enqueueRequest hands a request to the request worker without waiting; when
// the queue is full the request gets an error reply at once (conduit.md §9).
func (t *mqttTransport) enqueueRequest(ctx context.Context, job requestJob) string {
	if t.requests == nil {
		return t.sendReply(ctx, job, errorReply(job.kind, refused("remote requests are not enabled on this connection (default application only)"), ridOf(job.payload)), false)
	}
	select {
	case t.reqs <- job:
		return "request " + job.kind + " queued"
	default:
	}
	reason := "busy: too many requests queued, try again later"
	t.log.Warn("remote request refused", "kind", job.kind, "topic", job.from, "reason", reason)
	t.requests.count(job.kind, "refused")
	return t.sendReply(ctx, job, errorReply(job.kind, failed("%s", reason), ridOf(job.payload)), false)
}

// ridOf is a request's rid, nil when it has none or cannot be read.
func ridOf(payload []byte) json.RawMessage {
	rid, _, err := decodeRequest(payload)
	if err != nil {
		return nil
	}
	return rid
}

// requestLoop serves queued requests one at a time until ctx ends, apart
// from the uplink delivery and the downlink dispatch.
func (t *mqttTransport) requestLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-t.reqs:
			t.serveRequest(ctx, job)
		}
	}
}

// serveRequest answers one request on its reply topic and returns what was sent.
func (t *mqttTransport) serveRequest(ctx context.Context, job requestJob) string {
	out := t.requests.Handle(ctx, job.kind, job.from, job.payload)
	return t.sendReply(ctx, job, out, true)
}

// sendReply publishes a reply (QoS 1, never retained, conduit.md §7.1): on
// …/<kind>_res, or for a direct method on $iothub/methods/res/0/?$rid=<rid>
// with that rid in the body. With wait it waits for the PUBACK.
func (t *mqttTransport) sendReply(ctx context.Context, job requestJob, body []byte, wait bool) string {
	topic := strings.TrimSuffix(job.from, job.kind) + replyKind(job.kind)
	if job.azure {
		topic = "$iothub/methods/res/0/?$rid=" + url.QueryEscape(job.rid)
		body = withRID(body, job.rid)
	}
	t.mu.Lock()
	c := t.client
	t.mu.Unlock()
	if c == nil {
		t.log.Warn("remote request reply not sent: the remote broker is not connected", "kind", job.kind, "topic", topic)
		return "reply lost " + topic
	}
	tok := c.Publish(topic, 1, false, body)
	if wait {
		timer := time.NewTimer(mqttReplyTimeout)
		defer timer.Stop()
		var err error
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-ctx.Done():
			err = ctx.Err()
		case <-timer.C:
			err = errors.New("no PUBACK in time")
		}
		if err != nil {
			t.log.Warn("remote request reply not delivered", "kind", job.kind, "topic", topic, "err", err)
		}
	}
	return "reply " + topic + " " + string(body)
}

// withRID sets a reply object's rid to a direct method's rid (a string).
func withRID(body []byte, rid string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		s, _ := json.Marshal(string(body))
		m = map[string]json.RawMessage{"result": s}
	}
	r, _ := json.Marshal(rid)
	m["rid"] = r
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}
