package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// LoraQueryState is what the lora-query stand-in answers from: a JSON file
// (LoraQueryStateFile) next to the stand-in, rewritten by tests and the
// simulator whenever they change the simulated network server.
type LoraQueryState struct {
	Gateways []json.RawMessage `json:"gateways"`
	Appnets  []json.RawMessage `json:"appnets"`
	// Hidden appnets are answered by `appnet get` only (not listed): an
	// application the LNS learns about when one of its devices joins.
	Hidden   []json.RawMessage `json:"hidden,omitempty"`
	Sessions []json.RawMessage `json:"sessions"`
	Devices  int               `json:"devices"`
	NextID   int               `json:"next_id"`
}

// Names of the stand-in's files in its directory.
const (
	LoraQueryStateFile = "lora-query.json"
	LoraQueryLogFile   = "lora-query.log" // one JSON array of argv per run
)

// LoraQueryDir manages a directory holding a lora-query stand-in: a link to
// the conduit-sim binary named lora-query, its state and its argv log.
type LoraQueryDir struct {
	Dir string
	mu  sync.Mutex
}

// InstallLoraQuery links simBinary as dir/lora-query and writes state.
func InstallLoraQuery(dir, simBinary string, state LoraQueryState) (*LoraQueryDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(simBinary, filepath.Join(dir, "lora-query")); err != nil {
		return nil, fmt.Errorf("sim: lora-query link: %w", err)
	}
	q := &LoraQueryDir{Dir: dir}
	return q, q.SetState(state)
}

// Path is the stand-in's executable.
func (q *LoraQueryDir) Path() string { return filepath.Join(q.Dir, "lora-query") }

// SetState replaces the answers atomically.
func (q *LoraQueryDir) SetState(s LoraQueryState) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(q.Dir, LoraQueryStateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(q.Dir, LoraQueryStateFile))
}

// Calls returns the argument vectors of every run so far.
func (q *LoraQueryDir) Calls() ([][]string, error) {
	b, err := os.ReadFile(filepath.Join(q.Dir, LoraQueryLogFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var argv []string
		if json.Unmarshal([]byte(line), &argv) == nil {
			out = append(out, argv)
		}
	}
	return out, nil
}

// RunLoraQuery is the stand-in's main: args are lora-query's arguments
// (without the program name), dir holds its state and log.
func RunLoraQuery(args []string, dir string, stdout, stderr io.Writer) int {
	if f, err := os.OpenFile(filepath.Join(dir, LoraQueryLogFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		b, _ := json.Marshal(args)
		f.Write(append(b, '\n'))
		f.Close()
	}
	var st LoraQueryState
	if b, err := os.ReadFile(filepath.Join(dir, LoraQueryStateFile)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			fmt.Fprintf(stderr, "lora-query stand-in: state: %v\n", err)
			return 1
		}
	}
	if len(args) < 2 || args[0] != "-x" {
		fmt.Fprintln(stderr, "usage: lora-query -x <command words>")
		return 1
	}
	words := args[1:]
	cmd := strings.Join(words, " ")
	write := func(v any) int {
		b, _ := json.Marshal(v)
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	arr := func(v []json.RawMessage) []json.RawMessage {
		if v == nil {
			return []json.RawMessage{}
		}
		return v
	}
	switch {
	case cmd == "gateways list json":
		return write(arr(st.Gateways))
	case cmd == "appnet list json":
		return write(arr(st.Appnets))
	case len(words) == 3 && words[0] == "appnet" && words[1] == "get":
		for _, a := range append(st.Appnets, st.Hidden...) {
			var probe struct {
				EUI string `json:"eui"`
			}
			if json.Unmarshal(a, &probe) == nil && NormalizeEUI(probe.EUI) == NormalizeEUI(words[2]) {
				return write(a)
			}
		}
		return write(map[string]string{"status": "fail", "error": "app net not found"})
	case strings.HasPrefix(cmd, "session list json"):
		return write(arr(st.Sessions))
	case cmd == "device count":
		return write(map[string]int{"count": st.Devices})
	case cmd == "session count":
		return write(map[string]int{"count": len(st.Sessions)})
	case len(words) >= 4 && words[0] == "packet" && words[1] == "queue" && words[2] == "add":
		if !json.Valid([]byte(strings.Join(words[3:], " "))) {
			return write(map[string]string{"status": "fail", "error": "invalid json"})
		}
		return write(map[string]any{"id": 470 + st.NextID, "status": "success"})
	case cmd == "packet queue" || cmd == "packet queue list json":
		return write([]any{})
	case cmd == "help":
		fmt.Fprintln(stdout, "gateways list json | appnet list json | appnet get <eui> | session list json | device count | packet queue add <json>")
		return 0
	}
	fmt.Fprintf(stderr, "lora-query stand-in: unknown command %q\n", cmd)
	return 1
}
