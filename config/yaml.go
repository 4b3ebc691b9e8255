package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file is the project's one strict-YAML engine: app-connect.yml (through
// decodeStrict and a struct's tags), and the interop repository, claiming
// repository and KEK files of joinclient (through ParseYAML and the YAML
// walker). Every problem is an *Error naming file, line and dotted key, in the
// words of the file: what was expected ("a duration such as 5s", "a whole
// number"), never the YAML or JSON library's jargon.

// YAML collects the errors found while walking one file's nodes.
type YAML struct {
	file string
	errs Errors
}

// NewYAML starts collecting errors of the file name.
func NewYAML(name string) *YAML { return &YAML{file: name} }

// Add records a problem of key at node n (its line; 0 when n is nil).
func (y *YAML) Add(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	y.errs = append(y.errs, &Error{File: y.file, Line: line, Key: key, Err: fmt.Errorf(format, args...)})
}

// File is the name errors are reported under.
func (y *YAML) File() string { return y.file }

// Errors returns what was recorded so far (nil when nothing).
func (y *YAML) Errors() Errors { return y.errs }

// Err returns the recorded problems as Errors, or nil.
func (y *YAML) Err() error {
	if len(y.errs) == 0 {
		return nil
	}
	return y.errs
}

// KV is one key of a mapping.
type KV struct {
	Key     string
	KeyNode *yaml.Node
	Value   *yaml.Node
}

func deref(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// JoinKey appends key to a dotted path.
func JoinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Mapping returns the keys of a mapping node in file order; a key given twice
// is reported (and its second value skipped). null is an empty mapping.
func (y *YAML) Mapping(n *yaml.Node, path string) []KV {
	n = deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		y.Add(n, path, "must be a mapping of keys")
		return nil
	}
	seen := map[string]int{}
	var out []KV
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			y.Add(k, path, "keys must be plain names")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			y.Add(k, JoinKey(path, k.Value), "given twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, KV{Key: k.Value, KeyNode: k, Value: v})
	}
	return out
}

// Sequence returns the items of a list node; null is an empty list.
func (y *YAML) Sequence(n *yaml.Node, path string) []*yaml.Node {
	n = deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		y.Add(n, path, "must be a list")
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out
}

// Str returns a scalar's text; null is the empty string.
func (y *YAML) Str(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n == nil || isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		y.Add(n, path, "must be a single value, not a %s", kindWord(n))
		return "", false
	}
	return n.Value, true
}

// Int returns a whole number that fits 32 bits.
func (y *YAML) Int(n *yaml.Node, path string) (int, bool) {
	n = deref(n)
	if n == nil {
		y.Add(n, path, "must be a whole number")
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 32)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
		y.Add(n, path, "must be a whole number, got %s", shown(n))
		return 0, false
	}
	return int(v), true
}

// ParseYAML parses exactly one non-empty YAML document whose top level is a
// mapping (the interop, claiming and KEK files). Problems are in the returned
// YAML (root nil when the document is unusable).
func ParseYAML(name string, data []byte) (*yaml.Node, *YAML) {
	y := NewYAML(name)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			y.Add(nil, "", "empty file")
			return nil, y
		}
		y.errs = append(y.errs, syntaxError(name, data, err))
		return nil, y
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		if err != nil {
			y.errs = append(y.errs, syntaxError(name, data, err))
		} else {
			y.Add(&second, "", "a second YAML document is not allowed")
		}
		return nil, y
	}
	if len(doc.Content) == 0 {
		y.Add(nil, "", "empty file")
		return nil, y
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		y.Add(root, "", "empty file")
		return nil, y
	}
	if root.Kind != yaml.MappingNode {
		y.Add(root, "", "the top level must be a mapping of keys")
		return nil, y
	}
	return root, y
}

// decodeStrict decodes data into out (a pointer to a struct with yaml tags) and
// reports, with file, line and dotted key, every unknown or duplicate key and
// every value of the wrong type. Values that are right are decoded even when
// others are wrong (so that validation can report their problems in the same
// run). It returns the document node for locating later validation errors
// (nil for an empty document) and whether the syntax was readable at all.
func decodeStrict(name string, data []byte, out any) (root *yaml.Node, errs Errors, readable bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(name, data, err)}, false
	}
	if len(doc.Content) == 0 || len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, true // empty file: defaults
	}
	root = doc.Content[0]
	if isNull(root) {
		return nil, nil, true
	}
	y := NewYAML(name)
	checkNode(y, root, reflect.TypeOf(out).Elem(), "", "yaml")
	if err := root.Decode(out); err != nil && len(y.errs) == 0 {
		// Only what checkNode did not foresee; otherwise its errors say it better.
		return root, decodeError(name, root, err), true
	}
	return root, y.errs, true
}

// decodeError turns a decoding error checkNode did not foresee into located
// Errors without the library's type names.
func decodeError(name string, root *yaml.Node, err error) Errors {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Errors{{File: name, Err: err}}
	}
	lines := keyLines(root)
	var errs Errors
	for _, msg := range te.Errors {
		line, text := splitLine(msg)
		if m := unmarshalRE.FindStringSubmatch(text); m != nil {
			text = "cannot be " + m[1]
		}
		errs = append(errs, &Error{File: name, Line: line, Key: lines[line], Err: errors.New(text)})
	}
	return errs
}

var (
	lineRE      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unmarshalRE = regexp.MustCompile("^cannot unmarshal !!\\w+ (`.*`) into .*$")
)

