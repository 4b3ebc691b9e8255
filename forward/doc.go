// Package forward owns the path from LNS events to the customer's cloud:
// routing each event to its application, writing it to the outbox before the
// local message is acknowledged, and the per-application delivery loops that
// drain the outbox over the application's transport (HTTP(S) here; MQTT(S),
// WSS and Azure build on the same loop).
//
// It never talks to the local broker itself: events come in as Messages and
// downlinks leave through the DownlinkSink interface.
package forward
