package joinclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/config"
)

// yamlErrs collects strict-parsing errors of one file, each naming file, line and key.
type yamlErrs struct {
	file string
	list config.Errors
}

func (e *yamlErrs) add(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	e.list = append(e.list, &config.Error{File: e.file, Line: line, Key: key, Err: fmt.Errorf(format, args...)})
}

func (e *yamlErrs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return e.list
}

type kvPair struct {
	key     string
	keyNode *yaml.Node
	value   *yaml.Node
}

func deref(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping returns the pairs of a mapping node, reporting duplicates and non-scalar keys.
func (e *yamlErrs) mapping(n *yaml.Node, path string) []kvPair {
	n = deref(n)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		e.add(n, path, "must be a mapping")
		return nil
	}
	seen := map[string]bool{}
	var out []kvPair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			e.add(k, path, "keys must be strings")
			continue
		}
		if seen[k.Value] {
			e.add(k, join(path, k.Value), "duplicate key")
			continue
		}
		seen[k.Value] = true
		out = append(out, kvPair{key: k.Value, keyNode: k, value: v})
	}
	return out
}

// sequence returns the items of a sequence node.
func (e *yamlErrs) sequence(n *yaml.Node, path string) []*yaml.Node {
	n = deref(n)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		e.add(n, path, "must be a list")
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out
}

// str returns a scalar's text; null is the empty string.
func (e *yamlErrs) str(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n == nil {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		e.add(n, path, "must be a string")
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (e *yamlErrs) integer(n *yaml.Node, path string) (int, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		e.add(n, path, "must be an integer")
		return 0, false
	}
	v, err := strconv.ParseInt(n.Value, 0, 32)
	if err != nil {
		e.add(n, path, "must be an integer")
		return 0, false
	}
	return int(v), true
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// parseYAMLDoc parses exactly one non-empty YAML document whose root is a mapping.
func parseYAMLDoc(name string, data []byte) (*yaml.Node, *yamlErrs) {
	errs := &yamlErrs{file: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			errs.add(nil, "", "empty file")
			return nil, errs
		}
		errs.list = append(errs.list, yamlSyntaxError(name, err))
		return nil, errs
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		if err != nil {
			errs.list = append(errs.list, yamlSyntaxError(name, err))
		} else {
			errs.add(&second, "", "a second YAML document is not allowed")
		}
		return nil, errs
	}
	if len(doc.Content) == 0 {
		errs.add(nil, "", "empty file")
		return nil, errs
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		errs.add(root, "", "empty file")
		return nil, errs
	}
	if root.Kind != yaml.MappingNode {
		errs.add(root, "", "top level must be a mapping")
		return nil, errs
	}
	return root, errs
}

func yamlSyntaxError(name string, err error) *config.Error {
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	return &config.Error{File: name, Line: line, Err: err}
}
