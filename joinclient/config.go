package joinclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/config"
)

// Protocol is the `protocol` of a Join Server file.
type Protocol string

// Join Server protocols.
const (
	ProtocolBI10 Protocol = "BI1.0"
	ProtocolBI11 Protocol = "BI1.1"
)

// Version returns the BI ProtocolVersion header value of p.
func (p Protocol) Version() ProtocolVersion {
	if p == ProtocolBI11 {
		return BI11
	}
	return BI10
}

// Component selects the entries for NS messages or for AppSKeyReq.
type Component string

// Components of the interop repository.
const (
	ComponentNS Component = "ns" // JoinReq, RejoinReq, HomeNSReq
	ComponentAS Component = "as" // AppSKeyReq
)

// Paths are the URI paths per request type (no leading slash; empty = root).
type Paths struct {
	Join    string
	Rejoin  string
	AppSKey string
	HomeNS  string
}

// BasicAuth is HTTP Basic authentication. Its String method hides the password.
type BasicAuth struct {
	Username string
	Password string
}

func (b BasicAuth) String() string { return "BasicAuth{" + b.Username + ", [password]}" }

// HeaderField is one custom HTTP header of a Join Server file.
type HeaderField struct {
	Name  string
	Value string
}

// TLS sources.
const (
	TLSSourceFile     = "file"
	TLSSourceKeyVault = "key-vault"
)

// JoinServer is one Join Server file of the interop repository.
type JoinServer struct {
	Name       string // file path relative to the repository root, without extension ("tti/js")
	File       string // path of the file as read
	Scheme     string
	FQDN       string
	Port       int
	Protocol   Protocol
	Paths      Paths
	SenderNSID OptEUI64   // sender-ns-id of the file
	BasicAuth  *BasicAuth // nil when no username
	Headers    []HeaderField
	TLSSource  string // "", TLSSourceFile or TLSSourceKeyVault
	RootCA     string // path of root-ca, for display
	// TLSConfig is the client TLS configuration (nil for http). Built once at load.
	TLSConfig *tls.Config

	nsid       OptEUI64 // effective NSID: sender-ns-id or the global one
	components map[Component]bool
	protoLine  int
}

// NSID returns the NSID sent as SenderNSID to this Join Server (BI 1.1 only):
// its sender-ns-id, else the global NSID.
func (js *JoinServer) NSID() OptEUI64 {
	if js.Protocol != ProtocolBI11 {
		return OptEUI64{}
	}
	return js.nsid
}

// BaseURL is <scheme>://<fqdn>:<port>.
func (js *JoinServer) BaseURL() string {
	return js.Scheme + "://" + net.JoinHostPort(js.FQDN, strconv.Itoa(js.Port))
}

// URL returns the URL for a request type; the path is not escaped.
func (js *JoinServer) URL(m MessageType) string {
	var p string
	switch m {
	case MsgJoinReq:
		p = js.Paths.Join
	case MsgRejoinReq:
		p = js.Paths.Rejoin
	case MsgAppSKeyReq:
		p = js.Paths.AppSKey
	case MsgHomeNSReq:
		p = js.Paths.HomeNS
	}
	if p == "" {
		return js.BaseURL()
	}
	return js.BaseURL() + "/" + p
}

// Entry is one (prefix, Join Server) routing entry.
type Entry struct {
	Prefix     EUIPrefix
	JoinServer *JoinServer
	Components []Component // never empty: an omitted list means both
	Line       int         // line of the prefix in config.yml
}

// HasComponent reports whether the entry serves component c.
func (e Entry) HasComponent(c Component) bool {
	for _, x := range e.Components {
		if x == c {
			return true
		}
	}
	return false
}

// Repository is a loaded interop repository. It is immutable after loading.
type Repository struct {
	Dir         string
	JoinServers []*JoinServer // in order of first reference
	Entries     []Entry       // in file order
}

// RepositoryOptions are the settings from app-connect.yml that the loader needs.
type RepositoryOptions struct {
	// NSID is the global NSID (join.ns_id); a file's sender-ns-id overrides it.
	NSID OptEUI64
	// DefaultClientCertificate is the gateway's default client certificate,
	// used by `tls.source: key-vault`; nil when not configured.
	DefaultClientCertificate *tls.Certificate
	// ReadFile reads a file; nil means os.ReadFile. Tests and fuzzing pass an
	// in-memory file system.
	ReadFile func(name string) ([]byte, error)
	// Logger receives load warnings (http scheme, prefix host bits); nil discards them.
	Logger *slog.Logger
}

