// Package fuzzsmoke runs every fuzz target of the module for a short bounded
// time as part of the test suite.
//
// It holds no library code, only TestFuzzTargets. That test finds the fuzz
// targets at run time, so a new FuzzXxx in any package's _test.go files is
// picked up without editing this package. It builds each package's
// coverage-instrumented test binary once (go test -c -fuzz=.), in the
// background: the package with the most dependencies first, alone, then
// the others two at a time, while the targets of the packages already
// built are fuzzed. It runs each binary for each of its targets, one
// target after the other, in the package's directory and with go test's
// fuzz cache, as
//
//	go test -run=^$ -fuzz=^FuzzXxx$ -fuzztime=T <package>
//
// would, with T from MOSAIK_FUZZTIME (default 300ms; any value
// go test accepts for -fuzztime, such as 30s or 10000x). A target that fails
// fails its subtest with the go command's output, which names the input go
// test saved under that package's testdata/fuzz directory.
//
// The subprocess does not inherit -race from GOFLAGS (the fuzzing engine
// instruments for coverage instead), and fuzzing is never cached, so
// -count=1 is not needed. New interesting inputs go to the fuzz cache
// inside GOCACHE, not into the source tree; only a failing input is written
// to testdata/fuzz.
package fuzzsmoke
