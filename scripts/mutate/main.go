// Command mutate checks that the tests notice deliberate bugs. It copies the
// module to a temporary directory, checks that the tests it will use pass
// there, then applies each named mutation of mutations.go alone (exact
// snippets replaced in product code), runs the tests of the packages the
// mutation names (plain go test, no -race, with a timeout) and prints whether
// they failed (killed) or passed (survived), then the kill rate and the
// survivors. The working tree is never modified. make mutate runs it.
//
//	go run ./scripts/mutate [-only REGEXP] [-timeout 10m] [-min 85] [-list] [-check]
//
// -check only verifies that every snippet is in the code once (no tests run).
//
// Exit status 1 when a mutation's snippet is no longer in the code (the list
// must follow the code), when one of issue 16's mutations survives, or when the
// kill rate is below -min percent. Every program is started with an argument
// vector, never through a shell.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Edit replaces the one occurrence of Old in File (relative to the module root) by New.
type Edit struct {
	File, Old, New string
}

// Target is a package whose tests judge a mutation; Run, when set, selects
// tests (for packages whose whole suite is too slow to run per mutation).
type Target struct {
	Pkg, Run string
}

// Mutation is one deliberate bug: one or more edits applied together.
type Mutation struct {
	Name  string
	Issue bool // from issue 16's list: the suite must catch it
	Edits []Edit
	Tests []Target
}

// Outcome of one mutation.
type Outcome int

// Outcomes.
const (
	Killed   Outcome = iota // a test failed
	Survived                // every test passed
	Invalid                 // the mutant does not build: not counted
	Stale                   // a snippet is not in the code once: the list needs updating
)

func (o Outcome) String() string {
	return [...]string{"KILLED", "SURVIVED", "INVALID", "STALE"}[o]
}

// Result is a mutation's outcome with what decided it.
type Result struct {
	Name    string
	Issue   bool
	Outcome Outcome
	Detail  string
	Took    time.Duration
}

func main() {
	only := flag.String("only", "", "run only the mutations whose name matches this regular expression")
	timeout := flag.Duration("timeout", 10*time.Minute, "timeout of one go test run")
	minRate := flag.Float64("min", 85, "lowest acceptable kill rate, in percent")
	list := flag.Bool("list", false, "list the mutations and exit")
	check := flag.Bool("check", false, "only check that every snippet is in the code once")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Stdout, *only, *timeout, *minRate, *list, *check))
}

func run(ctx context.Context, out io.Writer, only string, timeout time.Duration, minRate float64, list, check bool) int {
	muts := mutations()
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			fmt.Fprintf(out, "mutate: -only: %v\n", err)
			return 2
		}
		var keep []Mutation
		for _, m := range muts {
			if re.MatchString(m.Name) {
				keep = append(keep, m)
			}
		}
		muts = keep
	}
	if list {
		for _, m := range muts {
			fmt.Fprintf(out, "%-40s %s\n", m.Name, describe(m))
		}
		return 0
	}
	if len(muts) == 0 {
		fmt.Fprintln(out, "mutate: no mutation selected")
		return 2
	}
	src, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(out, "mutate: %v\n", err)
		return 2
	}
	if check {
		stale := checkSnippets(src, muts)
		for _, s := range stale {
			fmt.Fprintln(out, s)
		}
		if len(stale) > 0 {
			return 1
		}
		fmt.Fprintf(out, "%d mutations, every snippet found once\n", len(muts))
		return 0
	}
	root, err := os.MkdirTemp("", "app-connect-mutate-")
	if err != nil {
		fmt.Fprintf(out, "mutate: %v\n", err)
		return 2
	}
	defer os.RemoveAll(root)
	if err := copyTree(src, root); err != nil {
		fmt.Fprintf(out, "mutate: copying the module: %v\n", err)
		return 2
	}
	// The unmutated code must pass the tests that will judge the mutants.
	seen := map[Target]bool{}
	for _, m := range muts {
		for _, tg := range m.Tests {
			if seen[tg] {
				continue
			}
			seen[tg] = true
			fmt.Fprintf(out, "baseline  %s\n", tg)
			if failed, detail := goTest(ctx, root, tg, timeout); failed {
				// Once more: a test that fails only now and then must not stop
				// the run, but it is named (fix it: it makes kills doubtful).
				fmt.Fprintf(out, "baseline  %s failed once (%s); again\n", tg, detail)
				if failed, detail := goTest(ctx, root, tg, timeout); failed {
					fmt.Fprintf(out, "mutate: the unmutated code fails %s: %s\n", tg, detail)
					return 2
				}
			}
		}
	}
	var results []Result
	for _, m := range muts {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "mutate: interrupted")
			return 2
		}
		r := mutate(ctx, root, m, timeout)
		results = append(results, r)
		fmt.Fprintf(out, "%-9s %-40s %6.1fs  %s\n", r.Outcome, r.Name, r.Took.Seconds(), r.Detail)
	}
	s := summarize(results)
	fmt.Fprint(out, s.String())
	if s.Stale > 0 || s.IssueSurvived > 0 || s.Rate() < minRate {
		return 1
	}
	return 0
}

