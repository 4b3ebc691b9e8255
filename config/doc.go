// Package config owns app-connect's typed configuration: the program's own YAML
// file (defaults, strict parsing, validation with file/line/key errors) and the
// mPower JSON documents (defaultApp, loraNetwork) that describe the remote
// applications. Its strict-YAML engine (yaml.go: one document, unknown and
// repeated keys, values checked against what the key holds, messages in the
// words of the file) is also the one joinclient reads the interop and claiming
// repositories and the KEK file with (ParseYAML and the YAML walker).
//
// It reads the files it is pointed at and nothing else: no network, no other
// file-system side effects. It imports no other package of this module.
package config