// LoadRepository reads and validates dir/config.yml and every Join Server file
// it names. It returns every problem found as config.Errors, each naming file,
// line and key ("interop/tti/js.yml:4: tls.cert: unknown key").
func LoadRepository(dir string, opts RepositoryOptions) (*Repository, error) {
	l := &loader{opts: opts, dir: dir, files: map[string]*JoinServer{}}
	if l.opts.ReadFile == nil {
		l.opts.ReadFile = os.ReadFile
	}
	if l.opts.Logger == nil {
		l.opts.Logger = slog.New(slog.DiscardHandler)
	}
	repo := l.load()
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	return repo, nil
}

type loader struct {
	opts  RepositoryOptions
	dir   string
	files map[string]*JoinServer
	errs  config.Errors
}

func (l *loader) load() *Repository {
	name := filepath.Join(l.dir, "config.yml")
	repo := &Repository{Dir: l.dir}
	data, err := l.opts.ReadFile(name)
	if err != nil {
		l.errs = append(l.errs, &config.Error{File: name, Err: fmt.Errorf("cannot read: %w", err)})
		return nil
	}
	root, errs := config.ParseYAML(name, data)
	defer func() { l.errs = sortErrors(append(errs.Errors(), l.errs...)) }()
	if root == nil {
		return nil
	}
	for _, kv := range errs.Mapping(root, "") {
		if kv.Key != "join-servers" {
			errs.Add(kv.KeyNode, kv.Key, "unknown key")
			continue
		}
		for i, item := range errs.Sequence(kv.Value, "join-servers") {
			l.entry(repo, errs, item, fmt.Sprintf("join-servers[%d]", i))
		}
	}
	if len(errs.Errors()) > 0 {
		return nil
	}
	l.checkRepository(repo, errs)
	return repo
}

func (l *loader) entry(repo *Repository, errs *config.YAML, item *yaml.Node, path string) {
	var fileNode *yaml.Node
	var file string
	var comps []Component
	var prefixes []linedPrefix
	sawEUIs := false
	for _, f := range errs.Mapping(item, path) {
		key := path + "." + f.Key
		switch f.Key {
		case "file":
			if s, ok := errs.Str(f.Value, key); ok {
				file, fileNode = s, f.Value
			}
		case "components":
			for j, c := range errs.Sequence(f.Value, key) {
				ck := fmt.Sprintf("%s[%d]", key, j)
				s, ok := errs.Str(c, ck)
				if !ok {
					continue
				}
				switch Component(s) {
				case ComponentNS, ComponentAS:
					if !slices.Contains(comps, Component(s)) {
						comps = append(comps, Component(s))
					}
				default:
					errs.Add(c, ck, "unknown component %q (want ns or as)", s)
				}
			}
		case "join-euis":
			sawEUIs = true
			prefixes = append(prefixes, parsePrefixes(errs, f.Value, key, l.opts.Logger, "interop")...)
		default:
			errs.Add(f.KeyNode, key, "unknown key")
		}
	}
	if fileNode == nil || file == "" {
		errs.Add(item, path+".file", "missing")
		return
	}
	if len(prefixes) == 0 {
		if !sawEUIs {
			errs.Add(item, path+".join-euis", "missing: at least one JoinEUI prefix is required")
		} else {
			errs.Add(item, path+".join-euis", "at least one JoinEUI prefix is required")
		}
		return
	}
	if len(comps) == 0 {
		comps = []Component{ComponentNS, ComponentAS}
	}
	js := l.joinServer(errs, file, fileNode, path+".file")
	if js == nil {
		return
	}
	if !slices.Contains(repo.JoinServers, js) {
		repo.JoinServers = append(repo.JoinServers, js)
	}
	for _, c := range comps {
		js.components[c] = true
	}
	for _, p := range prefixes {
		repo.Entries = append(repo.Entries, Entry{Prefix: p.p, JoinServer: js, Components: comps, Line: p.line})
	}
}

// linedPrefix is a JoinEUI prefix with the line it was given on.
type linedPrefix struct {
	p    EUIPrefix
	line int
}

