package forward

import (
	"context"

	"github.com/lorawan-gateway/app-connect/config"
)

// mqttTransport is an application's connection to its remote MQTT broker.
// Until the MQTT protocol lands, an MQTT application keeps its rows queued.
type mqttTransport struct{}

func newMQTTTransport(a *Application, ep config.Endpoint, id Identity) (*mqttTransport, error) {
	a.state = StateUnsupported
	a.log.Warn("this build forwards over HTTP(S) only; the application's rows are kept queued", "scheme", ep.Scheme)
	return &mqttTransport{}, nil
}

func (a *Application) runMQTT(ctx context.Context) { <-ctx.Done() }

func (a *Application) closeMQTT(context.Context) {}
