// Package forward owns the path from LNS events to the customer's cloud.
//
// The local broker client (lnsbridge.Local) calls Intake.HandleEvent from its
// delivery callback; the Intake's single committer routes each event to its
// application (Router, kept by the Manager), groups everything that arrived
// meanwhile into one outbox transaction (while messages arrive less than 3 ms
// apart a small group may wait that long for company, never when the broker's
// in-flight window is full) and goes on with the next group; a goroutine of
// its own acknowledges the local messages once the commit is durable (the
// outbox shares one fdatasync between the commits of up to 100 ms,
// cache.Synced), and a batch whose sync failed is committed again.
//
// The outbox (cache.Outbox) is the write-ahead log: the rows a commit stored
// are handed to their application's cache.Feed in memory; an application
// reads the database only at start-up, after a rebuild or reconnect, and when
// its bounded window overflowed. Delivered rows are forgotten lazily and
// removed in bulk about once a second (at-least-once: a crash resends them).
//
// The Manager builds the applications from the configuration (Apply: set up,
// rebuilt or stopped as it changes; Apps polls the sources) and runs their
// delivery loops under the context passed to its Run. Each application is
// built complete: its transport is made from its settings, its logger and
// what it shares with the application (the feed, the counters, the downlink
// path to the local broker, the remote requests), and owns its state.
//
// Each Application's delivery loop (deliver.go) drives its transport through
// one interface: open (HTTP init; MQTT connect, subscribe, init), deliver a
// lane's head rows (how many leading rows were acknowledged; whether the next
// is retryable or refused for good), close. The loop owns the feed, the lanes
// chosen by DevEUI (each device's rows on one lane, delivered in order by the
// lane's own goroutine; a failed head blocks only its lane), the backoff,
// dead-lettering and deletes, and opens the transport again after a lost
// connection. HTTP(S) (http_transport.go) runs delivery.http_lanes lanes, each
// posting one message or a batch on a keep-alive connection of its own (h1.go
// writes the requests, h1answer.go reads the answers); MQTT(S)/WSS and Azure IoT Hub (mqtt*.go)
// run one lane whose deliver calls keep up to delivery.mqtt_inflight
// publishes awaiting their PUBACK, and own the inbound side (downlinks,
// clears, remote requests, direct methods); over TCP and TLS paho's
// connection reads through a buffer and groups its writes (mqtt_conn.go).
// An enabled application whose settings are invalid is kept in the state
// misconfigured: its events queue until the setting is fixed.
//
// It never talks to the local broker itself: events come in as Messages and
// downlinks leave through the DownlinkSink interface.
package forward
