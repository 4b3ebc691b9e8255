package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// PrintOptions are the flags of `app-connect status`.
type PrintOptions struct {
	JSON  bool          // print /status as JSON
	Watch bool          // redraw every Every until ctx ends
	Every time.Duration // refresh interval of Watch
}

// PrintStatus is `app-connect status`: it reads /status from the running
// instance's admin endpoint at addr and prints it for a person (or as JSON);
// with Watch it redraws the screen every interval until ctx ends. It
// returns the exit code.
func PrintStatus(ctx context.Context, addr string, o PrintOptions, stdout, stderr io.Writer) int {
	if addr == "" {
		fmt.Fprintln(stderr, "app-connect status: admin.listen is empty in the configuration; no status endpoint")
		return 1
	}
	for {
		d, err := Fetch(ctx, addr)
		if ctx.Err() != nil {
			return 0 // interrupted while watching
		}
		switch {
		case err != nil && !o.Watch:
			fmt.Fprintf(stderr, "app-connect status: %v (is app-connect running?)\n", err)
			return 1
		case o.Watch:
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear screen
			fmt.Fprintf(stdout, "app-connect status at %s, every %s (Ctrl-C ends)\n\n", addr, o.Every)
			if err != nil {
				fmt.Fprintf(stdout, "%v (is app-connect running?)\n", err)
				break
			}
			fallthrough
		default:
			if o.JSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				enc.Encode(d)
			} else {
				WriteText(stdout, d)
			}
		}
		if !o.Watch {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(o.Every):
		}
	}
}