// parsePrefixes reads a join-euis list; what names the repository in the
// warning about host bits ("interop", "claiming").
func parsePrefixes(errs *config.YAML, list *yaml.Node, key string, log *slog.Logger, what string) []linedPrefix {
	var out []linedPrefix
	for j, c := range errs.Sequence(list, key) {
		pk := fmt.Sprintf("%s[%d]", key, j)
		s, ok := errs.Str(c, pk)
		if !ok {
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			errs.Add(c, pk, "bad prefix %q: %v", truncate(s, 40), err)
			continue
		}
		if p.HasHostBits() {
			log.Warn("joinclient: "+what+" prefix has bits set beyond its length; they are ignored",
				"file", errs.File(), "line", c.Line, "prefix", p.String())
		}
		out = append(out, linedPrefix{p, c.Line})
	}
	return out
}

// resolve makes p relative to dir unless absolute (absolute paths are used as given).
func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// jsName is the file path relative to the repository root without extension.
func (l *loader) jsName(file, resolved string) string {
	rel := filepath.Clean(file)
	if filepath.IsAbs(file) {
		if r, err := filepath.Rel(filepath.Clean(l.dir), resolved); err == nil && !strings.HasPrefix(r, "..") {
			rel = r
		}
	}
	rel = filepath.ToSlash(rel)
	return strings.TrimSuffix(rel, filepath.Ext(rel))
}

