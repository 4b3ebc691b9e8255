package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, root, rel, content string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyAndRestore(t *testing.T) {
	root := t.TempDir()
	const orig = "a := 1\nif a > 0 {\n\tack()\n}\ncommit()\n"
	p := writeFile(t, root, "pkg/x.go", orig)
	// Two edits of one file: a move (remove, then insert elsewhere).
	restore, err := apply(root, []Edit{
		{File: "pkg/x.go", Old: "\tack()\n", New: ""},
		{File: "pkg/x.go", Old: "commit()\n", New: "ack()\ncommit()\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p); got != "a := 1\nif a > 0 {\n}\nack()\ncommit()\n" {
		t.Fatalf("mutated:\n%s", got)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p); got != orig {
		t.Fatalf("restored:\n%s", got)
	}
}

func TestApplyRefusesStaleSnippets(t *testing.T) {
	root := t.TempDir()
	const orig = "x := 1\nx := 1\ny := 2\n"
	p := writeFile(t, root, "x.go", orig)
	tests := []struct {
		name  string
		edits []Edit
		want  string
	}{
		{"missing", []Edit{{File: "x.go", Old: "z := 3", New: "z := 4"}}, "occurs 0 times"},
		{"twice", []Edit{{File: "x.go", Old: "x := 1", New: "x := 2"}}, "occurs 2 times"},
		{"second edit stale after the first applied", []Edit{
			{File: "x.go", Old: "y := 2", New: "y := 3"},
			{File: "x.go", Old: "y := 2", New: "y := 4"},
		}, "occurs 0 times"},
		{"no such file", []Edit{{File: "nope.go", Old: "a", New: "b"}}, "stale"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			restore, err := apply(root, tc.edits)
			if err == nil || restore != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply = %v, want an error with %q", err, tc.want)
			}
			if got := readFile(t, p); got != orig {
				t.Fatalf("file left changed:\n%s", got)
			}
		})
	}
	if stale := checkSnippets(root, []Mutation{{Name: "m", Edits: []Edit{{File: "x.go", Old: "x := 1", New: ""}}}}); len(stale) != 1 || !strings.Contains(stale[0], "occurs 2 times") {
		t.Fatalf("checkSnippets = %q", stale)
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]Result{
		{Name: "a", Issue: true, Outcome: Killed},
		{Name: "b", Issue: true, Outcome: Survived},
		{Name: "c", Outcome: Killed},
		{Name: "d", Outcome: Killed},
		{Name: "e", Outcome: Invalid},
		{Name: "f", Outcome: Stale},
		{Name: "g", Outcome: Survived},
	})
	if s.Killed != 3 || s.Survived != 2 || s.Invalid != 1 || s.Stale != 1 || s.IssueTotal != 2 || s.IssueKilled != 1 || s.IssueSurvived != 1 {
		t.Fatalf("summary %+v", s)
	}
	if r := s.Rate(); r != 60 {
		t.Fatalf("rate %v, want 60 (invalid and stale not counted)", r)
	}
	text := s.String()
	for _, want := range []string{"kill rate: 3 of 5 = 60.0 %", "issue 16's list: 1 of 2 caught", "survivors: b, g", "stale", "f"} {
		if !strings.Contains(text, want) {
			t.Fatalf("summary text lacks %q:\n%s", want, text)
		}
	}
	if r := (Summary{}).Rate(); r != 100 {
		t.Fatalf("empty rate %v", r)
	}
}

func TestFirstFailure(t *testing.T) {
	out := "=== RUN   TestA\n    a_test.go:9: boom\n--- FAIL: TestA (0.00s)\nFAIL\nFAIL\tpkg\t0.01s\n"
	if got := firstFailure(out, errors.New("exit status 1")); got != "--- FAIL: TestA (0.00s)" {
		t.Fatalf("firstFailure = %q", got)
	}
	if got := firstFailure("# pkg\n./x.go:1: undefined: y\nFAIL\tpkg [build failed]\n", errors.New("exit status 1")); got != "FAIL\tpkg [build failed]" {
		t.Fatalf("firstFailure = %q", got)
	}
}

func TestFailingTest(t *testing.T) {
	for in, want := range map[string]string{
		"--- FAIL: TestA (0.00s)":           "TestA",
		"--- FAIL: TestB/sub_case (1.20s)":  "TestB",
		"FAIL\tpkg [build failed]":          "",
		"panic: test timed out after 10m0s": "",
	} {
		if got := failingTest(in); got != want {
			t.Errorf("failingTest(%q) = %q, want %q", in, got, want)
		}
	}
}

// The list itself: unique names, real edits inside the packages under test,
// and issue 16's six mutations present.
func TestMutationList(t *testing.T) {
	names := map[string]bool{}
	issue := 0
	for _, m := range mutations() {
		if m.Name == "" || names[m.Name] {
			t.Fatalf("mutation name %q empty or repeated", m.Name)
		}
		names[m.Name] = true
		if m.Issue {
			issue++
		}
		if len(m.Edits) == 0 || len(m.Tests) == 0 {
			t.Fatalf("%s: no edits or no tests", m.Name)
		}
		for _, e := range m.Edits {
			if e.Old == "" || e.Old == e.New {
				t.Fatalf("%s: edit of %s changes nothing", m.Name, e.File)
			}
			dir, _, _ := strings.Cut(e.File, "/")
			if strings.HasPrefix(e.File, "internal/backoff/") {
				dir = "internal/backoff" // the retry rule forward and joinclient share
			}
			switch dir {
			case "forward", "cache", "lnsbridge", "joinclient", "internal/backoff":
			default:
				t.Fatalf("%s: %s is outside the packages under test", m.Name, e.File)
			}
			if strings.HasSuffix(e.File, "_test.go") {
				t.Fatalf("%s mutates a test file", m.Name)
			}
		}
		for _, tg := range m.Tests {
			if !strings.HasPrefix(tg.Pkg, "./") {
				t.Fatalf("%s: package %q", m.Name, tg.Pkg)
			}
		}
	}
	if issue != 6 {
		t.Fatalf("%d mutations from issue 16's list, want its 6", issue)
	}
}

// TestSnippetsAreInTheCode: every mutation's snippets are in the module's
// code exactly once, so a change that makes one stale fails make test (two
// had gone stale unnoticed: nothing ran -check).
func TestSnippetsAreInTheCode(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range checkSnippets(root, mutations()) {
		t.Error(s)
	}
}
