package lnsbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/lorawan-gateway/app-connect/config"
)

// LoraQuery runs the gateway's lora-query command: always with an argument
// vector ("-x" then the words), a deadline and an output cap; never a shell.
type LoraQuery struct {
	Path      string        // path or name of the command
	Timeout   time.Duration // per run; default 10 s
	MaxOutput int           // bytes of standard output kept; default 4 MiB
}

// errOutputTooLarge is returned when the command prints more than MaxOutput.
var errOutputTooLarge = errors.New("output too large")

type capWriter struct {
	buf bytes.Buffer
	max int
	hit bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); len(p) > room {
		w.buf.Write(p[:max(room, 0)])
		w.hit = true
		return len(p), nil
	}
	return w.buf.Write(p)
}

// Run executes `lora-query -x words...` and returns its standard output, which
// must be JSON.
func (q LoraQuery) Run(ctx context.Context, words ...string) (json.RawMessage, error) {
	b, err := q.RunRaw(ctx, words...)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("lnsbridge: lora-query -x %s: output is not JSON: %.80q", strings.Join(words, " "), b)
	}
	return b, nil
}

// RunRaw executes `lora-query -x words...` and returns its standard output,
// trimmed, whatever its format (remote lora_req answers carry it as a string
// when it is not JSON).
func (q LoraQuery) RunRaw(ctx context.Context, words ...string) ([]byte, error) {
	timeout, maxOut := q.Timeout, q.MaxOutput
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if maxOut <= 0 {
		maxOut = 4 << 20
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append([]string{"-x"}, words...)
	cmd := exec.CommandContext(ctx, q.Path, args...)
	out := &capWriter{max: maxOut}
	errOut := &capWriter{max: 4096}
	cmd.Stdout, cmd.Stderr, cmd.Stdin = out, errOut, nil
	cmd.WaitDelay = time.Second
	what := "lora-query -x " + strings.Join(words, " ")
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("lnsbridge: %s: no answer within %s", what, timeout)
		}
		return nil, fmt.Errorf("lnsbridge: %s: %w (%s)", what, err, strings.TrimSpace(errOut.buf.String()))
	}
	if out.hit {
		return nil, fmt.Errorf("lnsbridge: %s: %w (more than %d bytes)", what, errOutputTooLarge, maxOut)
	}
	return bytes.TrimSpace(out.buf.Bytes()), nil
}

// Appnets lists the Lens application networks.
func (q LoraQuery) Appnets(ctx context.Context) ([]config.Appnet, []error, error) {
	out, err := q.Run(ctx, "appnet", "list", "json")
	if err != nil {
		return nil, nil, err
	}
	return config.ParseAppnets(out)
}

// Appnet fetches one appnet; found is false when the LNS does not know it.
// The EUI is validated before it reaches the command line.
func (q LoraQuery) Appnet(ctx context.Context, eui string) (config.Appnet, bool, error) {
	norm, err := config.NormalizeEUI(eui)
	if err != nil {
		return config.Appnet{}, false, fmt.Errorf("lnsbridge: appnet get: %w", err)
	}
	out, err := q.Run(ctx, "appnet", "get", norm)
	if err != nil {
		return config.Appnet{}, false, err
	}
	return config.ParseAppnet(out)
}

// Session is what app-connect keeps of a session record: never its keys.
type Session struct {
	DevEUI string
	AppEUI string
}

// Sessions reads the session list from standard output (no temporary file),
// keeping only DevEUI and AppEUI of each record.
func (q LoraQuery) Sessions(ctx context.Context) ([]Session, error) {
	out, err := q.Run(ctx, "session", "list", "json")
	if err != nil {
		return nil, err
	}
	var recs []struct {
		DevEUI string `json:"deveui"`
		AppEUI string `json:"appeui"`
	}
	if err := json.Unmarshal(out, &recs); err != nil {
		return nil, fmt.Errorf("lnsbridge: session list: not a JSON array of sessions: %w", err)
	}
	var res []Session
	for _, r := range recs {
		dev, err1 := config.NormalizeEUI(r.DevEUI)
		app, err2 := config.NormalizeEUI(r.AppEUI)
		if err1 != nil || err2 != nil {
			continue
		}
		res = append(res, Session{DevEUI: dev, AppEUI: app})
	}
	return res, nil
}

// GatewayEUIs lists the EUIs of the gateways the LNS serves.
func (q LoraQuery) GatewayEUIs(ctx context.Context) ([]string, error) {
	out, err := q.Run(ctx, "gateways", "list", "json")
	if err != nil {
		return nil, err
	}
	var recs []struct {
		GWEUI string `json:"gweui"`
	}
	if err := json.Unmarshal(out, &recs); err != nil {
		return nil, fmt.Errorf("lnsbridge: gateways list: not a JSON array: %w", err)
	}
	res := []string{}
	for _, r := range recs {
		if eui, err := config.NormalizeEUI(r.GWEUI); err == nil {
			res = append(res, eui)
		}
	}
	return res, nil
}