func (l *loader) joinServer(cfgErrs *config.YAML, file string, fileNode *yaml.Node, key string) *JoinServer {
	resolved := resolve(l.dir, file)
	if js, ok := l.files[resolved]; ok {
		return js
	}
	data, err := l.opts.ReadFile(resolved)
	if err != nil {
		cfgErrs.Add(fileNode, key, "cannot read Join Server file: %v", err)
		return nil
	}
	root, errs := config.ParseYAML(resolved, data)
	defer func() { l.errs = append(l.errs, errs.Errors()...) }()
	if root == nil {
		return nil
	}
	js := &JoinServer{
		Name:       l.jsName(file, resolved),
		File:       resolved,
		Scheme:     "https",
		Port:       443,
		components: map[Component]bool{},
	}
	jsDir := filepath.Dir(resolved)
	var protoNode, tlsNode, schemeNode, nsidNode *yaml.Node
	var tb tlsBlock
	for _, f := range errs.Mapping(root, "") {
		switch f.Key {
		case "scheme":
			if s, ok := errs.Str(f.Value, f.Key); ok {
				schemeNode = f.Value
				if s != "https" && s != "http" {
					errs.Add(f.Value, f.Key, "must be https or http, got %q", truncate(s, 20))
				}
				js.Scheme = s
			}
		case "fqdn":
			if s, ok := errs.Str(f.Value, f.Key); ok {
				if strings.ContainsAny(s, "/:@?# ") && net.ParseIP(s) == nil {
					errs.Add(f.Value, f.Key, "must be a host name or IP address, got %q", truncate(s, 60))
				}
				js.FQDN = s
			}
		case "port":
			if n, ok := errs.Int(f.Value, f.Key); ok {
				if n < 1 || n > 65535 {
					errs.Add(f.Value, f.Key, "must be 1..65535, got %d", n)
				}
				js.Port = n
			}
		case "protocol":
			if s, ok := errs.Str(f.Value, f.Key); ok {
				protoNode = f.Value
				switch Protocol(s) {
				case ProtocolBI10, ProtocolBI11:
					js.Protocol = Protocol(s)
				default:
					errs.Add(f.Value, f.Key, "unknown protocol %q (want BI1.0 or BI1.1)", truncate(s, 20))
				}
			}
		case "paths":
			for _, p := range errs.Mapping(f.Value, f.Key) {
				pk := f.Key + "." + p.Key
				s, ok := errs.Str(p.Value, pk)
				if !ok {
					continue
				}
				s = strings.TrimPrefix(s, "/")
				if strings.ContainsAny(s, " ?#\r\n") {
					errs.Add(p.Value, pk, "path must not contain spaces, '?' or '#'")
				}
				switch p.Key {
				case "join":
					js.Paths.Join = s
				case "rejoin":
					js.Paths.Rejoin = s
				case "app-s-key":
					js.Paths.AppSKey = s
				case "home-ns":
					js.Paths.HomeNS = s
				default:
					errs.Add(p.KeyNode, pk, "unknown key")
				}
			}
		case "sender-ns-id":
			if s, ok := errs.Str(f.Value, f.Key); ok && s != "" {
				e, err := ParseEUI64(s)
				if err != nil {
					errs.Add(f.Value, f.Key, "must be an EUI-64 of 16 hex digits")
				} else {
					js.SenderNSID, nsidNode = SomeEUI64(e), f.KeyNode
				}
			}
		case "basic-auth":
			var ba BasicAuth
			var pwNode *yaml.Node
			for _, p := range errs.Mapping(f.Value, f.Key) {
				pk := f.Key + "." + p.Key
				s, ok := errs.Str(p.Value, pk)
				if !ok {
					continue
				}
				switch p.Key {
				case "username":
					ba.Username = s
				case "password":
					ba.Password, pwNode = s, p.Value
				default:
					errs.Add(p.KeyNode, pk, "unknown key")
				}
			}
			if ba.Username == "" && ba.Password != "" {
				errs.Add(pwNode, f.Key+".password", "password set without username")
			}
			if ba.Username != "" {
				js.BasicAuth = &ba
			}
		case "tls":
			tlsNode = f.Value
			tb = parseTLSBlock(errs, f, jsDir, true)
		case "headers":
			for _, p := range errs.Mapping(f.Value, f.Key) {
				pk := f.Key + "." + p.Key
				s, ok := errs.Str(p.Value, pk)
				if !ok {
					continue
				}
				if !validHeaderName(p.Key) {
					errs.Add(p.KeyNode, pk, "not a valid HTTP header name")
					continue
				}
				if strings.EqualFold(p.Key, "Host") || strings.EqualFold(p.Key, "Content-Length") {
					errs.Add(p.KeyNode, pk, "header %s cannot be set", p.Key)
					continue
				}
				if strings.ContainsAny(s, "\r\n\x00") {
					errs.Add(p.Value, pk, "header value must not contain CR, LF or NUL")
					continue
				}
				js.Headers = append(js.Headers, HeaderField{Name: p.Key, Value: s})
			}
		case "dns":
			errs.Add(f.KeyNode, f.Key, "DNS-based Join Server discovery is not supported")
		default:
			errs.Add(f.KeyNode, f.Key, "unknown key")
		}
	}
	if js.FQDN == "" {
		errs.Add(root, "fqdn", "missing: the Join Server host name is required")
	}
	if js.Protocol == "" && protoNode == nil {
		errs.Add(root, "protocol", "missing: BI1.0 or BI1.1 is required")
	}
	if js.Protocol == ProtocolBI10 && js.SenderNSID.Set {
		errs.Add(nsidNode, "sender-ns-id", "not allowed with protocol BI1.0 (NSIDs exist only in BI1.1)")
	}
	if protoNode != nil {
		js.protoLine = protoNode.Line
	}
	if js.SenderNSID.Set {
		js.nsid = js.SenderNSID
	} else {
		js.nsid = l.opts.NSID
	}
	if js.Scheme == "http" {
		if tlsNode != nil {
			errs.Add(tlsNode, "tls", "not allowed with scheme http")
		} else {
			line := 0
			if schemeNode != nil {
				line = schemeNode.Line
			}
			l.opts.Logger.Warn("joinclient: Join Server uses plain http", "js", js.Name, "file", resolved, "line", line)
		}
	} else {
		if tb.source == "" && (tb.certFile != "" || tb.keyFile != "") {
			tb.source = TLSSourceFile // a certificate alone implies source file
		}
		js.TLSSource, js.RootCA = tb.source, tb.rootCA
		js.TLSConfig = tb.clientTLS(errs, l.opts.ReadFile, l.opts.DefaultClientCertificate, "missing: source file needs certificate and key")
	}
	if len(errs.Errors()) > 0 {
		return nil
	}
	l.files[resolved] = js
	return js
}

// sanitizePEMError keeps crypto/tls's message, which never contains key material.
func sanitizePEMError(err error) error { return errors.New(err.Error()) }

func appendPEMCerts(pool *x509.CertPool, data []byte) bool {
	ok := false
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return ok
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		pool.AddCert(c)
		ok = true
	}
}

// checkRepository applies the rules that span files.
func (l *loader) checkRepository(repo *Repository, errs *config.YAML) {
	for _, js := range repo.JoinServers {
		if js.Protocol == ProtocolBI11 && js.components[ComponentNS] && !js.nsid.Set {
			l.errs = append(l.errs, &config.Error{File: js.File, Line: js.protoLine, Key: "protocol",
				Err: errors.New("BI1.1 Join Server serving component ns needs an NSID: set sender-ns-id here or join.ns_id")})
		}
	}
	for i, a := range repo.Entries {
		if a.Prefix.Length == 64 {
			continue
		}
		for _, b := range repo.Entries[:i] {
			if b.JoinServer == a.JoinServer || !samePrefix(a.Prefix, b.Prefix) {
				continue
			}
			for _, c := range a.Components {
				if b.HasComponent(c) {
					errs.Add(&yaml.Node{Line: a.Line}, "join-servers", "prefix %s (component %s) is served by both %s and %s; identical prefixes shorter than /64 are ambiguous",
						a.Prefix, c, b.JoinServer.Name, a.JoinServer.Name)
					break
				}
			}
		}
	}
}

