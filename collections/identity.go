package collections

import (
	"reflect"
	"strconv"
	"time"

	"github.com/mosaik-go/mosaik/catalog"
	"github.com/mosaik-go/mosaik/groups"
)

// A collection's group identity (PROTOCOL.md section 22.1): its secret
// from the name, its state machine signature from the kind, the name and
// the type parts.

// typeTag names a Go type in group ids: its package path and name, so
// that two programs sharing a type (or a definition) derive one id.
func typeTag[T any]() string {
	t := reflect.TypeFor[T]()
	if holdsTime(t, map[reflect.Type]bool{}) {
		// Times are encoded as RFC 3339 text since 2026-12-07 (whole
		// seconds before): a replica of each encoding would refuse the
		// other's commands as non-canonical, so the two are two groups.
		return typeName(t) + timePartSuffix
	}
	return typeName(t)
}

// timePartSuffix ends the type part of a type that holds a time.Time.
const timePartSuffix = "+time=rfc3339nano"

var timeType = reflect.TypeFor[time.Time]()

// holdsTime reports whether a value of t can hold a time.Time: t is one,
// or an element, key or field of it (at any depth) is.
func holdsTime(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == timeType {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsTime(t.Elem(), seen)
	case reflect.Map:
		return holdsTime(t.Key(), seen) || holdsTime(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if holdsTime(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// typeName is Go's spelling of t with every named type in it qualified by
// its package path: "github.com/acme/chat.User", "[]github.com/acme/chat.User",
// "map[string]int". Go's own spelling (reflect.Type.String) qualifies by
// package name only, so []a/model.User and []b/model.User would share a
// group; for types that name nothing but predeclared types the two agree.
func typeName(t reflect.Type) string {
	if t.Name() != "" {
		if t.PkgPath() != "" {
			return t.PkgPath() + "." + t.Name()
		}
		return t.Name() // predeclared
	}
	switch t.Kind() {
	case reflect.Slice:
		return "[]" + typeName(t.Elem())
	case reflect.Array:
		return "[" + strconv.Itoa(t.Len()) + "]" + typeName(t.Elem())
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	case reflect.Pointer:
		return "*" + typeName(t.Elem())
	}
	return t.String() // struct, func, chan and interface literals: rare as elements
}

// signature derives a collection's state machine signature (PROTOCOL.md
// §22.1): the kind's string, then the name, then each part.
func signature(kindName, name string, parts ...string) catalog.ID {
	id := catalog.IDFromString("mosaik_collections_" + kindName).Derive([]byte(name))
	for _, p := range parts {
		id = id.Derive([]byte(p))
	}
	return id
}

// groupKey is the group secret of the collection called name.
func groupKey(name string) groups.Key { return groups.KeyFromSecret("mosaik/collections/" + name) }
