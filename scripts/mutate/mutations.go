package main

// The named mutations: each a deliberate bug the tests must notice. Issue 16's
// list comes first (Issue: true); the rest cover the delivery path, the
// outbox, the local bridge and the Join Server client. When the code a
// snippet names changes, mutate reports the mutation as stale: update the
// snippet to the new code (keep the bug it stands for), never drop the entry
// to make the figure look better.
func mutations() []Mutation {
	fwd := Target{Pkg: "./forward/"}
	e2e := func(run string) Target { return Target{Pkg: "./cmd/app-connect/", Run: run} }
	one := func(file, old, new string) []Edit { return []Edit{{File: file, Old: old, New: new}} }
	return []Mutation{
		// --- issue 16 ---
		{Name: "intake-ack-before-commit", Issue: true, Tests: []Target{fwd}, Edits: []Edit{
			{File: "forward/intake.go",
				Old: "\t\t\t\t\tm.Ack()\n\t\t\t\t\tin.acked.Add(1)\n",
				New: "\t\t\t\t\tin.acked.Add(1)\n"},
			{File: "forward/intake.go",
				Old: "\tb := backoff.New(100*time.Millisecond, 5*time.Second)\n",
				New: "\tfor _, m := range batch {\n\t\tif m.Ack != nil {\n\t\t\tm.Ack()\n\t\t}\n\t}\n\tb := backoff.New(100*time.Millisecond, 5*time.Second)\n"},
		}},
		{Name: "lora-page-then-anything", Issue: true, Tests: []Target{fwd}, Edits: one("forward/requests.go",
			`case len(rest) == 2 && rest[0] == "page" && pageRE.MatchString(rest[1]):`,
			`case len(rest) >= 2 && rest[0] == "page" && pageRE.MatchString(rest[1]):`)},
		{Name: "mqtt-settle-ignores-failed-publish", Issue: true, Tests: []Target{fwd}, Edits: one("forward/mqtt.go",
			"\t\tcase <-tk.Done():\n\t\t\tif tk.Error() != nil {\n\t\t\t\treturn false\n\t\t\t}\n",
			"\t\tcase <-tk.Done():\n")},
		{Name: "log-tail-without-read-cap", Issue: true, Tests: []Target{fwd}, Edits: one("forward/requests.go",
			"floor := max(off-maxTailBytes, 0)",
			"floor := int64(0)")},
		{Name: "joined-events-batched", Issue: true, Tests: []Target{fwd}, Edits: one("forward/http_transport.go",
			`if rowKind(r) != lnsbridge.KindUp || len(r.Body) > maxBatchElement {`,
			`if len(r.Body) > maxBatchElement {`)},
		{Name: "dead-letter-deleted-uncounted", Issue: true, Tests: []Target{fwd, e2e("TestPermanentRefusalDeadLettersOneUplink")}, Edits: one("forward/deliver.go",
			"\t\ta.queue.DeadLetter(head)\n",
			"\t\ta.queue.Delete(head)\n")},

		// --- forward: delivery and routing ---
		// The flaky appnets test's first cause, as it was: AppVersion set only
		// on the instance started, so every fingerprint comparison differed.
		{Name: "rebuild-every-application", Tests: []Target{fwd}, Edits: []Edit{
			{File: "forward/router.go", Old: "\t\ta.AppVersion = m.opts.AppVersion // part of the fingerprint: set before comparing\n", New: ""},
			{File: "forward/router.go", Old: "\t\tdef.AppVersion = m.opts.AppVersion\n", New: ""},
			{File: "forward/router.go", Old: "\t\t\tapp, err = NewApplication(s, d.Identity,", New: "\t\t\ts.AppVersion = m.opts.AppVersion\n\t\t\tapp, err = NewApplication(s, d.Identity,"},
		}},
		{Name: "appnet-without-app-version", Tests: []Target{fwd}, Edits: one("forward/router.go",
			"\t\ta.AppVersion = m.opts.AppVersion // part of the fingerprint: set before comparing\n", "")},
		{Name: "rebuild-cuts-request-in-flight", Tests: []Target{fwd}, Edits: one("forward/router.go",
			"\t\tapp.flight = flight\n", "")},
		// The intake acknowledges a batch once committed, without waiting for
		// the shared sync: a power cut loses what the broker forgot.
		{Name: "intake-ack-before-sync", Tests: []Target{fwd}, Edits: one("forward/intake.go",
			"\t\tcase <-b.synced.Done():\n",
			"\t\tdefault:\n")},
		{Name: "intake-commit-error-ignored", Tests: []Target{fwd}, Edits: one("forward/intake.go",
			"\t\tdropped, s, err := in.out.Commit(ctx, todo[:part], acks)\n",
			"\t\tdropped, s, err := in.out.Commit(ctx, todo[:part], acks)\n\t\terr = nil\n")},
		{Name: "http-permanent-retried-forever", Tests: []Target{fwd}, Edits: one("forward/http_transport.go",
			"return result{err: err, refused: IsPermanent(err)}",
			"return result{err: err, refused: false && IsPermanent(err)}")},
		{Name: "http-429-permanent", Tests: []Target{{Pkg: "./internal/backoff/"}, fwd}, Edits: one("internal/backoff/backoff.go",
			"code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500",
			"code == http.StatusRequestTimeout || code >= 500")},
		{Name: "http-batch-404-no-fallback", Tests: []Target{fwd}, Edits: one("forward/http_transport.go",
			"errors.As(err, &se) && se.Status == 404",
			"errors.As(err, &se) && se.Status == 4040")},
		{Name: "downlink-port-up-to-255", Tests: []Target{fwd}, Edits: one("forward/downlink.go",
			`intField(m, "port", 0, 223)`,
			`intField(m, "port", 0, 255)`)},
		{Name: "router-api-1.1-filters", Tests: []Target{fwd}, Edits: one("forward/router.go",
			"rt.filterOff = d.Default.APIVersion != config.API10 || d.Default.EUI == config.CatchAll",
			"rt.filterOff = d.Default.EUI == config.CatchAll")},

		// --- cache: the outbox ---
		{Name: "outbox-peek-newest-first", Tests: []Target{{Pkg: "./cache/"}, fwd}, Edits: one("cache/outbox.go",
			"AND id > ? ORDER BY id LIMIT CAST(? AS INTEGER)",
			"AND id > ? ORDER BY id DESC LIMIT CAST(? AS INTEGER)")},
		{Name: "outbox-peek-includes-cursor", Tests: []Target{{Pkg: "./cache/"}, fwd}, Edits: one("cache/outbox.go",
			"AND id > ? ORDER BY id LIMIT CAST(? AS INTEGER)",
			"AND id >= ? ORDER BY id LIMIT CAST(? AS INTEGER)")},
		{Name: "outbox-cap-drops-newest", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"SELECT id, LENGTH(body) FROM outbox WHERE application = CAST(? AS TEXT) ORDER BY id`",
			"SELECT id, LENGTH(body) FROM outbox WHERE application = CAST(? AS TEXT) ORDER BY id DESC`")},
		{Name: "outbox-cap-one-row-late", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"if rs > lim.MaxRows || bs > lim.MaxBytes {",
			"if rs > lim.MaxRows+1 || bs > lim.MaxBytes {")},
		// The commit's fsync skipped: rows acknowledged to the broker live only in
		// the page cache until SQLite's next checkpoint (a power cut loses them).
		{Name: "outbox-append-not-synced", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"\tsynced = o.db.syncSoon(acks)\n",
			"\tsynced = Synced{}\n")},
		// The WAL syncer keeps a descriptor of a WAL file SQLite deleted and
		// recreated: the syncs reach the old file.
		{Name: "walsync-keeps-deleted-file", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/walsync_linux.go",
			"if err == nil && w.wal >= 0 && uint64(st.Dev) == w.dev && st.Ino == w.ino {",
			"if err == nil && w.wal >= 0 {")},
		{Name: "outbox-dead-letter-uncounted", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"\t\t\tif p.dead {\n\t\t\t\tx.deadLettered++\n\t\t\t}\n",
			"\t\t\t_ = p.dead\n")},
		// The writer leaves a failed group's transaction open: the connection
		// is thrown away with it instead of rolling back and going on.
		{Name: "outbox-writer-no-rollback", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/writer.go",
			"\t\tif !oc.AutoCommit() { // still inside the transaction: undo it\n",
			"\t\tif false && !oc.AutoCommit() {\n")},
		// Delivered rows are deleted by every commit again: a DELETE per uplink.
		{Name: "outbox-deletes-every-commit", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"\tif len(rows) == 0 || len(o.pend.deletes) >= deleteBatch || o.now().Sub(o.deletedAt) >= flushEvery {\n",
			"\tif true {\n")},
		// Deletions wait although the append meets its caps: the caps drop
		// delivered rows (counted as dropped) in place of the deletions.
		{Name: "outbox-caps-before-deletes", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"\t\treturn o.pendApp[app] != nil && s != nil && (s.Rows+rows > lim.MaxRows || s.Bytes+bytes > lim.MaxBytes)\n",
			"\t\treturn false && o.pendApp[app] != nil && s != nil && (s.Rows+rows > lim.MaxRows || s.Bytes+bytes > lim.MaxBytes)\n")},
		{Name: "outbox-forgotten-while-dropped", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"\tif floors != nil {\n",
			"\tif false && floors != nil {\n")},
		{Name: "outbox-drops-uncounted", Tests: []Target{{Pkg: "./cache/"}}, Edits: one("cache/outbox.go",
			"\t\tx.dropped += int64(n)\n\t\tx.floor = max(x.floor, last)\n",
			"\t\tx.floor = max(x.floor, last)\n")},

		// --- lnsbridge: the local broker ---
		// --- forward: the HTTP client (h1.go) and the cloud connection ---
		{Name: "h1-stale-connection-not-resent", Tests: []Target{{Pkg: "./forward/", Run: "TestH1"}}, Edits: one("forward/h1.go",
			"if err != nil && reused && !answered && attempt == 0 && ctx.Err() == nil && closedByPeer(err) {",
			"if err != nil && reused && !answered && attempt == 0 && ctx.Err() == nil && closedByPeer(err) && attempt < 0 {")},
		{Name: "h1-connection-close-ignored", Tests: []Target{{Pkg: "./forward/", Run: "TestH1"}}, Edits: one("forward/h1answer.go",
			"a.keep = ended && !f.close && a.status != 101", "a.keep = ended && a.status != 101")},
		{Name: "h1-unfinished-answer-reused", Tests: []Target{{Pkg: "./forward/", Run: "TestH1"}}, Edits: one("forward/h1answer.go",
			"a.keep = ended && !f.close && a.status != 101", "a.keep = (ended || true) && !f.close && a.status != 101")},
		{Name: "h1-informational-answer-taken", Tests: []Target{{Pkg: "./forward/", Run: "TestH1"}}, Edits: one("forward/h1answer.go",
			"if a.status >= 200 || a.status == 101 {", "if true {")},
		{Name: "h1-two-lengths-taken", Tests: []Target{{Pkg: "./forward/", Run: "TestH1"}}, Edits: one("forward/h1answer.go",
			"if !ok || cl >= 0 && n != cl {", "if !ok {")},
		{Name: "h1-chunk-end-unchecked", Tests: []Target{{Pkg: "./forward/", Run: "TestH1"}}, Edits: one("forward/h1answer.go",
			"if crlf != [2]byte{'\\r', '\\n'} {", "if false {")},
		{Name: "cloud-conn-delayed-acks", Tests: []Target{{Pkg: "./forward/", Run: "TestBufferedConn"}}, Edits: one("forward/mqtt_conn.go",
			"bufio.NewReaderSize(tcpopt.NewQuickAckReader(c), connReadBuffer)", "bufio.NewReaderSize(tcpopt.NewQuickAckReader(struct{ net.Conn }{c}), connReadBuffer)")},
		{Name: "local-clean-session", Tests: []Target{{Pkg: "./lnsbridge/"}}, Edits: one("lnsbridge/local.go",
			"CleanSession: false,", "CleanSession: true,")},
		{Name: "local-auto-ack", Tests: []Target{{Pkg: "./lnsbridge/"}}, Edits: one("lnsbridge/local.go",
			"\tl.handler(Incoming{Event: ev, Ack: ack})\n",
			"\tack() // acknowledged on receipt, before the commit\n\tl.handler(Incoming{Event: ev, Ack: func() {}})\n")},
		{Name: "local-malformed-kept-unacked", Tests: []Target{{Pkg: "./lnsbridge/"}}, Edits: one("lnsbridge/local.go",
			"\"bytes\", len(pk.payload))\n\t\tack()\n",
			"\"bytes\", len(pk.payload))\n")},
		{Name: "uplink-deveui-mismatch-accepted", Tests: []Target{{Pkg: "./lnsbridge/"}}, Edits: one("lnsbridge/events.go",
			"\tif dev != ev.DevEUI {\n\t\treturn ev, perr(topic, \"field \\\"deveui\\\" %s differs from the topic's %s\", dev, ev.DevEUI)",
			"\tif false && dev != ev.DevEUI {\n\t\treturn ev, perr(topic, \"field \\\"deveui\\\" %s differs from the topic's %s\", dev, ev.DevEUI)")},
		{Name: "uplink-port-up-to-65535", Tests: []Target{{Pkg: "./lnsbridge/"}}, Edits: one("lnsbridge/events.go",
			`rawInteger(topic, "port", f.port, false, 0, 255)`,
			`rawInteger(topic, "port", f.port, false, 0, 65535)`)},
		{Name: "uplink-data-not-base64-checked", Tests: []Target{{Pkg: "./lnsbridge/"}}, Edits: one("lnsbridge/events.go",
			"if _, err := base64.StdEncoding.DecodeString(data); err != nil {",
			"if _, err := base64.StdEncoding.DecodeString(data); err != nil && false {")},

		// --- joinclient: Join Server routing and answers ---
		{Name: "js-route-ignores-component", Tests: []Target{{Pkg: "./joinclient/"}}, Edits: one("joinclient/router.go",
			"if !e.HasComponent(c) || !e.Prefix.Matches(joinEUI) || e.Prefix.Length < best {",
			"if !e.Prefix.Matches(joinEUI) || e.Prefix.Length < best {")},
		{Name: "js-route-first-match-not-most-specific", Tests: []Target{{Pkg: "./joinclient/"}}, Edits: one("joinclient/router.go",
			"if e.Prefix.Length > best {\n\t\t\tbest, prefix, out = e.Prefix.Length, e.Prefix, out[:0]",
			"if best < 0 {\n\t\t\tbest, prefix, out = e.Prefix.Length, e.Prefix, out[:0]")},
		{Name: "js-answer-size-unchecked", Tests: []Target{{Pkg: "./joinclient/"}}, Edits: one("joinclient/client.go",
			"if len(data) > MaxAnswerSize {",
			"if len(data) > MaxAnswerSize+1 {")},
		{Name: "js-race-returns-first-outcome", Tests: []Target{{Pkg: "./joinclient/"}}, Edits: one("joinclient/router.go",
			"\t\tif o.err == nil {\n\t\t\treturn o.ans, o.js, nil",
			"\t\tif true {\n\t\t\treturn o.ans, o.js, o.err")},
		{Name: "js-race-prefers-transport-error", Tests: []Target{{Pkg: "./joinclient/"}}, Edits: one("joinclient/router.go",
			"\tif firstBI != nil {\n\t\treturn firstBI.ans",
			"\tif false {\n\t\treturn firstBI.ans")},
	}
}
