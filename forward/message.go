package forward

import (
	"context"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// Message is one LNS event handed to the intake. Ack is called once the rows
// it produced are committed (or it was refused for good).
type Message struct {
	Kind    lnsbridge.Kind
	DevEUI  string
	AppEUI  string
	JoinEUI string
	FCnt    uint32
	Body    []byte // what is forwarded (the LNS bytes for uplinks)
	Ack     func()
}

// DownlinkSink takes validated downlinks to the local network server.
type DownlinkSink interface {
	Publish(ctx context.Context, devEUI string, payload []byte) error
	Clear(ctx context.Context, devEUI string) error
}

// rowKind is the event kind of an outbox row (stored as its text).
func rowKind(r cache.Row) lnsbridge.Kind { return lnsbridge.Kind(r.Kind) }
