// Package forward owns the path from LNS events to the customer's cloud.
//
// The local broker client (lnsbridge.Local) calls Intake.HandleEvent from its
// delivery callback; the Intake's single committer routes each event to its
// application (Router, kept by the Manager), groups everything that arrived
// meanwhile into one outbox transaction (while messages arrive less than 3 ms
// apart a small group may wait that long for company, never when the broker's
// in-flight window is full) and
// acknowledges the local messages only after that commit.
//
// The outbox (cache.Outbox) is the write-ahead log: the rows a commit stored
// are handed to their application's cache.Feed in memory; an application
// reads the database only at start-up, after a rebuild or reconnect, and when
// its bounded window overflowed. Delivered rows are forgotten lazily and
// removed in bulk with the next commit (at-least-once: a crash resends them).
//
// Each Application delivers over its transport: HTTP(S) with several
// requests in flight on lanes chosen by DevEUI (each device's order kept, a
// failed head blocks only its lane), MQTT(S)/WSS with a window of publishes
// awaiting their PUBACK, Azure IoT Hub over MQTT. An enabled application whose
// settings are invalid is kept in the state misconfigured: its events queue
// until the setting is fixed.
//
// It never talks to the local broker itself: events come in as Messages and
// downlinks leave through the DownlinkSink interface.
package forward
