package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	flag "github.com/spf13/pflag"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/cmd/mosaik-node/internal/keyfile"
	"github.com/mosaik-go/mosaik/internal/testutil"
	"github.com/mosaik-go/mosaik/policy"
)

func env(stdout, stderr *bytes.Buffer, vars map[string]string) Env {
	// mDNS is on by default in the binary; tests never multicast.
	getenv := func(k string) string {
		if v, ok := vars[k]; ok || k != "MOSAIK_MDNS" {
			return v
		}
		return "false"
	}
	return Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: getenv}
}

func TestMain_KeygenThenID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"keygen", "--out", path}, env(&out, &errOut, nil)); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, errOut.String())
	}
	created := strings.TrimSpace(out.String())
	out.Reset()
	if code := Main(context.Background(), []string{"id", "--key", path}, env(&out, &errOut, nil)); code != 0 {
		t.Fatalf("id exit %d: %s", code, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != created || !strings.HasPrefix(got, "12D3KooW") {
		t.Fatalf("id printed %q, keygen printed %q", got, created)
	}
}

func TestMain_BadInputExitsTwoWithOneLine(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.key")
	if err := os.WriteFile(corrupt, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badConfig, []byte("network = [unterminated"), 0o600); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "value.bin")
	if err := os.WriteFile(binary, []byte{0xff, 0xfe, 0x00}, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		nil,
		{"nope"},
		{"keygen"},
		{"run"}, // no --network
		{"run", "--bogus-flag"},
		{"run", "--network", "x", "--key", corrupt},
		{"run", "--network", "x", "--log-level", "loud"},
		{"run", "--network", "x", "--gossip-signing", "lax"},
		{"run", "--network", "x", "--key", filepath.Join(dir, "new.key"), "--data-dir", corrupt}, // a file
		{"run", "--config", badConfig},
		{"run", "--network", "x", "--bootstrap", "/ip4/1.2.3.4/tcp/1"},  // no /p2p
		{"run", "--network", "x", "--rendezvous", "/ip4/1.2.3.4/tcp/1"}, // no /p2p
		{"produce", "--network", "x"},                                   // no STREAM
		{"consume", "--network", "x", "--ticket-class", "c", "s"},       // class without issuer
		{"id", "--key", filepath.Join(dir, "missing")},
		{"run", "--network", "x", "--replicate", "bogus:orders"},                 // unknown kind
		{"run", "--network", "x", "--replicate", "orders"},                       // no KIND:
		{"run", "--network", "x", "--replicate", "map:o", "--ticket-class", "c"}, // class without issuer
		{"map"},
		{"map", "frob", "orders"},
		{"map", "put", "--network", "x", "orders", "k"},                           // no VALUE
		{"map", "put", "--network", "x", "--value-file", "-", "orders", "k", "v"}, // VALUE and --value-file
		{"map", "get", "--network", "x", "--value-file", "-", "orders", "k"},      // --value-file is put's
		{"map", "put", "--network", "x", "--value-file", filepath.Join(dir, "missing"), "orders", "k"},
		{"map", "put", "--network", "x", "--value-file", binary, "orders", "k"}, // not UTF-8
		{"map", "list", "--network", "x"},                                       // no NAME
		{"map", "get", "--network", "x", "--timeout", "0s", "orders", "k"},
		{"map", "put", "orders", "k", "v"}, // no --network
		{"map", "get", "--network", "x", "--require-ticket-issuer", "nope", "orders", "k"},
		{"ticket", "issue", "--out", filepath.Join(dir, "t")},
		{"run", "--network", "x", "--admission-issuer", "nope"},
		{"run", "--network", "x", "--eviction-issuer", "nope"},
		{"run", "--network", "x", "--admission-ticket", filepath.Join(dir, "missing")},
	} {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), args, env(&out, &errOut, nil))
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errOut.String())
		}
		if out.Len() != 0 {
			t.Errorf("%q: wrote %q to stdout; errors belong on stderr", args, out.String())
		}
		last := strings.TrimRight(errOut.String(), "\n")
		if i := strings.LastIndex(last, "\n"); i >= 0 {
			last = last[i+1:]
		}
		if !strings.HasPrefix(last, "mosaik-node: ") {
			t.Errorf("%q: last stderr line %q is not a one-line error", args, last)
		}
	}
}

func TestApplyLayers_FlagsOverrideEnvOverrideFile(t *testing.T) {
	for _, ext := range []string{".toml", ".yaml"} {
		t.Run(ext, func(t *testing.T) {
			var data string
			if ext == ".toml" {
				data = "network = \"from-file\"\ntags = \"a,b\"\nlog_level = \"warn\"\nlisten = [\"/ip4/127.0.0.1/tcp/1\", \"/ip4/127.0.0.1/tcp/2\"]\n"
			} else {
				data = "network: from-file\ntags: a,b\nlog-level: warn\nlisten:\n  - /ip4/127.0.0.1/tcp/1\n  - /ip4/127.0.0.1/tcp/2\n"
			}
			cfg, err := parseConfig(ext, []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			var nf nodeFlags
			nf.register(fs)
			if err := fs.Parse([]string{"--tags", "from-flag"}); err != nil {
				t.Fatal(err)
			}
			vars := map[string]string{"MOSAIK_NETWORK": "from-env", "MOSAIK_TAGS": "from-env"}
			srcs, err := applyLayers(fs, cfg, "node"+ext, func(k string) string { return vars[k] })
			if err != nil {
				t.Fatal(err)
			}
			if nf.tags != "from-flag" || nf.network != "from-env" || nf.logLevel != "warn" || len(nf.listen) != 2 || nf.profile != "default" {
				t.Fatalf("got tags %q network %q log %q listen %v profile %q", nf.tags, nf.network, nf.logLevel, nf.listen, nf.profile)
			}
			want := sources{"tags": srcFlag, "network": "env MOSAIK_NETWORK", "log-level": "file node" + ext, "listen": "file node" + ext, "profile": srcDefault}
			for k, v := range want {
				if srcs[k] != v {
					t.Errorf("source of %s = %q, want %q", k, srcs[k], v)
				}
			}
		})
	}
}

func TestApplyLayers_UnknownConfigKey(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	_ = fs.Parse(nil)
	_, err := applyLayers(fs, map[string]any{"netwrok": "x"}, "c.toml", func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "netwrok") {
		t.Fatalf("err = %v, want it to name the unknown key", err)
	}
	// A key of another node command is not an error: one file
	// (MOSAIK_CONFIG) serves run and produce alike.
	fs = flag.NewFlagSet("produce", flag.ContinueOnError)
	(&nodeCmd{name: "produce"}).register(fs)
	if _, err := applyLayers(fs, map[string]any{"data-dir": "/d", "replicate": "map:x", "online-min": 2}, "c.toml", func(string) string { return "" }); err != nil {
		t.Fatalf("run's keys in produce: %v", err)
	}
}

func TestTicketFile_RoundTripAndRejects(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	issuer := filepath.Join(dir, "issuer.key")
	holder := filepath.Join(dir, "holder.key")
	for _, k := range []string{issuer, holder} {
		if code := Main(context.Background(), []string{"keygen", "--out", k}, env(&out, &errOut, nil)); code != 0 {
			t.Fatal(errOut.String())
		}
	}
	holderID := strings.Fields(out.String())[1]
	path := filepath.Join(dir, "ticket.json")
	args := []string{"ticket", "issue", "--issuer-key", issuer, "--subject", holderID, "--network", "n", "--ttl", "1h", "--out", path}
	if code := Main(context.Background(), args, env(&out, &errOut, nil)); code != 0 {
		t.Fatalf("ticket issue: %s", errOut.String())
	}
	tk, err := readTicket(path)
	if err != nil || len(tk.Data) == 0 {
		t.Fatalf("readTicket = %v, %v", tk, err)
	}
	// The ticket is bound to the network and class it was issued for.
	issuerID, err := keyfile.PeerID(issuer)
	if err != nil {
		t.Fatal(err)
	}
	hid, err := peer.Decode(holderID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := policy.NewSignedTicketValidator(catalog.IDFromString("n"), issuerID).Validate(tk.Data, hid, now); err != nil {
		t.Errorf("own network: %v", err)
	}
	if _, err := policy.NewSignedTicketValidator(catalog.IDFromString("other"), issuerID).Validate(tk.Data, hid, now); !errors.Is(err, policy.ErrWrongNetwork) {
		t.Errorf("another network: %v", err)
	}
	if _, err := policy.NewSignedTicketValidator(catalog.IDFromString("n"), issuerID).WithClass(catalog.IDFromString("c")).Validate(tk.Data, hid, now); !errors.Is(err, policy.ErrWrongClass) {
		t.Errorf("another class: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"class":"short","data":"AA=="}`), 0o600)
	if _, err := readTicket(bad); err == nil {
		t.Error("a ticket file with a short class was accepted")
	}
}

func TestMain_FlagsAroundPositionals(t *testing.T) {
	for _, args := range [][]string{
		{"produce", "s", "--network", "n", "--log-format", "yaml"},
		{"produce", "--network", "n", "s", "--log-format", "yaml"},
		{"produce", "--network", "n", "--log-format", "yaml", "s"},
	} {
		var errOut bytes.Buffer
		// The bad --log-format is reported only once the STREAM
		// argument was accepted wherever it stood.
		if code := Main(context.Background(), args, env(&bytes.Buffer{}, &errOut, nil)); code != 2 || !strings.Contains(errOut.String(), "--log-format") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

func TestMain_StrictPerms(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix permission bits")
	}
	path := filepath.Join(t.TempDir(), "node.key")
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"keygen", "--out", path}, env(&out, &errOut, nil)); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, errOut.String())
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := Main(context.Background(), []string{"id", "--key", path}, env(&out, &errOut, nil)); code != 0 || !strings.Contains(errOut.String(), "chmod 600") {
		t.Fatalf("without --strict-perms: exit %d, stderr %q", code, errOut.String())
	}
	for _, args := range [][]string{
		{"id", "--key", path, "--strict-perms"},
		{"ticket", "issue", "--issuer-key", path, "--subject", strings.TrimSpace(out.String()), "--network", "n", "--out", path + ".ticket", "--strict-perms"},
		{"run", "--network", "n", "--key", path, "--strict-perms", "--listen", "/ip4/127.0.0.1/tcp/0"},
	} {
		errOut.Reset()
		code := Main(context.Background(), args, env(&bytes.Buffer{}, &errOut, nil))
		if code != 2 || !strings.Contains(errOut.String(), "accessible to group or others") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and the refusal", args, code, errOut.String())
		}
	}
	errOut.Reset()
	code := Main(context.Background(), []string{"run", "--network", "n", "--key", path}, env(&bytes.Buffer{}, &errOut, map[string]string{"MOSAIK_STRICT_PERMS": "true"}))
	if code != 2 || !strings.Contains(errOut.String(), "accessible to group or others") {
		t.Errorf("MOSAIK_STRICT_PERMS=true on run: exit %d (%s)", code, errOut.String())
	}
}

func TestNodeFlags_StatusToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A token and a comment: no client could send it, every request would
	// answer 401.
	twoLines := filepath.Join(dir, "two-lines")
	if err := os.WriteFile(twoLines, []byte("s3cret\n# rotated 2026-12-01\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		f         nodeFlags
		want      string
		wantUsage bool
	}{
		{name: "none", f: nodeFlags{}},
		{name: "flag", f: nodeFlags{statusToken: "t"}, want: "t"},
		{name: "file, trimmed", f: nodeFlags{statusTokenFile: file}, want: "from-file"},
		{name: "both", f: nodeFlags{statusToken: "t", statusTokenFile: file}, wantUsage: true},
		{name: "empty file", f: nodeFlags{statusTokenFile: empty}, wantUsage: true},
		{name: "file of two lines", f: nodeFlags{statusTokenFile: twoLines}, wantUsage: true},
		{name: "flag with a line break", f: nodeFlags{statusToken: "t\nu"}, wantUsage: true},
		{name: "flag with a trailing space", f: nodeFlags{statusToken: "t "}, wantUsage: true},
		{name: "missing file", f: nodeFlags{statusTokenFile: filepath.Join(dir, "missing")}, wantUsage: true},
	} {
		got, err := tc.f.token()
		var ue usageError
		if tc.wantUsage != errors.As(err, &ue) || got != tc.want {
			t.Errorf("%s: token %q, err %v", tc.name, got, err)
		}
	}
	// A token without --http is a mistake, not a silent no-op.
	var errOut bytes.Buffer
	code := Main(context.Background(), []string{"run", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0"},
		env(&bytes.Buffer{}, &errOut, map[string]string{"MOSAIK_STATUS_TOKEN": "t"}))
	if code != 2 || !strings.Contains(errOut.String(), "--status-token needs --http") {
		t.Errorf("token without --http: exit %d, %s", code, errOut.String())
	}
	// The short-lived commands ignore a token from the environment (which
	// serves every command, as the help advises for the token), and refuse
	// one on their command line.
	for _, args := range [][]string{
		{"catalog", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0", "--wait", "1ms", "--log-level", "error"},
	} {
		errOut.Reset()
		code := Main(context.Background(), args, env(&bytes.Buffer{}, &errOut, map[string]string{"MOSAIK_STATUS_TOKEN": "t"}))
		if code != 0 {
			t.Errorf("%s with MOSAIK_STATUS_TOKEN set: exit %d, %s", args[0], code, errOut.String())
		}
		errOut.Reset()
		code = Main(context.Background(), append(args, "--status-token", "t"), env(&bytes.Buffer{}, &errOut, nil))
		if code != 2 || !strings.Contains(errOut.String(), "--status-token needs --http") {
			t.Errorf("%s --status-token without --http: exit %d, %s", args[0], code, errOut.String())
		}
	}
}

// run --data-dir with a key starts a node whose groups keep their logs in
// the directory (created 0700 when missing).
func TestMain_RunWithDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	addrFile := filepath.Join(dir, "addrs")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"run", "--network", "x", "--listen", "/ip4/127.0.0.1/tcp/0", "--key", filepath.Join(dir, "node.key"),
			"--data-dir", data, "--addr-file", addrFile, "--log-level", "error"}, env(&out, &errOut, nil))
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(addrFile); err == nil {
			break
		}
		select {
		case c := <-code:
			t.Fatalf("run exited %d early: %s", c, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("node did not start")
		}
		time.Sleep(20 * time.Millisecond) // polling for the address file
	}
	if st, err := os.Stat(data); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", st, err)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("exit %d: %s", c, errOut.String())
	}
}