// mutate applies m to the tree at root, runs its tests and restores the tree.
func mutate(ctx context.Context, root string, m Mutation, timeout time.Duration) Result {
	start := time.Now()
	r := Result{Name: m.Name, Issue: m.Issue}
	restore, err := apply(root, m.Edits)
	if err != nil {
		r.Outcome, r.Detail = Stale, err.Error()
		return r
	}
	defer func() {
		if err := restore(); err != nil {
			panic(fmt.Sprintf("mutate: restoring after %s: %v", m.Name, err)) // the copy is unusable
		}
	}()
	r.Outcome = Survived
	for _, tg := range m.Tests {
		failed, detail := goTest(ctx, root, tg, timeout)
		if !failed {
			continue
		}
		if strings.Contains(detail, "[build failed]") || strings.Contains(detail, "[setup failed]") {
			r.Outcome, r.Detail = Invalid, "does not build: "+detail
			break
		}
		// A kill counts only when the failing test fails again on the same
		// mutant: a test that fails now and then must not inflate the rate.
		if name := failingTest(detail); name != "" {
			again := Target{Pkg: tg.Pkg, Run: "^" + regexp.QuoteMeta(name) + "$"}
			if failedAgain, _ := goTest(ctx, root, again, timeout); !failedAgain {
				r.Detail = "flaky failure not counted: " + tg.String() + ": " + detail
				continue
			}
		}
		r.Outcome, r.Detail = Killed, tg.String()+": "+detail
		break
	}
	r.Took = time.Since(start)
	return r
}

// apply makes every edit (each Old must occur exactly once) and returns the
// function that puts the original files back.
func apply(root string, edits []Edit) (restore func() error, err error) {
	orig := map[string][]byte{}
	restore = func() error {
		var errs []error
		for path, b := range orig {
			errs = append(errs, os.WriteFile(path, b, 0o644))
		}
		return errors.Join(errs...)
	}
	for _, e := range edits {
		path := filepath.Join(root, filepath.FromSlash(e.File))
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("stale: %w", err), restore())
		}
		if _, ok := orig[path]; !ok {
			orig[path] = b
		}
		if n := bytes.Count(b, []byte(e.Old)); n != 1 {
			return nil, errors.Join(fmt.Errorf("stale: %s: the snippet %q occurs %d times, want once", e.File, firstLine(e.Old), n), restore())
		}
		if err := os.WriteFile(path, bytes.Replace(b, []byte(e.Old), []byte(e.New), 1), 0o644); err != nil {
			return nil, errors.Join(err, restore())
		}
	}
	return restore, nil
}

// checkSnippets lists the mutations whose snippets are not in the code at
// root exactly once (each edit seen after the previous ones of its mutation).
func checkSnippets(root string, muts []Mutation) []string {
	var stale []string
	for _, m := range muts {
		files := map[string][]byte{}
		for _, e := range m.Edits {
			b, ok := files[e.File]
			if !ok {
				var err error
				if b, err = os.ReadFile(filepath.Join(root, filepath.FromSlash(e.File))); err != nil {
					stale = append(stale, fmt.Sprintf("STALE     %s: %v", m.Name, err))
					break
				}
			}
			if n := bytes.Count(b, []byte(e.Old)); n != 1 {
				stale = append(stale, fmt.Sprintf("STALE     %s: %s: the snippet %q occurs %d times, want once", m.Name, e.File, firstLine(e.Old), n))
				break
			}
			files[e.File] = bytes.Replace(b, []byte(e.Old), []byte(e.New), 1)
		}
	}
	return stale
}

