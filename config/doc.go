// Package config owns app-connect's typed configuration: the program's own YAML
// file (defaults, strict parsing, validation with file/line/key errors) and the
// mPower JSON documents (defaultApp, loraNetwork) that describe the remote
// applications.
//
// It reads the files it is pointed at and nothing else: no network, no other
// file-system side effects. It imports no other package of this module.
package config
