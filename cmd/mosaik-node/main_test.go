package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/mosaik-go/mosaik/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }
