package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

// TestDockerfile_BuildLine runs the Dockerfile's go build line here, where
// Docker may be missing: the binary the image ships must build with those
// flags, be static (the distroless base has no libc) and run. A cold build
// with these settings (CGO_ENABLED=0, -trimpath) compiles every dependency
// again, about two minutes on two cores; the README's benchmark pass uses
// the same settings and .ci/run vets with them first, so there the
// compiled packages are shared and this build mostly links.
// MOSAIK_DOCKERFILE_BUILD=0 only plans the build (go build -n: the flags,
// packages and imports resolve).
func TestDockerfile_BuildLine(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			line = strings.TrimPrefix(l, "RUN ")
		}
	}
	const out = "/out/mosaik-node"
	if line == "" || !strings.Contains(line, out) || !strings.Contains(line, "CGO_ENABLED=0") {
		t.Fatalf("no static go build line writing %s in the Dockerfile", out)
	}
	bin := filepath.Join(t.TempDir(), "mosaik-node")
	cmdline := strings.Replace(line, out, bin, 1)
	env := append(os.Environ(), "PATH="+filepath.Dir(testutil.GoTool())+":"+os.Getenv("PATH"))
	if os.Getenv("MOSAIK_DOCKERFILE_BUILD") == "0" {
		cmdline = strings.Replace(cmdline, "go build ", "go build -n ", 1)
		plan := exec.Command("sh", "-c", cmdline)
		plan.Dir = "../.."
		plan.Env = env
		if o, err := plan.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmdline, err, o)
		}
		t.Skip("planned only (MOSAIK_DOCKERFILE_BUILD=0)")
	}
	build := exec.Command("sh", "-c", cmdline)
	build.Dir = "../.." // the image's WORKDIR holds the repository root
	build.Env = env
	if o, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, o)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary is dynamically linked: the distroless static base cannot run it")
		}
	}
	o, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(o), "mosaik-node") {
		t.Fatalf("version: %v\n%s", err, o)
	}
}