// A negative count or duration whose 0 means "off" is a usage error (exit
// 2), not another way to say off: consume --count -1 exited 0 at once.
func TestMain_NegativeCountsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"consume", "s", "--count", "-1"},
		{"consume", "s", "--max-rtt", "-1s"},
		{"produce", "s", "--max-consumers", "-2"},
		{"produce", "s", "--online-min", "-1"},
		{"catalog", "--wait", "-1s"},
	} {
		var errOut bytes.Buffer
		code := Main(context.Background(), append(args, "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0"), env(&bytes.Buffer{}, &errOut, nil))
		if code != 2 || !strings.Contains(errOut.String(), "must not be negative") {
			t.Errorf("%q: exit %d, %s", args, code, errOut.String())
		}
	}
}

// demo's --nodes out of its range is a usage error (exit 2), as a
// negative one is.
func TestMain_DemoNodesRange(t *testing.T) {
	for _, n := range []string{"-1", "27"} {
		var errOut bytes.Buffer
		code := Main(context.Background(), []string{"demo", "--nodes", n}, env(&bytes.Buffer{}, &errOut, nil))
		if code != 2 || !strings.Contains(errOut.String(), "--nodes within [0, 26]") {
			t.Errorf("demo --nodes %s: exit %d, %s", n, code, errOut.String())
		}
	}
}