// goTest runs one target's tests in root; failed is true when go test did not
// succeed, detail names the first failing test or the error.
func goTest(ctx context.Context, root string, tg Target, timeout time.Duration) (failed bool, detail string) {
	args := []string{"test", "-count=1", "-timeout", timeout.String()}
	if tg.Run != "" {
		args = append(args, "-run", tg.Run)
	}
	args = append(args, tg.Pkg)
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err == nil {
		return false, ""
	}
	return true, firstFailure(buf.String(), err)
}

// firstFailure picks the line that says why go test failed.
func firstFailure(output string, err error) string {
	for _, prefix := range []string{"--- FAIL: ", "panic: test timed out", "panic: ", "FAIL\t"} {
		for line := range strings.SplitSeq(output, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), prefix) {
				return strings.TrimSpace(line)
			}
		}
	}
	return fmt.Sprintf("%v: %s", err, firstLine(strings.TrimSpace(output)))
}

// failingTest is the top-level test a "--- FAIL: TestX/sub (1.2s)" line names, "" if none.
func failingTest(detail string) string {
	rest, ok := strings.CutPrefix(detail, "--- FAIL: ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, " ")
	name, _, _ = strings.Cut(name, "/")
	return name
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func (t Target) String() string {
	if t.Run == "" {
		return t.Pkg
	}
	return t.Pkg + " -run " + t.Run
}

func describe(m Mutation) string {
	var files []string
	for _, e := range m.Edits {
		files = append(files, e.File)
	}
	var tests []string
	for _, t := range m.Tests {
		tests = append(tests, t.String())
	}
	tag := ""
	if m.Issue {
		tag = " [issue 16]"
	}
	return strings.Join(files, ",") + " → " + strings.Join(tests, "; ") + tag
}

// Summary counts the outcomes.
type Summary struct {
	Killed, Survived, Invalid, Stale int
	IssueTotal, IssueKilled          int
	IssueSurvived                    int
	Survivors                        []string
	StaleNames                       []string
}

func summarize(rs []Result) Summary {
	var s Summary
	for _, r := range rs {
		switch r.Outcome {
		case Killed:
			s.Killed++
		case Survived:
			s.Survived++
			s.Survivors = append(s.Survivors, r.Name)
		case Invalid:
			s.Invalid++
		case Stale:
			s.Stale++
			s.StaleNames = append(s.StaleNames, r.Name)
		}
		if r.Issue {
			s.IssueTotal++
			switch r.Outcome {
			case Killed:
				s.IssueKilled++
			case Survived:
				s.IssueSurvived++
			}
		}
	}
	return s
}

// Rate is the percentage of valid mutants killed (100 when there are none).
func (s Summary) Rate() float64 {
	if s.Killed+s.Survived == 0 {
		return 100
	}
	return 100 * float64(s.Killed) / float64(s.Killed+s.Survived)
}

func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kill rate: %d of %d = %.1f %%", s.Killed, s.Killed+s.Survived, s.Rate())
	if s.IssueTotal > 0 {
		fmt.Fprintf(&b, " (issue 16's list: %d of %d caught)", s.IssueKilled, s.IssueTotal)
	}
	b.WriteString("\n")
	if len(s.Survivors) > 0 {
		fmt.Fprintf(&b, "survivors: %s\n", strings.Join(s.Survivors, ", "))
	}
	if s.Invalid > 0 {
		fmt.Fprintf(&b, "%d mutants do not build (not counted)\n", s.Invalid)
	}
	if s.Stale > 0 {
		fmt.Fprintf(&b, "stale (snippet no longer in the code; update scripts/mutate/mutations.go): %s\n", strings.Join(s.StaleNames, ", "))
	}
	return b.String()
}

// moduleRoot is the directory of the module's go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above")
		}
		dir = parent
	}
}

// copyTree copies the regular files of src into dst, without .git and build.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == ".git" || rel == "build" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
}
