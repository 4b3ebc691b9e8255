package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/lorawan-gateway/app-connect/internal/admin"
	"github.com/lorawan-gateway/app-connect/internal/testpeer"
)

// buildPackage builds the host binary and packages it with scripts/package.sh
// into dir, returning the tarball's path.
func buildPackage(t *testing.T, dir string) string {
	t.Helper()
	bin := buildBinary(t)
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "package.sh"), "-o", dir, "-v", "1.2.3", "host="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("package.sh: %v\n%s", err, out)
	}
	tarball := filepath.Join(dir, "app-connect-1.2.3-host.tar.gz")
	if _, err := os.Stat(tarball); err != nil {
		t.Fatal(err)
	}
	return tarball
}

// untar extracts a tar.gz into dir and returns the entries with their modes.
func untar(t *testing.T, tarball, dir string) map[string]os.FileMode {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	entries := map[string]os.FileMode{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			t.Fatalf("unsafe entry %q", h.Name)
		}
		entries[name] = h.FileInfo().Mode()
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, h.FileInfo().Mode().Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			out.Close()
		default:
			t.Fatalf("entry %q of type %c", h.Name, h.Typeflag)
		}
	}
	return entries
}

func TestPackageLayout(t *testing.T) {
	dir := t.TempDir()
	tarball := buildPackage(t, dir)
	app := filepath.Join(dir, "app")
	entries := untar(t, tarball, app)
	var files []string
	for name, mode := range entries {
		if !mode.IsDir() {
			files = append(files, name)
		}
	}
	sort.Strings(files)
	want := []string{"Install", "Start", "app-connect", "config/app-connect.yml", "manifest.json", "provisioning/p_manifest.json", "status.json"}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("tarball files %v, want %v", files, want)
	}
	for _, x := range []string{"Install", "Start", "app-connect"} {
		if entries[x]&0o111 == 0 {
			t.Errorf("%s not executable: %v", x, entries[x])
		}
	}
	var m map[string]any
	readJSON(t, filepath.Join(app, "manifest.json"), &m)
	if m["AppName"] != "app-connect" || m["AppVersion"] != "1.2.3" || m["AppDescription"] == "" || m["AppVersionNotes"] == "" {
		t.Fatalf("manifest %v", m)
	}
	var st admin.FileDocument
	readJSON(t, filepath.Join(app, "status.json"), &st)
	if st.PID != 0 || st.AppInfo != "Not started" {
		t.Fatalf("shipped status %+v", st)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "..", "packaging", "mpower", "app-connect.yml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(app, "config", "app-connect.yml"))
	if err != nil || !bytes.Equal(got, shipped) {
		t.Fatalf("config/app-connect.yml is not packaging/mpower/app-connect.yml (%v)", err)
	}
	var out bytes.Buffer
	if code := realMain([]string{"check-config", "--config", filepath.Join(app, "config", "app-connect.yml")}, &out, &out); code != 0 {
		t.Fatalf("shipped config: %s", out.String())
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v: %s", path, err, b)
	}
}

