package joinclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"

	"github.com/lorawan-gateway/app-connect/config"
)

// ClaimServerType is the `type` of a claiming repository entry; TTJS v2 is the only one.
const ClaimServerType = "ttjsv2"

// ClaimServer is one claim server file of the claiming repository: a Join
// Server speaking the TTJS v2 claiming API.
type ClaimServer struct {
	Name      string // file path relative to the repository root, without extension ("tti/js")
	File      string // path of the file as read
	URL       string // base URL, https, without trailing slash
	TLSSource string // TLSSourceFile or TLSSourceKeyVault
	RootCA    string // path of root-ca, for display; empty = system roots
	// TLSConfig always carries a client certificate (mutual TLS is mandatory).
	TLSConfig *tls.Config
}

// ClaimEntry is one (prefix, claim server) routing entry.
type ClaimEntry struct {
	Prefix EUIPrefix
	Server *ClaimServer
	Line   int // line of the prefix in config.yml
}

// ClaimRepository is a loaded claiming repository (The Things Stack
// device-claiming format). It is immutable after loading.
type ClaimRepository struct {
	Dir     string
	Servers []*ClaimServer // in order of first reference
	Entries []ClaimEntry   // in file order
}

// ClaimRepositoryOptions are the settings the loader needs from app-connect.yml.
type ClaimRepositoryOptions struct {
	// DefaultClientCertificate is used by `tls.source: key-vault`; nil when not configured.
	DefaultClientCertificate *tls.Certificate
	// ReadFile reads a file; nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Logger receives load warnings; nil discards them.
	Logger *slog.Logger
	// RoutingOnly loads URLs and JoinEUI prefixes only, for a dry run: no
	// certificate file is read and TLSConfig stays nil.
	RoutingOnly bool
}

// Route returns the claim server of the most specific prefix matching
// joinEUI, or nil when none matches.
func (r *ClaimRepository) Route(joinEUI EUI64) (EUIPrefix, *ClaimServer) {
	best := -1
	var prefix EUIPrefix
	var srv *ClaimServer
	for _, e := range r.Entries {
		if e.Prefix.Length > best && e.Prefix.Matches(joinEUI) {
			best, prefix, srv = e.Prefix.Length, e.Prefix, e.Server
		}
	}
	return prefix, srv
}

// LoadClaimRepository reads and validates dir/config.yml and every claim
// server file it names. Every problem is returned as config.Errors naming
// file, line and key ("claiming/tti/js.yml:3: tls.source: missing").
func LoadClaimRepository(dir string, opts ClaimRepositoryOptions) (*ClaimRepository, error) {
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &claimLoader{opts: opts, dir: dir, files: map[string]*ClaimServer{}}
	repo := l.load()
	if len(l.errs) > 0 {
		return nil, sortErrors(l.errs)
	}
	return repo, nil
}

// ClaimRepositoryFromConfig loads the repository of claim.dir with the
// gateway default client certificate of the join section (paths resolved
// already). It does no network I/O, so check-config can call it.
func ClaimRepositoryFromConfig(claim config.Claim, join config.Join, readFile func(string) ([]byte, error), log *slog.Logger) (*ClaimRepository, error) {
	if claim.Dir == "" {
		return nil, errors.New("joinclient: claim.dir is not set: no claiming repository")
	}
	opts := ClaimRepositoryOptions{ReadFile: readFile, Logger: log}
	if join.ClientCertFile != "" || join.ClientKeyFile != "" {
		cert, err := LoadClientCertificate(join.ClientCertFile, join.ClientKeyFile)
		if err != nil {
			return nil, err
		}
		opts.DefaultClientCertificate = cert
	}
	return LoadClaimRepository(claim.Dir, opts)
}

// ClaimRoutesFromConfig loads the repository of claim.dir for routing only
// (RoutingOnly: a dry run needs no certificate file).
func ClaimRoutesFromConfig(claim config.Claim, readFile func(string) ([]byte, error), log *slog.Logger) (*ClaimRepository, error) {
	if claim.Dir == "" {
		return nil, errors.New("joinclient: claim.dir is not set: no claiming repository")
	}
	return LoadClaimRepository(claim.Dir, ClaimRepositoryOptions{ReadFile: readFile, Logger: log, RoutingOnly: true})
}

type claimLoader struct {
	opts  ClaimRepositoryOptions
	dir   string
	files map[string]*ClaimServer
	errs  config.Errors
}

func (l *claimLoader) load() *ClaimRepository {
	name := filepath.Join(l.dir, "config.yml")
	data, err := l.opts.ReadFile(name)
	if err != nil {
		l.errs = append(l.errs, &config.Error{File: name, Err: fmt.Errorf("cannot read: %w", err)})
		return nil
	}
	root, errs := config.ParseYAML(name, data)
	defer func() { l.errs = append(errs.Errors(), l.errs...) }()
	if root == nil {
		return nil
	}
	repo := &ClaimRepository{Dir: l.dir}
	for _, kv := range errs.Mapping(root, "") {
		if kv.Key != "join-servers" {
			errs.Add(kv.KeyNode, kv.Key, "unknown key")
			continue
		}
		for i, item := range errs.Sequence(kv.Value, "join-servers") {
			l.entry(repo, errs, item, fmt.Sprintf("join-servers[%d]", i))
		}
	}
	if len(errs.Errors()) > 0 || len(l.errs) > 0 {
		return nil
	}
	for i, a := range repo.Entries {
		for _, b := range repo.Entries[:i] {
			if samePrefix(a.Prefix, b.Prefix) && a.Server != b.Server {
				errs.Add(&yaml.Node{Line: a.Line}, "join-servers", "prefix %s is served by both %s and %s; identical prefixes are ambiguous",
					a.Prefix, b.Server.Name, a.Server.Name)
			}
		}
	}
	return repo
}

func (l *claimLoader) entry(repo *ClaimRepository, errs *config.YAML, item *yaml.Node, path string) {
	var fileNode, typeNode *yaml.Node
	var file, typ string
	var prefixes []linedPrefix
	for _, f := range errs.Mapping(item, path) {
		key := path + "." + f.Key
		switch f.Key {
		case "file":
			if s, ok := errs.Str(f.Value, key); ok {
				file, fileNode = s, f.Value
			}
		case "type":
			if s, ok := errs.Str(f.Value, key); ok {
				typ, typeNode = s, f.Value
			}
		case "join-euis":
			prefixes = append(prefixes, parsePrefixes(errs, f.Value, key, l.opts.Logger, "claiming")...)
		case "components":
			errs.Add(f.KeyNode, key, "unknown key: a claiming repository has no components")
		default:
			errs.Add(f.KeyNode, key, "unknown key")
		}
	}
	bad := false
	switch {
	case typeNode == nil:
		errs.Add(item, path+".type", "missing: must be %s", ClaimServerType)
		bad = true
	case typ != ClaimServerType:
		errs.Add(typeNode, path+".type", "unknown type %q (want %s)", truncate(typ, 20), ClaimServerType)
		bad = true
	}
	if fileNode == nil || file == "" {
		errs.Add(item, path+".file", "missing")
		return
	}
	if len(prefixes) == 0 {
		errs.Add(item, path+".join-euis", "at least one JoinEUI prefix is required")
		return
	}
	if bad {
		return
	}
	srv := l.server(errs, file, fileNode, path+".file")
	if srv == nil {
		return
	}
	if !slices.Contains(repo.Servers, srv) {
		repo.Servers = append(repo.Servers, srv)
	}
	for _, p := range prefixes {
		repo.Entries = append(repo.Entries, ClaimEntry{Prefix: p.p, Server: srv, Line: p.line})
	}
}

func (l *claimLoader) server(cfgErrs *config.YAML, file string, fileNode *yaml.Node, key string) *ClaimServer {
	resolved := resolve(l.dir, file)
	if s, ok := l.files[resolved]; ok {
		return s
	}
	data, err := l.opts.ReadFile(resolved)
	if err != nil {
		cfgErrs.Add(fileNode, key, "cannot read claim server file: %v", err)
		return nil
	}
	root, errs := config.ParseYAML(resolved, data)
	defer func() { l.errs = append(l.errs, errs.Errors()...) }()
	if root == nil {
		return nil
	}
	srv := &ClaimServer{Name: (&loader{dir: l.dir}).jsName(file, resolved), File: resolved}
	jsDir := filepath.Dir(resolved)
	var tlsNode, urlNode *yaml.Node
	var tb tlsBlock
	for _, f := range errs.Mapping(root, "") {
		switch f.Key {
		case "url":
			if s, ok := errs.Str(f.Value, f.Key); ok {
				urlNode = f.Value
				if u, err := checkClaimURL(s); err != nil {
					errs.Add(f.Value, f.Key, "%v", err)
				} else {
					srv.URL = u
				}
			}
		case "tls":
			tlsNode = f.Value
			tb = parseTLSBlock(errs, f, jsDir, false)
		case "basic-auth":
			errs.Add(f.KeyNode, f.Key, "not supported: TTJS v2 authenticates by TLS client certificate only")
		default:
			errs.Add(f.KeyNode, f.Key, "unknown key")
		}
	}
	if urlNode == nil {
		errs.Add(root, "url", "missing: the claim server URL is required")
	}
	if tlsNode == nil {
		errs.Add(root, "tls", "missing: mutual TLS is required (source file with certificate and key, or key-vault)")
	} else {
		srv.TLSSource, srv.RootCA = tb.source, tb.rootCA
		if tb.source == "" {
			errs.Add(tlsNode, "tls.source", "missing: must be file or key-vault")
		}
		if !l.opts.RoutingOnly {
			srv.TLSConfig = tb.clientTLS(errs, l.opts.ReadFile, l.opts.DefaultClientCertificate, "missing: mutual TLS needs certificate and key")
		}
	}
	if len(errs.Errors()) > 0 {
		return nil
	}
	l.files[resolved] = srv
	return srv
}

// checkClaimURL accepts an absolute https URL without query, fragment or
// credentials and strips trailing slashes.
func checkClaimURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a URL: %q", truncate(s, 60))
	}
	switch {
	case u.Scheme != "https":
		return "", fmt.Errorf("scheme must be https (mutual TLS is required), got %q", truncate(u.Scheme, 10))
	case u.Host == "":
		return "", errors.New("has no host")
	case u.User != nil:
		return "", errors.New("must not hold credentials")
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "", errors.New("must not hold a query or fragment")
	}
	return strings.TrimRight(s, "/"), nil
}

// WriteClaimTable prints the claim routing table (prefix → claim server,
// client certificate source, URL), most specific prefixes first, for check-config.
func WriteClaimTable(w io.Writer, repo *ClaimRepository) error {
	entries := append([]ClaimEntry(nil), repo.Entries...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Prefix.tableOrder(entries[j].Prefix) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tCLAIM SERVER\tTYPE\tCLIENT CERT\tURL")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Prefix, e.Server.Name, ClaimServerType, e.Server.TLSSource, e.Server.URL)
	}
	return tw.Flush()
}
