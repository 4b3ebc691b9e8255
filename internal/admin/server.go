package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/backoff"
	"github.com/lorawan-gateway/app-connect/internal/metrics"
)

// Handler serves /healthz, /status and /metrics from st. procRoot is where
// the process_* metrics are read ("/proc"; "" leaves them out).
func Handler(st *State, procRoot string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st.Status())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		var proc *metrics.Process
		if procRoot != "" {
			if p, err := metrics.ReadProcess(procRoot); err == nil {
				proc = &p
			} else {
				log.Debug("process metrics unavailable", "err", err)
			}
		}
		w.Header().Set("Content-Type", metrics.ContentType)
		WriteMetrics(w, st.Status(), proc)
	})
	return mux
}

// Server is the admin endpoint: it listens on a loopback address and, when
// the port is taken, logs it and tries again with backoff until it gets it.
// Nothing else waits for it.
type Server struct {
	done chan struct{}
}

// retryFirst and retryMax bound the wait between two listen attempts
// (jittered, doubling).
const (
	retryFirst = time.Second
	retryMax   = 30 * time.Second
)

// Serve starts serving h on addr until ctx ends; Wait waits for the end. An
// address that is not loopback is refused at once (config.CheckLoopback);
// every other failure is logged and retried.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	s := &Server{done: make(chan struct{})}
	if addr == "" {
		close(s.done)
		return s, nil
	}
	if err := config.CheckLoopback(addr); err != nil {
		close(s.done)
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	go s.run(ctx, addr, h, log)
	return s, nil
}

func (s *Server) run(ctx context.Context, addr string, h http.Handler, log *slog.Logger) {
	defer close(s.done)
	var lc net.ListenConfig
	b := backoff.New(retryFirst, retryMax)
	for attempt := 1; ; attempt++ {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			if attempt > 1 {
				log.Info("admin endpoint listening", "addr", addr, "attempts", attempt)
			}
			s.serve(ctx, l, h, log)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Error("admin endpoint not listening; forwarding goes on, retrying", "addr", addr, "attempt", attempt, "err", err)
		}
		if !b.Sleep(ctx) {
			return
		}
	}
}

func (s *Server) serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("admin endpoint failed", "err", err)
	}
	wg.Wait()
}

// Wait waits until the server has stopped (its context ended).
func (s *Server) Wait() {
	if s != nil {
		<-s.done
	}
}

// Fetch reads /status from the admin endpoint at addr.
func Fetch(ctx context.Context, addr string) (Status, error) {
	var d Status
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return d, fmt.Errorf("status request: %w", err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return d, fmt.Errorf("GET /status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("GET /status: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&d); err != nil {
		return d, fmt.Errorf("GET /status: %w", err)
	}
	return d, nil
}