// sortErrors orders errors by file (in order of first appearance, config.yml
// first) and by line within a file.
func sortErrors(es config.Errors) config.Errors {
	rank := map[string]int{}
	for _, e := range es {
		if _, ok := rank[e.File]; !ok {
			rank[e.File] = len(rank)
		}
	}
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].File != es[j].File {
			return rank[es[i].File] < rank[es[j].File]
		}
		return es[i].Line < es[j].Line
	})
	return es
}

func samePrefix(a, b EUIPrefix) bool {
	return a.Length == b.Length && a.Matches(b.EUI)
}

// validHeaderName reports an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// LoadClientCertificate loads the gateway's default client certificate and
// key (PEM files) used by `tls.source: key-vault`.
func LoadClientCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("joinclient: client certificate %s, key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// Options are the run-time collaborators of FromConfig.
type Options struct {
	Recorder  Recorder     // nil records nothing
	Logger    *slog.Logger // nil discards
	UserAgent string       // default "app-connect"
	// ReadFile reads the interop repository files; nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
}

// Service is everything built from the join section of app-connect.yml.
type Service struct {
	Repository *Repository
	KEKs       *KEKStore
	Router     *Router
	Proxy      *Proxy
}

// FromConfig loads the default client certificate, the KEK file and the
// interop repository named by cfg (paths resolved already, see
// config.Join.Resolve) and builds the router and the proxy. It does no network
// I/O, so check-config can call it. cfg.NetID must be set (from app-connect.yml
// or mPower); cfg.ASID is required when an entry serves component as.
func FromConfig(cfg config.Join, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	netID, err := ParseNetID(cfg.NetID)
	if err != nil {
		return nil, fmt.Errorf("joinclient: join.net_id: %w", err)
	}
	var nsid OptEUI64
	if cfg.NSID != "" {
		e, err := ParseEUI64(cfg.NSID)
		if err != nil {
			return nil, fmt.Errorf("joinclient: join.ns_id: %w", err)
		}
		nsid = SomeEUI64(e)
	}
	ropts := RepositoryOptions{NSID: nsid, ReadFile: opts.ReadFile, Logger: opts.Logger}
	if cfg.ClientCertFile != "" || cfg.ClientKeyFile != "" {
		if ropts.DefaultClientCertificate, err = LoadClientCertificate(cfg.ClientCertFile, cfg.ClientKeyFile); err != nil {
			return nil, err
		}
	}
	var keks *KEKStore
	if cfg.KEKFile != "" {
		if keks, err = LoadKEKFile(cfg.KEKFile, opts.Logger); err != nil {
			return nil, err
		}
	}
	if cfg.InteropDir == "" {
		return nil, errors.New("joinclient: join.interop_dir is not set")
	}
	repo, err := LoadRepository(cfg.InteropDir, ropts)
	if err != nil {
		return nil, err
	}
	if cfg.ASID == "" {
		for _, e := range repo.Entries {
			if e.HasComponent(ComponentAS) {
				return nil, fmt.Errorf("joinclient: join.as_id is required: %s serves component as (components omitted means ns and as)", e.JoinServer.File)
			}
		}
	}
	router := NewRouter(repo, ClientOptions{NetID: netID, ASID: cfg.ASID, UserAgent: opts.UserAgent, Logger: opts.Logger,
		MaxInFlight: cfg.MaxInFlightPerJoinServer, BreakerTimeouts: cfg.BreakerTimeouts, BreakerCoolDown: cfg.BreakerCoolDown})
	proxy, err := NewProxy(ProxyConfig{
		Router:      router,
		KEKs:        keks,
		NetID:       netID,
		Budget:      cfg.Budget,
		Recorder:    opts.Recorder,
		Logger:      opts.Logger,
		MaxInFlight: cfg.MaxInFlight,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Repository: repo, KEKs: keks, Router: router, Proxy: proxy}, nil
}
