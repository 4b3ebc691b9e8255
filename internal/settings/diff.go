// Package settings compares two configurations setting by setting, by the
// names app-connect.yml uses, and reloads app-connect.yml (SIGHUP): it
// applies what can change live and says exactly what it applied and what
// needs a restart (never the values: some are secrets).
package settings

import (
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

var nodeType = reflect.TypeFor[yaml.Node]()

// Changed lists the dotted YAML names (log.level, delivery.retry_min, …) of
// the settings whose values differ between old and new, two values of the
// same struct type, sorted, leaving out the names in except. A field tagged
// yaml:"-" counts under the YAML name of a yaml.Node field it is parsed from
// (Config.DefaultAppOverride is reported as default_app).
func Changed(old, new any, except ...string) []string {
	var out []string
	walk(reflect.ValueOf(old), reflect.ValueOf(new), "", &out)
	out = slices.DeleteFunc(out, func(s string) bool { return slices.Contains(except, s) })
	slices.Sort(out)
	return slices.Compact(out)
}

func walk(a, b reflect.Value, prefix string, out *[]string) {
	if a.Kind() != reflect.Struct || a.Type() == nodeType {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, prefix)
		}
		return
	}
	t := a.Type()
	var nodeName string // the YAML name of a yaml.Node field: its parsed twin reports under it
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case f.Type == nodeType:
			nodeName = name
			continue // compared through its parsed twin
		case name == "-":
			if nodeName == "" {
				continue
			}
			name = nodeName
			if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				*out = append(*out, join(prefix, name))
			}
			continue
		case name == "":
			name = strings.ToLower(f.Name)
		}
		walk(a.Field(i), b.Field(i), join(prefix, name), out)
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
