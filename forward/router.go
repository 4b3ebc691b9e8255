package forward

import (
	"github.com/lorawan-gateway/app-connect/config"
)

// Router picks the application an LNS event belongs to (conduit.md §5.2).
type Router struct {
	def       *Application
	filterOff bool
	defEUI    string
}

// NewRouter routes to the default application described by d (nil app: none).
func NewRouter(def *Application, d config.DefaultApp) *Router {
	r := &Router{def: def}
	if def != nil {
		r.filterOff = d.FilterOff()
		r.defEUI = d.EUI
	}
	return r
}

// Route returns the application of a message, nil when none takes it.
func (r *Router) Route(m Message) *Application {
	if r.def == nil {
		return nil
	}
	if r.filterOff || m.AppEUI == r.defEUI {
		return r.def
	}
	return nil
}

// Applications lists the applications of the router.
func (r *Router) Applications() []*Application {
	if r.def == nil {
		return nil
	}
	return []*Application{r.def}
}

// rowFor builds the outbox row of a message for an HTTP application; ok is
// false for events HTTP does not forward (moved).
func rowFor(app *Application, m Message) (target string, ok bool) {
	switch m.Kind {
	case "up":
		return uplinkPath(m.AppEUI, m.DevEUI), true
	case "joined":
		return joinedPath(m.AppEUI, m.DevEUI), true
	}
	return "", false
}