func splitLine(msg string) (int, string) {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, strings.TrimPrefix(msg, "yaml: ")
	}
	n, _ := strconv.Atoi(m[1])
	return n, m[2]
}

// syntaxError words a YAML syntax error for the file's author: a tab in the
// indentation (YAML's most common trap) is named as such.
func syntaxError(name string, data []byte, err error) *Error {
	line, text := splitLine(err.Error())
	lines := bytes.Split(data, []byte("\n"))
	// yaml.v3 reports a tab on the line it found it, or the one before or after.
	for _, l := range []int{line, line + 1, line - 1} {
		if l >= 1 && l <= len(lines) {
			indent := lines[l-1][:len(lines[l-1])-len(bytes.TrimLeft(lines[l-1], " \t"))]
			if bytes.ContainsRune(indent, '\t') {
				return &Error{File: name, Line: l, Err: errors.New("tabs are not allowed for indentation; use spaces")}
			}
		}
	}
	if strings.Contains(text, "found character that cannot start any token") && line >= 1 && line <= len(lines) && bytes.ContainsRune(lines[line-1], '\t') {
		return &Error{File: name, Line: line, Err: errors.New("tabs are not allowed in YAML outside quotes; use spaces")}
	}
	return &Error{File: name, Line: line, Err: fmt.Errorf("invalid YAML: %s", text)}
}

var (
	durationType        = reflect.TypeOf(time.Duration(0))
	nodeType            = reflect.TypeOf(yaml.Node{})
	unmarshalerType     = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// kindWord names a node's kind as the file's author sees it.
func kindWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// shown is a scalar as written (truncated), or its kind.
func shown(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return "a " + kindWord(n)
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}

// checkNode walks node n alongside the Go type t (fields named by the tag
// key, "yaml" or "json") and records keys the type does not have, keys given
// twice, and scalars that cannot be what the field holds.
func checkNode(y *YAML, n *yaml.Node, t reflect.Type, path, tag string) {
	n = deref(n)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType || isNull(n) {
		return // a node is checked by its own parser; null keeps the default
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return // the type reads its own text; decodeError words its refusal
	}
	scalar := func(what string, ok func(string) bool) {
		if n.Kind != yaml.ScalarNode || !ok(n.Value) {
			y.Add(n, path, "must be %s, got %s", what, shown(n))
		}
	}
	switch {
	case t == durationType:
		scalar("a duration such as 5s", func(s string) bool { _, err := time.ParseDuration(s); return err == nil && n.Tag == "!!str" })
	case t.Kind() == reflect.Bool:
		scalar("true or false", func(s string) bool {
			switch strings.ToLower(s) {
			case "yes", "no", "on", "off", "y", "n": // YAML 1.1 spellings yaml.v3 still reads
				return true
			}
			return n.Tag == "!!bool"
		})
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		scalar("a whole number", func(s string) bool {
			_, err := strconv.ParseInt(s, 0, t.Bits())
			return n.Tag == "!!int" && err == nil
		})
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		scalar("a whole number, 0 or more", func(s string) bool {
			_, err := strconv.ParseUint(s, 0, t.Bits())
			return n.Tag == "!!int" && err == nil
		})
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		scalar("a number", func(string) bool { return n.Tag == "!!int" || n.Tag == "!!float" })
	case t.Kind() == reflect.String:
		scalar("a single value", func(string) bool { return true })
	case t.Kind() == reflect.Struct:
		fields := tagFields(t, tag)
		for _, kv := range y.Mapping(n, path) {
			key := JoinKey(path, kv.Key)
			ft, ok := fields[kv.Key]
			if !ok {
				y.Add(kv.KeyNode, key, "unknown key (known: %s)", knownKeys(fields))
				continue
			}
			checkNode(y, kv.Value, ft, key, tag)
		}
	case t.Kind() == reflect.Map:
		for _, kv := range y.Mapping(n, path) {
			checkNode(y, kv.Value, t.Elem(), JoinKey(path, kv.Key), tag)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		for i, c := range y.Sequence(n, path) {
			checkNode(y, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), tag)
		}
	}
}

// tagFields maps the names a struct's fields take in the file (tag key "yaml"
// or "json") to their types.
func tagFields(t reflect.Type, tag string) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tv := f.Tag.Get(tag)
		if tv == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tv, ",")
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			for k, v := range tagFields(f.Type, tag) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
			if tag == "yaml" {
				name = strings.ToLower(name)
			}
		}
		out[name] = f.Type
	}
	return out
}

func knownKeys(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// keyLines maps each line that holds a key to that key's dotted path.
func keyLines(root *yaml.Node) map[int]string {
	out := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := JoinKey(path, k.Value)
				out[k.Line] = p
				if v.Line != k.Line {
					out[v.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, ok := out[c.Line]; !ok {
					out[c.Line] = p
				}
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return out
}

// lineOf finds the line of a dotted key in the document, 0 when absent.
func lineOf(root *yaml.Node, key string) int {
	if root == nil {
		return 0
	}
	n := root
	line := 0
	for _, part := range strings.Split(key, ".") {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// locate turns validation FieldErrors into file/line/key Errors.
func locate(name string, root *yaml.Node, fe []FieldError) Errors {
	errs := make(Errors, 0, len(fe))
	for _, f := range fe {
		errs = append(errs, &Error{File: name, Line: lineOf(root, f.Key), Key: f.Key, Err: f.Err})
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}
