// Package metrics is app-connect's small Prometheus toolkit: the text
// exposition format (version 0.0.4) written correctly whatever the label
// values, counters by outcome, fixed-bucket latency histograms and the
// standard process_* metrics read from /proc. It has no registry: the admin
// endpoint writes a snapshot of the daemon's state on every scrape.
package metrics
