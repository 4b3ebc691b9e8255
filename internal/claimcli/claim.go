// Package claimcli is the `app-connect claim` command: it reads devices from
// TR005 QR strings, QR files, CSV files or flags, routes each by JoinEUI
// through the claiming repository and claims, checks or releases it on its
// Join Server (joinclient's TTJS v2 client), reporting each device as it
// finishes and a table or JSON document at the end.
package claimcli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
	"github.com/lorawan-gateway/app-connect/internal/cli"
	jc "github.com/lorawan-gateway/app-connect/joinclient"
)

const claimUsage = `usage: app-connect claim [status|unclaim] [--config FILE] [--csv FILE|-] [--qr-file FILE|-]
                         [--dev-eui EUI --join-eui EUI [--owner-token T]] [--dry-run] [--all-or-nothing]
                         [--timeout 10s] [--output table|json] [QR-STRING ...]

Claims devices on their Join Server (TTJS v2 API, mutual TLS) so that it releases
their session keys to this network. Without an action word the devices are
claimed; "status" shows their claims (exit 0 only when every device is claimed
by this network); "unclaim" releases them.

Devices come from TR005 QR strings given as arguments (LW:D0:…, URN:DEV:LW:…,
URN:LW:DP:…), a file of QR strings one per line (--qr-file), a CSV file with the
header row dev_eui,join_eui,owner_token[,name] (--csv), or --dev-eui/--join-eui/
--owner-token; these may be combined. "-" reads stdin.

Owner tokens are secrets: they are never printed or logged (only their last two
characters). Command-line arguments are visible to other local users; prefer
--csv - or --qr-file - and pipe the tokens in.

The claim server of each device is chosen by JoinEUI in the claiming repository
(claim.dir of app-connect.yml, or --claiming-dir). The home NetID, NSID and
AS-ID come from join.net_id, join.ns_id and join.as_id, or the flags.

Each device is reported on stderr as it finishes ("1/500 0004A30B001C0530 ok");
the table (or JSON) follows on stdout when every device is done. A dry run
reads only the repository's routing (no certificate file is needed) and sends
nothing.

Exit status: 0 every device succeeded, 1 a device failed, 2 usage, configuration
or input errors (a bad input line is reported and the others are still handled,
unless --all-or-nothing is given).
`

// Command is `app-connect claim` with what its caller provides.
type Command struct {
	// Stdin is read for "--csv -" and "--qr-file -".
	Stdin io.Reader
	// ReadFile reads the claiming repository's files (nil: os.ReadFile);
	// tests keep certificates in memory.
	ReadFile func(string) ([]byte, error)
	// Version goes into the User-Agent.
	Version string
	// HomeNetID reads the gateway's own NetID (mPower loraNetwork
	// lora.netID), used when neither join.net_id nor --net-id gives one; nil:
	// none.
	HomeNetID func(ctx context.Context, cfg config.Config, log *slog.Logger) (string, error)
}

type claimOptions struct {
	action       jc.ClaimOp
	configPath   string
	claimingDir  string
	csvPath      string
	qrPath       string
	devEUI       string
	joinEUI      string
	ownerToken   string
	netID        string
	nsID         string
	asID         string
	timeout      time.Duration
	concurrency  int
	dryRun       bool
	allOrNothing bool
	output       string
	verbose      bool
	qrArgs       []string
}

// Settings is the claim: section of app-connect.yml;
// join.claiming_dir (the spec's name) is used when claim.dir is empty.
func Settings(cfg config.Config) config.Claim {
	c := cfg.Claim
	if c.Dir == "" {
		c.Dir = cfg.Join.ClaimingDir
	}
	return c
}

