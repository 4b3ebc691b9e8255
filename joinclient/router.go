package joinclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Route returns the Join Servers for joinEUI among the entries of component c:
// those of the most specific matching prefix. Several are returned only for
// identical /64 prefixes of different files (they are raced). Nil when no entry matches.
func (r *Repository) Route(c Component, joinEUI EUI64) (EUIPrefix, []*JoinServer) {
	best := -1
	var prefix EUIPrefix
	var out []*JoinServer
	for _, e := range r.Entries {
		if !e.HasComponent(c) || !e.Prefix.Matches(joinEUI) || e.Prefix.Length < best {
			continue
		}
		if e.Prefix.Length > best {
			best, prefix, out = e.Prefix.Length, e.Prefix, out[:0]
		}
		if !slices.Contains(out, e.JoinServer) {
			out = append(out, e.JoinServer)
		}
	}
	return prefix, out
}

// Router sends BI requests to the Join Servers a JoinEUI routes to. It holds
// one Client per Join Server file and is safe for concurrent use.
type Router struct {
	repo    *Repository
	clients map[*JoinServer]*Client
}

// NewRouter builds a client for every Join Server of repo.
func NewRouter(repo *Repository, opts ClientOptions) *Router {
	r := &Router{repo: repo, clients: make(map[*JoinServer]*Client, len(repo.JoinServers))}
	for _, js := range repo.JoinServers {
		r.clients[js] = NewClient(js, opts)
	}
	return r
}

// Repository returns the routing repository.
func (r *Router) Repository() *Repository { return r.repo }

// Client returns the client of js (nil when js is not from the repository).
func (r *Router) Client(js *JoinServer) *Client { return r.clients[js] }

// JoinServerStates returns the bulkhead, circuit-breaker and header-warning
// state of every Join Server, sorted by name.
func (r *Router) JoinServerStates() []JoinServerState {
	out := make([]JoinServerState, 0, len(r.clients))
	for _, c := range r.clients {
		out = append(out, c.State())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JoinServer < out[j].JoinServer })
	return out
}

// Close releases idle connections of every client.
func (r *Router) Close() {
	for _, c := range r.clients {
		c.Close()
	}
}

// HasRoute reports whether joinEUI has an entry for component c.
func (r *Router) HasRoute(c Component, joinEUI EUI64) bool {
	_, js := r.repo.Route(c, joinEUI)
	return len(js) > 0
}

func noRoute(m MessageType, c Component, joinEUI EUI64) error {
	return &Error{MessageType: m, Kind: ErrNoRoute, Err: fmt.Errorf("%s (component %s)", joinEUI, c)}
}

// JoinReq routes a JoinReq by joinEUI (component ns) and returns the winning
// answer and Join Server.
func (r *Router) JoinReq(ctx context.Context, joinEUI EUI64, req JoinReq) (*JoinAns, *JoinServer, error) {
	return race(ctx, r, ComponentNS, MsgJoinReq, joinEUI, func(ctx context.Context, c *Client) (*JoinAns, error) {
		return c.JoinReq(ctx, joinEUI, req)
	})
}

// RejoinReq routes a RejoinReq by joinEUI (component ns).
func (r *Router) RejoinReq(ctx context.Context, joinEUI EUI64, req RejoinReq) (*RejoinAns, *JoinServer, error) {
	return race(ctx, r, ComponentNS, MsgRejoinReq, joinEUI, func(ctx context.Context, c *Client) (*RejoinAns, error) {
		return c.RejoinReq(ctx, joinEUI, req)
	})
}

// HomeNSReq routes a HomeNSReq by joinEUI (component ns).
func (r *Router) HomeNSReq(ctx context.Context, joinEUI, devEUI EUI64) (*HomeNSAns, *JoinServer, error) {
	return race(ctx, r, ComponentNS, MsgHomeNSReq, joinEUI, func(ctx context.Context, c *Client) (*HomeNSAns, error) {
		return c.HomeNSReq(ctx, joinEUI, devEUI)
	})
}

// AppSKeyReq routes an AppSKeyReq by joinEUI (component as).
func (r *Router) AppSKeyReq(ctx context.Context, joinEUI, devEUI EUI64, sessionKeyID []byte) (*AppSKeyAns, *JoinServer, error) {
	return race(ctx, r, ComponentAS, MsgAppSKeyReq, joinEUI, func(ctx context.Context, c *Client) (*AppSKeyAns, error) {
		return c.AppSKeyReq(ctx, joinEUI, devEUI, sessionKeyID)
	})
}

// race sends to every Join Server of the route. With one it is a plain call;
// with several (identical /64 prefixes) the first Success wins and the others
// are cancelled; if none succeeds the first BI answer is reported (a real
// ResultCode beats a transport error), else the first error.
func race[T any](ctx context.Context, r *Router, comp Component, m MessageType, joinEUI EUI64, call func(context.Context, *Client) (T, error)) (T, *JoinServer, error) {
	var zero T
	_, servers := r.repo.Route(comp, joinEUI)
	switch len(servers) {
	case 0:
		return zero, nil, noRoute(m, comp, joinEUI)
	case 1:
		ans, err := call(ctx, r.clients[servers[0]])
		return ans, servers[0], err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		ans T
		js  *JoinServer
		err error
	}
	results := make(chan outcome, len(servers))
	for _, js := range servers {
		go func() {
			ans, err := call(ctx, r.clients[js])
			results <- outcome{ans, js, err}
		}()
	}
	var firstBI, firstErr *outcome
	for range servers {
		o := <-results
		if o.err == nil {
			return o.ans, o.js, nil // deferred cancel stops the others
		}
		var re *ResultError
		if firstBI == nil && errors.As(o.err, &re) {
			firstBI = &o
		}
		if firstErr == nil {
			firstErr = &o
		}
	}
	if firstBI != nil {
		return firstBI.ans, firstBI.js, firstBI.err
	}
	return firstErr.ans, firstErr.js, firstErr.err
}

// WriteRoutingTable prints the routing table (prefix → Join Server,
// components, protocol, URL), most specific prefixes first, for check-config.
func WriteRoutingTable(w io.Writer, repo *Repository) error {
	entries := append([]Entry(nil), repo.Entries...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Prefix.tableOrder(entries[j].Prefix) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tJOIN SERVER\tCOMPONENTS\tPROTOCOL\tURL")
	for _, e := range entries {
		comps := make([]string, len(e.Components))
		for i, c := range e.Components {
			comps[i] = string(c)
		}
		sort.Strings(comps)
		js := e.JoinServer
		url := js.URL(MsgJoinReq)
		if !e.HasComponent(ComponentNS) {
			url = js.URL(MsgAppSKeyReq)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Prefix, js.Name, strings.Join(comps, ","), js.Protocol, url)
	}
	return tw.Flush()
}
