package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decodeStrict decodes data into out (a pointer to a struct with yaml tags) and
// reports, with file, line and dotted key, every unknown or duplicate key and
// every value of the wrong type. It returns the document node for locating
// later validation errors (nil for an empty document).
func decodeStrict(name string, data []byte, out any) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(name, err)
	}
	if len(doc.Content) == 0 || len(bytes.TrimSpace(data)) == 0 {
		return nil, nil // empty file: defaults
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	var errs Errors
	checkKeys(name, root, reflect.TypeOf(out).Elem(), "", &errs)
	if len(errs) > 0 {
		return root, errs
	}
	if err := root.Decode(out); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			lines := keyLines(root)
			for _, msg := range te.Errors {
				line, text := splitLine(msg)
				errs = append(errs, &Error{File: name, Line: line, Key: lines[line], Err: errors.New(text)})
			}
			return root, errs
		}
		return root, &Error{File: name, Err: err}
	}
	return root, nil
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func splitLine(msg string) (int, string) {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	n, _ := strconv.Atoi(m[1])
	return n, m[2]
}

func syntaxError(name string, err error) error {
	line, text := splitLine(err.Error())
	return Errors{{File: name, Line: line, Err: fmt.Errorf("invalid YAML: %s", text)}}
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	nodeType     = reflect.TypeOf(yaml.Node{})
)

// checkKeys walks the mapping nodes alongside the struct type t and records
// keys the struct does not have, and keys given twice.
func checkKeys(name string, n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType {
		return // checked by its own parser
	}
	switch {
	case t.Kind() == reflect.Struct && t != durationType:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			*errs = append(*errs, &Error{File: name, Line: n.Line, Key: path, Err: errors.New("must be a mapping of keys")})
			return
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if prev, dup := seen[k.Value]; dup {
				*errs = append(*errs, &Error{File: name, Line: k.Line, Key: key, Err: fmt.Errorf("given twice (first on line %d)", prev)})
				continue
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &Error{File: name, Line: k.Line, Key: key, Err: fmt.Errorf("unknown key (known: %s)", knownKeys(fields))})
				continue
			}
			checkKeys(name, v, ft, key, errs)
		}
	case t.Kind() == reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				checkKeys(name, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
			}
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				checkKeys(name, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
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

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
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
				p := join(path, k.Value)
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
