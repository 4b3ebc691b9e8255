package forward

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lorawan-gateway/app-connect/cache"
	"github.com/lorawan-gateway/app-connect/lnsbridge"
)

// DefaultHTTPLanes is how many HTTP requests an application may have in
// flight: a cellular backhaul's 100–600 ms round trip would otherwise cap the
// drain at one batch per round trip.
const DefaultHTTPLanes = 16

// httpTransport is the HTTP(S) side of an application (conduit.md §6): init,
// the uplink, joined and batch posts, downlink polling, close. Each request
// stands alone, so its lanes (delivery.http_lanes) post concurrently.
type httpTransport struct {
	c         *HTTPTransport
	app       string // the application's EUI
	paths     httpPaths
	gateways  []string
	encodeHex bool
	lanes     int
	poll      *PollList
	log       *slog.Logger
	// downlinks validates and publishes the downlinks of a remote answer.
	downlinks func(ctx context.Context, reply []byte, from string)

	batching atomic.Bool // false once the remote API answered 404 to a batch
	// Set by open before any deliver call (the answer to init).
	batchMax     int
	pollInterval time.Duration
}

func (h *httpTransport) shape() (lanes, rows int) { return h.lanes, maxBatch }

// open posts init, retried by the loop until it is answered; a permanent
// refusal (4xx) delivers without it and without downlink polling. A JSON
// answer makes the application ready: its settings apply and downlink
// polling starts (until ctx ends).
func (h *httpTransport) open(ctx context.Context) (<-chan struct{}, error) {
	reply, err := h.c.Init(ctx, h.paths.init(), h.gateways)
	if err != nil {
		if !IsPermanent(err) {
			return nil, err
		}
		h.log.Error("init refused; delivering without it, no downlink polling", "path", h.paths.init(), "err", err)
		return nil, nil
	}
	ready := h.applyInitReply(reply)
	h.log.Info("application ready", "path", h.paths.init(), "polling", ready)
	if ready {
		go h.pollLoop(ctx)
	}
	return nil, nil
}

// deliver posts the head of a lane: the uplinks at its front in one batch
// where the remote API takes them, else one message. A batch the remote API
// refuses for good is sent again row by row to find the refused row.
func (h *httpTransport) deliver(ctx context.Context, rows []cache.Row) result {
	rows = rows[:min(len(rows), h.batchMax)]
	if n := batchable(rows); n >= 2 && h.batching.Load() {
		reply, err := h.c.Post(ctx, batchPath(h.app), h.batchBody(rows[:n]), 0)
		var se *StatusError
		switch {
		case err == nil:
			h.downlinks(ctx, reply, "up answer")
			return result{acked: n}
		case errors.As(err, &se) && se.Status == 404:
			if h.batching.Swap(false) {
				h.log.Warn("the remote API has no batch route (404): sending uplinks one by one", "path", batchPath(h.app))
			}
		case IsPermanent(err):
			for i := range n { // find the refused row by sending the batch's rows singly
				if res := h.single(ctx, rows[i]); res.err != nil {
					res.acked = i
					return res
				}
			}
			return result{acked: n}
		default:
			return result{err: err}
		}
	}
	return h.single(ctx, rows[0])
}

// single posts one row to its path, /api/v1/lorawan/<AppEUI>/<DevEUI>/<kind>.
func (h *httpTransport) single(ctx context.Context, r cache.Row) result {
	reply, err := h.c.Post(ctx, rowPath(r), rowBody(r, h.encodeHex), 0)
	if err != nil {
		return result{err: err, refused: IsPermanent(err)}
	}
	if rowKind(r) == lnsbridge.KindUp {
		h.downlinks(ctx, reply, "up answer") // the answer of a request that finished while stopping too
	}
	return result{acked: 1}
}

func (h *httpTransport) close(ctx context.Context) {
	if err := h.c.Close(ctx, h.paths.close()); err != nil {
		h.log.Warn("close notice not delivered", "path", h.paths.close(), "err", err)
	}
}

// publishStatus posts a status report to {prefix}/api/v1/lorawan/<APP>/<GW-UUID>/status.
func (h *httpTransport) publishStatus(ctx context.Context, body []byte) error {
	_, err := h.c.Post(ctx, h.paths.status(), body, 0)
	return err
}

// batchable counts the uplinks at the head that may go in one batch: only
// when two or more are waiting, each at most 700 bytes; a joined ends it.
func batchable(rows []cache.Row) int {
	n := 0
	for _, r := range rows {
		if rowKind(r) != lnsbridge.KindUp || len(r.Body) > maxBatchElement {
			break
		}
		n++
	}
	if n < 2 {
		return 1
	}
	return n
}

func (h *httpTransport) batchBody(rows []cache.Row) []byte {
	out := []byte{'['}
	for i, r := range rows {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, rowBody(r, h.encodeHex)...)
	}
	return append(out, ']')
}

// applyInitReply applies the optional timeout, queue_size and
// downlink_query_interval; any JSON reply makes the application ready (polling on).
func (h *httpTransport) applyInitReply(reply []byte) bool {
	var ir struct {
		Timeout               *float64 `json:"timeout"`
		QueueSize             *float64 `json:"queue_size"`
		DownlinkQueryInterval *float64 `json:"downlink_query_interval"`
	}
	if !json.Valid(reply) || len(reply) == 0 {
		return false
	}
	if json.Unmarshal(reply, &ir) != nil {
		return true // JSON, but not an object: ready with defaults
	}
	if ir.Timeout != nil && *ir.Timeout > 0 && *ir.Timeout < 3600 {
		h.c.timeout.Store(int64(time.Duration(*ir.Timeout * float64(time.Second))))
	}
	if ir.QueueSize != nil && *ir.QueueSize >= 1 {
		h.batchMax = min(maxBatch, int(*ir.QueueSize))
	}
	if ir.DownlinkQueryInterval != nil && *ir.DownlinkQueryInterval > 0 && *ir.DownlinkQueryInterval < 86400 {
		h.pollInterval = time.Duration(*ir.DownlinkQueryInterval * float64(time.Second))
	}
	return true
}

// pollLoop asks for downlinks every poll interval while the poll list is not empty.
func (h *httpTransport) pollLoop(ctx context.Context) {
	t := time.NewTicker(h.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		devs := h.poll.List()
		if len(devs) == 0 {
			continue
		}
		body, _ := json.Marshal(devs)
		reply, err := h.c.do(ctx, "GET", downPath(h.app), body, 0)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Debug("downlink poll failed", "path", downPath(h.app), "err", err)
			}
			continue
		}
		h.downlinks(ctx, reply, "poll")
	}
}