func (c Command) parse(args []string, stdout, stderr io.Writer) (*claimOptions, int) {
	o := &claimOptions{action: jc.OpClaim}
	if len(args) > 0 {
		switch args[0] {
		case "claim":
			args = args[1:]
		case "status":
			o.action, args = jc.OpStatus, args[1:]
		case "unclaim":
			o.action, args = jc.OpUnclaim, args[1:]
		}
	}
	fs := cli.NewFlagSet("app-connect claim", claimUsage, stdout, stderr)
	fs.StringVar(&o.configPath, "config", "", "configuration `file` (YAML); absent: gateway defaults")
	fs.StringVar(&o.claimingDir, "claiming-dir", "", "claiming repository `directory` (default: claim.dir)")
	fs.StringVar(&o.csvPath, "csv", "", "CSV `file` of devices (dev_eui,join_eui,owner_token[,name]); - = stdin")
	fs.StringVar(&o.qrPath, "qr-file", "", "`file` of TR005 QR strings, one per line; - = stdin")
	fs.StringVar(&o.devEUI, "dev-eui", "", "DevEUI of one device (with --join-eui)")
	fs.StringVar(&o.joinEUI, "join-eui", "", "JoinEUI of that device")
	fs.StringVar(&o.ownerToken, "owner-token", "", "owner token of that device (visible to local users: prefer --csv -)")
	fs.StringVar(&o.netID, "net-id", "", "home NetID (default: join.net_id)")
	fs.StringVar(&o.nsID, "ns-id", "", "home NSID (default: join.ns_id)")
	fs.StringVar(&o.asID, "as-id", "", "AS-ID (default: join.as_id)")
	fs.DurationVar(&o.timeout, "timeout", 0, "per request (default: claim.timeout, 10s)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "devices handled at the same time (default: claim.concurrency, 4)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "only show which claim server each device would go to")
	fs.BoolVar(&o.allOrNothing, "all-or-nothing", false, "do nothing when any input is invalid")
	fs.StringVar(&o.output, "output", "table", "`format`: table or json")
	fs.BoolVar(&o.verbose, "verbose", false, "log every request (never owner tokens)")
	// Flags and QR strings may be interleaved.
	for rest := args; ; {
		if code := cli.Parse(fs, rest, stderr); code >= 0 {
			return nil, code
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		o.qrArgs = append(o.qrArgs, rest[0])
		rest = rest[1:]
	}
	usageErr := func(format string, a ...any) (*claimOptions, int) {
		fmt.Fprintf(stderr, "app-connect claim: "+format+"\n", a...)
		return nil, 2
	}
	switch {
	case o.output != "table" && o.output != "json":
		return usageErr("--output must be table or json, got %q", o.output)
	case (o.devEUI == "") != (o.joinEUI == ""):
		return usageErr("--dev-eui and --join-eui go together")
	case o.ownerToken != "" && o.devEUI == "":
		return usageErr("--owner-token needs --dev-eui and --join-eui")
	case o.csvPath == "-" && o.qrPath == "-":
		return usageErr("--csv and --qr-file cannot both read stdin")
	case o.csvPath == "" && o.qrPath == "" && o.devEUI == "" && len(o.qrArgs) == 0:
		return usageErr("no devices: give QR strings, --csv, --qr-file or --dev-eui/--join-eui (see --help)")
	case o.timeout < 0 || o.concurrency < 0 || o.concurrency > config.MaxClaimConcurrency:
		return usageErr("--timeout must be positive and --concurrency 1..%d", config.MaxClaimConcurrency)
	}
	return o, 0
}

// Row is one line of the result table.
type Row struct {
	DevEUI     string `json:"dev_eui"`
	JoinEUI    string `json:"join_eui"`
	Name       string `json:"name,omitempty"`
	Source     string `json:"source"`
	JoinServer string `json:"join_server"`
	Action     string `json:"action"`
	Result     string `json:"result"`
	Detail     string `json:"detail"`
	OK         bool   `json:"ok"`
}

// Run runs the command with its arguments (after "claim") and returns the
// exit status.
func (c Command) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code := c.parse(args, stdout, stderr)
	if o == nil {
		return code
	}
	stderr = cli.NewLockedWriter(stderr) // progress and log lines come from several goroutines
	cfg := config.Default()
	if o.configPath != "" {
		var err error
		if cfg, err = config.Load(o.configPath); err != nil { // the error names file, line and key
			fmt.Fprintf(stderr, "%v\n", err)
			return 2
		}
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := cli.NewLogger(stderr, level)

	settings := Settings(cfg)
	if o.claimingDir != "" {
		settings.Dir = o.claimingDir
	}
	if o.timeout > 0 {
		settings.Timeout = o.timeout
	}
	if o.concurrency > 0 {
		settings.Concurrency = o.concurrency
	}
	if o.netID == "" && cfg.Join.NetID == "" && o.action == jc.OpClaim && !o.dryRun {
		// The gateway's own NetID, as the join proxy uses it (mPower loraNetwork lora.netID).
		if c.HomeNetID != nil {
			mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			if n, err := c.HomeNetID(mctx, cfg, log); err == nil {
				cfg.Join.NetID = n
			} else {
				log.Debug("home NetID not read from mPower", "err", err)
			}
			cancel()
		}
	}
	ident, err := claimIdentity(o, cfg.Join)
	if err != nil {
		fmt.Fprintf(stderr, "app-connect claim: %v\n", err)
		return 2
	}
	if settings.Dir == "" {
		fmt.Fprintln(stderr, "app-connect claim: no claiming repository: set claim.dir in the configuration or --claiming-dir")
		return 2
	}
	var repo *jc.ClaimRepository
	if o.dryRun {
		repo, err = jc.ClaimRoutesFromConfig(settings, c.ReadFile, log)
	} else {
		repo, err = jc.ClaimRepositoryFromConfig(settings, cfg.Join, c.ReadFile, log)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 2
	}

	devs, inputErrs, err := c.readInputs(o)
	if err != nil {
		fmt.Fprintf(stderr, "app-connect claim: %v\n", err)
		return 2
	}
	for _, e := range inputErrs {
		fmt.Fprintf(stderr, "input error: %v\n", e)
	}
	if len(inputErrs) > 0 && o.allOrNothing {
		fmt.Fprintf(stderr, "app-connect claim: %d input error(s); nothing done (--all-or-nothing)\n", len(inputErrs))
		return 2
	}
	if !o.dryRun && o.action == jc.OpClaim && len(devs) > 0 && ident.ASID == "" {
		fmt.Fprintln(stderr, "app-connect claim: no AS-ID: set join.as_id in the configuration or --as-id")
		return 2
	}

	rows := make([]Row, len(devs))
	if o.dryRun {
		for i, d := range devs {
			rows[i] = dryRunRow(repo, o.action, d)
		}
	} else {
		c.execute(ctx, repo, ident, settings, o.action, devs, rows, log, stderr)
	}

	if err := writeClaimResults(stdout, o, rows, inputErrs); err != nil {
		fmt.Fprintf(stderr, "app-connect claim: %v\n", err)
		return 1
	}
	switch {
	case len(inputErrs) > 0:
		return 2
	case !allOK(rows):
		return 1
	}
	return 0
}

func allOK(rows []Row) bool {
	for _, r := range rows {
		if !r.OK {
			return false
		}
	}
	return true
}

// claimIdentity is the home network written into claims: flags over the join section.
func claimIdentity(o *claimOptions, j config.Join) (jc.ClaimIdentity, error) {
	var id jc.ClaimIdentity
	pick := func(flag, cfg string) string {
		if flag != "" {
			return flag
		}
		return cfg
	}
	netID, nsID := pick(o.netID, j.NetID), pick(o.nsID, j.NSID)
	id.ASID = pick(o.asID, j.ASID)
	if netID == "" {
		if o.action == jc.OpClaim && !o.dryRun {
			return id, errors.New("no home NetID: set join.net_id in the configuration or --net-id (mPower's lora.netID was not readable)")
		}
	} else {
		n, err := jc.ParseNetID(netID)
		if err != nil || len(netID) != 6 {
			return id, fmt.Errorf("home NetID %q: must be 6 hex digits", netID)
		}
		id.HomeNetID = n
	}
	if nsID != "" {
		e, err := jc.ParseEUI64(nsID)
		if err != nil || len(nsID) != 16 {
			return id, fmt.Errorf("home NSID %q: must be 16 hex digits", nsID)
		}
		id.HomeNSID = jc.SomeEUI64(e)
	}
	if len(id.ASID) > 255 {
		return id, errors.New("AS-ID longer than 255 characters")
	}
	return id, nil
}

// readInputs gathers devices from every input, in order: QR arguments, QR
// file, CSV file, flags. Bad lines become input errors; duplicates too.
func (c Command) readInputs(o *claimOptions) ([]jc.ClaimDevice, []*jc.InputError, error) {
	needToken := o.action == jc.OpClaim
	var devs []jc.ClaimDevice
	var bad []*jc.InputError
	addQR := func(src, s string) {
		q, err := jc.ParseQR(s)
		if err != nil {
			bad = append(bad, &jc.InputError{Source: src, Err: err})
			return
		}
		devs = append(devs, jc.ClaimDevice{DevEUI: q.DevEUI, JoinEUI: q.JoinEUI, OwnerToken: q.OwnerToken, Source: src})
	}
	for i, s := range o.qrArgs {
		addQR(fmt.Sprintf("argument %d", i+1), s)
	}
	open := func(path string) (io.ReadCloser, string, error) {
		if path == "-" {
			return io.NopCloser(c.Stdin), "stdin", nil
		}
		f, err := os.Open(path)
		return f, path, err
	}
	if o.qrPath != "" {
		r, name, err := open(o.qrPath)
		if err != nil {
			return nil, nil, err
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 4096), 64<<10)
		for n := 1; sc.Scan(); n++ {
			l := strings.TrimSpace(sc.Text())
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			addQR(fmt.Sprintf("%s:%d", name, n), l)
		}
		err = sc.Err()
		r.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if o.csvPath != "" {
		r, name, err := open(o.csvPath)
		if err != nil {
			return nil, nil, err
		}
		d, b, err := jc.ReadClaimCSV(r, name, needToken)
		r.Close()
		if err != nil {
			return nil, nil, err
		}
		devs, bad = append(devs, d...), append(bad, b...)
	}
	if o.devEUI != "" {
		d := jc.ClaimDevice{OwnerToken: jc.OwnerToken(o.ownerToken), Source: "flags"}
		var err error
		if d.DevEUI, err = strictEUI(o.devEUI); err != nil {
			bad = append(bad, &jc.InputError{Source: "flags", Field: "--dev-eui", Err: err})
		} else if d.JoinEUI, err = strictEUI(o.joinEUI); err != nil {
			bad = append(bad, &jc.InputError{Source: "flags", Field: "--join-eui", Err: err})
		} else {
			devs = append(devs, d)
		}
	}
	// Owner tokens and duplicates.
	seen := map[jc.EUI64]string{}
	out := devs[:0]
	for _, d := range devs {
		if needToken && d.OwnerToken == "" {
			bad = append(bad, &jc.InputError{Source: d.Source, Field: "owner token", Err: fmt.Errorf("missing for DevEUI %s: needed to claim", d.DevEUI)})
			continue
		}
		if first, ok := seen[d.DevEUI]; ok {
			bad = append(bad, &jc.InputError{Source: d.Source, Err: fmt.Errorf("DevEUI %s given again (first at %s)", d.DevEUI, first)})
			continue
		}
		seen[d.DevEUI] = d.Source
		out = append(out, d)
	}
	return out, bad, nil
}

// strictEUI reads an EUI-64 flag with the project's one normaliser,
// config.NormalizeEUI (16 hex digits, with or without - or : separators).
func strictEUI(s string) (jc.EUI64, error) {
	norm, err := config.NormalizeEUI(s)
	if err != nil {
		return jc.EUI64{}, err
	}
	return jc.ParseEUI64(strings.ReplaceAll(norm, "-", ""))
}

func newRow(action jc.ClaimOp, d jc.ClaimDevice) Row {
	return Row{DevEUI: d.DevEUI.String(), JoinEUI: d.JoinEUI.String(), Name: d.Name, Source: d.Source,
		JoinServer: "-", Action: string(action)}
}

func dryRunRow(repo *jc.ClaimRepository, action jc.ClaimOp, d jc.ClaimDevice) Row {
	row := newRow(action, d)
	prefix, srv := repo.Route(d.JoinEUI)
	if srv == nil {
		row.Result, row.Detail = "no-js", "no claiming Join Server for JoinEUI"
		return row
	}
	row.JoinServer, row.Result, row.OK = srv.Name, "dry-run", true
	row.Detail = fmt.Sprintf("prefix %s, %s", prefix, srv.URL)
	if d.OwnerToken != "" {
		row.Detail += ", owner token " + d.OwnerToken.String()
	}
	return row
}

// execute handles the devices with at most settings.Concurrency in flight,
// one client per claim server, fills rows in input order and reports each
// device on progress as it finishes.
func (c Command) execute(ctx context.Context, repo *jc.ClaimRepository, ident jc.ClaimIdentity, settings config.Claim,
	action jc.ClaimOp, devs []jc.ClaimDevice, rows []Row, log *slog.Logger, progress io.Writer) {
	clients := map[*jc.ClaimServer]*jc.ClaimClient{}
	for _, s := range repo.Servers {
		cl := jc.NewClaimClient(s, jc.ClaimClientOptions{Identity: ident, Timeout: settings.Timeout,
			UserAgent: "app-connect/" + c.Version, Logger: log})
		defer cl.Close()
		clients[s] = cl
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	finished := 0
	for range max(1, min(settings.Concurrency, len(devs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				r := handleDevice(ctx, repo, clients, action, devs[i], settings.Timeout)
				rows[i] = r
				mu.Lock()
				finished++
				fmt.Fprintf(progress, "%d/%d %s %s\n", finished, len(devs), r.DevEUI, r.Result)
				mu.Unlock()
			}
		}()
	}
	for i := range devs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

func handleDevice(ctx context.Context, repo *jc.ClaimRepository, clients map[*jc.ClaimServer]*jc.ClaimClient,
	action jc.ClaimOp, d jc.ClaimDevice, timeout time.Duration) Row {
	row := newRow(action, d)
	_, srv := repo.Route(d.JoinEUI)
	if srv == nil {
		row.Result, row.Detail = "no-js", "no claiming Join Server for JoinEUI"
		return row
	}
	row.JoinServer = srv.Name
	cl := clients[srv]
	var err error
	switch action {
	case jc.OpClaim:
		if err = cl.Claim(ctx, d.DevEUI, d.OwnerToken); err == nil {
			row.Result, row.OK = "ok", true
			row.Detail = "claimed and locked, home NetID " + clientIdentityNetID(cl)
		}
	case jc.OpStatus:
		var data *jc.ClaimData
		if data, err = cl.Status(ctx, d.DevEUI); err == nil {
			row.Result, row.OK = "claimed", true
			row.Detail = "home NetID " + data.HomeNetID.String()
			if data.HomeNSID.Set {
				row.Detail += ", NSID " + data.HomeNSID.String()
			}
			if data.Locked {
				row.Detail += ", locked"
			}
		}
	case jc.OpUnclaim:
		if err = cl.Unclaim(ctx, d.DevEUI); err == nil {
			row.Result, row.OK, row.Detail = "ok", true, "unclaimed"
		}
	}
	if err != nil {
		row.Result, row.Detail = describeClaimError(action, err, timeout)
	}
	return row
}

// clientIdentityNetID is the home NetID the client claims with.
func clientIdentityNetID(cl *jc.ClaimClient) string { return cl.Identity().HomeNetID.String() }

// describeClaimError maps a failure to the RESULT and DETAIL columns.
func describeClaimError(action jc.ClaimOp, err error, timeout time.Duration) (string, string) {
	var ce *jc.ClaimError
	if !errors.As(err, &ce) {
		return "error", err.Error()
	}
	withMsg := func(s string) string {
		if ce.Message != "" && !strings.Contains(s, ce.Message) {
			return s + ": " + ce.Message
		}
		return s
	}
	switch {
	case errors.Is(err, jc.ErrClaimDenied):
		if action == jc.OpClaim {
			return "denied", withMsg("already claimed or wrong owner token")
		}
		return "denied", withMsg("access denied: claimed by another network")
	case errors.Is(err, jc.ErrClaimNotFound):
		if action == jc.OpClaim {
			return "not-provisioned", withMsg("device not provisioned on this Join Server")
		}
		return "not-claimed", withMsg("device not claimed")
	case errors.Is(err, jc.ErrClaimUnauthenticated):
		return "unauthorized", "client certificate refused by the claim server"
	case errors.Is(err, jc.ErrClaimBadRequest):
		return "bad-request", withMsg("request refused")
	case errors.Is(err, jc.ErrClaimServer):
		return "server-error", withMsg(fmt.Sprintf("HTTP %d", ce.Status))
	case errors.Is(err, jc.ErrClaimTimeout):
		return "timeout", fmt.Sprintf("no answer within %s", timeout)
	case errors.Is(err, jc.ErrClaimInput):
		return "invalid", withMsg("refused before sending")
	case errors.Is(err, jc.ErrClaimTransport):
		cause := "unreachable"
		if ce.Err != nil {
			cause = ce.Err.Error()
		}
		return "unreachable", cause
	}
	return "error", err.Error()
}

func writeClaimResults(w io.Writer, o *claimOptions, rows []Row, inputErrs []*jc.InputError) error {
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.Result]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if o.output == "json" {
		errs := make([]string, len(inputErrs))
		for i, e := range inputErrs {
			errs[i] = e.Error()
		}
		doc := struct {
			Action      string         `json:"action"`
			DryRun      bool           `json:"dry_run"`
			Results     []Row          `json:"results"`
			InputErrors []string       `json:"input_errors"`
			Summary     map[string]int `json:"summary"`
		}{string(o.action), o.dryRun, rows, errs, counts}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
		_, err := w.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rows) > 0 {
		fmt.Fprintln(tw, "DEV EUI\tJOIN EUI\tJOIN SERVER\tACTION\tRESULT\tDETAIL")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.DevEUI, r.JoinEUI, r.JoinServer, r.Action, r.Result, r.Detail)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	parts := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	if len(inputErrs) > 0 {
		parts = append(parts, fmt.Sprintf("%d input error(s)", len(inputErrs)))
	}
	verb := string(o.action)
	if o.dryRun {
		verb += " (dry run)"
	}
	summary := strings.Join(parts, ", ")
	if summary == "" {
		summary = "nothing to do"
	}
	_, err := fmt.Fprintf(w, "%s: %d device(s): %s\n", verb, len(rows), summary)
	return err
}

// CheckConfig is check-config's part for claiming: when a claiming
// repository is configured it loads it strictly and prints its routing table.
func CheckConfig(cfg config.Config, stdout io.Writer) error {
	c := Settings(cfg)
	if c.Dir == "" {
		return nil
	}
	repo, err := jc.ClaimRepositoryFromConfig(c, cfg.Join, nil, cli.NewLogger(stdout, slog.LevelWarn))
	if err != nil {
		return err // names file, line and key
	}
	fmt.Fprintf(stdout, "claiming repository %s:\n", c.Dir)
	return jc.WriteClaimTable(stdout, repo)
}
