package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDockerfile_BuildLine runs the Dockerfile's go build line here, where
// Docker may be missing: the binary the image ships must build with those
// flags, be static (the distroless base has no libc) and run. The first
// run compiles everything again (-trimpath changes every cache key), a few
// minutes on a busy two-core machine; later runs hit the build cache.
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
	build := exec.Command("sh", "-c", strings.Replace(line, out, bin, 1))
	build.Dir = "../.." // the image's WORKDIR holds the repository root
	build.Env = append(os.Environ(), "PATH="+filepath.Join(runtime.GOROOT(), "bin")+":"+os.Getenv("PATH"))
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