// A busy --http port fails run before the node starts: it never
// announces itself to the network only to depart again.
func TestMain_HTTPPortBusyFailsBeforeTheNodeStarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var errOut bytes.Buffer
	code := Main(context.Background(), []string{"run", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--http", ln.Addr().String()}, env(&bytes.Buffer{}, &errOut, nil))
	if code != 2 || !strings.Contains(errOut.String(), "--http "+ln.Addr().String()) {
		t.Fatalf("busy --http port: exit %d, %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "node started") {
		t.Fatalf("the node started before the --http port was found busy:\n%s", errOut.String())
	}
}

// A stop (the context ends, as on SIGINT) while run is starting is a
// clean exit, as a stop after the start is.
func TestMain_StopDuringStartExitsZero(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var errOut bytes.Buffer
	code := Main(ctx, []string{"run", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"},
		env(&bytes.Buffer{}, &errOut, nil))
	if code != 0 {
		t.Fatalf("stopped while starting: exit %d, %s", code, errOut.String())
	}
}

// Config values are taken as written: YAML's implicit types do not turn
// "010" into 8 or "1.10" into 1.1; an empty YAML value and a mapping are
// errors; a TOML number for a text flag must be quoted.
func TestConfig_ValuesAsWritten(t *testing.T) {
	apply := func(ext, text string) (*flag.FlagSet, error) {
		t.Helper()
		cfg, err := parseConfig(ext, []byte(text))
		if err != nil {
			return nil, err
		}
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		(&nodeCmd{name: "run"}).register(fs)
		_ = fs.Parse(nil)
		_, err = applyLayers(fs, cfg, "c"+ext, func(string) string { return "" })
		return fs, err
	}
	fs, err := apply(".yaml", "network: 010\ntags: [1.10, 2024-01-02]\nmdns: false\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("network").Value.String(); got != "010" {
		t.Errorf("YAML network: 010 read as %q", got)
	}
	if got := fs.Lookup("tags").Value.String(); got != "1.10,2024-01-02" {
		t.Errorf("YAML tags read as %q", got)
	}
	if got := fs.Lookup("mdns").Value.String(); got != "false" {
		t.Errorf("YAML mdns: false read as %q", got)
	}
	for _, tc := range []struct{ ext, text, want string }{
		{".yaml", "key:\n", "no value"},
		{".yaml", "http: ~\n", "no value"},
		{".yaml", "network:\n  a: b\n", "mapping"},
		{".toml", "network = 0x1F\n", "quote it"},
		{".toml", "tags = [1.10]\n", "quote it"},
		{".toml", "[network]\na = 1\n", "table"},
	} {
		if _, err := apply(tc.ext, tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: %v, want an error saying %q", tc.ext, tc.text, err, tc.want)
		}
	}
	fs, err = apply(".toml", "network = \"0x1F\"\nmdns = false\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("network").Value.String(); got != "0x1F" {
		t.Errorf("TOML network = \"0x1F\" read as %q", got)
	}
}

// A second node command with an identity in use by a running one (the key
// of its --data-dir) fails at once with exit 2, before its node
// starts, and names the holder's pid.
func TestMain_IdentityInUseFailsFast(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var firstErr bytes.Buffer
	first := make(chan int, 1)
	vars := map[string]string{}
	go func() {
		first <- Main(ctx, []string{"run", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir", dir, "--log-level", "error"},
			env(&bytes.Buffer{}, &firstErr, vars))
	}()
	key := filepath.Join(dir, "node.key")
	testutil.Eventually(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(key + ".lock")
		return err == nil && len(b) > 0
	}, "the first node holds no identity lock")
	var errOut bytes.Buffer
	code := Main(context.Background(), []string{"catalog", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0", "--key", key, "--wait", "1ms"},
		env(&bytes.Buffer{}, &errOut, nil))
	if code != 2 || !strings.Contains(errOut.String(), "in use by another process") || !strings.Contains(errOut.String(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second command on the same identity: exit %d, %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "node started") {
		t.Fatalf("the second node started:\n%s", errOut.String())
	}
	cancel()
	if c := <-first; c != 0 {
		t.Fatalf("the first node: exit %d, %s", c, firstErr.String())
	}
	// Free again once the holder ended.
	code = Main(context.Background(), []string{"catalog", "--network", "n", "--listen", "/ip4/127.0.0.1/tcp/0", "--key", key, "--wait", "1ms", "--log-level", "error"},
		env(&bytes.Buffer{}, &errOut, nil))
	if code != 0 {
		t.Fatalf("after the holder ended: exit %d, %s", code, errOut.String())
	}
}
