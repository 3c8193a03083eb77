package collections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mosaik-go/mosaik/collections"
)

// nest is a value as deep as its chain: each level one CBOR map.
type nest struct {
	N *nest `cbor:"1,keyasint,omitempty"`
}

func nested(levels int) *nest {
	v := &nest{}
	for range levels - 1 {
		v = &nest{N: v}
	}
	return v
}

// What the writer accepts, every replica decodes: a call whose command
// would not decode (the decoding limits apply to the whole command, which
// nests every argument a level or two deeper and holds a batch in one
// array) is refused before it is sent. It committed, every replica skipped
// it as rejected, and the caller got a version and no error.
func TestCommands_WhatTheWriterSendsEveryReplicaDecodes(t *testing.T) {
	n := startNode(t)
	m, err := collections.NewMap[string, *nest](n, freshName(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := tctx(t, 30*time.Second)
	if err := m.When().Online(ctx); err != nil {
		t.Fatal(err)
	}
	// 31 levels fit with the command's map around them.
	v, err := m.Insert(ctx, "deep", nested(31))
	if err != nil {
		t.Fatalf("a value 31 levels deep: %v", err)
	}
	if err := m.When().Reaches(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get("deep"); !ok {
		t.Fatal("the value 31 levels deep was not applied")
	}
	// 32 levels decode alone but not inside the command.
	_, err = m.Insert(ctx, "deeper", nested(32))
	var me *collections.MutationError[collections.KV[string, *nest]]
	if !errors.Is(err, collections.ErrEncoding) || !errors.As(err, &me) || me.MayApply {
		t.Fatalf("a value 32 levels deep: %v, want ErrEncoding that cannot apply", err)
	}

	vec, err := collections.NewVec[bool](n, freshName(t))
	if err != nil {
		t.Fatal(err)
	}
	defer vec.Close()
	if err := vec.When().Online(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = vec.Extend(ctx, make([]bool, 1<<20+1))
	if !errors.Is(err, collections.ErrTooLarge) || collections.MayApply(err) {
		t.Fatalf("an Extend of 2^20+1 items: %v, want ErrTooLarge that cannot apply", err)
	}
	if vec.Len() != 0 {
		t.Fatalf("the refused Extend left %d items", vec.Len())
	}
}