// TestPackageLifecycle installs the host tarball into a temporary APP_DIR and
// drives it as app-manager does: Install install, Start start/reload/stop.
func TestPackageLifecycle(t *testing.T) {
	if _, err := exec.LookPath("start-stop-daemon"); err != nil {
		testpeer.Missing(t, "start-stop-daemon (Debian package dpkg)")
	}
	dir := t.TempDir()
	tarball := buildPackage(t, dir)
	appDir := filepath.Join(dir, "app-connect")
	untar(t, tarball, appDir)

	h := newHarness(t, 4)
	h.sink.FailFor(time.Hour, http.StatusServiceUnavailable) // everything stays queued
	adminAddr := freeLoopbackAddr(t)
	db := filepath.Join(appDir, "app-connect.db")
	logFile := filepath.Join(appDir, "app-connect.log")
	// The operator's own file, next to the shipped config/app-connect.yml.
	writeYAML := func(level string) {
		yml := fmt.Sprintf("lns:\n  broker: %s\nmpower:\n  api: %s\ngateway:\n  sysfs_root: %s\nstorage:\n  database: %s\n"+
			"admin:\n  listen: %s\ndelivery:\n  retry_min: 50ms\n  retry_max: 200ms\n  shutdown_timeout: 1s\n"+
			"log:\n  level: %s\n  destination: file\n  file: %s\n",
			h.cfg.LNS.Broker, h.cfg.MPower.API, h.cfg.Gateway.SysfsRoot, db, adminAddr, level, logFile)
		if err := os.WriteFile(filepath.Join(appDir, "app-connect.yml"), []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeYAML("info")
	pidFile := filepath.Join(dir, "app-connect.pid")
	env := append(os.Environ(), "APP_DIR="+appDir, "CONFIG_DIR="+filepath.Join(appDir, "config"), "APP_ID=1", "PIDFILE="+pidFile)
	script := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command("./"+name, args...)
		cmd.Dir, cmd.Env = appDir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s\nlog:\n%s", name, args, err, out, readFileString(logFile))
		}
		return string(out)
	}
	t.Cleanup(func() { // never leave a daemon behind
		if pid := readPID(pidFile); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	script("Install", "install")
	script("Install", "postinstall")
	script("Start", "start")
	pid := waitFor(t, 20*time.Second, "pid file", func() (int, bool) { p := readPID(pidFile); return p, p > 0 })
	if !processAlive(pid) {
		t.Fatalf("process %d not running", pid)
	}
	// status.json: an integer pid, the daemon's.
	statusPath := filepath.Join(appDir, "status.json")
	waitFor(t, 20*time.Second, "status.json with the pid", func() (struct{}, bool) {
		b, err := os.ReadFile(statusPath)
		if err != nil {
			return struct{}{}, false
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatalf("status.json %s: %v", b, err)
		}
		n, err := strconv.Atoi(string(raw["pid"]))
		return struct{}{}, err == nil && n == pid && len(raw["AppInfo"]) > 2
	})
	waitFor(t, 30*time.Second, "local broker connection", func() (struct{}, bool) {
		d, err := admin.Fetch(context.Background(), adminAddr)
		return struct{}{}, err == nil && d.Local.Connected && d.PID == pid && d.Startup.State == admin.StateRunning
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.publish(ctx, 5) // 4 joined + 20 uplinks, none deliverable
	const want = 24
	waitFor(t, 30*time.Second, "rows queued", func() (int, bool) {
		d, err := admin.Fetch(ctx, adminAddr)
		if err != nil || len(d.Applications) != 1 {
			return 0, false
		}
		return d.Applications[0].QueueRows, d.Applications[0].QueueRows == want
	})

	// reload: SIGHUP re-reads the file; the new level applies live.
	writeYAML("debug")
	script("Start", "reload")
	waitFor(t, 10*time.Second, "reload logged", func() (struct{}, bool) {
		return struct{}{}, strings.Contains(readFileString(logFile), `msg="reload: applied live"`) &&
			strings.Contains(readFileString(logFile), "settings=log.level log_level=debug")
	})
	if !processAlive(pid) {
		t.Fatal("process gone after reload")
	}

	script("Start", "stop")
	if processAlive(pid) {
		t.Fatalf("process %d still running after stop", pid)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	var final admin.FileDocument
	readJSON(t, statusPath, &final)
	if final.PID != 0 || !strings.HasPrefix(final.AppInfo, "stopped") {
		t.Errorf("final status %+v", final)
	}
	script("Start", "stop")   // stopping a stopped app is fine
	script("Start", "reload") // so is reloading it
	if n := countOutboxRows(t, db); n != want {
		t.Fatalf("%d rows in the outbox after stop, want %d", n, want)
	}
	// Start start refuses an invalid file and says why in status.json's AppInfo.
	if err := os.WriteFile(filepath.Join(appDir, "app-connect.yml"), []byte("lns:\n  brokr: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("./Start", "start")
	cmd.Dir, cmd.Env = appDir, env
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "app-connect: not started: "+appDir+"/app-connect.yml is invalid") {
		t.Fatalf("Start start with an invalid file: %v\n%s", err, out)
	}
	var refused admin.FileDocument
	readJSON(t, statusPath, &refused)
	if refused.PID != 0 || !strings.HasPrefix(refused.AppInfo, "not started: "+appDir+"/app-connect.yml:2: lns.brokr: unknown key") {
		t.Fatalf("status.json after the refusal %+v", refused)
	}
	if pid := readPID(pidFile); pid > 0 {
		t.Fatalf("a daemon was started (pid %d)", pid)
	}
	writeYAML("debug")
	// An upgrade (the tarball unpacked over the app) keeps the database and the operator's file.
	untar(t, tarball, appDir)
	script("Install", "install")
	if n := countOutboxRows(t, db); n != want {
		t.Fatalf("%d rows after the upgrade, want %d", n, want)
	}
	if b, _ := os.ReadFile(filepath.Join(appDir, "app-connect.yml")); !strings.Contains(string(b), "level: debug") {
		t.Fatal("the operator's app-connect.yml did not survive the upgrade")
	}
	if logs := readFileString(logFile); !strings.Contains(logs, "app-connect running") || !strings.Contains(logs, "stopping") {
		t.Fatalf("log file:\n%s", logs)
	}
}

// processAlive reports whether pid runs (a zombie, left to a container's
// init that does not reap, counts as gone).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state …: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func countOutboxRows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls f every 20 ms until it reports done, failing the test after d.
func waitFor[T any](t *testing.T, d time.Duration, what string, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v, ok := f()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last %v)", d, what, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
